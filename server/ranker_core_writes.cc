// RankerCore's admin writes (UpsertUsers, UpsertItems, DeleteItems): each
// call is checked whole against the served model (ids, model version, user
// shard, the store's embedding rules) before anything is applied; the
// write log (server/write_log.h) applies the same checked records on every
// replica through ApplyUsers / ApplyItems / ApplyDelete.
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/ranker_core.h"
#include "server/shard.h"
#include "store/embedding_rules.h"

namespace embsum::server {
namespace {

// "record 3 (item_id 'x')" for error messages.
std::string RecordName(size_t index, absl::string_view id_field,
                       absl::string_view id) {
  std::string name = absl::StrCat("record ", index);
  if (!id.empty() && id.size() <= kMaxIdBytes) {
    absl::StrAppend(&name, " (", id_field, " '", id, "')");
  }
  return name;
}

std::span<const float> Span(const google::protobuf::RepeatedField<float>& f) {
  return std::span<const float>(f.data(), static_cast<size_t>(f.size()));
}

// Indices of the last record of each id, in stream order.
template <typename Record>
std::vector<size_t> LastOfEachId(const std::vector<Record>& records,
                                 const std::string& (Record::*id)() const) {
  absl::flat_hash_map<std::string_view, size_t> last;
  for (size_t i = 0; i < records.size(); ++i) {
    last[(records[i].*id)()] = i;
  }
  std::vector<size_t> keep;
  keep.reserve(last.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (last[(records[i].*id)()] == i) keep.push_back(i);
  }
  return keep;
}

// FailedPrecondition naming both versions when a record's model_version is
// set and differs from the one served.
absl::Status CheckRecordVersion(const std::string& name,
                                const std::string& sent,
                                const std::string& served) {
  if (sent.empty() || sent == served) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      name, ": model_version '", sent.substr(0, kMaxIdBytes),
      "' is not the version this server serves ('", served,
      "'); embeddings of one model cannot be scored against another's"));
}

}  // namespace

absl::Status RankerCore::CheckUsers(
    const ServingModel& model,
    const std::vector<v1::UserRecord>& records) const {
  const store::ModelManifest& manifest = model.manifest();
  for (size_t i = 0; i < records.size(); ++i) {
    const v1::UserRecord& r = records[i];
    const std::string name = RecordName(i, "user_id", r.user_id());
    if (absl::Status s = ValidateId(r.user_id(), "user_id"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
    }
    RETURN_IF_ERROR(
        CheckRecordVersion(name, r.model_version(), manifest.model_version));
    if (absl::Status s = CheckUserShard(model.shard(), r.user_id()); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, ": ", s.message()));
    }
    // The store's rule (store/embedding_rules.h), checked before anything
    // is written so that the message names the record as sent.
    if (absl::Status s =
            store::CheckEmbeddingRecord(manifest, store::RecordKind::kUser,
                                        Span(r.upe()), Span(r.queries()));
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RankerCore::CheckItems(
    const ServingModel& model,
    const std::vector<v1::ItemRecord>& records) const {
  const store::ModelManifest& manifest = model.manifest();
  for (size_t i = 0; i < records.size(); ++i) {
    const v1::ItemRecord& r = records[i];
    const std::string name = RecordName(i, "item_id", r.item_id());
    if (absl::Status s = ValidateId(r.item_id(), "item_id"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
    }
    RETURN_IF_ERROR(
        CheckRecordVersion(name, r.model_version(), manifest.model_version));
    if (absl::Status s = store::CheckEmbeddingRecord(
            manifest, store::RecordKind::kItem, Span(r.cpe()), Span(r.keys()));
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RankerCore::ApplyUsers(const ServingModel& model,
                                    const std::vector<v1::UserRecord>& records,
                                    const store::WriteStamp& stamp) {
  std::vector<store::UserUpsert> upserts;
  for (size_t i : LastOfEachId(records, &v1::UserRecord::user_id)) {
    const v1::UserRecord& r = records[i];
    store::UserUpsert u;
    u.user_id = r.user_id();
    u.upe.assign(r.upe().begin(), r.upe().end());
    u.queries.assign(r.queries().begin(), r.queries().end());
    if (!r.summary().empty()) u.summary = r.summary();
    upserts.push_back(std::move(u));
  }
  if (upserts.empty() && stamp.log_sequence == 0) return absl::OkStatus();
  return model.users().Upsert(upserts, stamp);
}

absl::Status RankerCore::ApplyItems(const ServingModel& model,
                                    const std::vector<v1::ItemRecord>& records,
                                    const store::WriteStamp& stamp) {
  std::vector<store::ItemUpsert> upserts;
  for (size_t i : LastOfEachId(records, &v1::ItemRecord::item_id)) {
    const v1::ItemRecord& r = records[i];
    store::ItemUpsert u;
    u.item_id = r.item_id();
    u.cpe.assign(r.cpe().begin(), r.cpe().end());
    u.keys.assign(r.keys().begin(), r.keys().end());
    upserts.push_back(std::move(u));
  }
  if (upserts.empty() && stamp.log_sequence == 0) return absl::OkStatus();
  return model.items().Upsert(upserts, stamp);
}

absl::StatusOr<uint64_t> RankerCore::ApplyDelete(
    const ServingModel& model, const std::vector<std::string>& item_ids,
    const store::WriteStamp& stamp) {
  if (item_ids.empty() && stamp.log_sequence == 0) return 0;
  return model.items().Delete(item_ids, stamp);
}

absl::Status RankerCore::UpsertUsers(const std::vector<v1::UserRecord>& records,
                                     v1::UpsertResponse* response) const {
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Model());
  RETURN_IF_ERROR(CheckUsers(*model, records));
  RETURN_IF_ERROR(ApplyUsers(*model, records, store::WriteStamp{}));
  response->set_accepted(records.size());
  return absl::OkStatus();
}

absl::Status RankerCore::UpsertItems(const std::vector<v1::ItemRecord>& records,
                                     v1::UpsertResponse* response) const {
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Model());
  RETURN_IF_ERROR(CheckItems(*model, records));
  RETURN_IF_ERROR(ApplyItems(*model, records, store::WriteStamp{}));
  response->set_accepted(records.size());
  return absl::OkStatus();
}

absl::Status RankerCore::DeleteItems(const v1::DeleteItemsRequest& request,
                                     v1::DeleteItemsResponse* response) const {
  std::vector<std::string> ids(request.item_ids().begin(),
                               request.item_ids().end());
  if (ids.empty()) {
    response->set_deleted(0);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Model());
  ASSIGN_OR_RETURN(const uint64_t deleted,
                   ApplyDelete(*model, ids, store::WriteStamp{}));
  response->set_deleted(deleted);
  return absl::OkStatus();
}

}  // namespace embsum::server
