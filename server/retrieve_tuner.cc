#include "server/retrieve_tuner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/status_util.h"

namespace embsum::server {
namespace {

constexpr uint32_t kSmallK = 10;
constexpr uint32_t kLargeK = 100;
// Mean-list depth per k, and per-code depth per k in eighths.
constexpr uint32_t kFetchFactors[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};
constexpr uint32_t kCodeEighths[] = {1, 2, 4, 8, 16, 32};

}  // namespace

absl::StatusOr<std::vector<std::string>> SampleTuningUsers(
    const store::UserStore& users, uint32_t want, uint64_t seed) {
  return users.RandomSampleIds(want, seed);
}

absl::StatusOr<std::vector<TuningUser>> ExactTops(
    const scoring::Scorer& scorer, const store::ItemSnapshot& snapshot,
    const store::UserStore& users, const std::vector<std::string>& ids,
    uint32_t k) {
  std::vector<TuningUser> out;
  out.reserve(ids.size());
  const scoring::ItemArena& arena = snapshot.arena();
  for (const std::string& id : ids) {
    TuningUser u;
    u.id = id;
    absl::Status got = users.Get(id, &u.embedding);
    if (absl::IsNotFound(got)) continue;
    RETURN_IF_ERROR(got);
    std::vector<scoring::ScoredRow> best;
    if (snapshot.rows() > 0) {
      RETURN_IF_ERROR(ToAbslStatus(
          scorer.ScoreAllTopK(u.embedding.view(), arena,
                              snapshot.live().first(std::min<size_t>(
                                  snapshot.live().size(), arena.size())),
                              k, &best)));
    }
    for (const scoring::ScoredRow& r : best) u.top.push_back(r.row);
    out.push_back(std::move(u));
  }
  return out;
}

absl::StatusOr<RankTable> MeasureRanks(const store::ItemSnapshot& snapshot,
                                       const std::vector<TuningUser>& users,
                                       const std::vector<uint32_t>& mean_probes,
                                       const std::vector<uint32_t>& code_probes,
                                       const std::vector<uint32_t>& code_counts,
                                       uint32_t max_fetch,
                                       uint32_t max_per_code) {
  RankTable table;
  table.mean_probes = mean_probes;
  table.code_probes = code_probes;
  table.code_counts = code_counts;
  table.users = static_cast<uint32_t>(users.size());
  for (const TuningUser& u : users) {
    table.truth = std::max(table.truth, static_cast<uint32_t>(u.top.size()));
    table.truth_size.push_back(static_cast<uint32_t>(u.top.size()));
  }
  const size_t per_probe = size_t{table.users} * table.truth;
  table.mean_pos.assign(mean_probes.size() * per_probe, RankTable::kAbsent);
  table.code_pos.assign(code_probes.size() * code_counts.size() * per_probe,
                        RankTable::kAbsent);
  const uint32_t max_codes =
      code_counts.empty()
          ? 0
          : *std::max_element(code_counts.begin(), code_counts.end());
  store::ItemSnapshot::AnnLists lists;
  table.mean_seconds.assign(mean_probes.size(), 0.0);
  table.code_seconds.assign(code_probes.size(), 0.0);
  auto seconds_since = [](std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };
  for (size_t u = 0; u < users.size(); ++u) {
    absl::flat_hash_map<uint32_t, uint32_t> truth_index;
    for (size_t t = 0; t < users[u].top.size(); ++t) {
      truth_index[users[u].top[t]] = static_cast<uint32_t>(t);
    }
    auto at = [&](std::vector<uint32_t>& v, size_t base) {
      return v.begin() + static_cast<ptrdiff_t>(base + u * table.truth);
    };
    for (size_t p = 0; p < mean_probes.size(); ++p) {
      const auto start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(snapshot.AnnCandidateLists(
          users[u].embedding.view(),
          store::ItemSnapshot::AnnQuery{.k = max_fetch,
                                        .nprobe = mean_probes[p]},
          &lists));
      table.mean_seconds[p] += seconds_since(start);
      auto pos = at(table.mean_pos, p * per_probe);
      for (size_t i = 0; i < lists.mean.size(); ++i) {
        auto it = truth_index.find(lists.mean[i]);
        if (it != truth_index.end()) {
          pos[it->second] = std::min(pos[it->second], static_cast<uint32_t>(i));
        }
      }
      for (uint32_t row : lists.recent) {
        auto it = truth_index.find(row);
        if (it != truth_index.end()) pos[it->second] = 0;
      }
    }
    if (max_codes == 0 || max_per_code == 0) continue;
    for (size_t p = 0; p < code_probes.size(); ++p) {
      const auto start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(snapshot.AnnCandidateLists(
          users[u].embedding.view(),
          store::ItemSnapshot::AnnQuery{.k = 0,
                                        .codes = max_codes,
                                        .per_code = max_per_code,
                                        .code_nprobe = code_probes[p]},
          &lists));
      table.code_seconds[p] += seconds_since(start);
      // Position of each true item in each code's list.
      std::vector<uint32_t> best(table.truth, RankTable::kAbsent);
      size_t q = 0;
      for (size_t c = 0; c < code_counts.size(); ++c) {
        for (; q < code_counts[c] && q < lists.codes.size(); ++q) {
          const std::vector<uint32_t>& list = lists.codes[q];
          for (size_t i = 0; i < list.size(); ++i) {
            auto it = truth_index.find(list[i]);
            if (it != truth_index.end()) {
              best[it->second] =
                  std::min(best[it->second], static_cast<uint32_t>(i));
            }
          }
        }
        std::copy(best.begin(), best.end(),
                  at(table.code_pos, (p * code_counts.size() + c) * per_probe));
      }
    }
  }
  // Per search (mean) and per code searched (codes).
  for (double& t : table.mean_seconds) t /= std::max<size_t>(1, users.size());
  for (double& t : table.code_seconds) {
    t /= static_cast<double>(std::max<size_t>(1, users.size())) *
         std::max<uint32_t>(1, max_codes);
  }
  if (max_codes == 0) table.code_seconds.clear();
  return table;
}

std::vector<double> UserRecalls(const RankTable& table,
                                const TableSetting& setting, uint32_t k) {
  std::vector<double> out(table.users, 1.0);
  const bool codes = table.code_counts.size() > setting.code_count &&
                     table.code_counts[setting.code_count] > 0 &&
                     setting.per_code > 0 && !table.code_probes.empty();
  for (size_t u = 0; u < table.users; ++u) {
    const size_t want = std::min<size_t>(k, table.truth_size[u]);
    if (want == 0) continue;
    size_t hit = 0;
    for (size_t t = 0; t < want; ++t) {
      if (table.Mean(setting.mean_probe, u, t) < setting.fetch ||
          (codes && table.Code(setting.code_probe, setting.code_count, u, t) <
                        setting.per_code)) {
        ++hit;
      }
    }
    out[u] = static_cast<double>(hit) / static_cast<double>(want);
  }
  return out;
}

RecallSummary SummariseRecalls(std::vector<double> recalls) {
  RecallSummary s;
  if (recalls.empty()) return s;
  std::sort(recalls.begin(), recalls.end());
  double sum = 0;
  for (double r : recalls) sum += r;
  const size_t n = recalls.size();
  s.mean = sum / static_cast<double>(n);
  auto nearest_rank = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(n)));
    return recalls[std::clamp<size_t>(rank, 1, n) - 1];
  };
  s.p1 = nearest_rank(0.01);
  s.p5 = nearest_rank(0.05);
  s.min = recalls.front();
  return s;
}

double SettingCost(const TunerSpace& space, const RankTable& table,
                   const TableSetting& setting) {
  if (space.item_seconds > 0 &&
      table.mean_seconds.size() == table.mean_probes.size() &&
      table.code_seconds.size() == table.code_probes.size() &&
      !table.mean_seconds.empty()) {
    const uint32_t codes =
        table.code_counts.empty() ? 0 : table.code_counts[setting.code_count];
    double seconds = static_cast<double>(setting.fetch) * space.item_seconds +
                     table.mean_seconds[setting.mean_probe];
    if (codes > 0 && setting.per_code > 0 && !table.code_probes.empty()) {
      seconds += static_cast<double>(codes) *
                 (static_cast<double>(setting.per_code) * space.item_seconds +
                  table.code_seconds[setting.code_probe]);
    }
    return seconds;
  }
  const store::ItemSnapshot::AnnShape& shape = space.shape;
  const double vector_cost = 1.0 / (2.0 * std::max(1u, space.user_codes) *
                                    std::max(1u, space.item_codes));
  const uint32_t probe =
      table.mean_probes.empty() ? 0 : table.mean_probes[setting.mean_probe];
  const double mean_visited = shape.ivf && shape.lists > 0
                                  ? static_cast<double>(probe) *
                                            static_cast<double>(shape.items) /
                                            static_cast<double>(shape.lists) +
                                        static_cast<double>(shape.lists)
                                  : static_cast<double>(shape.items);
  double cost = static_cast<double>(setting.fetch) + mean_visited * vector_cost;
  const uint32_t codes =
      table.code_counts.empty() ? 0 : table.code_counts[setting.code_count];
  if (codes > 0 && setting.per_code > 0 && !table.code_probes.empty()) {
    const uint32_t code_probe = table.code_probes[setting.code_probe];
    const double code_visited =
        shape.code_ivf && shape.code_lists > 0
            ? static_cast<double>(code_probe) *
                      static_cast<double>(shape.code_rows) /
                      static_cast<double>(shape.code_lists) +
                  static_cast<double>(shape.code_lists)
            : static_cast<double>(shape.code_rows);
    cost +=
        static_cast<double>(codes) *
        (static_cast<double>(setting.per_code) + code_visited * vector_cost);
  }
  return cost;
}

RetrieveTuning ChooseSetting(const RankTable& table, const TunerSpace& space) {
  RetrieveTuning best;
  best.met_target = false;
  double best_cost = std::numeric_limits<double>::infinity();
  double best_tail = -1;  // the fallback's worst 1st-percentile recall
  const uint64_t max_fetch_items = space.live_items;
  const bool have_codes = !table.code_probes.empty();
  for (size_t p = 0; p < std::max<size_t>(1, table.mean_probes.size()); ++p) {
    for (size_t c = 0; c < std::max<size_t>(1, table.code_counts.size()); ++c) {
      const uint32_t codes =
          table.code_counts.empty() ? 0 : table.code_counts[c];
      const size_t code_probe_choices =
          codes > 0 && have_codes ? table.code_probes.size() : 1;
      const size_t eighth_choices = codes > 0 ? std::size(kCodeEighths) : 1;
      for (size_t cp = 0; cp < code_probe_choices; ++cp) {
        for (size_t e = 0; e < eighth_choices; ++e) {
          const uint32_t eighths = codes > 0 ? kCodeEighths[e] : 0;
          // `mult` deepens the per-code lists at small k (code_extra).
          auto depths = [&](uint32_t k, uint32_t factor, uint32_t mult) {
            TableSetting s;
            s.mean_probe = p;
            s.code_probe = cp;
            s.code_count = c;
            s.fetch = std::min<uint64_t>(uint64_t{k} * factor, max_fetch_items);
            s.per_code = codes > 0 ? (uint64_t{k} * eighths + 7) / 8 * mult : 0;
            return s;
          };
          // Smallest fetch factor meeting both targets at k (recall grows
          // with the fetch), or 0 when none does; `tail` gets the best
          // 1st-percentile recall seen.
          auto smallest = [&](uint32_t k, uint32_t mult, double* tail) {
            for (uint32_t f : kFetchFactors) {
              const RecallSummary r =
                  SummariseRecalls(UserRecalls(table, depths(k, f, mult), k));
              *tail = std::max(*tail, r.p1);
              if (r.mean >= space.mean_target && r.p1 >= space.tail_target) {
                return f;
              }
            }
            return 0u;
          };
          double tail_small = 0, tail_large = 0;
          const uint32_t f_large = smallest(kLargeK, 1, &tail_large);
          // At k = 10 the per-code lists may go deeper than k*eighths/8
          // (the cheapest pair of fetch factor and depth multiple).
          uint32_t f_small = 0, mult_small = 1;
          if (f_large != 0) {
            double cheapest = std::numeric_limits<double>::infinity();
            for (uint32_t mult : {1u, 2u, 4u, 8u, 16u, 32u}) {
              if (mult > 1 && codes == 0) break;
              const uint32_t f = smallest(kSmallK, mult, &tail_small);
              if (f == 0) continue;
              const double cost =
                  SettingCost(space, table, depths(kSmallK, f, mult));
              if (cost < cheapest) {
                cheapest = cost;
                f_small = f;
                mult_small = mult;
              }
            }
          }
          RetrieveTuning t;
          t.nprobe = table.mean_probes.empty() ? 0 : table.mean_probes[p];
          t.codes = codes;
          t.code_eighths = eighths;
          t.code_extra =
              codes > 0 ? (kSmallK * eighths + 7) / 8 * (mult_small - 1) : 0;
          t.code_nprobe = codes > 0 && have_codes ? table.code_probes[cp] : 0;
          if (f_large == 0 || f_small == 0) {
            // Not met: remember the setting with the best tail as the
            // fallback (largest fetch), among those that are no scan even
            // at the smallest fetch (a fallback that scans would answer
            // every call with a full scan, one at a time).
            const double tail = std::min(tail_small, tail_large);
            RetrieveTuning smallest_fetch = t;
            smallest_fetch.fetch_factor = kFetchFactors[0];
            const bool fits =
                space.scan_items <= 0 ||
                static_cast<double>(smallest_fetch.MaxCandidates(kLargeK)) <
                    space.scan_items;
            if (fits && best_cost == std::numeric_limits<double>::infinity() &&
                tail > best_tail) {
              best_tail = tail;
              // The deepest fetch that is still no scan.
              t.fetch_factor = kFetchFactors[0];
              t.fetch_extra = 0;
              for (uint32_t f : kFetchFactors) {
                RetrieveTuning deeper = t;
                deeper.fetch_factor = f;
                if (space.scan_items > 0 &&
                    static_cast<double>(deeper.MaxCandidates(kLargeK)) >=
                        space.scan_items) {
                  break;
                }
                t.fetch_factor = f;
              }
              best = t;
            }
            continue;
          }
          t.fetch_factor = f_large;
          t.fetch_extra = f_small > f_large ? kSmallK * (f_small - f_large) : 0;
          TableSetting at_small = depths(kSmallK, 0, 1);
          at_small.fetch =
              std::min<uint64_t>(t.Fetch(kSmallK), max_fetch_items);
          at_small.per_code = t.PerCode(kSmallK);
          TableSetting at_large = depths(kLargeK, 0, 1);
          at_large.fetch =
              std::min<uint64_t>(t.Fetch(kLargeK), max_fetch_items);
          at_large.per_code = t.PerCode(kLargeK);
          // A setting that scores as much as a scan is no saving.
          if (space.scan_items > 0 && static_cast<double>(t.MaxCandidates(
                                          kLargeK)) >= space.scan_items) {
            continue;
          }
          const double cost = SettingCost(space, table, at_small) +
                              SettingCost(space, table, at_large);
          if (cost < best_cost) {
            best_cost = cost;
            t.met_target = true;
            t.at_10 = SummariseRecalls(UserRecalls(table, at_small, kSmallK));
            t.at_100 = SummariseRecalls(UserRecalls(table, at_large, kLargeK));
            best = t;
          }
        }
      }
    }
  }
  if (!best.met_target) {
    // Summaries of the fallback as it will be served.
    size_t p = 0, c = 0, cp = 0;
    for (size_t i = 0; i < table.mean_probes.size(); ++i) {
      if (table.mean_probes[i] == best.nprobe) p = i;
    }
    for (size_t i = 0; i < table.code_counts.size(); ++i) {
      if (table.code_counts[i] == best.codes) c = i;
    }
    for (size_t i = 0; i < table.code_probes.size(); ++i) {
      if (table.code_probes[i] == best.code_nprobe) cp = i;
    }
    for (uint32_t k : {kSmallK, kLargeK}) {
      TableSetting s{p, cp, c,
                     std::min<uint64_t>(best.Fetch(k), max_fetch_items),
                     best.PerCode(k)};
      (k == kSmallK ? best.at_10 : best.at_100) =
          SummariseRecalls(UserRecalls(table, s, k));
    }
  }
  best.recall_at_10 = best.at_10.mean;
  best.recall_at_100 = best.at_100.mean;
  return best;
}

std::vector<uint32_t> ProbeChoices(bool ivf, size_t lists, uint32_t cap) {
  if (!ivf || lists == 0) return {0};
  std::vector<uint32_t> probes;
  const size_t top = std::min<size_t>(lists, std::max<uint32_t>(1, cap));
  for (size_t p = 1; p < top; p *= 2)
    probes.push_back(static_cast<uint32_t>(p));
  probes.push_back(static_cast<uint32_t>(top));
  return probes;
}

std::vector<uint32_t> CodeCountChoices(uint32_t m, bool have_code_index) {
  std::vector<uint32_t> counts = {0};
  if (!have_code_index || m == 0) return counts;
  for (uint32_t c = 2; c < m; c *= 2) counts.push_back(c);
  counts.push_back(m);
  return counts;
}

}  // namespace embsum::server
