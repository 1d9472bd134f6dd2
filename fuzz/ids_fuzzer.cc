// Fuzzes the ids.txt reader: every id it accepts must pass the id rule,
// and the ids must be unique.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "store/internal/ids.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using embsum::store::ParseIds;
  using embsum::store::ValidateId;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = ParseIds(text, "users/ids.txt");
  if (!ids.ok()) {
    if (ids.status().message().empty()) std::abort();
    return 0;
  }
  std::set<std::string> seen;
  for (const std::string& id : *ids) {
    if (!ValidateId(id).ok() || !seen.insert(id).second) {
      std::fprintf(stderr, "accepted an invalid or duplicate id\n");
      std::abort();
    }
  }
  return 0;
}
