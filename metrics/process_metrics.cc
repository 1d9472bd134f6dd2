#include "metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace embsum::metrics {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<double> ReadBootTime() {
  absl::StatusOr<std::string> stat = ReadFile("/proc/stat");
  if (!stat.ok()) return stat.status();
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::StartsWith(line, "btime ")) {
      return std::strtod(std::string(line.substr(6)).c_str(), nullptr);
    }
  }
  return absl::DataLossError("/proc/stat: no btime line");
}

double CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the descriptor of the directory being listed
}

}  // namespace

absl::StatusOr<ProcessStats> ParseProcStat(const std::string& stat,
                                           double clock_ticks,
                                           double page_bytes,
                                           double boot_time) {
  // Field 2 (comm) is in parentheses and may contain spaces: split after the
  // last ')'. Fields from 3 on are then space separated.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::DataLossError("/proc/self/stat: no ')' after the command");
  }
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); field k is fields[k - 3].
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3, kStart = 22 - 3,
                   kVsize = 23 - 3, kRss = 24 - 3;
  if (fields.size() <= kRss) {
    return absl::DataLossError(absl::StrCat("/proc/self/stat: ", fields.size(),
                                            " fields after the command; want "
                                            "at least ",
                                            kRss + 1));
  }
  auto num = [&](size_t i) { return std::strtod(fields[i].c_str(), nullptr); };
  ProcessStats s;
  s.cpu_seconds = (num(kUtime) + num(kStime)) / clock_ticks;
  s.start_time_seconds = boot_time + num(kStart) / clock_ticks;
  s.virtual_bytes = num(kVsize);
  s.resident_bytes = num(kRss) * page_bytes;
  return s;
}

absl::StatusOr<ProcessStats> ReadProcessStats() {
  absl::StatusOr<std::string> stat = ReadFile("/proc/self/stat");
  if (!stat.ok()) return stat.status();
  absl::StatusOr<double> boot = ReadBootTime();
  if (!boot.ok()) return boot.status();
  absl::StatusOr<ProcessStats> s =
      ParseProcStat(*stat, static_cast<double>(sysconf(_SC_CLK_TCK)),
                    static_cast<double>(sysconf(_SC_PAGESIZE)), *boot);
  if (!s.ok()) return s;
  s->open_fds = CountOpenFds();
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    s->max_fds = static_cast<double>(limit.rlim_cur);
  }
  return s;
}

void RegisterProcessMetrics(Registry* registry) {
  auto field = [](double ProcessStats::*member) {
    return [member]() {
      absl::StatusOr<ProcessStats> s = ReadProcessStats();
      return s.ok() ? (*s).*member : 0.0;
    };
  };
  registry->AddCallback("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.",
                        MetricType::kCounter,
                        field(&ProcessStats::cpu_seconds));
  registry->AddCallback("process_resident_memory_bytes",
                        "Resident memory size in bytes.", MetricType::kGauge,
                        field(&ProcessStats::resident_bytes));
  registry->AddCallback("process_virtual_memory_bytes",
                        "Virtual memory size in bytes.", MetricType::kGauge,
                        field(&ProcessStats::virtual_bytes));
  registry->AddCallback(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      MetricType::kGauge, field(&ProcessStats::start_time_seconds));
  registry->AddCallback("process_open_fds", "Number of open file descriptors.",
                        MetricType::kGauge, field(&ProcessStats::open_fds));
  registry->AddCallback("process_max_fds",
                        "Maximum number of open file descriptors.",
                        MetricType::kGauge, field(&ProcessStats::max_fds));
}

}  // namespace embsum::metrics
