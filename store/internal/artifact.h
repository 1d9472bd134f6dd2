// The model artifact of docs/design.md section 3, opened and checked: manifest,
// ids, memory-mapped .npy arrays with shapes and counts cross-checked, and
// summaries. Values (NaN/Inf, and the bound of docs/design.md section 10)
// are checked row by row by the consumer with
// CheckFiniteRow, so a large artifact is read once.
// Thread-safe: immutable once open.
#ifndef EMBSUM_STORE_INTERNAL_ARTIFACT_H_
#define EMBSUM_STORE_INTERNAL_ARTIFACT_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/internal/ids.h"
#include "store/internal/npy.h"
#include "store/manifest.h"
#include "store/shard.h"

namespace embsum::store {

struct ModelArtifact {
  ModelManifest manifest;
  std::vector<std::string> user_ids;
  std::unique_ptr<NpyArray> upe;      // [U, m, d]
  std::unique_ptr<NpyArray> queries;  // [U, m, d] or null
  std::vector<SummaryLine> summaries;
  std::vector<std::string> item_ids;
  std::unique_ptr<NpyArray> cpe;   // [N, n, d]
  std::unique_ptr<NpyArray> keys;  // [N, n, d] or null
  // The users a data directory built from this artifact keeps: those of
  // this shard (store/shard.h); the default keeps all. Items are all kept.
  ShardSpec user_shard;

  // Opens and checks everything but the values. Errors name the file
  // relative to the model directory, the row or line, and the problem.
  static absl::StatusOr<ModelArtifact> Open(const std::string& model_dir);
};

// OK when every value is finite and within kMaxEmbeddingMagnitude
// (store/embedding_rules.h); otherwise InvalidArgument
// "<file>: row R (<kind> \"<id>\"): NaN at vector V, element E" (or "Inf
// at ...", or "3e+38 at vector V, element E exceeds the embedding bound
// 1e+06 (docs/design.md section 10)").
// `values` holds `vectors` vectors of `dim` elements.
absl::Status CheckFiniteRow(std::span<const float> values, uint32_t dim,
                            absl::string_view file, uint64_t row,
                            absl::string_view kind, absl::string_view id);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_INTERNAL_ARTIFACT_H_
