// The Retrieve recall tuner's steps (docs/server.md "Retrieve tuning"), each
// callable and testable alone; RankerCore::TuneRetrieve runs them in order:
//   1. SampleTuningUsers: users drawn at random with a logged seed.
//   2. ExactTops: their true top k by full scans.
//   3. MeasureRanks: where each true item sits in each candidate list, for
//      every search setting tried (one ANN search per user and probe count).
//   4. UserRecalls / SummariseRecalls: per-user recall of a setting, and the
//      mean, 1st and 5th percentile and minimum over users.
//   5. ChooseSetting: the cheapest setting whose mean and 1st-percentile
//      user reach the targets at k = 10 and k = 100.
// Thread-safety: the functions are pure or read only thread-safe stores.
#ifndef EMBSUM_SERVER_RETRIEVE_TUNER_H_
#define EMBSUM_SERVER_RETRIEVE_TUNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scoring/scorer.h"
#include "store/item_catalog.h"
#include "store/user_store.h"

namespace embsum::server {

// How the default (ANN) Retrieve searches for a call with k results:
// fetch = k * fetch_factor + fetch_extra candidates by the mean-vector
// proxy at `nprobe` probes, plus, when codes > 0, the top
// PerCode(k) item rows of each of the user's `codes` largest codes in the
// per-interest index at `code_nprobe` probes; the union is scored exactly.
struct RetrieveSetting {
  uint32_t nprobe = 0;  // IVF probes of the mean index (0: its default)
  uint32_t fetch_factor = 4;
  uint32_t fetch_extra = 0;
  uint32_t codes = 0;         // user codes searched per interest (0: none)
  uint32_t code_eighths = 0;  // per_code = ceil(k * code_eighths / 8) + extra
  uint32_t code_extra = 0;
  uint32_t code_nprobe = 0;  // IVF probes of the per-interest index

  uint64_t Fetch(uint32_t k) const {
    return uint64_t{k} * fetch_factor + fetch_extra;
  }
  uint64_t PerCode(uint32_t k) const {
    if (codes == 0) return 0;
    return (uint64_t{k} * code_eighths + 7) / 8 + code_extra;
  }
  // The candidates a call may score at most (before de-duplication).
  uint64_t MaxCandidates(uint32_t k) const {
    return Fetch(k) + uint64_t{codes} * PerCode(k);
  }
};

// Per-user recall summarised over users.
struct RecallSummary {
  double mean = 0;
  double p1 = 0;  // 1st-percentile user (nearest rank)
  double p5 = 0;
  double min = 0;
};

// What TuneRetrieve chose and measured.
struct RetrieveTuning : RetrieveSetting {
  RecallSummary at_10;  // over the sample, with this setting
  RecallSummary at_100;
  // Kept for callers of the first tuner: the means of at_10 and at_100.
  double recall_at_10 = 0;
  double recall_at_100 = 0;
  uint32_t users = 0;  // users sampled
  uint64_t seed = 0;   // of the sample
  bool met_target = false;
  // False until a tuner run has published a setting for the model: then
  // Retrieve serves the safe setting (docs/server.md).
  bool tuned = false;
};

// Step 1: up to `want` user ids at random (all of them when fewer), drawn
// with `seed` (store::UserStore::RandomSampleIds).
absl::StatusOr<std::vector<std::string>> SampleTuningUsers(
    const store::UserStore& users, uint32_t want, uint64_t seed);

// One sampled user and the exact top rows of a full scan, best first.
struct TuningUser {
  std::string id;
  store::UserEmbedding embedding;
  std::vector<uint32_t> top;
};

// Step 2: each user's exact top k by a full scan of `snapshot`. Users
// missing from the store (deleted since the sample) are skipped.
absl::StatusOr<std::vector<TuningUser>> ExactTops(
    const scoring::Scorer& scorer, const store::ItemSnapshot& snapshot,
    const store::UserStore& users, const std::vector<std::string>& ids,
    uint32_t k);

// Step 3's product: for every user u and true item t (t < top size), the
// position of t in each candidate list (kAbsent where not found within the
// depth searched). Recent upserts are candidates always (position 0).
struct RankTable {
  static constexpr uint32_t kAbsent = UINT32_MAX;
  std::vector<uint32_t> mean_probes;  // probe counts tried (0: default)
  std::vector<uint32_t> code_probes;
  std::vector<uint32_t> code_counts;  // user codes searched (ascending)
  uint32_t users = 0;
  uint32_t truth = 0;                // true items kept per user (max)
  std::vector<uint32_t> truth_size;  // per user (<= truth)
  // mean_pos[(p * users + u) * truth + t]: position in the mean list at
  // mean_probes[p].
  std::vector<uint32_t> mean_pos;
  // code_pos[((p * code_counts.size() + c) * users + u) * truth + t]: the
  // smallest position over the lists of the first code_counts[c] codes at
  // code_probes[p].
  std::vector<uint32_t> code_pos;
  // Measured seconds of one mean search at mean_probes[p], and of one code's
  // search at code_probes[p] (empty when not measured: SettingCost then
  // counts index vectors).
  std::vector<double> mean_seconds;
  std::vector<double> code_seconds;

  uint32_t Mean(size_t p, size_t u, size_t t) const {
    return mean_pos[(p * users + u) * truth + t];
  }
  uint32_t Code(size_t p, size_t c, size_t u, size_t t) const {
    return code_pos[((p * code_counts.size() + c) * users + u) * truth + t];
  }
};

// Step 3: searches the ANN lists of every user at every probe count, to
// depth max_fetch (mean) and max_per_code (per code list).
absl::StatusOr<RankTable> MeasureRanks(const store::ItemSnapshot& snapshot,
                                       const std::vector<TuningUser>& users,
                                       const std::vector<uint32_t>& mean_probes,
                                       const std::vector<uint32_t>& code_probes,
                                       const std::vector<uint32_t>& code_counts,
                                       uint32_t max_fetch,
                                       uint32_t max_per_code);

// A setting as indices into a RankTable plus list depths.
struct TableSetting {
  size_t mean_probe = 0;  // index into mean_probes
  size_t code_probe = 0;  // index into code_probes (ignored when no codes)
  size_t code_count = 0;  // index into code_counts
  uint64_t fetch = 0;     // mean list depth
  uint64_t per_code = 0;  // per-code list depth
};

// Step 4: recall@k of each user under `setting` (the share of its true top
// k among the candidates; exact rescoring keeps every one found).
std::vector<double> UserRecalls(const RankTable& table,
                                const TableSetting& setting, uint32_t k);
// Mean, nearest-rank 1st and 5th percentiles and minimum; zeros when empty.
RecallSummary SummariseRecalls(std::vector<double> recalls);

// Step 5's inputs: what the catalogue and model look like, the targets and
// the factors tried.
struct TunerSpace {
  store::ItemSnapshot::AnnShape shape;
  uint32_t user_codes = 0;  // m
  uint32_t item_codes = 0;  // n
  uint64_t live_items = 0;
  double mean_target = 0.995;  // mean recall at k = 10 and 100
  double tail_target = 0.99;   // 1st-percentile user at k = 10 and 100
  // Settings that would score more than this many candidates are scans.
  double scan_items = 0;
  // Measured seconds to score one item exactly (0: not measured).
  double item_seconds = 0;
};
// Cost of a setting at one k. With measured times (item_seconds and the
// table's search seconds): seconds, the candidates scored plus the searches.
// Otherwise in exact item scores: the candidates plus the index vectors
// visited (2*m*n products make one item score).
double SettingCost(const TunerSpace& space, const RankTable& table,
                   const TableSetting& setting);
// Step 5: the cheapest setting meeting both targets at k = 10 and 100;
// when none does, the one with the best 1st-percentile user (met_target
// false). Fills the recall summaries; users and seed are the caller's.
RetrieveTuning ChooseSetting(const RankTable& table, const TunerSpace& space);

// The probe counts tried for an index of `lists` IVF lists (powers of two,
// and `lists` itself, up to `cap`), or {0} for an exact index.
std::vector<uint32_t> ProbeChoices(bool ivf, size_t lists, uint32_t cap);
// The user-code counts tried: 0, then powers of two below m, then m.
std::vector<uint32_t> CodeCountChoices(uint32_t m, bool have_code_index);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RETRIEVE_TUNER_H_
