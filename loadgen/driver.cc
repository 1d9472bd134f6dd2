#include "loadgen/driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace embsum::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

void SleepUntilNanos(int64_t t) {
  std::this_thread::sleep_until(Clock::time_point(std::chrono::nanoseconds(t)));
}

constexpr int64_t kLateNanos = 1'000'000;  // 1 ms

// One run: shared state between the issuing thread, the target's completion
// threads and the progress thread. Owned by shared_ptr so that a completion
// still unwinding after the last in_flight_ decrement keeps it alive.
class Driver : public std::enable_shared_from_this<Driver> {
 public:
  Driver(Target& target, const LoadOptions& options)
      : target_(target), options_(options) {
    std::mt19937_64 rng(options.seed);
    next_request_ = rng() % target.request_count();
  }

  LoadResult Run() {
    start_ = NowNanos();
    warmup_end_ = start_ + absl::ToInt64Nanoseconds(options_.warmup);
    end_ = warmup_end_ + absl::ToInt64Nanoseconds(options_.duration);
    std::thread progress;
    if (options_.on_progress) progress = std::thread([this] { Report(); });

    if (options_.concurrency > 0) {
      for (int i = 0; i < options_.concurrency; ++i) {
        size_t index;
        {
          absl::MutexLock lock(&mu_);
          index = TakeRequest();
        }
        IssueClosed(index);
      }
    } else {
      IssueOpen();
    }
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](int64_t* n) { return *n == 0; }, &in_flight_));
      done_ = true;
    }
    if (progress.joinable()) progress.join();

    absl::MutexLock lock(&mu_);
    result_.window_seconds = (end_ - warmup_end_) * 1e-9;
    result_.measured_seconds =
        std::max<int64_t>(end_ - warmup_end_, last_completion_ - warmup_end_) *
        1e-9;
    return std::move(result_);
  }

 private:
  // Takes the next request index and a slot. Requires mu_.
  size_t TakeRequest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t i = next_request_;
    next_request_ = (next_request_ + 1) % target_.request_count();
    ++in_flight_;
    return i;
  }

  // Closed loop: send now; the completion sends the next one on the same
  // slot.
  void IssueClosed(size_t index) {
    const int64_t sent = NowNanos();
    target_.Start(index, [self = shared_from_this(), sent](
                             absl::StatusCode code, size_t bytes) {
      size_t next = 0;
      bool again = false;
      {
        absl::MutexLock lock(&self->mu_);
        const int64_t now = self->Record(sent, sent, code, bytes);
        again = now < self->end_;
        if (again) next = self->TakeRequest();
        --self->in_flight_;
      }
      if (again) self->IssueClosed(next);
    });
  }

  // Open loop: send each request when it is due (or as soon as a slot
  // frees up); latency counts from when it was due.
  void IssueOpen() {
    ArrivalSchedule schedule(options_.rate, options_.arrival, options_.seed);
    for (;;) {
      const int64_t due = start_ + schedule.Next();
      if (due >= end_) break;
      SleepUntilNanos(due);
      size_t index;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Driver::HasFreeSlot));
        index = TakeRequest();
      }
      const int64_t sent = NowNanos();
      if (sent - due > kLateNanos && due >= warmup_end_) {
        absl::MutexLock lock(&mu_);
        ++result_.late_sends;
      }
      target_.Start(index, [self = shared_from_this(), due, sent](
                               absl::StatusCode code, size_t bytes) {
        absl::MutexLock lock(&self->mu_);
        self->Record(due, sent, code, bytes);
        --self->in_flight_;
      });
    }
  }

  bool HasFreeSlot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < options_.max_in_flight;
  }

  // Records one completion; returns the completion time.
  int64_t Record(int64_t due, int64_t sent, absl::StatusCode code, size_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t now = NowNanos();
    const bool ok = code == absl::StatusCode::kOk;
    last_completion_ = std::max(last_completion_, now);
    interval_.Record(now - due);
    ++interval_requests_;
    if (!ok) ++interval_errors_;
    if (due < warmup_end_) {
      ++result_.warmup_requests;
      if (!ok) ++result_.warmup_errors;
      return now;
    }
    result_.latency.Record(now - due);
    result_.service_latency.Record(now - sent);
    ++result_.codes[code];
    ++result_.requests;
    if (ok) {
      result_.response_bytes += bytes;
    } else {
      ++result_.errors;
    }
    return now;
  }

  // The progress thread: one callback per interval until the run is done.
  void Report() {
    const int64_t step = absl::ToInt64Nanoseconds(options_.progress_interval);
    int64_t tick = start_;
    for (;;) {
      tick += step;
      Progress p;
      {
        absl::MutexLock lock(&mu_);
        const absl::Time deadline =
            absl::Now() + absl::Nanoseconds(tick - NowNanos());
        if (mu_.AwaitWithDeadline(absl::Condition(&done_), deadline)) return;
        p.elapsed_seconds = (tick - start_) * 1e-9;
        p.warmup = tick <= warmup_end_;
        p.qps = interval_requests_ / (step * 1e-9);
        p.errors = interval_errors_;
        p.p50_seconds = interval_.SecondsAtQuantile(0.50);
        p.p99_seconds = interval_.SecondsAtQuantile(0.99);
        p.in_flight = in_flight_;
        interval_.Reset();
        interval_requests_ = 0;
        interval_errors_ = 0;
      }
      options_.on_progress(p);
    }
  }

  Target& target_;
  const LoadOptions options_;
  int64_t start_ = 0;
  int64_t warmup_end_ = 0;
  int64_t end_ = 0;

  absl::Mutex mu_;
  size_t next_request_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_completion_ ABSL_GUARDED_BY(mu_) = 0;
  LoadResult result_ ABSL_GUARDED_BY(mu_);
  LatencyHistogram interval_ ABSL_GUARDED_BY(mu_);
  uint64_t interval_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t interval_errors_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

double LoadResult::qps() const {
  return measured_seconds > 0 ? (requests - errors) / measured_seconds : 0;
}

double LoadResult::offered_qps() const {
  return window_seconds > 0 ? requests / window_seconds : 0;
}

double LoadResult::error_qps() const {
  return measured_seconds > 0 ? errors / measured_seconds : 0;
}

ArrivalSchedule::ArrivalSchedule(double rate, Arrival arrival, uint64_t seed)
    : interval_nanos_(1e9 / rate), arrival_(arrival), rng_(seed) {}

int64_t ArrivalSchedule::Next() {
  if (arrival_ == Arrival::kConstant) {
    if (first_) {
      first_ = false;
    } else {
      offset_nanos_ += interval_nanos_;
    }
  } else {
    offset_nanos_ +=
        std::exponential_distribution<double>(1.0 / interval_nanos_)(rng_);
  }
  return static_cast<int64_t>(offset_nanos_);
}

absl::StatusOr<LoadResult> RunLoad(Target& target, const LoadOptions& options) {
  const bool closed = options.concurrency > 0;
  const bool open = options.rate > 0;
  if (closed == open) {
    return absl::InvalidArgumentError(
        "set exactly one of --concurrency (closed loop) and --rate (open "
        "loop), positive");
  }
  if (open && !std::isfinite(options.rate)) {
    return absl::InvalidArgumentError("--rate must be finite");
  }
  const absl::Duration kMax = absl::Hours(24 * 30);
  if (options.duration <= absl::ZeroDuration() || options.duration > kMax) {
    return absl::InvalidArgumentError(
        "--duration must be positive, at most 30 days");
  }
  if (options.warmup < absl::ZeroDuration() || options.warmup > kMax) {
    return absl::InvalidArgumentError(
        "--warmup must not be negative, at most 30 days");
  }
  if (open && options.max_in_flight < 1) {
    return absl::InvalidArgumentError("--max_in_flight must be at least 1");
  }
  if (options.on_progress &&
      options.progress_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the progress interval must be positive");
  }
  if (target.request_count() == 0) {
    return absl::InvalidArgumentError("the target has no requests");
  }
  return std::make_shared<Driver>(target, options)->Run();
}

}  // namespace embsum::loadgen
