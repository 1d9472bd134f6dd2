#include "scoring/internal/family_race.h"

#include <algorithm>
#include <cmath>

namespace embsum::scoring::internal {
namespace {

// The p-quantile of `v` (linear between order statistics).
double Quantile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double at = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(at));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

void Summarise(RaceEntrantResult* e) {
  e->median = Quantile(e->samples, 0.5);
  e->q25 = Quantile(e->samples, 0.25);
  e->q75 = Quantile(e->samples, 0.75);
}

// Index of the lowest first quartile, and of the second lowest (== size
// when there is one entrant). Ties keep the earlier entrant.
void Leaders(const std::vector<RaceEntrantResult>& e, size_t* first,
             size_t* second) {
  *first = 0;
  for (size_t i = 1; i < e.size(); ++i) {
    if (e[i].q25 < e[*first].q25) *first = i;
  }
  *second = e.size();
  for (size_t i = 0; i < e.size(); ++i) {
    if (i == *first) continue;
    if (*second == e.size() || e[i].q25 < e[*second].q25) *second = i;
  }
}

}  // namespace

RaceResult RunFamilyRace(size_t entrants,
                         const std::function<double(size_t, bool)>& time_one,
                         const std::function<double()>& now,
                         const RaceOptions& options) {
  RaceResult result;
  result.entrants.resize(entrants);
  const double start = now();
  const int min_rounds = std::max(1, options.min_rounds);
  const int max_rounds = std::max(min_rounds, options.max_rounds);
  const int per_visit = std::max(1, options.samples_per_visit);
  if (entrants == 0) {
    result.stop = "single";
    return result;
  }
  // Each entrant's longest visit so far: the next round's cost is theirs
  // summed over the entrants still running.
  std::vector<double> longest_visit(entrants, 0.0);
  while (true) {
    for (size_t i = 0; i < entrants; ++i) {
      RaceEntrantResult& e = result.entrants[i];
      if (e.eliminated) continue;
      const double visit_start = now();
      time_one(i, false);
      for (int s = 0; s < per_visit; ++s) {
        e.samples.push_back(time_one(i, true));
      }
      longest_visit[i] = std::max(longest_visit[i], now() - visit_start);
      Summarise(&e);
    }
    ++result.rounds;
    const double t = now();
    size_t first = 0, second = 0;
    Leaders(result.entrants, &first, &second);
    result.winner = first;
    const RaceEntrantResult& w = result.entrants[first];
    // Entrants far behind the leader (their first quartile 30% above its
    // median) leave at once; after min_rounds, so do those clearly behind
    // (first quartile above its median and 5% above its first quartile).
    // They stop taking budget from the contest for first place.
    for (size_t i = 0; i < entrants; ++i) {
      RaceEntrantResult& e = result.entrants[i];
      if (i == first || i == second || e.eliminated) continue;
      if (e.q25 > 1.3 * w.median ||
          (result.rounds >= min_rounds && e.q25 > w.median &&
           e.q25 > 1.05 * w.q25)) {
        e.eliminated = true;
      }
    }
    const double elapsed = t - start;
    // Stop when the next round, its visits as long as each entrant's
    // longest so far, would pass the budget.
    double next_round = 0;
    for (size_t i = 0; i < entrants; ++i) {
      if (!result.entrants[i].eliminated) next_round += longest_visit[i];
    }
    if (elapsed + next_round > options.budget_seconds) {
      result.stop = "budget";
      break;
    }
    if (result.rounds < min_rounds) continue;
    if (second == entrants) {
      result.stop = "single";
      break;
    }
    const RaceEntrantResult& r = result.entrants[second];
    // Spread: the distance from the first quartile to the median, the side
    // of the distribution that preemption by other processes leaves alone
    // while fewer than half the calls are hit.
    const double spread = std::max(w.median - w.q25, r.median - r.q25);
    if (r.q25 - w.q25 > spread) {
      result.stop = "clear";
      break;
    }
    if (result.rounds >= 2 * min_rounds && r.q25 <= w.q25 * options.tie_ratio) {
      result.stop = "tie";
      break;
    }
    if (result.rounds >= max_rounds) {
      result.stop = "rounds";
      break;
    }
  }
  result.seconds = now() - start;
  return result;
}

}  // namespace embsum::scoring::internal
