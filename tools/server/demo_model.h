// embsum-server --demo: a synthetic model (embsum::datagen) ingested into a
// data directory. Lives in the executable so that the server library does
// not link the generator. Thread-compatible: call from one thread.
#ifndef EMBSUM_TOOLS_SERVER_DEMO_MODEL_H_
#define EMBSUM_TOOLS_SERVER_DEMO_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace embsum::server {

// The demo model's shape (--demo_* flags).
struct DemoShape {
  uint64_t users = 1000;
  uint64_t items = 5000;
  uint32_t dim = 64;
  uint32_t user_codes = 8;
  uint32_t item_codes = 4;
  uint64_t seed = 1;
};

// Writes the artifact to `root`/model, ingests it into `root`/data and sets
// `data_dir` to the latter. Logs event=demo_generate first.
absl::Status BuildDemoModel(const DemoShape& shape, const std::string& root,
                            std::string* data_dir);

}  // namespace embsum::server

#endif  // EMBSUM_TOOLS_SERVER_DEMO_MODEL_H_
