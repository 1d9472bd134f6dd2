// embsum-loadgen as a library call: builds the request pool, connects, runs
// one closed-loop, open-loop or sweep test, prints progress and the text
// report, and writes the JSON/CSV/SVG files. tools/loadgen/main.cc maps the
// flags of docs/design.md section 6 onto LoadgenConfig.
#ifndef EMBSUM_LOADGEN_LOADGEN_H_
#define EMBSUM_LOADGEN_LOADGEN_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "loadgen/tls.h"
#include "nlohmann/json.hpp"

namespace embsum::loadgen {

struct LoadgenConfig {
  std::string target;                // HOST:PORT
  std::string target_kind = "rank";  // "rank" or "echo"
  // Request source: model_dir (users/ids.txt, items/ids.txt) with
  // `candidates`, or MIND behaviors (one request per impression).
  std::string model_dir;
  std::string behaviors;
  std::string candidates = "500";
  uint32_t pool_size = 2048;
  uint32_t top_k = 0;
  bool explain = false;
  uint32_t echo_response_bytes = 0;  // 0: the size of the Rank response

  int concurrency = 0;              // closed loop
  double rate = 0;                  // open loop (or the sweep's start)
  std::string arrival = "poisson";  // or "constant"
  double duration_seconds = 10;
  double warmup_seconds = 2;
  int max_in_flight = 10000;
  uint64_t seed = 1;

  bool sweep = false;
  double slo_seconds = 0;
  double sweep_factor = 1.5;
  int sweep_max_steps = 20;
  int sweep_refine = 2;
  double sweep_max_error_ratio = 0.001;

  int channels = 4;
  int threads = 1;
  double deadline_seconds = 10;
  double connect_timeout_seconds = 10;
  TlsClientOptions tls;

  bool progress = true;  // a line on `err` each second
  std::string json_path;
  std::string csv_path;
  std::string svg_path;
};

// Runs the test. Prints progress to `err` and the text report to `out`;
// returns the JSON report (also written to json_path when set). Errors:
// InvalidArgument for bad configuration, NotFound/InvalidArgument for bad
// inputs (naming the file), Unavailable when the target does not connect.
// RPC errors during the run are results, not errors.
absl::StatusOr<nlohmann::json> RunLoadgen(const LoadgenConfig& config,
                                          std::ostream& out, std::ostream& err);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_LOADGEN_H_
