// The load drivers.
//
// Closed loop (concurrency N): N requests are always outstanding; each
// completion starts the next. Finds capacity; its latencies are the ones a
// client with N workers would see, not what users of an open system see.
//
// Open loop (rate R): requests are due on a schedule (Poisson or constant
// arrivals at R per second) whatever the server does. Latency is measured
// from each request's *intended* send time, so when the server (or the
// client) stalls, the requests that should have been sent meanwhile carry the
// stall in their latency: the coordinated-omission correction of wrk2.
// `service_latency` keeps the uncorrected time from the actual send, to show
// the difference.
//
// Requests due before the warm-up ends are sent but excluded from every
// number except `warmup_requests`/`warmup_errors`. Requests due before the
// end of the run are always awaited and counted, whatever their status.
#ifndef EMBSUM_LOADGEN_DRIVER_H_
#define EMBSUM_LOADGEN_DRIVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loadgen/histogram.h"
#include "loadgen/target.h"

namespace embsum::loadgen {

enum class Arrival { kPoisson, kConstant };

struct LoadOptions {
  // Exactly one of concurrency (closed loop) and rate (open loop) is set.
  int concurrency = 0;
  double rate = 0;  // requests per second
  Arrival arrival = Arrival::kPoisson;
  absl::Duration duration = absl::Seconds(10);  // measured part
  absl::Duration warmup = absl::Seconds(2);     // before it, not measured
  // Open loop: at most this many requests in flight; a due request waits for
  // a free slot (and the wait counts in its latency). Bounds client memory
  // when the server stops answering.
  int max_in_flight = 10000;
  uint64_t seed = 1;  // arrival times and request order
  // Called about every progress_interval from a driver thread; null = quiet.
  std::function<void(const struct Progress&)> on_progress;
  absl::Duration progress_interval = absl::Seconds(1);
};

// One progress report: the interval since the previous one.
struct Progress {
  double elapsed_seconds = 0;  // since the start of the run (warm-up included)
  bool warmup = false;         // the interval lies in the warm-up
  double qps = 0;              // completions per second in the interval
  uint64_t errors = 0;         // non-OK completions in the interval
  double p50_seconds = 0;
  double p99_seconds = 0;
  int64_t in_flight = 0;
};

struct LoadResult {
  // Completed requests due after the warm-up: latency from intended send
  // (the closed loop sends when it intends to), all status codes included.
  LatencyHistogram latency;
  // The same requests, latency from the actual send (open loop differs).
  LatencyHistogram service_latency;
  std::map<absl::StatusCode, uint64_t> codes;  // measured requests only
  uint64_t requests = 0;                       // measured requests
  uint64_t errors = 0;                         // of which not OK
  uint64_t warmup_requests = 0;
  uint64_t warmup_errors = 0;
  // Open loop: measured requests sent more than 1 ms after they were due
  // (the client or the in-flight limit could not keep up).
  uint64_t late_sends = 0;
  // The measurement window: from the end of the warm-up to the last
  // completion, at least `duration` (longer when the target falls behind).
  double measured_seconds = 0;
  double window_seconds = 0;    // `duration`: when measured requests were due
  uint64_t response_bytes = 0;  // sum over OK measured responses

  double qps() const;        // OK completions per second
  double error_qps() const;  // non-OK completions per second
  // Measured requests per second of the window: what was offered. A target
  // that keeps up has qps() + error_qps() close to it.
  double offered_qps() const;
};

// Runs one load test against `target`, cycling through its requests from a
// random start. Blocks for warmup + duration plus the time the last
// requests take. InvalidArgument on bad options.
absl::StatusOr<LoadResult> RunLoad(Target& target, const LoadOptions& options);

// Open-loop schedules: the intended send offsets, in nanoseconds from the
// start, of the requests. Deterministic by seed. Thread-compatible.
class ArrivalSchedule {
 public:
  ArrivalSchedule(double rate, Arrival arrival, uint64_t seed);
  // The offset of the next request (the first is at 0 for kConstant and one
  // exponential draw for kPoisson).
  int64_t Next();

 private:
  double interval_nanos_;
  Arrival arrival_;
  std::mt19937_64 rng_;
  double offset_nanos_ = 0;
  bool first_ = true;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_DRIVER_H_
