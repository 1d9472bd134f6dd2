// embsum-ingest: a DESIGN.md section 3 model artifact -> a data directory
// (users in RocksDB, items as FAISS snapshots). See docs/store.md.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "common/openblas_core.h"
#include "store/data_dir.h"

ABSL_FLAG(std::string, model_dir, "",
          "Model artifact directory (DESIGN.md §3).");
ABSL_FLAG(std::string, data_dir, "", "Data directory to create.");
ABSL_FLAG(bool, force, false, "Replace an existing data directory.");
ABSL_FLAG(double, progress_interval_s, 1.0,
          "Seconds between progress lines on stderr (0 = every row).");

int main(int argc, char** argv) {
  // First, before any thread: FAISS's BLAS on this CPU's widest kernels.
  embsum::MaybeReexecForOpenBlas(argv);
  absl::SetProgramUsageMessage(
      "Builds a data directory from a model artifact:\n"
      "  embsum-ingest --model_dir=MODEL --data_dir=DATA [--force]");
  absl::ParseCommandLine(argc, argv);
  embsum::store::IngestOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.force = absl::GetFlag(FLAGS_force);
  options.progress_interval_s = absl::GetFlag(FLAGS_progress_interval_s);
  options.progress = [](const std::string& line) {
    std::fprintf(stderr, "embsum-ingest: %s\n", line.c_str());
    std::fflush(stderr);
  };
  auto start = std::chrono::steady_clock::now();
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
