// Report writers for embsum-loadgen: a text summary, the JSON of docs/design.md
// section 6, a CSV percentile spectrum and an SVG percentile plot.
// Thread-safety: stateless functions.
#ifndef EMBSUM_LOADGEN_REPORT_H_
#define EMBSUM_LOADGEN_REPORT_H_

#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "loadgen/driver.h"
#include "loadgen/histogram.h"
#include "loadgen/sweep.h"
#include "nlohmann/json.hpp"

namespace embsum::loadgen {

// What was run, for the reports.
struct RunInfo {
  std::string target;       // HOST:PORT
  std::string target_kind;  // "rank" or "echo"
  int concurrency = 0;      // closed loop when > 0
  double rate = 0;          // open loop when > 0
  std::string arrival;      // "poisson" or "constant" (open loop)
  double duration_seconds = 0;
  double warmup_seconds = 0;
  std::string candidates;  // the --candidates spec, or "behaviors"
  double mean_candidates = 0;
  double mean_request_bytes = 0;
  int channels = 0;
  int threads = 0;
  // From Ranker.GetModelInfo before the run (rank targets); empty when the
  // call failed, so reports say what was measured: model, shapes, backend.
  std::string server_model_version;
  std::string server_backend;
  uint32_t server_dim = 0;
  uint32_t server_user_codes = 0;
  uint32_t server_item_codes = 0;
  uint64_t server_users = 0;
  uint64_t server_items = 0;
};

// "OK", "RESOURCE_EXHAUSTED", ...; "CODE_<n>" for codes outside gRPC's set.
std::string StatusCodeName(absl::StatusCode code);

// The JSON report: at least qps, errors, codes and latency_seconds
// {p50, p90, p99, p999, max}; `sweep` adds the steps and the answer (the
// top-level numbers are then those of the best step, or of the first when
// none held).
nlohmann::json ReportJson(const RunInfo& info, const LoadResult& result,
                          const SweepResult* sweep = nullptr,
                          const SweepOptions* sweep_options = nullptr);

// A human-readable summary, several lines, ending in a newline.
std::string ReportText(const RunInfo& info, const LoadResult& result);
std::string SweepText(const SweepResult& sweep, const SweepOptions& options);

// One row of a percentile spectrum.
struct SpectrumPoint {
  double percentile = 0;  // 0..100
  double latency_seconds = 0;
  uint64_t total_count = 0;  // samples at or below latency_seconds
};

// HdrHistogram-style spectrum: percentiles 1 - 2^(-i / ticks_per_half) for
// i = 0, 1, ... as long as they are resolvable with count() samples, then
// 100 (the max). Empty for an empty histogram.
std::vector<SpectrumPoint> PercentileSpectrum(const LatencyHistogram& h,
                                              int ticks_per_half = 5);

// CSV with header "percentile,latency_seconds,total_count,inverse_tail"
// (inverse_tail = 1/(1 - percentile/100), empty on the 100th percentile).
std::string SpectrumCsv(const LatencyHistogram& h);

// An SVG line plot of latency (ms) against percentile on a log-tail axis
// (0%, 90%, 99%, 99.9%, ...), one line per series, with a legend.
struct PlotSeries {
  std::string name;
  const LatencyHistogram* histogram = nullptr;
};
std::string SpectrumSvg(std::span<const PlotSeries> series,
                        absl::string_view title);

// Writes `contents` to `path` (replacing it); errors name the path.
absl::Status WriteFile(const std::string& path, absl::string_view contents);

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_REPORT_H_
