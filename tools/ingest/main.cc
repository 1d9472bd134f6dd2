// embsum-ingest: a docs/design.md section 3 model artifact -> a data directory
// (users in RocksDB, items as FAISS snapshots). See docs/store.md.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "common/openblas_core.h"
#include "common/tool_flags.h"
#include "scoring/dtype.h"
#include "store/data_dir.h"

ABSL_FLAG(std::string, model_dir, "",
          "Model artifact directory (docs/design.md §3).");
ABSL_FLAG(std::string, data_dir, "", "Data directory to create.");
ABSL_FLAG(bool, force, false, "Replace an existing data directory.");
ABSL_FLAG(uint32_t, shards, 1,
          "User shard count: keep only the users whose crc32(user_id) mod "
          "--shards is --shard (every item is kept). 1 = every user.");
ABSL_FLAG(uint32_t, shard, 0, "The user shard to keep, in [0, --shards).");
ABSL_FLAG(std::string, user_dtype, "",
          "Storage type of the users: fp32, fp16 or bf16 (16-bit halves the "
          "user read per request; upserts are rounded to it). Empty: the "
          "artifact's type.");
ABSL_FLAG(bool, check, false,
          "Only check --model_dir as an ingest would (every file, id and "
          "value), writing nothing; --data_dir is not needed. Exit 0 when "
          "the artifact is valid, 1 with the file, row and problem when not.");
ABSL_FLAG(double, progress_interval_s, 1.0,
          "Seconds between progress lines on stderr (0 = every row).");

int main(int argc, char** argv) {
  // First, before any thread: FAISS's BLAS on this CPU's widest kernels.
  embsum::MaybeReexecForOpenBlas(argv);
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage(
      "Builds a data directory from a model artifact:\n"
      "  embsum-ingest --model_dir=MODEL --data_dir=DATA [--force]\n"
      "    [--user_dtype=fp32|fp16|bf16] [--shards=N --shard=I]\n"
      "  embsum-ingest --check --model_dir=MODEL   (validate, write nothing)");
  absl::ParseCommandLine(argc, argv);
  embsum::store::IngestOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.force = absl::GetFlag(FLAGS_force);
  options.shard.shards = absl::GetFlag(FLAGS_shards);
  options.shard.shard = absl::GetFlag(FLAGS_shard);
  if (const std::string dtype = absl::GetFlag(FLAGS_user_dtype);
      !dtype.empty()) {
    options.user_dtype = embsum::scoring::ParseDType(dtype);
    if (!options.user_dtype ||
        *options.user_dtype == embsum::scoring::DType::kInt8) {
      std::fprintf(
          stderr, "embsum-ingest: --user_dtype='%s': want fp32, fp16 or bf16\n",
          dtype.c_str());
      return 1;
    }
  }
  options.progress_interval_s = absl::GetFlag(FLAGS_progress_interval_s);
  options.progress = [](const std::string& line) {
    std::fprintf(stderr, "embsum-ingest: %s\n", line.c_str());
    std::fflush(stderr);
  };
  auto start = std::chrono::steady_clock::now();
  if (absl::GetFlag(FLAGS_check)) {
    absl::Status s = embsum::store::CheckArtifact(options);
    if (!s.ok()) {
      std::fprintf(stderr, "embsum-ingest: %s\n",
                   std::string(s.message()).c_str());
      return 1;
    }
    std::fprintf(stderr, "embsum-ingest: %s: ok (checked, nothing written)\n",
                 options.model_dir.c_str());
    return 0;
  }
  absl::Status s = embsum::store::Ingest(options);
  if (!s.ok()) {
    std::fprintf(stderr, "embsum-ingest: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::fprintf(stderr, "embsum-ingest: wrote %s in %.1fs\n",
               options.data_dir.c_str(), seconds);
  return 0;
}
