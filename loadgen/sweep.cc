#include "loadgen/sweep.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "common/status_macros.h"

namespace embsum::loadgen {

bool StepHolds(const LoadResult& result, const SweepOptions& options) {
  if (result.requests == 0) return false;
  const double error_ratio =
      static_cast<double>(result.errors) / static_cast<double>(result.requests);
  return result.latency.SecondsAtQuantile(0.99) <= options.slo_seconds &&
         error_ratio <= options.max_error_ratio &&
         result.qps() >= options.min_achieved * result.offered_qps();
}

absl::StatusOr<SweepResult> RunSweep(
    Target& target, const LoadOptions& load, const SweepOptions& options,
    const std::function<void(const SweepStep&)>& on_step) {
  if (!(options.slo_seconds > 0) || !std::isfinite(options.slo_seconds)) {
    return absl::InvalidArgumentError(
        "--slo must be a positive number of seconds");
  }
  if (!(options.start_rate > 0) || !std::isfinite(options.start_rate)) {
    return absl::InvalidArgumentError(
        "--sweep needs a positive starting --rate");
  }
  if (!(options.factor > 1) || !std::isfinite(options.factor)) {
    return absl::InvalidArgumentError("--sweep_factor must be greater than 1");
  }
  if (options.max_steps < 1 || options.refine_steps < 0) {
    return absl::InvalidArgumentError(
        "--sweep_max_steps must be >= 1 and --sweep_refine >= 0");
  }
  SweepResult sweep;
  auto run_step = [&](double rate) -> absl::StatusOr<bool> {
    LoadOptions step_load = load;
    step_load.concurrency = 0;
    step_load.rate = rate;
    ASSIGN_OR_RETURN(LoadResult result, RunLoad(target, step_load));
    SweepStep step;
    step.rate = rate;
    step.held = StepHolds(result, options);
    step.result = std::move(result);
    sweep.steps.push_back(std::move(step));
    const int index = static_cast<int>(sweep.steps.size()) - 1;
    if (sweep.steps[index].held &&
        (sweep.best < 0 || rate > sweep.steps[sweep.best].rate)) {
      sweep.best = index;
    }
    if (on_step) on_step(sweep.steps[index]);
    return sweep.steps[index].held;
  };

  double held_rate = 0;
  double broke_rate = 0;
  double rate = options.start_rate;
  for (int i = 0; i < options.max_steps; ++i, rate *= options.factor) {
    ASSIGN_OR_RETURN(bool held, run_step(rate));
    if (!held) {
      broke_rate = rate;
      break;
    }
    held_rate = rate;
  }
  if (broke_rate > 0 && held_rate > 0) {
    for (int i = 0; i < options.refine_steps; ++i) {
      const double mid = 0.5 * (held_rate + broke_rate);
      ASSIGN_OR_RETURN(bool held, run_step(mid));
      (held ? held_rate : broke_rate) = mid;
    }
  }
  return sweep;
}

}  // namespace embsum::loadgen
