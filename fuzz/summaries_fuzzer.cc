// Fuzzes the summaries.jsonl reader: every line it accepts has a valid,
// unique user id and a summary within the size limit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "store/internal/ids.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using embsum::store::kMaxSummaryBytes;
  using embsum::store::ParseSummaries;
  using embsum::store::ValidateId;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto lines = ParseSummaries(text, "users/summaries.jsonl");
  if (!lines.ok()) {
    if (lines.status().message().empty()) std::abort();
    return 0;
  }
  std::set<std::string> seen;
  for (const auto& line : *lines) {
    if (!ValidateId(line.user_id).ok() || !seen.insert(line.user_id).second ||
        line.summary.size() > kMaxSummaryBytes) {
      std::fprintf(stderr, "accepted an invalid summary line\n");
      std::abort();
    }
  }
  return 0;
}
