// Readers of the id lists and the summaries of the model artifact
// (docs/design.md section 3), and the id rule shared with the upsert paths.
// Thread-safe: stateless functions.
#ifndef EMBSUM_STORE_INTERNAL_IDS_H_
#define EMBSUM_STORE_INTERNAL_IDS_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embsum::store {

inline constexpr size_t kMaxIdBytes = 256;

// OK when `id` is 1..256 bytes of valid UTF-8 without control characters;
// otherwise InvalidArgument whose message says what is wrong (no location).
absl::Status ValidateId(absl::string_view id);

// True when `text` is valid UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// Reads one id per line ('\n'; a final newline is optional). Errors name
// the file (`name`), the 1-based line and the problem, including duplicates
// ("line 9: duplicate id \"x\" (first on line 2)").
absl::StatusOr<std::vector<std::string>> ReadIds(const std::string& path,
                                                 absl::string_view name);
// As ReadIds, from memory.
absl::StatusOr<std::vector<std::string>> ParseIds(absl::string_view text,
                                                  absl::string_view name);

inline constexpr size_t kMaxSummaryBytes = 64 * 1024;

struct SummaryLine {
  std::string user_id;
  std::string summary;
};

// Reads summaries.jsonl: one {"user_id": "...", "summary": "..."} object per
// line (blank lines ignored). Errors name the file, the line and the
// problem; a user id listed twice is an error.
absl::StatusOr<std::vector<SummaryLine>> ParseSummaries(absl::string_view text,
                                                        absl::string_view name);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_INTERNAL_IDS_H_
