// Fuzzes the manifest parser: any JSON it accepts must describe a usable
// model and survive a round trip through ManifestToJson unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "store/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using embsum::store::ManifestToJson;
  using embsum::store::ParseManifest;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto manifest = ParseManifest(json, "manifest.json");
  if (!manifest.ok()) {
    if (manifest.status().message().empty()) std::abort();
    return 0;
  }
  if (manifest->dim == 0 || manifest->user_codes == 0 ||
      manifest->item_codes == 0) {
    std::fprintf(stderr, "accepted a manifest with a zero size\n");
    std::abort();
  }
  auto again = ParseManifest(ManifestToJson(*manifest), "round trip");
  if (!again.ok() || again->model_version != manifest->model_version ||
      again->dim != manifest->dim ||
      again->user_codes != manifest->user_codes ||
      again->item_codes != manifest->item_codes ||
      again->user_queries != manifest->user_queries ||
      again->item_keys != manifest->item_keys ||
      again->log_sequence != manifest->log_sequence) {
    std::fprintf(stderr, "manifest does not survive a round trip\n");
    std::abort();
  }
  return 0;
}
