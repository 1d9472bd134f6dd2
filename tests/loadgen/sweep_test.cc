#include "loadgen/sweep.h"

#include <gtest/gtest.h>

#include <chrono>

#include "tests/loadgen/fake_target.h"

namespace embsum::loadgen {
namespace {

TEST(StepHolds, NeedsLatencyErrorsAndThroughputWithinBounds) {
  SweepOptions o;
  o.slo_seconds = 0.010;
  o.max_error_ratio = 0.01;
  o.min_achieved = 0.9;
  LoadResult r;
  r.measured_seconds = 1;
  r.window_seconds = 1;
  r.requests = 1000;
  r.codes[absl::StatusCode::kOk] = 1000;
  r.latency.RecordN(5'000'000, 1000);  // 5 ms
  EXPECT_TRUE(StepHolds(r, o));
  LoadResult behind = r;
  behind.measured_seconds = 1.2;  // completions dragged on past the window
  EXPECT_FALSE(StepHolds(behind, o));
  LoadResult slow = r;
  slow.latency.RecordN(50'000'000, 20);  // 2% at 50 ms: p99 breaks
  EXPECT_FALSE(StepHolds(slow, o));
  LoadResult failing = r;
  failing.errors = 20;  // 2% errors
  EXPECT_FALSE(StepHolds(failing, o));
  EXPECT_FALSE(StepHolds(LoadResult{}, o));
}

// A one-worker server with a 4 ms service time holds about 250 requests/s:
// the sweep must hold at low rates, break by 400/s, and answer in between.
TEST(RunSweep, FindsTheHighestRateWithinTheSlo) {
  FakeTarget target(
      4,
      [](uint64_t) {
        return FakeTarget::Outcome{std::chrono::milliseconds(4)};
      },
      /*serial=*/true);
  LoadOptions load;
  load.arrival = Arrival::kConstant;
  load.warmup = absl::Milliseconds(100);
  load.duration = absl::Milliseconds(600);
  SweepOptions o;
  o.slo_seconds = 0.1;
  o.start_rate = 50;
  o.factor = 2;
  o.refine_steps = 1;
  int callbacks = 0;
  auto s = RunSweep(target, load, o, [&](const SweepStep&) { ++callbacks; });
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_GE(s->steps.size(), 3u);
  EXPECT_EQ(callbacks, static_cast<int>(s->steps.size()));
  EXPECT_DOUBLE_EQ(s->steps[0].rate, 50);
  EXPECT_TRUE(s->steps[0].held);
  EXPECT_DOUBLE_EQ(s->steps[1].rate, 100);
  // Geometric steps run until the first break, then one bisection step.
  const SweepStep& broke = s->steps[s->steps.size() - 2];
  EXPECT_FALSE(broke.held);
  EXPECT_LE(broke.rate, 400);
  ASSERT_GE(s->best, 0);
  EXPECT_LT(s->steps[s->best].rate, broke.rate);
  EXPECT_GE(s->steps[s->best].rate, 50);
  for (const SweepStep& step : s->steps) {
    EXPECT_EQ(step.held, StepHolds(step.result, o));
  }
}

TEST(RunSweep, RejectsBadOptions) {
  FakeTarget target(
      1, [](uint64_t) { return FakeTarget::Outcome{}; }, false);
  LoadOptions load;
  SweepOptions o;
  o.start_rate = 10;
  EXPECT_FALSE(RunSweep(target, load, o, nullptr).ok());  // no SLO
  o.slo_seconds = 0.1;
  o.factor = 1;
  EXPECT_FALSE(RunSweep(target, load, o, nullptr).ok());
  o.factor = 2;
  o.start_rate = 0;
  EXPECT_FALSE(RunSweep(target, load, o, nullptr).ok());
}

}  // namespace
}  // namespace embsum::loadgen
