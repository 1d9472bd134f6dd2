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
  // Without a target the fixed setting is the configured one.
  tuning_.tuned = options_.retrieve_recall_target <= 0;
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
