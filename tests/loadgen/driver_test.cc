#include "loadgen/driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "tests/loadgen/fake_target.h"

namespace embsum::loadgen {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

FakeTarget::Behavior Fixed(std::chrono::nanoseconds delay) {
  return [delay](uint64_t) { return FakeTarget::Outcome{delay}; };
}

uint64_t SumCodes(const LoadResult& r) {
  uint64_t n = 0;
  for (const auto& [code, count] : r.codes) n += count;
  return n;
}

TEST(RunLoad, ClosedLoopCountsEveryStatusCodeAndDropsNothing) {
  FakeTarget target(
      16,
      [](uint64_t n) {
        static constexpr absl::StatusCode kCodes[] = {
            absl::StatusCode::kOk, absl::StatusCode::kResourceExhausted,
            absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kOk};
        return FakeTarget::Outcome{microseconds(200), kCodes[n % 4]};
      },
      /*serial=*/false);
  LoadOptions options;
  options.concurrency = 4;
  options.duration = absl::Milliseconds(300);
  options.warmup = absl::Milliseconds(100);
  auto r = RunLoad(target, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(target.outstanding(), 0);  // every call awaited
  EXPECT_EQ(target.max_outstanding(), 4);
  EXPECT_FALSE(target.bad_index());
  EXPECT_GT(r->requests, 40u);
  // Every started call is either a warm-up or a measured request.
  EXPECT_EQ(r->requests + r->warmup_requests, target.started());
  EXPECT_EQ(SumCodes(*r), r->requests);
  EXPECT_EQ(r->latency.count(), r->requests);
  EXPECT_EQ(r->codes.size(), 3u);
  EXPECT_EQ(r->errors, r->requests - r->codes[absl::StatusCode::kOk]);
  EXPECT_GT(r->codes[absl::StatusCode::kResourceExhausted], 0u);
  EXPECT_GT(r->codes[absl::StatusCode::kDeadlineExceeded], 0u);
  EXPECT_EQ(r->response_bytes, 10 * r->codes[absl::StatusCode::kOk]);
  EXPECT_NEAR(r->qps(), (r->requests - r->errors) / r->measured_seconds, 1e-6);
  EXPECT_GE(r->measured_seconds, 0.3);
  EXPECT_DOUBLE_EQ(r->window_seconds, 0.3);
}

TEST(RunLoad, WarmupIsExcludedFromTheNumbers) {
  // Warm-up calls fail, measured calls succeed: the result must show no
  // errors but count the warm-up separately. Requests are classified by the
  // time they were due, and with constant arrivals at 2000/s the first 400
  // calls are due in the 200 ms warm-up: the first 200 fail, whatever the
  // machine's speed (no wall-clock switch).
  FakeTarget target(
      4,
      [](uint64_t n) {
        return FakeTarget::Outcome{
            microseconds(500),
            n < 200 ? absl::StatusCode::kUnavailable : absl::StatusCode::kOk};
      },
      false);
  LoadOptions options;
  options.rate = 2000;
  options.arrival = Arrival::kConstant;
  options.warmup = absl::Milliseconds(200);
  options.duration = absl::Milliseconds(200);
  auto r = RunLoad(target, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->warmup_requests, 200u);
  EXPECT_EQ(r->warmup_errors, 200u);
  EXPECT_EQ(r->errors, 0u);
  EXPECT_EQ(r->requests + r->warmup_requests, target.started());
}

// The wrk2 check: a 500 ms stall of a one-at-a-time server. Measured from
// the intended send time, the requests that were due during the stall carry
// it; measured from the actual send, the stall almost disappears.
TEST(RunLoad, OpenLoopCorrectsCoordinatedOmission) {
  FakeTarget target(
      8,
      [](uint64_t n) {
        return FakeTarget::Outcome{n == 50 ? milliseconds(500)
                                           : microseconds(0)};
      },
      /*serial=*/true);
  LoadOptions options;
  options.rate = 200;  // one every 5 ms
  options.arrival = Arrival::kConstant;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Seconds(2);
  options.max_in_flight = 1;  // like one connection that waits for answers
  auto r = RunLoad(target, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->errors, 0u);
  EXPECT_GE(r->requests, 390u);
  // ~100 of ~400 requests were due during the stall, waiting up to 500 ms:
  // the corrected p90 is ~300 ms, p99 ~480 ms.
  EXPECT_GE(r->latency.SecondsAtQuantile(0.90), 0.2);
  EXPECT_GE(r->latency.SecondsAtQuantile(0.99), 0.4);
  EXPECT_GE(r->late_sends, 80u);
  // Uncorrected, only the stalled call itself is slow.
  EXPECT_LT(r->service_latency.SecondsAtQuantile(0.90), 0.1);
  EXPECT_GE(r->service_latency.max_nanos(), 500'000'000);
}

TEST(RunLoad, OpenLoopRespectsMaxInFlight) {
  FakeTarget target(8, Fixed(milliseconds(20)), /*serial=*/false);
  LoadOptions options;
  options.rate = 1000;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(200);
  options.max_in_flight = 3;
  auto r = RunLoad(target, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(target.max_outstanding(), 3);
  EXPECT_EQ(target.outstanding(), 0);
  EXPECT_GT(r->late_sends, 0u);
  // Waiting for a slot counts: the slowest corrected latencies far exceed
  // the 20 ms service time.
  EXPECT_GT(r->latency.SecondsAtQuantile(0.99), 0.05);
}

TEST(RunLoad, ProgressIsReportedEachInterval) {
  FakeTarget target(4, Fixed(microseconds(100)), false);
  LoadOptions options;
  options.concurrency = 2;
  options.warmup = absl::Milliseconds(100);
  options.duration = absl::Milliseconds(400);
  options.progress_interval = absl::Milliseconds(100);
  std::vector<Progress> seen;
  options.on_progress = [&](const Progress& p) { seen.push_back(p); };
  auto r = RunLoad(target, options);
  ASSERT_TRUE(r.ok());
  ASSERT_GE(seen.size(), 3u);
  EXPECT_TRUE(seen.front().warmup);
  EXPECT_FALSE(seen.back().warmup);
  EXPECT_GT(seen.back().qps, 0);
  EXPECT_GT(seen.back().p99_seconds, 0);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GT(seen[i].elapsed_seconds, seen[i - 1].elapsed_seconds);
  }
}

TEST(RunLoad, RejectsBadOptions) {
  FakeTarget target(1, Fixed(microseconds(1)), false);
  LoadOptions both;
  both.concurrency = 1;
  both.rate = 10;
  EXPECT_THAT(RunLoad(target, both).status().message(),
              HasSubstr("exactly one of --concurrency"));
  LoadOptions neither;
  EXPECT_FALSE(RunLoad(target, neither).ok());
  LoadOptions zero_duration;
  zero_duration.concurrency = 1;
  zero_duration.duration = absl::ZeroDuration();
  EXPECT_THAT(RunLoad(target, zero_duration).status().message(),
              HasSubstr("--duration"));
  LoadOptions forever;
  forever.concurrency = 1;
  forever.duration = absl::InfiniteDuration();
  EXPECT_THAT(RunLoad(target, forever).status().message(),
              HasSubstr("--duration"));
  LoadOptions no_slots;
  no_slots.rate = 10;
  no_slots.max_in_flight = 0;
  EXPECT_THAT(RunLoad(target, no_slots).status().message(),
              HasSubstr("--max_in_flight"));
  FakeTarget empty(0, Fixed(microseconds(1)), false);
  LoadOptions ok;
  ok.concurrency = 1;
  EXPECT_FALSE(RunLoad(empty, ok).ok());
}

TEST(ArrivalSchedule, PoissonHasTheRateAndExponentialSpread) {
  ArrivalSchedule s(1000, Arrival::kPoisson, 42);
  const int n = 100000;
  std::vector<double> gaps;
  int64_t prev = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t t = s.Next();
    ASSERT_GE(t, prev);
    gaps.push_back(static_cast<double>(t - prev));
    prev = t;
  }
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= n;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= n;
  EXPECT_NEAR(mean, 1e6, 1e4);                    // 1 ms
  EXPECT_NEAR(std::sqrt(var) / mean, 1.0, 0.02);  // exponential: CV = 1
  // Deterministic by seed.
  ArrivalSchedule a(1000, Arrival::kPoisson, 7), b(1000, Arrival::kPoisson, 7);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Next(), b.Next());
}

TEST(ArrivalSchedule, ConstantIsEvenlySpacedFromZero) {
  ArrivalSchedule s(400, Arrival::kConstant, 1);
  EXPECT_EQ(s.Next(), 0);
  EXPECT_EQ(s.Next(), 2'500'000);
  EXPECT_EQ(s.Next(), 5'000'000);
}

}  // namespace
}  // namespace embsum::loadgen
