// --sweep: find the highest open-loop rate whose p99 latency meets an SLO.
// Rates rise geometrically from a start rate until a step breaks the SLO,
// then a few bisection steps narrow the gap between the last rate that held
// and the first that broke. Thread-safety: stateless function.
#ifndef EMBSUM_LOADGEN_SWEEP_H_
#define EMBSUM_LOADGEN_SWEEP_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "loadgen/driver.h"

namespace embsum::loadgen {

struct SweepOptions {
  double slo_seconds = 0;  // p99 must be <= this
  double start_rate = 0;   // requests per second of the first step
  double factor = 1.5;     // each step's rate = previous * factor (> 1)
  int max_steps = 20;      // geometric steps at most
  int refine_steps = 2;    // bisection steps after the first break
  // A step also breaks when more than this fraction of its requests fail,
  // or when its OK completions per second fall below min_achieved times the
  // requests per second that were due (the target fell behind).
  double max_error_ratio = 0.001;
  double min_achieved = 0.9;
};

struct SweepStep {
  double rate = 0;
  bool held = false;
  LoadResult result;
};

struct SweepResult {
  std::vector<SweepStep> steps;  // in the order they ran
  // Index into steps of the highest rate that held; -1 when none held.
  int best = -1;
};

// Whether `result` at `rate` meets the sweep's SLO.
bool StepHolds(const LoadResult& result, const SweepOptions& options);

// `load` carries duration, warm-up, arrival, seed and progress for every
// step; its rate/concurrency are replaced. `on_step` (may be null) is called
// after each step.
absl::StatusOr<SweepResult> RunSweep(
    Target& target, const LoadOptions& load, const SweepOptions& options,
    const std::function<void(const SweepStep&)>& on_step);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_SWEEP_H_
