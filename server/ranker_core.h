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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "embsum/v1/ranking.pb.h"
#include "scoring/scorer.h"
#include "server/rank_timings.h"
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
  // Mean recall@10 and recall@100 against the exact top k that TuneRetrieve
  // aims for; it tunes for halfway between this and 1 on
  // retrieve_tune_users sampled users (each costs a full scan), a margin
  // for the users it did not sample. 0 turns tuning off.
  double retrieve_recall_target = 0.99;
  uint32_t retrieve_tune_users = 64;
  // The default path answers with a full scan (certified exact) when it
  // would rerank more than this fraction of the live items.
  double retrieve_scan_fraction = 0.2;
  // Full-catalogue scans (exact = true, or the default path falling back)
  // running at once; further ones get RESOURCE_EXHAUSTED at once, so scans
  // cannot take every worker from Rank. 0 = unlimited. A scan of a snapshot
  // of at most max_candidates rows costs no more than one Rank the server
  // admits anyway, so it is not counted.
  uint32_t max_concurrent_scans = 1;
  // Tests: called inside each full scan while it holds its slot.
  std::function<void()> scan_hook;
  // Receives the tuner's log lines (null: none).
  std::function<void(const std::string&)> log;
};

// What TuneRetrieve chose and measured.
struct RetrieveTuning {
  uint32_t nprobe = 0;  // IVF probes per search (0: the index's default)
  uint32_t fetch_factor = 4;
  uint32_t fetch_extra = 0;
  double recall_at_10 = 0;  // mean over the sample, with these settings
  double recall_at_100 = 0;
  uint32_t users = 0;  // users sampled
  bool met_target = false;
};

class RankerCore {
 public:
  // Everything must outlive the core. metrics may be null (no metrics).
  // Each request reads models->Current() once and answers from that model
  // alone, so a hot reload (ModelSlot::Publish) never mixes two models in
  // one response. models may be null for a core that only validates.
  RankerCore(const RankerCoreOptions& options, const ModelSlot* models,
             const scoring::Scorer* scorer, ServerMetrics* metrics);

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

  // Chooses the ANN search parameters of the default Retrieve path for
  // `model` (the published one when null) from the recall target: the
  // cheapest (nprobe, fetch_factor, fetch_extra) whose mean recall@10 and
  // @100 on sampled users reach it (truth: full scans). Logs and returns
  // the choice; later Retrieves use it. No-op (current settings) when the
  // target is 0. Safe to call while serving.
  absl::StatusOr<RetrieveTuning> TuneRetrieve(const ServingModel* model);
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
  // ANN candidates (`fetch` of them) reranked exactly, sorted.
  absl::Status AnnTopK(const scoring::UserView& user,
                       const store::ItemSnapshot& snapshot, uint32_t fetch,
                       uint32_t nprobe, uint32_t want,
                       const absl::flat_hash_set<uint32_t>& excluded,
                       std::vector<scoring::ScoredRow>* best,
                       uint64_t* scored) const;

  RankerCoreOptions options_;
  mutable std::atomic<uint32_t> scans_running_{0};
  mutable absl::Mutex tuning_mu_;
  RetrieveTuning tuning_ ABSL_GUARDED_BY(tuning_mu_);
  const ModelSlot* models_;
  const scoring::Scorer* scorer_;
  ServerMetrics* metrics_;
};

// The longest id of docs/design.md section 3, in bytes.
inline constexpr size_t kMaxIdBytes = 256;

// An id of docs/design.md section 3: 1..kMaxIdBytes bytes of UTF-8 without
// control characters. `what` names the field in the error ("user_id").
absl::Status ValidateId(const std::string& id, const std::string& what);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RANKER_CORE_H_
