// The one rule for embedding records, users and items alike, checked by
// the store (UserStore::Upsert, ItemCatalog::Upsert) and by the server's
// admin RPCs before they reach it:
//
//   - the embedding (user: upe, item: cpe) has codes*dim values (user:
//     m*d, item: n*d), all finite and of magnitude at most
//     kMaxEmbeddingMagnitude (docs/design.md section 10);
//   - the second matrix (user: queries, item: keys) is present exactly when
//     the manifest says the model has it (user_queries, item_keys), and
//     then has codes*dim such values too.
//
// A model artifact follows the same rule (docs/design.md section 3: queries.npy
// and keys.npy are present iff the manifest says so).
// Thread-safe: stateless.
#ifndef EMBSUM_STORE_EMBEDDING_RULES_H_
#define EMBSUM_STORE_EMBEDDING_RULES_H_

#include <span>

#include "absl/status/status.h"
#include "store/manifest.h"

namespace embsum::store {

enum class RecordKind { kUser, kItem };

// The bound on |value| of every embedding value (docs/design.md section
// 10). With d <= 65536 and m, n <= 4096 (store/manifest.cc), every inner
// product K_ij and logit L_ij is at most d * 1e12 ~ 6.6e16 in magnitude and
// any sum of m*n of them at most 2^24 * 6.6e16 ~ 1.1e24, far below FLT_MAX
// (3.4e38): with the max subtracted before exp (section 2), every weight,
// every score and every top_user_code is finite. Trained embeddings are
// many orders of magnitude smaller.
inline constexpr float kMaxEmbeddingMagnitude = 1e6f;

// InvalidArgument naming the field and the problem, without the record's
// name (the caller prefixes it): "keys missing; the model has item keys
// (item_codes*dim = 2*16 = 32 values)", "upe has 3 values; want
// user_codes*dim = 2*16 = 32", "keys[17] is NaN (vector 1, element 1)",
// "upe[3] is 3e+38 (vector 0, element 3), beyond the embedding bound 1e+06
// (docs/design.md section 10)".
absl::Status CheckEmbeddingRecord(const ModelManifest& manifest,
                                  RecordKind kind,
                                  std::span<const float> embedding,
                                  std::span<const float> second);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_EMBEDDING_RULES_H_
