// The model manifest of docs/design.md section 3 (MODEL_DIR/manifest.json),
// also kept in the data directory. Thread-safe: a value type.
#ifndef EMBSUM_STORE_MANIFEST_H_
#define EMBSUM_STORE_MANIFEST_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace embsum::store {

struct ModelManifest {
  int format_version = 1;
  std::string model_version;
  uint32_t dim = 0;         // d
  uint32_t user_codes = 0;  // m
  uint32_t item_codes = 0;  // n
  bool user_queries = false;
  bool item_keys = false;
  // Optional "log_sequence": the write log sequence (server/write_log.h)
  // whose writes the artifact already includes; a server that loads it
  // applies the log from the sequence after it. 0 (absent): none.
  uint64_t log_sequence = 0;
};

// Parses and validates manifest JSON; `source` names the file in errors.
absl::StatusOr<ModelManifest> ParseManifest(std::string_view json,
                                            std::string_view source);
std::string ManifestToJson(const ModelManifest& manifest);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_MANIFEST_H_
