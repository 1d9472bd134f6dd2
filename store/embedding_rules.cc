#include "store/embedding_rules.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace embsum::store {
namespace {

absl::Status CheckValues(std::span<const float> values, const char* field,
                         size_t want, uint32_t dim, const std::string& shape) {
  if (values.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " has ", values.size(), " values; want ", shape, " = ", want));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!(std::fabs(values[i]) <= kMaxEmbeddingMagnitude)) {  // NaN too
      const float v = values[i];
      const std::string where =
          absl::StrCat("(vector ", i / dim, ", element ", i % dim, ")");
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, "[", i, "] is ", std::isnan(v) ? "NaN" : "Inf", " ", where));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "] is ", v, " ", where,
                       ", beyond the embedding bound ", kMaxEmbeddingMagnitude,
                       " (docs/design.md section 10)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckEmbeddingRecord(const ModelManifest& manifest,
                                  RecordKind kind,
                                  std::span<const float> embedding,
                                  std::span<const float> second) {
  const bool user = kind == RecordKind::kUser;
  const uint32_t codes = user ? manifest.user_codes : manifest.item_codes;
  const bool has_second = user ? manifest.user_queries : manifest.item_keys;
  const char* embedding_field = user ? "upe" : "cpe";
  const char* second_field = user ? "queries" : "keys";
  const char* second_what = user ? "user queries" : "item keys";
  const size_t want = size_t{codes} * manifest.dim;
  const std::string shape = absl::StrCat(user ? "user_codes" : "item_codes",
                                         "*dim = ", codes, "*", manifest.dim);
  if (absl::Status s =
          CheckValues(embedding, embedding_field, want, manifest.dim, shape);
      !s.ok()) {
    return s;
  }
  if (!has_second) {
    if (second.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(second_field, " given (", second.size(),
                     " values) but the model has no ", second_what));
  }
  if (second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(second_field, " missing; the model has ", second_what,
                     " (", shape, " = ", want, " values)"));
  }
  return CheckValues(second, second_field, want, manifest.dim, shape);
}

}  // namespace embsum::store
