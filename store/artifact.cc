#include "store/internal/artifact.h"

#include <cmath>
#include <filesystem>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/embedding_rules.h"
#include "store/internal/file_util.h"

namespace embsum::store {
namespace {

namespace fs = std::filesystem;

absl::Status Prefixed(const absl::Status& s, absl::string_view name) {
  return absl::Status(s.code(), absl::StrCat(name, ": ", s.message()));
}

// Opens `rel` under `dir` when present; null when absent.
absl::StatusOr<std::unique_ptr<NpyArray>> OpenOptional(const fs::path& dir,
                                                       const std::string& rel,
                                                       bool wanted,
                                                       absl::string_view flag) {
  fs::path path = dir / rel;
  std::error_code ec;
  bool exists = fs::exists(path, ec);
  if (wanted && !exists) {
    return absl::InvalidArgumentError(absl::StrCat(
        rel, ": missing, but manifest.json says ", flag, " is true"));
  }
  if (!wanted && exists) {
    return absl::InvalidArgumentError(
        absl::StrCat(rel, ": present, but manifest.json says ", flag,
                     " is false (remove the file or set the flag)"));
  }
  if (!wanted) return std::unique_ptr<NpyArray>();
  return NpyArray::Open(path.string(), rel);
}

absl::Status CheckRows(const NpyArray& array, absl::string_view ids_name,
                       size_t ids) {
  if (array.rows() != ids) {
    return absl::InvalidArgumentError(
        absl::StrCat(array.name(), ": ", array.rows(), " rows, but ", ids_name,
                     " has ", ids, " ids"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFiniteRow(std::span<const float> values, uint32_t dim,
                            absl::string_view file, uint64_t row,
                            absl::string_view kind, absl::string_view id) {
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    if (std::fabs(v) <= kMaxEmbeddingMagnitude) continue;  // false for NaN
    const std::string at =
        absl::StrCat(file, ": row ", row, " (", kind, " \"", id, "\"): ");
    const std::string where =
        absl::StrCat(" at vector ", i / dim, ", element ", i % dim);
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, std::isnan(v) ? "NaN" : "Inf", where));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(at, v, where, " exceeds the embedding bound ",
                     kMaxEmbeddingMagnitude, " (docs/design.md section 10)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelArtifact> ModelArtifact::Open(
    const std::string& model_dir) {
  fs::path dir(model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(model_dir, ": not a directory"));
  }
  ModelArtifact a;
  auto manifest_text = internal::ReadFileToString((dir / "manifest.json"));
  if (!manifest_text.ok())
    return Prefixed(manifest_text.status(), "manifest.json");
  ASSIGN_OR_RETURN(a.manifest, ParseManifest(*manifest_text, "manifest.json"));
  const ModelManifest& m = a.manifest;

  ASSIGN_OR_RETURN(a.user_ids,
                   ReadIds((dir / "users/ids.txt").string(), "users/ids.txt"));
  ASSIGN_OR_RETURN(
      a.upe, NpyArray::Open((dir / "users/upe.npy").string(), "users/upe.npy"));
  const uint64_t users = a.user_ids.size();
  const uint64_t user_shape[] = {users, m.user_codes, m.dim};
  RETURN_IF_ERROR(CheckRows(*a.upe, "users/ids.txt", users));
  RETURN_IF_ERROR(a.upe->CheckShape(user_shape));
  ASSIGN_OR_RETURN(a.queries, OpenOptional(dir, "users/queries.npy",
                                           m.user_queries, "user_queries"));
  if (a.queries) {
    RETURN_IF_ERROR(CheckRows(*a.queries, "users/ids.txt", users));
    RETURN_IF_ERROR(a.queries->CheckShape(user_shape));
  }
  fs::path summaries = dir / "users/summaries.jsonl";
  if (fs::exists(summaries, ec)) {
    auto text = internal::ReadFileToString(summaries.string());
    if (!text.ok()) return Prefixed(text.status(), "users/summaries.jsonl");
    ASSIGN_OR_RETURN(a.summaries,
                     ParseSummaries(*text, "users/summaries.jsonl"));
    absl::flat_hash_set<absl::string_view> known(a.user_ids.begin(),
                                                 a.user_ids.end());
    for (size_t i = 0; i < a.summaries.size(); ++i) {
      if (!known.contains(a.summaries[i].user_id)) {
        return absl::InvalidArgumentError(
            absl::StrCat("users/summaries.jsonl: entry ", i + 1, ": user \"",
                         a.summaries[i].user_id, "\" is not in users/ids.txt"));
      }
    }
  }

  ASSIGN_OR_RETURN(a.item_ids,
                   ReadIds((dir / "items/ids.txt").string(), "items/ids.txt"));
  ASSIGN_OR_RETURN(
      a.cpe, NpyArray::Open((dir / "items/cpe.npy").string(), "items/cpe.npy"));
  const uint64_t items = a.item_ids.size();
  const uint64_t item_shape[] = {items, m.item_codes, m.dim};
  RETURN_IF_ERROR(CheckRows(*a.cpe, "items/ids.txt", items));
  RETURN_IF_ERROR(a.cpe->CheckShape(item_shape));
  ASSIGN_OR_RETURN(
      a.keys, OpenOptional(dir, "items/keys.npy", m.item_keys, "item_keys"));
  if (a.keys) {
    RETURN_IF_ERROR(CheckRows(*a.keys, "items/ids.txt", items));
    RETURN_IF_ERROR(a.keys->CheckShape(item_shape));
  }
  return a;
}

}  // namespace embsum::store
