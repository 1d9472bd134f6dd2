// embsum::datagen, the synthetic model behind embsum-datagen, the tests
// and embsum-server --demo: writes a docs/design.md section 3 artifact with
// planted topic structure plus MIND-format behaviors.tsv, so ranking
// quality is measurable. Deterministic by seed. Thread-safe: stateless.
#ifndef EMBSUM_DATAGEN_SYNTHETIC_MODEL_H_
#define EMBSUM_DATAGEN_SYNTHETIC_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace embsum::datagen {

struct SyntheticModelOptions {
  std::string out_dir;
  uint64_t users = 1000;
  uint64_t items = 5000;
  uint32_t dim = 64;
  uint32_t user_codes = 8;
  uint32_t item_codes = 4;
  uint64_t seed = 1;
  uint32_t topics = 32;
  bool user_queries = true;
  bool item_keys = true;
  bool float16 = false;           // write '<f2' instead of '<f4'
  uint64_t impressions = 2000;    // behaviors.tsv lines
  uint32_t impression_size = 20;  // candidates per impression
  std::string model_version = "synthetic-1";
};

absl::Status GenerateSyntheticModel(const SyntheticModelOptions& options);

}  // namespace embsum::datagen

#endif  // EMBSUM_DATAGEN_SYNTHETIC_MODEL_H_
