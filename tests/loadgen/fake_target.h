// A Target for driver tests: completes each call after a chosen delay with a
// chosen status code, on its own thread. Serial mode models a server with one
// worker (a call starts when the previous one ends).
#ifndef EMBSUM_TESTS_LOADGEN_FAKE_TARGET_H_
#define EMBSUM_TESTS_LOADGEN_FAKE_TARGET_H_

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <utility>
#include <vector>

#include "loadgen/target.h"

namespace embsum::loadgen {

class FakeTarget final : public Target {
 public:
  struct Outcome {
    std::chrono::nanoseconds delay{0};
    absl::StatusCode code = absl::StatusCode::kOk;
    size_t response_bytes = 10;
  };
  // behavior(n): the outcome of the n-th call started (0-based).
  using Behavior = std::function<Outcome(uint64_t n)>;

  FakeTarget(size_t requests, Behavior behavior, bool serial)
      : requests_(requests), behavior_(std::move(behavior)), serial_(serial) {
    worker_ = std::thread([this] { Work(); });
  }
  ~FakeTarget() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  size_t request_count() const override { return requests_; }

  void Start(size_t request_index, Completion done) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (request_index >= requests_) bad_index_ = true;
    const Outcome outcome = behavior_(started_++);
    const auto now = std::chrono::steady_clock::now();
    auto begin = serial_ ? std::max(now, last_due_) : now;
    const auto due = begin + outcome.delay;
    last_due_ = due;
    ++outstanding_;
    max_outstanding_ = std::max(max_outstanding_, outstanding_);
    queue_.push(Pending{due, seq_++, outcome, std::move(done)});
    cv_.notify_all();
  }

  uint64_t started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  int64_t outstanding() const {
    std::lock_guard<std::mutex> lock(mu_);
    return outstanding_;
  }
  int64_t max_outstanding() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_outstanding_;
  }
  bool bad_index() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_index_;
  }

 private:
  struct Pending {
    std::chrono::steady_clock::time_point due;
    uint64_t seq;
    Outcome outcome;
    Completion done;
    bool operator>(const Pending& o) const {
      return due != o.due ? due > o.due : seq > o.seq;
    }
  };

  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      const auto due = queue_.top().due;
      if (std::chrono::steady_clock::now() < due) {
        cv_.wait_until(lock, due);
        continue;
      }
      Pending p = std::move(const_cast<Pending&>(queue_.top()));
      queue_.pop();
      --outstanding_;
      lock.unlock();
      p.done(p.outcome.code, p.outcome.code == absl::StatusCode::kOk
                                 ? p.outcome.response_bytes
                                 : 0);
      lock.lock();
    }
  }

  const size_t requests_;
  const Behavior behavior_;
  const bool serial_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>>
      queue_;
  std::chrono::steady_clock::time_point last_due_{};
  uint64_t started_ = 0;
  uint64_t seq_ = 0;
  int64_t outstanding_ = 0;
  int64_t max_outstanding_ = 0;
  bool bad_index_ = false;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_TESTS_LOADGEN_FAKE_TARGET_H_
