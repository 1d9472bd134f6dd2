// embsum-loadgen: the bundled benchmark client (docs/design.md section 6).
//   embsum-loadgen --target=HOST:PORT --model_dir=DIR --candidates=500
//       (--concurrency=N | --rate=QPS) --duration=SECONDS --json=FILE
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/tool_flags.h"
#include "loadgen/loadgen.h"
#include "tools/client_flags/tls_client_flags.h"

ABSL_FLAG(std::string, target, "", "HOST:PORT of the server");
ABSL_FLAG(std::string, target_kind, "rank",
          "rank: embsum-server's Ranker.Rank; echo: embsum-echo-server with a "
          "same-size payload (the gRPC floor)");
ABSL_FLAG(std::string, model_dir, "",
          "model artifact whose users/ids.txt and items/ids.txt requests "
          "draw from");
ABSL_FLAG(std::string, behaviors, "",
          "MIND behaviors.tsv to replay instead (one request per impression)");
ABSL_FLAG(std::string, candidates, "500",
          "candidates per request: N, uniform:LOW:HIGH or "
          "lognormal:MEDIAN:SIGMA");
ABSL_FLAG(uint32_t, pool_size, 2048, "distinct requests built before the run");
ABSL_FLAG(uint32_t, top_k, 0, "RankRequest.top_k (0 = all)");
ABSL_FLAG(bool, explain, false, "RankRequest.explain");
ABSL_FLAG(uint32_t, echo_response_bytes, 0,
          "echo response size; 0 = the size of the matching Rank response");
ABSL_FLAG(int32_t, concurrency, 0, "closed loop: requests kept in flight");
ABSL_FLAG(double, rate, 0,
          "open loop: requests per second (with --sweep: the first step)");
ABSL_FLAG(std::string, arrival, "poisson",
          "open-loop arrivals: poisson or constant");
ABSL_FLAG(double, duration, 10, "measured seconds (per step with --sweep)");
ABSL_FLAG(double, warmup, 2, "seconds before measuring (per step)");
ABSL_FLAG(int32_t, max_in_flight, 10000,
          "open loop: cap on requests in flight; waits count as latency");
ABSL_FLAG(uint64_t, seed, 1, "seed for requests and arrivals");
ABSL_FLAG(bool, sweep, false,
          "raise the open-loop rate until p99 breaks --slo; report the "
          "highest rate that held");
ABSL_FLAG(double, slo, 0, "p99 latency SLO in seconds, for --sweep");
ABSL_FLAG(double, sweep_factor, 1.5, "rate multiplier between sweep steps");
ABSL_FLAG(int32_t, sweep_max_steps, 20, "geometric sweep steps at most");
ABSL_FLAG(int32_t, sweep_refine, 2,
          "bisection steps between the last rate that held and the first "
          "that broke");
ABSL_FLAG(double, sweep_max_error_ratio, 0.001,
          "a sweep step with a larger fraction of errors breaks");
ABSL_FLAG(int32_t, channels, 4, "gRPC channels (TCP connections)");
ABSL_FLAG(int32_t, threads, 1, "client completion-queue threads");
ABSL_FLAG(double, deadline, 10, "per-request deadline, seconds");
ABSL_FLAG(double, connect_timeout, 10,
          "seconds to wait for the target to accept connections");
ABSL_FLAG(bool, progress, true, "print a progress line each second (stderr)");
ABSL_FLAG(std::string, json, "", "write the JSON report here");
ABSL_FLAG(std::string, csv, "", "write the CSV percentile spectrum here");
ABSL_FLAG(std::string, svg, "", "write an SVG percentile plot here");

int main(int argc, char** argv) {
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage(
      "embsum-loadgen --target=HOST:PORT --model_dir=DIR --candidates=500 "
      "(--concurrency=N | --rate=QPS) --duration=SECONDS --json=FILE");
  absl::ParseCommandLine(argc, argv);
  embsum::loadgen::LoadgenConfig c;
  c.target = absl::GetFlag(FLAGS_target);
  c.target_kind = absl::GetFlag(FLAGS_target_kind);
  c.model_dir = absl::GetFlag(FLAGS_model_dir);
  c.behaviors = absl::GetFlag(FLAGS_behaviors);
  c.candidates = absl::GetFlag(FLAGS_candidates);
  c.pool_size = absl::GetFlag(FLAGS_pool_size);
  c.top_k = absl::GetFlag(FLAGS_top_k);
  c.explain = absl::GetFlag(FLAGS_explain);
  c.echo_response_bytes = absl::GetFlag(FLAGS_echo_response_bytes);
  c.concurrency = absl::GetFlag(FLAGS_concurrency);
  c.rate = absl::GetFlag(FLAGS_rate);
  c.arrival = absl::GetFlag(FLAGS_arrival);
  c.duration_seconds = absl::GetFlag(FLAGS_duration);
  c.warmup_seconds = absl::GetFlag(FLAGS_warmup);
  c.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.sweep = absl::GetFlag(FLAGS_sweep);
  c.slo_seconds = absl::GetFlag(FLAGS_slo);
  c.sweep_factor = absl::GetFlag(FLAGS_sweep_factor);
  c.sweep_max_steps = absl::GetFlag(FLAGS_sweep_max_steps);
  c.sweep_refine = absl::GetFlag(FLAGS_sweep_refine);
  c.sweep_max_error_ratio = absl::GetFlag(FLAGS_sweep_max_error_ratio);
  c.channels = absl::GetFlag(FLAGS_channels);
  c.threads = absl::GetFlag(FLAGS_threads);
  c.deadline_seconds = absl::GetFlag(FLAGS_deadline);
  c.connect_timeout_seconds = absl::GetFlag(FLAGS_connect_timeout);
  c.tls = embsum::tools::TlsClientOptionsFromFlags();
  c.progress = absl::GetFlag(FLAGS_progress);
  c.json_path = absl::GetFlag(FLAGS_json);
  c.csv_path = absl::GetFlag(FLAGS_csv);
  c.svg_path = absl::GetFlag(FLAGS_svg);
  auto report = embsum::loadgen::RunLoadgen(c, std::cout, std::cerr);
  if (!report.ok()) {
    std::cerr << "embsum-loadgen: " << report.status().message() << "\n";
    return report.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
