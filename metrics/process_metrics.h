// process_* metrics of the Prometheus conventions, read from /proc at scrape
// time: process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_start_time_seconds,
// process_open_fds, process_max_fds. Linux only. Thread-safe.
#ifndef EMBSUM_METRICS_PROCESS_METRICS_H_
#define EMBSUM_METRICS_PROCESS_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

namespace embsum::metrics {

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;  // Unix time
  double open_fds = 0;
  double max_fds = 0;
};

// Reads /proc/self/stat, /proc/self/fd and the fd limit. The error names the
// file that could not be read or parsed.
absl::StatusOr<ProcessStats> ReadProcessStats();

// Parses the contents of a /proc/PID/stat line (exposed for tests).
// clock_ticks: sysconf(_SC_CLK_TCK); page_bytes: sysconf(_SC_PAGESIZE);
// boot_time: btime of /proc/stat.
absl::StatusOr<ProcessStats> ParseProcStat(const std::string& stat,
                                           double clock_ticks,
                                           double page_bytes, double boot_time);

// Registers the process_* metrics on `registry`; each is read at scrape time
// (a failed read reports 0 and never fails the scrape).
void RegisterProcessMetrics(Registry* registry);

}  // namespace embsum::metrics

#endif  // EMBSUM_METRICS_PROCESS_METRICS_H_
