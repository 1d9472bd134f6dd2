// embsum-datagen: a synthetic docs/design.md section 3 model artifact with
// planted topic structure plus MIND-format behaviors.tsv. See docs/store.md.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/tool_flags.h"
#include "datagen/synthetic_model.h"

namespace {
const embsum::datagen::SyntheticModelOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, out, "", "Output model directory.");
ABSL_FLAG(uint64_t, users, kDefaults.users, "Users U.");
ABSL_FLAG(uint64_t, items, kDefaults.items, "Items N.");
ABSL_FLAG(uint32_t, dim, kDefaults.dim, "Embedding size d.");
ABSL_FLAG(uint32_t, user_codes, kDefaults.user_codes, "UPE rows per user m.");
ABSL_FLAG(uint32_t, item_codes, kDefaults.item_codes, "CPE rows per item n.");
ABSL_FLAG(uint64_t, seed, kDefaults.seed,
          "Random seed (same seed, same files).");
ABSL_FLAG(uint32_t, topics, kDefaults.topics, "Planted topics T.");
ABSL_FLAG(bool, user_queries, kDefaults.user_queries,
          "Write users/queries.npy (else Q = A).");
ABSL_FLAG(bool, item_keys, kDefaults.item_keys,
          "Write items/keys.npy = gelu(B W) (else G = B).");
ABSL_FLAG(std::string, dtype, "fp32",
          "Element type of the .npy files: fp32 or fp16.");
ABSL_FLAG(uint64_t, impressions, kDefaults.impressions,
          "Lines of behaviors.tsv.");
ABSL_FLAG(uint32_t, impression_size, kDefaults.impression_size,
          "Candidates per impression.");
ABSL_FLAG(std::string, model_version, kDefaults.model_version,
          "model_version in manifest.json.");

int main(int argc, char** argv) {
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage(
      "Writes a synthetic model artifact:\n"
      "  embsum-datagen --out=DIR --users=U --items=N --dim=d --user_codes=m "
      "--item_codes=n --seed=S");
  absl::ParseCommandLine(argc, argv);
  embsum::datagen::SyntheticModelOptions o;
  o.out_dir = absl::GetFlag(FLAGS_out);
  o.users = absl::GetFlag(FLAGS_users);
  o.items = absl::GetFlag(FLAGS_items);
  o.dim = absl::GetFlag(FLAGS_dim);
  o.user_codes = absl::GetFlag(FLAGS_user_codes);
  o.item_codes = absl::GetFlag(FLAGS_item_codes);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.topics = absl::GetFlag(FLAGS_topics);
  o.user_queries = absl::GetFlag(FLAGS_user_queries);
  o.item_keys = absl::GetFlag(FLAGS_item_keys);
  o.impressions = absl::GetFlag(FLAGS_impressions);
  o.impression_size = absl::GetFlag(FLAGS_impression_size);
  o.model_version = absl::GetFlag(FLAGS_model_version);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype != "fp32" && dtype != "fp16") {
    std::fprintf(stderr, "embsum-datagen: --dtype must be fp32 or fp16\n");
    return 1;
  }
  o.float16 = dtype == "fp16";
  absl::Status s = embsum::datagen::GenerateSyntheticModel(o);
  if (!s.ok()) {
    std::fprintf(stderr, "embsum-datagen: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "embsum-datagen: wrote %llu users, %llu items, %llu "
               "impressions to %s\n",
               static_cast<unsigned long long>(o.users),
               static_cast<unsigned long long>(o.items),
               static_cast<unsigned long long>(o.impressions),
               o.out_dir.c_str());
  return 0;
}
