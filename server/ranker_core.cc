#include "server/ranker_core.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/shard.h"
#include "server/status_util.h"
#include "store/embedding_rules.h"

namespace embsum::server {
namespace {

// Seconds between successive Lap() calls (the first from construction).
class PhaseClock {
 public:
  double Lap() {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return seconds;
  }

 private:
  std::chrono::steady_clock::time_point last_ =
      std::chrono::steady_clock::now();
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

absl::Status ValidateId(const std::string& id, const std::string& what) {
  if (id.empty()) return absl::InvalidArgumentError(what + " is empty");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is ", id.size(), " bytes; the limit is ", kMaxIdBytes));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has a control character at byte ", i));
    }
  }
  return absl::OkStatus();
}

RankerCore::RankerCore(const RankerCoreOptions& options,
                       const ModelSlot* models, const scoring::Scorer* scorer,
                       ServerMetrics* metrics)
    : options_(options), models_(models), scorer_(scorer), metrics_(metrics) {
  tuning_.fetch_factor = std::max(1u, options_.ann_oversample);
}

absl::StatusOr<std::shared_ptr<const ServingModel>> RankerCore::Model() const {
  std::shared_ptr<const ServingModel> model =
      models_ != nullptr ? models_->Current() : nullptr;
  if (model == nullptr) {
    return absl::FailedPreconditionError("no model is loaded");
  }
  return model;
}

absl::Status RankerCore::ValidateRank(const v1::RankRequest& request) const {
  if (absl::Status s = ValidateId(request.user_id(), "user_id"); !s.ok()) {
    return s;
  }
  if (static_cast<uint64_t>(request.candidate_ids_size()) >
      options_.max_candidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidate_ids has ", request.candidate_ids_size(),
                     " entries; the limit is ", options_.max_candidates,
                     " (--max_candidates)"));
  }
  return absl::OkStatus();
}

absl::Status RankerCore::ValidateRetrieve(
    const v1::RetrieveRequest& request) const {
  if (absl::Status s = ValidateId(request.user_id(), "user_id"); !s.ok()) {
    return s;
  }
  if (request.k() == 0 || request.k() > options_.max_retrieve_k) {
    return absl::InvalidArgumentError(
        absl::StrCat("k is ", request.k(), "; want 1..",
                     options_.max_retrieve_k, " (--max_retrieve_k)"));
  }
  if (static_cast<uint64_t>(request.exclude_item_ids_size()) >
      options_.max_retrieve_k) {
    return absl::InvalidArgumentError(
        absl::StrCat("exclude_item_ids has ", request.exclude_item_ids_size(),
                     " entries; the limit is ", options_.max_retrieve_k,
                     " (--max_retrieve_k)"));
  }
  return absl::OkStatus();
}

absl::Status RankerCore::LoadUser(const ServingModel& model,
                                  const std::string& user_id,
                                  store::UserEmbedding* user,
                                  std::string* summary) {
  RETURN_IF_ERROR(CheckUserShard(model.shard(), user_id));
  const store::ModelManifest& manifest = model.manifest();
  absl::Status s = model.users().GetWithSummary(user_id, user, summary);
  if (absl::IsNotFound(s)) {
    return absl::NotFoundError(absl::StrCat("unknown user_id '", user_id, "'"));
  }
  if (!s.ok()) return s;
  if (user->dim != manifest.dim ||
      user->upe.size() != size_t{user->user_codes} * user->dim) {
    return absl::InternalError(
        absl::StrCat("user '", user_id, "': stored embedding has dim ",
                     user->dim, "; the model has ", manifest.dim));
  }
  return absl::OkStatus();
}

absl::Status RankerCore::Rank(const v1::RankRequest& request,
                              v1::RankResponse* response,
                              RankTimings* timings) const {
  RETURN_IF_ERROR(ValidateRank(request));
  if (metrics_ != nullptr) {
    metrics_->rank_candidates().Observe(request.candidate_ids_size());
  }
  RankTimings local_timings;
  RankTimings& t = timings != nullptr ? *timings : local_timings;
  t = RankTimings{};
  PhaseClock clock;
  // Reused by this thread's next request: an m*d embedding is tens of KB,
  // and a fresh one costs an allocation and a zero fill per request.
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Model());
  thread_local store::UserEmbedding user;
  std::string summary;
  RETURN_IF_ERROR(LoadUser(*model, request.user_id(), &user,
                           request.include_summary() ? &summary : nullptr));
  t.user = clock.Lap();

  const std::shared_ptr<const store::ItemSnapshot> snapshot =
      model->items().Current();
  const int n = request.candidate_ids_size();
  std::vector<uint32_t> rows;
  std::vector<int> positions;  // index into candidate_ids of each row
  rows.reserve(n);
  positions.reserve(n);
  // Each id counts once. Distinct known ids have distinct rows, so known
  // ids are de-duplicated by row (an integer hash); only unknown ids, which
  // are rare, by their bytes.
  absl::flat_hash_set<uint32_t> seen_rows;
  seen_rows.reserve(n);
  absl::flat_hash_set<std::string_view> seen_unknown;
  uint64_t unknown = 0;
  // One batched lookup (its cache misses overlap); this thread's buffers.
  thread_local std::vector<std::string_view> keys;
  thread_local std::vector<uint32_t> found;
  keys.assign(request.candidate_ids().begin(), request.candidate_ids().end());
  found.resize(keys.size());
  snapshot->FindRows(keys, found);
  for (int i = 0; i < n; ++i) {
    const std::string& id = request.candidate_ids(i);
    const uint32_t row = found[i];
    if (row != store::ItemSnapshot::kNoRow) {
      if (!seen_rows.insert(row).second) continue;
      rows.push_back(row);
      positions.push_back(i);
    } else {
      if (!seen_unknown.insert(id).second) continue;
      response->add_unknown_item_ids(id);
      ++unknown;
    }
  }
  if (metrics_ != nullptr && unknown > 0) {
    metrics_->unknown_items().Increment(static_cast<double>(unknown));
  }

  std::vector<float> scores(rows.size());
  std::vector<int32_t> codes(request.explain() ? rows.size() : 0);
  t.lookup = clock.Lap();
  if (!rows.empty()) {
    absl::Status s = ToAbslStatus(
        scorer_->Score(user.view(), snapshot->arena(), rows, scores, codes));
    t.score = clock.Lap();
    if (metrics_ != nullptr) metrics_->scoring_seconds().Observe(t.score);
    if (!s.ok()) return s;
  }

  std::vector<uint32_t> order;
  scoring::SelectTopK(scores, request.top_k(), &order);
  t.top_k = clock.Lap();
  response->mutable_items()->Reserve(static_cast<int>(order.size()));
  for (uint32_t i : order) {
    v1::ScoredItem* item = response->add_items();
    item->set_item_id(request.candidate_ids(positions[i]));
    item->set_score(scores[i]);
    if (request.explain()) item->set_top_user_code(codes[i]);
  }
  if (request.include_summary()) {
    response->set_user_summary(std::move(summary));
  }
  response->set_model_version(model->manifest().model_version);
  t.response = clock.Lap();
  if (metrics_ != nullptr) metrics_->ObserveRankPhases(t);
  return absl::OkStatus();
}

absl::Status RankerCore::FullScan(const scoring::UserView& user,
                                  const store::ItemSnapshot& snapshot,
                                  uint32_t want,
                                  std::vector<scoring::ScoredRow>* best) const {
  // Scans no larger than the biggest Rank are not limited (a small
  // catalogue falls back to scanning on every default Retrieve).
  const uint32_t limit = snapshot.rows() > options_.max_candidates
                             ? options_.max_concurrent_scans
                             : 0;
  if (limit > 0) {
    uint32_t running = scans_running_.load(std::memory_order_relaxed);
    do {
      if (running >= limit) {
        return absl::ResourceExhaustedError(
            absl::StrCat("Retrieve needs a full scan and ", running,
                         " are running (the limit is ", limit,
                         ", --max_concurrent_retrieve_scans); retry later"));
      }
    } while (!scans_running_.compare_exchange_weak(running, running + 1,
                                                   std::memory_order_acquire));
  }
  struct Release {
    std::atomic<uint32_t>* count;
    ~Release() {
      if (count != nullptr) count->fetch_sub(1, std::memory_order_release);
    }
  } release{limit > 0 ? &scans_running_ : nullptr};
  if (options_.scan_hook) options_.scan_hook();
  // The snapshot's own rows (live() has rows() flags): the shared arena may
  // already hold rows of later snapshots. An empty live span would mean
  // "every row", so a snapshot without rows is answered here.
  best->clear();
  if (snapshot.rows() == 0) return absl::OkStatus();
  const scoring::ItemArena& arena = snapshot.arena();
  const std::span<const uint8_t> live = snapshot.live();
  const auto start = std::chrono::steady_clock::now();
  absl::Status s =
      ToAbslStatus(scorer_->ScoreAllTopK(user, arena, live, want, best));
  if (metrics_ != nullptr) {
    metrics_->scoring_seconds().Observe(SecondsSince(start));
  }
  return s;
}

absl::Status RankerCore::AnnTopK(const scoring::UserView& user,
                                 const store::ItemSnapshot& snapshot,
                                 uint32_t fetch, uint32_t nprobe, uint32_t want,
                                 const absl::flat_hash_set<uint32_t>& excluded,
                                 std::vector<scoring::ScoredRow>* best,
                                 uint64_t* scored) const {
  std::vector<uint32_t> rows;
  RETURN_IF_ERROR(snapshot.AnnCandidates(
      user, store::ItemSnapshot::AnnQuery{fetch, nprobe}, &rows));
  // Excluded rows need no score. Candidates are distinct live rows.
  if (!excluded.empty()) {
    std::erase_if(rows, [&](uint32_t row) { return excluded.contains(row); });
  }
  // Row order, so that ties go to the lower row as in a full scan.
  std::sort(rows.begin(), rows.end());
  std::vector<float> scores(rows.size());
  std::vector<int32_t> codes(rows.size());
  if (!rows.empty()) {
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = ToAbslStatus(
        scorer_->Score(user, snapshot.arena(), rows, scores, codes));
    if (metrics_ != nullptr) {
      metrics_->scoring_seconds().Observe(SecondsSince(start));
    }
    if (!s.ok()) return s;
  }
  *scored = rows.size();
  std::vector<uint32_t> order;
  scoring::SelectTopK(scores, want, &order);
  best->clear();
  best->reserve(order.size());
  for (uint32_t i : order) {
    best->push_back(scoring::ScoredRow{rows[i], scores[i], codes[i]});
  }
  return absl::OkStatus();
}

absl::Status RankerCore::Retrieve(const v1::RetrieveRequest& request,
                                  v1::RetrieveResponse* response) const {
  RETURN_IF_ERROR(ValidateRetrieve(request));
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Model());
  store::UserEmbedding user;
  RETURN_IF_ERROR(LoadUser(*model, request.user_id(), &user));
  const std::shared_ptr<const store::ItemSnapshot> snapshot =
      model->items().Current();
  absl::flat_hash_set<uint32_t> excluded;
  for (const std::string& id : request.exclude_item_ids()) {
    if (std::optional<uint32_t> row = snapshot->FindRow(id)) {
      excluded.insert(*row);
    }
  }
  const uint32_t k = request.k();
  const uint64_t live_items = snapshot->size();
  const RetrieveTuning tuning = retrieve_tuning();
  const uint64_t fetch = uint64_t{k} * std::max(1u, tuning.fetch_factor) +
                         tuning.fetch_extra + excluded.size();
  // The default path scans when reranking would cost a large part of a scan
  // anyway (or fetch everything): then the answer is certified exact.
  const bool scan = request.exact() || static_cast<double>(fetch) >=
                                           options_.retrieve_scan_fraction *
                                               static_cast<double>(live_items);

  std::vector<scoring::ScoredRow> best;
  uint64_t scored = 0;
  if (scan) {
    // Excluded rows are dropped after the scan: ask for that many more.
    const uint32_t want = k + static_cast<uint32_t>(excluded.size());
    RETURN_IF_ERROR(FullScan(user.view(), *snapshot, want, &best));
    scored = live_items;
  } else {
    RETURN_IF_ERROR(AnnTopK(user.view(), *snapshot,
                            static_cast<uint32_t>(fetch), tuning.nprobe, k,
                            excluded, &best, &scored));
  }
  for (const scoring::ScoredRow& r : best) {
    if (static_cast<uint32_t>(response->items_size()) == k) break;
    if (excluded.contains(r.row)) continue;
    v1::ScoredItem* item = response->add_items();
    item->set_item_id(snapshot->ItemId(r.row));
    item->set_score(r.score);
    item->set_top_user_code(r.top_user_code);
  }
  response->set_scored_items(scored);
  response->set_certified_exact(scan);
  if (metrics_ != nullptr) {
    metrics_->retrieve_scored_items().Observe(static_cast<double>(scored));
  }
  response->set_model_version(model->manifest().model_version);
  return absl::OkStatus();
}

RetrieveTuning RankerCore::retrieve_tuning() const {
  absl::MutexLock lock(&tuning_mu_);
  return tuning_;
}

absl::StatusOr<RetrieveTuning> RankerCore::TuneRetrieve(
    const ServingModel* model) {
  if (options_.retrieve_recall_target <= 0) return retrieve_tuning();
  std::shared_ptr<const ServingModel> current;
  if (model == nullptr) {
    ASSIGN_OR_RETURN(current, Model());
    model = current.get();
  }
  // The sample is small: aim halfway between the target and 1, so that the
  // mean over other users still reaches the target.
  const double target = options_.retrieve_recall_target +
                        (1.0 - options_.retrieve_recall_target) / 2;
  const std::shared_ptr<const store::ItemSnapshot> snapshot =
      model->items().Current();
  const uint64_t live_items = snapshot->size();
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   model->users().SampleIds(options_.retrieve_tune_users));
  // The k values measured and the over-fetch factors tried.
  constexpr uint32_t kSmallK = 10;
  constexpr uint32_t kLargeK = 100;
  constexpr uint32_t kFactors[] = {1,  2,  3,  4,  5,  6,  8,  10,  12,  14,
                                   16, 20, 24, 32, 48, 64, 96, 128, 192, 256};
  const uint32_t max_fetch = static_cast<uint32_t>(std::min<uint64_t>(
      uint64_t{kLargeK} * kFactors[std::size(kFactors) - 1], live_items));
  const store::ItemSnapshot::AnnShape shape = snapshot->ann_shape();
  std::vector<uint32_t> probes = {0};
  if (shape.ivf) {
    probes.clear();
    for (size_t p = 1; p < shape.lists; p *= 2) {
      probes.push_back(static_cast<uint32_t>(p));
    }
    probes.push_back(static_cast<uint32_t>(shape.lists));
  }

  // Truth per user: a full scan's top kLargeK rows.
  struct Sampled {
    store::UserEmbedding user;
    std::vector<uint32_t> top;  // exact top rows, best first
  };
  std::vector<Sampled> users;
  for (const std::string& id : ids) {
    Sampled s;
    if (!model->users().Get(id, &s.user).ok()) continue;
    std::vector<scoring::ScoredRow> best;
    const scoring::ItemArena& arena = snapshot->arena();
    RETURN_IF_ERROR(ToAbslStatus(scorer_->ScoreAllTopK(
        s.user.view(), arena,
        snapshot->live().first(std::min(snapshot->live().size(), arena.size())),
        kLargeK, &best)));
    for (const scoring::ScoredRow& r : best) s.top.push_back(r.row);
    users.push_back(std::move(s));
  }
  RetrieveTuning chosen = retrieve_tuning();
  if (users.empty() || live_items == 0) {
    if (options_.log) {
      options_.log(
          "retrieve tuner: no users or items to sample; keeping "
          "fetch_factor " +
          std::to_string(chosen.fetch_factor));
    }
    return chosen;
  }
  // Recall of the first `fetch` ANN candidates for the true top k: the
  // mean over the sampled users and the worst user's.
  struct Recall {
    double mean = 0;
    double min = 1;
  };
  auto recall = [](const std::vector<std::vector<uint32_t>>& candidates,
                   const std::vector<Sampled>& sampled, uint32_t k,
                   uint64_t fetch) {
    Recall r;
    for (size_t u = 0; u < sampled.size(); ++u) {
      const size_t want = std::min<size_t>(k, sampled[u].top.size());
      double one = 1;
      if (want > 0) {
        const size_t take = std::min<size_t>(fetch, candidates[u].size());
        absl::flat_hash_set<uint32_t> got(candidates[u].begin(),
                                          candidates[u].begin() + take);
        size_t hit = 0;
        for (size_t i = 0; i < want; ++i) {
          hit += got.contains(sampled[u].top[i]);
        }
        one = static_cast<double>(hit) / static_cast<double>(want);
      }
      r.mean += one;
      r.min = std::min(r.min, one);
    }
    r.mean /= static_cast<double>(sampled.size());
    return r;
  };
  // Recall is heavy-tailed over users (a few need many more candidates than
  // most), so a setting must also give the worst sampled user the target.
  auto meets = [&](const Recall& r) {
    return r.mean >= target && r.min >= options_.retrieve_recall_target;
  };
  // Cost in exact item scores: reranked candidates, plus the IVF vectors
  // visited (one d-long product each, 2*m*n of them make an item score).
  const store::ModelManifest& manifest = model->manifest();
  const double vector_cost =
      1.0 / (2.0 * manifest.user_codes * manifest.item_codes);
  double best_cost = std::numeric_limits<double>::infinity();
  bool found = false;
  RetrieveTuning fallback;
  for (uint32_t nprobe : probes) {
    std::vector<std::vector<uint32_t>> candidates(users.size());
    for (size_t u = 0; u < users.size(); ++u) {
      RETURN_IF_ERROR(snapshot->AnnCandidates(
          users[u].user.view(),
          store::ItemSnapshot::AnnQuery{max_fetch, nprobe}, &candidates[u]));
    }
    // Smallest factor meeting the target at each k (or the largest tried).
    auto smallest = [&](uint32_t k, double* got) {
      for (uint32_t f : kFactors) {
        const Recall r = recall(candidates, users, k, uint64_t{k} * f);
        *got = r.mean;
        if (meets(r)) return f;
      }
      return 0u;
    };
    double r_small = 0, r_large = 0;
    const uint32_t f_small = smallest(kSmallK, &r_small);
    const uint32_t f_large = smallest(kLargeK, &r_large);
    const double visited =
        shape.ivf ? static_cast<double>(nprobe) * shape.items / shape.lists
                  : static_cast<double>(shape.items);
    if (f_small == 0 || f_large == 0) {
      fallback = RetrieveTuning{nprobe, kFactors[std::size(kFactors) - 1], 0,
                                r_small, r_large};
      continue;
    }
    RetrieveTuning t;
    t.nprobe = nprobe;
    t.fetch_factor = f_large;
    t.fetch_extra = f_small > f_large ? kSmallK * (f_small - f_large) : 0;
    t.recall_at_10 = recall(candidates, users, kSmallK,
                            uint64_t{kSmallK} * t.fetch_factor + t.fetch_extra)
                         .mean;
    t.recall_at_100 = recall(candidates, users, kLargeK,
                             uint64_t{kLargeK} * t.fetch_factor + t.fetch_extra)
                          .mean;
    t.met_target = true;
    const double cost = static_cast<double>(kLargeK) * t.fetch_factor +
                        t.fetch_extra + visited * vector_cost;
    if (cost < best_cost) {
      best_cost = cost;
      chosen = t;
      found = true;
    }
  }
  if (!found) chosen = fallback;
  chosen.users = static_cast<uint32_t>(users.size());
  {
    absl::MutexLock lock(&tuning_mu_);
    tuning_ = chosen;
  }
  if (options_.log) {
    options_.log(absl::StrCat(
        "retrieve tuner: ", live_items, " items, ",
        shape.ivf ? absl::StrCat("IVF ", shape.lists, " lists, nprobe ",
                                 chosen.nprobe)
                  : std::string("flat index"),
        ", fetch ", chosen.fetch_factor, "*k+", chosen.fetch_extra,
        ": recall@10 ", chosen.recall_at_10, ", recall@100 ",
        chosen.recall_at_100, " on ", chosen.users, " users (target ",
        options_.retrieve_recall_target, ", tuned for ", target,
        found ? ")" : ", NOT met: best setting tried)"));
  }
  return chosen;
}

void RankerCore::GetModelInfo(v1::ModelInfo* info) const {
  info->set_backend(std::string(scorer_->backend()));
  absl::StatusOr<std::shared_ptr<const ServingModel>> model = Model();
  if (!model.ok()) return;
  const store::ModelManifest& manifest = (*model)->manifest();
  info->set_model_version(manifest.model_version);
  info->set_dim(manifest.dim);
  info->set_user_codes(manifest.user_codes);
  info->set_item_codes(manifest.item_codes);
  info->set_users((*model)->users().size());
  info->set_items((*model)->items().Current()->size());
}

}  // namespace embsum::server
