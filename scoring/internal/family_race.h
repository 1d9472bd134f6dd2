// The race that picks a kernel family by measurement (CpuScorer's
// DispatchOn, scoring/scorer.h): every entrant is timed round robin, a few
// samples per visit, until one is clearly fastest, the leaders are tied
// within a tolerance, or the time budget or the round cap runs out.
// Entrants are ranked by the first quartile of their times: preemption by
// other processes only ever adds time, so on a shared machine the lower
// quartile follows the kernel's own time while up to three calls in four
// are hit, where the median flips once half of them are.
// Generic over the entrants: a new kernel family just joins the list.
// Thread-compatible: one race per call; the callbacks run on the caller.
#ifndef EMBSUM_SCORING_INTERNAL_FAMILY_RACE_H_
#define EMBSUM_SCORING_INTERNAL_FAMILY_RACE_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace embsum::scoring::internal {

struct RaceOptions {
  // Rounds before any stop rule but the budget applies.
  int min_rounds = 5;
  // Hard cap on rounds.
  int max_rounds = 200;
  // Wall-clock budget of the whole race (seconds of `now`), warm-up
  // included: the race stops when one more round (each running entrant's
  // visit as long as its longest so far) would pass it. At least one round
  // always runs.
  double budget_seconds = 0.3;
  // Timed samples per visit of an entrant, after one untimed call that
  // brings its units and caches to steady state.
  int samples_per_visit = 2;
  // Leaders whose first quartiles are within this ratio after
  // 2 * min_rounds are a tie: either is within it of the other.
  double tie_ratio = 1.01;
};

struct RaceEntrantResult {
  std::vector<double> samples;  // seconds of every timed call
  double median = 0;
  double q25 = 0;
  double q75 = 0;
  bool eliminated = false;  // dropped as clearly slower before the end
};

struct RaceResult {
  std::vector<RaceEntrantResult> entrants;
  size_t winner = 0;  // lowest first quartile; ties keep the earlier one
  int rounds = 0;
  // Why it stopped: "clear" (the winner's first quartile beats the
  // runner-up's by more than the larger first-quartile-to-median distance
  // of the two), "tie" (first quartiles within tie_ratio), "budget",
  // "rounds", or "single" (one entrant).
  std::string stop;
  double seconds = 0;  // of `now`, from start to stop
};

// time_one(entrant, timed): runs one call of `entrant` and returns its
// seconds (timed = false for the warm-up call of a visit, whose result is
// discarded). now(): a monotonic clock in seconds. Requires entrants >= 1.
RaceResult RunFamilyRace(size_t entrants,
                         const std::function<double(size_t, bool)>& time_one,
                         const std::function<double()>& now,
                         const RaceOptions& options);

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_FAMILY_RACE_H_
