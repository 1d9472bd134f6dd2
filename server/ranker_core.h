// The service's request logic, independent of the transport: validates a
// request, reads the stores, scores, and fills the response (DESIGN.md
// section 5 semantics). The gRPC services call it from worker threads.
//
// Thread-safety: every method is safe to call concurrently (the stores and
// the scorer are).
#ifndef EMBSUM_SERVER_RANKER_CORE_H_
#define EMBSUM_SERVER_RANKER_CORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "embsum/v1/ranking.pb.h"
#include "scoring/scorer.h"
#include "server/server_metrics.h"
#include "server/serving_model.h"
#include "store/item_catalog.h"
#include "store/manifest.h"
#include "store/user_store.h"

namespace embsum::server {

struct RankerCoreOptions {
  // Largest candidate_ids of a Rank and largest k of a Retrieve.
  uint32_t max_candidates = 10000;
  // Retrieve asks the ANN index for k * ann_oversample rows and reranks them
  // exactly: more finds more of the true top k, costs more scoring.
  uint32_t ann_oversample = 4;
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
  absl::Status Rank(const v1::RankRequest& request,
                    v1::RankResponse* response) const;
  absl::Status Retrieve(const v1::RetrieveRequest& request,
                        v1::RetrieveResponse* response) const;
  void GetModelInfo(v1::ModelInfo* info) const;

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

  RankerCoreOptions options_;
  const ModelSlot* models_;
  const scoring::Scorer* scorer_;
  ServerMetrics* metrics_;
};

// An id of DESIGN.md section 3: 1..256 bytes of UTF-8 without control
// characters. `what` names the field in the error ("user_id").
absl::Status ValidateId(const std::string& id, const std::string& what);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RANKER_CORE_H_
