// RankerCore's Retrieve: the exact scan, the default ANN path (mean-vector
// and per-interest candidates, exact rescoring, adaptive depth), the
// background recall tuner and the shadow scans that watch recall in
// production (docs/server.md "Retrieve").
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/ranker_core.h"
#include "server/retrieve_tuner.h"
#include "server/status_util.h"

namespace embsum::server {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

constexpr size_t kShadowQueue = 4;

}  // namespace

RankerCore::~RankerCore() {
  tuner_stop_.store(true);
  WaitForRetrieveTuning();
  std::thread shadow;
  {
    absl::MutexLock lock(&shadow_mu_);
    shadow_stop_ = true;
    shadow = std::move(shadow_thread_);
  }
  if (shadow.joinable()) shadow.join();
}

bool RankerCore::TryScanSlot(const store::ItemSnapshot& snapshot,
                             bool* counted) const {
  // Scans no larger than the biggest Rank are not limited (a small
  // catalogue falls back to scanning on every default Retrieve).
  const uint32_t limit = snapshot.rows() > options_.max_candidates
                             ? options_.max_concurrent_scans
                             : 0;
  *counted = false;
  if (limit == 0) return true;
  uint32_t running = scans_running_.load(std::memory_order_relaxed);
  do {
    if (running >= limit) return false;
  } while (!scans_running_.compare_exchange_weak(running, running + 1,
                                                 std::memory_order_acquire));
  *counted = true;
  return true;
}

void RankerCore::ReleaseScanSlot(bool counted) const {
  if (counted) scans_running_.fetch_sub(1, std::memory_order_release);
}

absl::Status RankerCore::FullScan(const scoring::UserView& user,
                                  const store::ItemSnapshot& snapshot,
                                  uint32_t want,
                                  std::vector<scoring::ScoredRow>* best) const {
  bool counted = false;
  if (!TryScanSlot(snapshot, &counted)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Retrieve needs a full scan and ",
        scans_running_.load(std::memory_order_relaxed),
        " are running (the limit is ", options_.max_concurrent_scans,
        ", --max_concurrent_retrieve_scans); retry later"));
  }
  struct Release {
    const RankerCore* core;
    bool counted;
    ~Release() { core->ReleaseScanSlot(counted); }
  } release{this, counted};
  if (scan_hook_for_testing_) scan_hook_for_testing_();
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

absl::Status RankerCore::SettingTopK(
    const scoring::UserView& user, const store::ItemSnapshot& snapshot,
    const RetrieveSetting& setting, uint32_t k, uint64_t scan_items,
    const absl::flat_hash_set<uint32_t>& excluded,
    std::vector<scoring::ScoredRow>* best, uint64_t* scored) const {
  // Candidate row -> its proxy depth: the smallest relative position
  // (position / list depth) over the lists that found it; recent upserts
  // have depth 0.
  absl::flat_hash_map<uint32_t, float> depth;
  std::vector<uint32_t> rows;
  std::vector<float> scores;
  std::vector<int32_t> codes;
  auto gather = [&](const RetrieveSetting& with, uint64_t fetch,
                    uint64_t per_code) -> absl::Status {
    store::ItemSnapshot::AnnQuery query;
    query.k = static_cast<uint32_t>(fetch);
    query.nprobe = with.nprobe;
    query.codes = with.codes;
    query.per_code = static_cast<uint32_t>(per_code);
    query.code_nprobe = with.code_nprobe;
    store::ItemSnapshot::AnnLists lists;
    RETURN_IF_ERROR(snapshot.AnnCandidateLists(user, query, &lists));
    std::vector<uint32_t> fresh;
    auto note = [&](uint32_t row, float d) {
      if (excluded.contains(row)) return;
      auto [it, inserted] = depth.emplace(row, d);
      if (inserted) {
        fresh.push_back(row);
      } else if (d < it->second) {
        it->second = d;
      }
    };
    for (size_t i = 0; i < lists.mean.size(); ++i) {
      note(lists.mean[i], static_cast<float>(i) /
                              static_cast<float>(std::max<uint64_t>(1, fetch)));
    }
    for (const std::vector<uint32_t>& list : lists.codes) {
      for (size_t i = 0; i < list.size(); ++i) {
        note(list[i], static_cast<float>(i) /
                          static_cast<float>(std::max<uint64_t>(1, per_code)));
      }
    }
    for (uint32_t row : lists.recent) note(row, 0.0f);
    // Score only the rows not scored yet, in row order (ties go to the
    // lower row as in a full scan).
    std::sort(fresh.begin(), fresh.end());
    if (fresh.empty()) return absl::OkStatus();
    std::vector<float> s(fresh.size());
    std::vector<int32_t> c(fresh.size());
    const auto start = std::chrono::steady_clock::now();
    absl::Status status =
        ToAbslStatus(scorer_->Score(user, snapshot.arena(), fresh, s, c));
    if (metrics_ != nullptr) {
      metrics_->scoring_seconds().Observe(SecondsSince(start));
    }
    RETURN_IF_ERROR(status);
    rows.insert(rows.end(), fresh.begin(), fresh.end());
    scores.insert(scores.end(), s.begin(), s.end());
    codes.insert(codes.end(), c.begin(), c.end());
    return absl::OkStatus();
  };
  // Top k of everything scored, ties to the lower row.
  auto select = [&] {
    std::vector<uint32_t> order(rows.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = static_cast<uint32_t>(i);
    const size_t keep = std::min<size_t>(k, order.size());
    std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                      [&](uint32_t a, uint32_t b) {
                        return scores[a] != scores[b] ? scores[a] > scores[b]
                                                      : rows[a] < rows[b];
                      });
    order.resize(keep);
    best->clear();
    best->reserve(keep);
    for (uint32_t i : order) {
      best->push_back(scoring::ScoredRow{rows[i], scores[i], codes[i]});
    }
  };
  uint64_t fetch = setting.Fetch(k);
  uint64_t per_code = setting.PerCode(k);
  RETURN_IF_ERROR(gather(setting, fetch, per_code));
  select();
  // Adaptive depth: the proxy ranked this user's best items late, so more
  // of them may lie beyond the lists' ends.
  const uint32_t factor = options_.retrieve_widen_factor;
  if (factor > 1 && !best->empty()) {
    size_t deep = 0;
    for (const scoring::ScoredRow& r : *best) deep += depth[r.row] >= 0.5f;
    const bool widen =
        static_cast<double>(deep) >=
        options_.retrieve_widen_share * static_cast<double>(best->size());
    // Deeper lists and, for IVF, more probes (a probed list may hold
    // fewer candidates than the deeper fetch).
    const store::ItemSnapshot::AnnShape shape = snapshot.ann_shape();
    RetrieveSetting wide = setting;
    wide.fetch_factor *= factor;
    wide.fetch_extra *= factor;
    wide.code_eighths *= factor;
    wide.code_extra *= factor;
    if (shape.ivf) {
      const uint32_t probes = setting.nprobe > 0
                                  ? setting.nprobe
                                  : static_cast<uint32_t>(shape.probes);
      wide.nprobe = static_cast<uint32_t>(std::min<uint64_t>(
          uint64_t{std::max(1u, probes)} * factor, shape.lists));
    }
    if (shape.code_ivf) {
      const uint32_t probes = setting.code_nprobe > 0
                                  ? setting.code_nprobe
                                  : static_cast<uint32_t>(shape.code_probes);
      wide.code_nprobe = static_cast<uint32_t>(std::min<uint64_t>(
          uint64_t{std::max(1u, probes)} * factor, shape.code_lists));
    }
    if (widen && static_cast<double>(wide.MaxCandidates(k)) <
                     static_cast<double>(scan_items)) {
      if (metrics_ != nullptr) metrics_->retrieve_widened().Increment();
      RETURN_IF_ERROR(gather(wide, wide.Fetch(k), wide.PerCode(k)));
      select();
    }
  }
  *scored = rows.size();
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
  const uint64_t candidates = tuning.MaxCandidates(k) + excluded.size();
  const double scan_items =
      options_.retrieve_scan_fraction * static_cast<double>(live_items);
  // The default path scans when reranking would cost a large part of a scan
  // anyway (or fetch everything): then the answer is certified exact.
  bool scan = request.exact() || static_cast<double>(candidates) >= scan_items;
  // Before the first tuning of the process: the safe setting, a scan when
  // a slot is free.
  bool safe_scan = false;
  if (!scan && !tuning.tuned) {
    bool counted = false;
    if (TryScanSlot(*snapshot, &counted)) {
      ReleaseScanSlot(counted);
      scan = true;
      safe_scan = true;
    }
  }

  std::vector<scoring::ScoredRow> best;
  uint64_t scored = 0;
  if (scan) {
    // Excluded rows are dropped after the scan: ask for that many more.
    const uint32_t want = k + static_cast<uint32_t>(excluded.size());
    absl::Status s = FullScan(user.view(), *snapshot, want, &best);
    if (safe_scan && absl::IsResourceExhausted(s)) {
      // The slot was taken meanwhile: the untuned ANN setting instead.
      scan = false;
    } else {
      RETURN_IF_ERROR(s);
      scored = live_items;
    }
  }
  if (!scan) {
    RETURN_IF_ERROR(SettingTopK(user.view(), *snapshot, tuning, k,
                                static_cast<uint64_t>(scan_items), excluded,
                                &best, &scored));
    MaybeShadow(model, snapshot, user, k, excluded, best);
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

// ---------------------------------------------------------------------------
// Shadow scans.

void RankerCore::MaybeShadow(
    const std::shared_ptr<const ServingModel>& model,
    const std::shared_ptr<const store::ItemSnapshot>& snapshot,
    const store::UserEmbedding& user, uint32_t k,
    const absl::flat_hash_set<uint32_t>& excluded,
    const std::vector<scoring::ScoredRow>& served) const {
  const double rate = options_.retrieve_shadow_rate;
  if (rate <= 0 || metrics_ == nullptr) return;
  if (rate < 1) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    if (std::uniform_real_distribution<double>(0, 1)(rng) >= rate) return;
  }
  absl::MutexLock lock(&shadow_mu_);
  if (shadow_stop_) return;
  if (shadow_queue_.size() >= kShadowQueue) {
    metrics_->retrieve_shadow_skipped().Increment();
    return;
  }
  ShadowJob job;
  job.model = model;
  job.snapshot = snapshot;
  job.user = user;
  job.k = k;
  job.excluded = excluded;
  for (const scoring::ScoredRow& r : served) job.served.push_back(r.row);
  shadow_queue_.push_back(std::move(job));
  if (!shadow_thread_.joinable()) {
    shadow_thread_ = std::thread([this] { ShadowLoop(); });
  }
}

void RankerCore::ShadowLoop() const {
  for (;;) {
    ShadowJob job;
    {
      absl::MutexLock lock(&shadow_mu_);
      shadow_mu_.Await(absl::Condition(
          +[](const RankerCore* core) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return core->shadow_stop_ || !core->shadow_queue_.empty();
          },
          this));
      if (shadow_stop_) return;
      job = std::move(shadow_queue_.front());
      shadow_queue_.pop_front();
      shadow_busy_ = true;
    }
    // Within the scan limit: a busy slot skips the check rather than wait.
    bool counted = false;
    if (!TryScanSlot(*job.snapshot, &counted)) {
      metrics_->retrieve_shadow_skipped().Increment();
    } else {
      std::vector<scoring::ScoredRow> exact;
      const uint32_t want = job.k + static_cast<uint32_t>(job.excluded.size());
      absl::Status s = absl::OkStatus();
      if (job.snapshot->rows() > 0) {
        s = ToAbslStatus(
            scorer_->ScoreAllTopK(job.user.view(), job.snapshot->arena(),
                                  job.snapshot->live(), want, &exact));
      }
      ReleaseScanSlot(counted);
      if (!s.ok()) {
        metrics_->retrieve_shadow_skipped().Increment();
      } else {
        absl::flat_hash_set<uint32_t> truth;
        for (const scoring::ScoredRow& r : exact) {
          if (truth.size() == job.k) break;
          if (!job.excluded.contains(r.row)) truth.insert(r.row);
        }
        if (!truth.empty()) {
          size_t hit = 0;
          for (size_t i = 0; i < job.served.size() && i < job.k; ++i) {
            hit += truth.contains(job.served[i]);
          }
          metrics_->retrieve_shadow_recall().Observe(
              static_cast<double>(hit) / static_cast<double>(truth.size()));
        }
      }
    }
    absl::MutexLock lock(&shadow_mu_);
    shadow_busy_ = false;
  }
}

void RankerCore::WaitForShadowScans() {
  absl::MutexLock lock(&shadow_mu_);
  shadow_mu_.Await(absl::Condition(
      +[](const RankerCore* core) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return core->shadow_stop_ ||
               (core->shadow_queue_.empty() && !core->shadow_busy_);
      },
      static_cast<const RankerCore*>(this)));
}

// ---------------------------------------------------------------------------
// Tuning.

RetrieveTuning RankerCore::retrieve_tuning() const {
  absl::MutexLock lock(&tuning_mu_);
  return tuning_;
}

void RankerCore::StartRetrieveTuning(
    std::shared_ptr<const ServingModel> model) {
  absl::MutexLock lock(&tuner_mu_);
  if (tuner_.joinable()) {
    tuner_stop_.store(true);
    tuner_.join();
  }
  tuner_stop_.store(false);
  tuner_ = std::thread([this, model = std::move(model)] {
    absl::StatusOr<RetrieveTuning> tuned =
        TuneRetrieveImpl(model.get(), &tuner_stop_);
    if (!tuned.ok() && options_.log) {
      options_.log(
          absl::StrCat("retrieve tuner failed: ", tuned.status().ToString(),
                       " (the previous setting stays)"));
    }
  });
}

void RankerCore::WaitForRetrieveTuning() {
  absl::MutexLock lock(&tuner_mu_);
  if (tuner_.joinable()) tuner_.join();
}

absl::StatusOr<RetrieveTuning> RankerCore::TuneRetrieve(
    const ServingModel* model) {
  return TuneRetrieveImpl(model, nullptr);
}

absl::StatusOr<RetrieveTuning> RankerCore::TuneRetrieveImpl(
    const ServingModel* model, const std::atomic<bool>* stop) {
  if (options_.retrieve_recall_target <= 0) return retrieve_tuning();
  const auto started = std::chrono::steady_clock::now();
  std::shared_ptr<const ServingModel> current;
  if (model == nullptr) {
    ASSIGN_OR_RETURN(current, Model());
    model = current.get();
  }
  auto stopped = [&] { return stop != nullptr && stop->load(); };
  const std::shared_ptr<const store::ItemSnapshot> snapshot =
      model->items().Current();
  const uint64_t live_items = snapshot->size();
  const uint64_t seed = options_.retrieve_tune_seed != 0
                            ? options_.retrieve_tune_seed
                            : std::random_device{}() | 1;
  // Step 1: the sample.
  ASSIGN_OR_RETURN(
      std::vector<std::string> ids,
      SampleTuningUsers(model->users(), options_.retrieve_tune_users, seed));
  // Step 2: the truth, one full scan per user.
  constexpr uint32_t kLargeK = 100;
  std::vector<std::string> batch;
  std::vector<TuningUser> users;
  for (const std::string& id : ids) {
    if (stopped()) return absl::CancelledError("retrieve tuner stopped");
    batch.assign(1, id);
    ASSIGN_OR_RETURN(
        std::vector<TuningUser> one,
        ExactTops(*scorer_, *snapshot, model->users(), batch, kLargeK));
    for (TuningUser& u : one) users.push_back(std::move(u));
  }
  const double truth_seconds = SecondsSince(started);
  RetrieveTuning chosen = retrieve_tuning();
  if (users.empty() || live_items == 0) {
    if (options_.log) {
      options_.log(
          absl::StrCat("retrieve tuner: no users or items to sample (seed ",
                       seed, "); keeping the current setting"));
    }
    return chosen;
  }
  // Step 3: where the true items sit in each list, at every probe count.
  const store::ItemSnapshot::AnnShape shape = snapshot->ann_shape();
  const store::ModelManifest& manifest = model->manifest();
  const std::vector<uint32_t> mean_probes =
      ProbeChoices(shape.ivf, shape.lists, 64);
  const std::vector<uint32_t> code_probes =
      shape.code_index ? ProbeChoices(shape.code_ivf, shape.code_lists, 8)
                       : std::vector<uint32_t>{};
  const std::vector<uint32_t> code_counts =
      CodeCountChoices(manifest.user_codes, shape.code_index);
  const uint32_t max_fetch =
      static_cast<uint32_t>(std::min<uint64_t>(kLargeK * 64, live_items));
  const uint32_t max_per_code = kLargeK * 32 / 8;
  if (stopped()) return absl::CancelledError("retrieve tuner stopped");
  ASSIGN_OR_RETURN(RankTable table,
                   MeasureRanks(*snapshot, users, mean_probes, code_probes,
                                code_counts, max_fetch, max_per_code));
  // Steps 4 and 5.
  TunerSpace space;
  space.shape = shape;
  space.user_codes = manifest.user_codes;
  space.item_codes = manifest.item_codes;
  space.live_items = live_items;
  space.tail_target = options_.retrieve_tail_target > 0
                          ? std::min(options_.retrieve_tail_target,
                                     options_.retrieve_recall_target)
                          : options_.retrieve_recall_target;
  space.mean_target = options_.retrieve_recall_target +
                      (1.0 - options_.retrieve_recall_target) / 2;
  space.scan_items =
      options_.retrieve_scan_fraction * static_cast<double>(live_items);
  // The scans of step 2 price an exact item score.
  space.item_seconds = truth_seconds / (static_cast<double>(users.size()) *
                                        static_cast<double>(live_items));
  chosen = ChooseSetting(table, space);
  chosen.users = static_cast<uint32_t>(users.size());
  chosen.seed = seed;
  chosen.tuned = true;
  if (stopped()) return absl::CancelledError("retrieve tuner stopped");
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
        chosen.codes > 0
            ? absl::StrCat(", per interest: ", chosen.codes, " codes, top ",
                           chosen.code_eighths, "/8*k+", chosen.code_extra,
                           " each",
                           shape.code_ivf
                               ? absl::StrCat(" at nprobe ", chosen.code_nprobe,
                                              " of ", shape.code_lists)
                               : std::string(" (exact)"))
            : std::string(", no per-interest candidates"),
        ": recall@10 mean ", chosen.at_10.mean, " p1 ", chosen.at_10.p1,
        " min ", chosen.at_10.min, ", recall@100 mean ", chosen.at_100.mean,
        " p1 ", chosen.at_100.p1, " min ", chosen.at_100.min, " on ",
        chosen.users, " random users (seed ", seed, "; target ",
        space.tail_target, " for p1, ", space.mean_target, " for the mean",
        chosen.met_target ? ")" : ", NOT met: best setting tried)", "; scans ",
        truth_seconds, " s, total ", SecondsSince(started),
        " s; per search: mean ",
        table.mean_seconds.empty() ? 0.0 : table.mean_seconds.back() * 1e3,
        " ms at most, per code ",
        table.code_seconds.empty() ? 0.0 : table.code_seconds.front() * 1e3,
        " ms at least; item score ", space.item_seconds * 1e6, " us)"));
  }
  return chosen;
}

}  // namespace embsum::server
