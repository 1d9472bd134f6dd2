// The service's request logic, independent of the transport: validates a
// request, reads the stores, scores, and fills the response (docs/design.md
// section 5 semantics). The gRPC services call it from worker threads.
//
// Thread-safety: every method is safe to call concurrently (the stores and
// the scorer are).
#ifndef EMBSUM_SERVER_RANKER_CORE_H_
#define EMBSUM_SERVER_RANKER_CORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "embsum/v1/ranking.pb.h"
#include "scoring/scorer.h"
#include "server/rank_timings.h"
#include "server/retrieve_tuner.h"
#include "server/server_metrics.h"
#include "server/serving_model.h"
#include "store/item_catalog.h"
#include "store/manifest.h"
#include "store/user_store.h"
#include "store/write_stamp.h"

namespace embsum::server {

struct RankerCoreOptions {
  // Largest candidate_ids of a Rank.
  uint32_t max_candidates = 10000;
  // Largest k (and exclude_item_ids) of a Retrieve. A Retrieve holds
  // O(k + fetched candidates) memory: about 24 bytes per candidate plus the
  // response, so 1000 costs well under 1 MiB per call (docs/store.md).
  uint32_t max_retrieve_k = 1000;
  // The default (ANN) Retrieve fetches fetch_factor * k + fetch_extra
  // candidates from the ANN index and reranks them exactly. With a recall
  // target the tuner sets both (and the IVF probes) at start-up; without
  // one, fetch_factor = ann_oversample and fetch_extra = 0.
  uint32_t ann_oversample = 4;
  // The recall TuneRetrieve aims for at k = 10 and k = 100: the mean over
  // the sampled users must reach halfway between this and 1 (a margin for
  // the users it did not sample), and the 1st-percentile sampled user
  // retrieve_tail_target. 0 turns tuning off (the fixed ann_oversample
  // setting).
  double retrieve_recall_target = 0.99;
  // The recall@10 and @100 the 1st-percentile sampled user must reach
  // (capped at retrieve_recall_target); 0 = retrieve_recall_target.
  double retrieve_tail_target = 0.95;
  // Users the tuner samples at random (all when fewer); each costs a full
  // scan. At least 256 to see a 1% tail.
  uint32_t retrieve_tune_users = 256;
  // Seed of the tuner's sample; 0 draws one (logged either way).
  uint64_t retrieve_tune_seed = 0;
  // Adaptive depth: when at least retrieve_widen_share of a call's top k
  // came from the second half of the candidate lists that found them (by
  // proxy rank), the lists are searched retrieve_widen_factor times deeper
  // and the new candidates scored (once per call, within the scan
  // fraction). Factor <= 1 turns it off.
  uint32_t retrieve_widen_factor = 4;
  double retrieve_widen_share = 0.3;
  // Fraction of default Retrieve calls re-answered off the request path by
  // an exact scan (one shadow thread, a queue of 4, a scan slot taken only
  // when free) to record embsum_retrieve_shadow_recall. 0 = none.
  double retrieve_shadow_rate = 0.001;
  // The default path answers with a full scan (certified exact) when it
  // would rerank more than this fraction of the live items.
  double retrieve_scan_fraction = 0.2;
  // Full-catalogue scans (exact = true, or the default path falling back)
  // running at once; further ones get RESOURCE_EXHAUSTED at once, so scans
  // cannot take every worker from Rank. 0 = unlimited. A scan of a snapshot
  // of at most max_candidates rows costs no more than one Rank the server
  // admits anyway, so it is not counted.
  uint32_t max_concurrent_scans = 1;
  // Receives the tuner's log lines (null: none).
  std::function<void(const std::string&)> log;
};

class RankerCore {
 public:
  // Everything must outlive the core. metrics may be null (no metrics).
  // Each request reads models->Current() once and answers from that model
  // alone, so a hot reload (ModelSlot::Publish) never mixes two models in
  // one response. models may be null for a core that only validates.
  RankerCore(const RankerCoreOptions& options, const ModelSlot* models,
             const scoring::Scorer* scorer, ServerMetrics* metrics);
  // Stops the background tuner and the shadow thread (waits for the work
  // in hand: at most one user's scan).
  // Tests only (kept out of RankerCoreOptions): called inside each full
  // scan while it holds its slot. Set before the first Retrieve.
  void SetScanHookForTesting(std::function<void()> hook) {
    scan_hook_for_testing_ = std::move(hook);
  }
  ~RankerCore();

  // Checks that need no store access (run on the gRPC thread before
  // admission): empty user id, too many candidates, bad k.
  absl::Status ValidateRank(const v1::RankRequest& request) const;
  absl::Status ValidateRetrieve(const v1::RetrieveRequest& request) const;

  // Full requests (they validate again).
  // timings (may be null) receives the phases of this request.
  absl::Status Rank(const v1::RankRequest& request, v1::RankResponse* response,
                    RankTimings* timings = nullptr) const;
  absl::Status Retrieve(const v1::RetrieveRequest& request,
                        v1::RetrieveResponse* response) const;
  void GetModelInfo(v1::ModelInfo* info) const;

  // Chooses the ANN search setting of the default Retrieve path for
  // `model` (the published one when null) from the recall target, in the
  // steps of server/retrieve_tuner.h: retrieve_tune_users users drawn at
  // random (seed logged), their exact top 100 by full scans, then the
  // cheapest setting (mean-vector probes and depth, user codes, per-code
  // depth and probes) whose mean and 1st-percentile user recall@10 and
  // @100 reach the target. Logs and publishes the choice; later Retrieves
  // use it. No-op (current settings) when the target is 0. Safe to call
  // while serving; blocks the caller for the whole run.
  absl::StatusOr<RetrieveTuning> TuneRetrieve(const ServingModel* model);
  // TuneRetrieve(model) on a background thread (a running one is stopped
  // first). Until it publishes, Retrieve serves the previous model's
  // setting or, before any, the safe setting: an exact scan when a scan
  // slot is free, else the untuned ann_oversample setting.
  void StartRetrieveTuning(std::shared_ptr<const ServingModel> model);
  // Blocks until no background tuning runs (tests, shutdown).
  void WaitForRetrieveTuning();
  // Blocks until every queued shadow scan has been recorded (tests).
  void WaitForShadowScans();
  RetrieveTuning retrieve_tuning() const;

  // Atomic: every record is validated first (the error names the record by
  // its position in the stream and its id); if any is invalid nothing is
  // written. A later record with the same id replaces an earlier one.
  // An empty summary leaves a stored summary as it is.
  absl::Status UpsertUsers(const std::vector<v1::UserRecord>& records,
                           v1::UpsertResponse* response) const;
  absl::Status UpsertItems(const std::vector<v1::ItemRecord>& records,
                           v1::UpsertResponse* response) const;
  absl::Status DeleteItems(const v1::DeleteItemsRequest& request,
                           v1::DeleteItemsResponse* response) const;

  // The admin writes in two halves, so that a write log
  // (server/write_log.h) can sit between them. Check* validates a whole
  // call against `model` exactly as the RPCs above do (INVALID_ARGUMENT for
  // a bad record; FAILED_PRECONDITION for a user of another shard or a
  // record whose model_version is set and is not the one `model` serves,
  // naming both versions). Apply* writes a checked call with `stamp`
  // (store/write_stamp.h) in the same atomic store write; with no records
  // and a nonzero log sequence it writes only the sequence.
  absl::Status CheckUsers(const ServingModel& model,
                          const std::vector<v1::UserRecord>& records) const;
  absl::Status CheckItems(const ServingModel& model,
                          const std::vector<v1::ItemRecord>& records) const;
  static absl::Status ApplyUsers(const ServingModel& model,
                                 const std::vector<v1::UserRecord>& records,
                                 const store::WriteStamp& stamp);
  static absl::Status ApplyItems(const ServingModel& model,
                                 const std::vector<v1::ItemRecord>& records,
                                 const store::WriteStamp& stamp);
  // Returns how many of the ids existed.
  static absl::StatusOr<uint64_t> ApplyDelete(
      const ServingModel& model, const std::vector<std::string>& item_ids,
      const store::WriteStamp& stamp);
  // The model in service (FailedPrecondition for a validate-only core).
  absl::StatusOr<std::shared_ptr<const ServingModel>> CurrentModel() const {
    return Model();
  }

  const scoring::Scorer& scorer() const { return *scorer_; }

 private:
  // The model this request answers from; FailedPrecondition for a
  // validate-only core.
  absl::StatusOr<std::shared_ptr<const ServingModel>> Model() const;
  // The user's embedding and, when `summary` is non-null, summary, read
  // at one moment (UserStore::GetWithSummary).
  static absl::Status LoadUser(const ServingModel& model,
                               const std::string& user_id,
                               store::UserEmbedding* user,
                               std::string* summary = nullptr);

  // Fills best (sorted) from a full scan; counts a scan slot.
  absl::Status FullScan(const scoring::UserView& user,
                        const store::ItemSnapshot& snapshot, uint32_t want,
                        std::vector<scoring::ScoredRow>* best) const;

  // The first ANN candidates scored for `setting` and their proxy depths
  // (see retrieve.cc), rescored exactly, then widened once when the top k
  // came mostly from the far end of the lists.
  absl::Status SettingTopK(const scoring::UserView& user,
                           const store::ItemSnapshot& snapshot,
                           const RetrieveSetting& setting, uint32_t k,
                           uint64_t scan_items,
                           const absl::flat_hash_set<uint32_t>& excluded,
                           std::vector<scoring::ScoredRow>* best,
                           uint64_t* scored) const;
  // Takes a scan slot when one is free (always for small snapshots);
  // false when all are busy. Release with ReleaseScanSlot(true) when taken.
  bool TryScanSlot(const store::ItemSnapshot& snapshot, bool* counted) const;
  void ReleaseScanSlot(bool counted) const;
  // A served default answer, queued for a shadow scan.
  struct ShadowJob {
    std::shared_ptr<const ServingModel> model;
    std::shared_ptr<const store::ItemSnapshot> snapshot;
    store::UserEmbedding user;
    uint32_t k = 0;
    absl::flat_hash_set<uint32_t> excluded;
    std::vector<uint32_t> served;  // rows answered, best first
  };
  void MaybeShadow(const std::shared_ptr<const ServingModel>& model,
                   const std::shared_ptr<const store::ItemSnapshot>& snapshot,
                   const store::UserEmbedding& user, uint32_t k,
                   const absl::flat_hash_set<uint32_t>& excluded,
                   const std::vector<scoring::ScoredRow>& served) const;
  void ShadowLoop() const;
  absl::StatusOr<RetrieveTuning> TuneRetrieveImpl(
      const ServingModel* model, const std::atomic<bool>* stop);

  RankerCoreOptions options_;
  mutable std::atomic<uint32_t> scans_running_{0};
  // Background tuning.
  absl::Mutex tuner_mu_;
  std::thread tuner_ ABSL_GUARDED_BY(tuner_mu_);
  std::atomic<bool> tuner_stop_{false};
  // Shadow scans: one thread, started on first use.
  mutable absl::Mutex shadow_mu_;
  mutable std::deque<ShadowJob> shadow_queue_ ABSL_GUARDED_BY(shadow_mu_);
  mutable bool shadow_busy_ ABSL_GUARDED_BY(shadow_mu_) = false;
  mutable bool shadow_stop_ ABSL_GUARDED_BY(shadow_mu_) = false;
  mutable std::thread shadow_thread_ ABSL_GUARDED_BY(shadow_mu_);
  mutable absl::Mutex tuning_mu_;
  RetrieveTuning tuning_ ABSL_GUARDED_BY(tuning_mu_);
  const ModelSlot* models_;
  const scoring::Scorer* scorer_;
  ServerMetrics* metrics_;
  std::function<void()> scan_hook_for_testing_;
};

// The longest id of docs/design.md section 3, in bytes.
inline constexpr size_t kMaxIdBytes = 256;

// An id of docs/design.md section 3: 1..kMaxIdBytes bytes of UTF-8 without
// control characters. `what` names the field in the error ("user_id").
absl::Status ValidateId(const std::string& id, const std::string& what);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RANKER_CORE_H_
