#include "loadgen/loadgen.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "loadgen/behaviors.h"
#include "loadgen/driver.h"
#include "loadgen/grpc_status.h"
#include "loadgen/report.h"
#include "loadgen/request_source.h"
#include "loadgen/sweep.h"
#include "loadgen/target.h"

namespace embsum::loadgen {
namespace {

absl::Status Validate(const LoadgenConfig& c) {
  if (c.target.empty()) {
    return absl::InvalidArgumentError("--target=HOST:PORT is required");
  }
  if (c.target_kind != "rank" && c.target_kind != "echo") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--target_kind='", c.target_kind, "': expected rank or echo"));
  }
  if (c.model_dir.empty() == c.behaviors.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one request source: --model_dir=DIR or --behaviors=FILE");
  }
  if (c.arrival != "poisson" && c.arrival != "constant") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--arrival='", c.arrival, "': expected poisson or constant"));
  }
  if (c.sweep) {
    if (c.concurrency > 0) {
      return absl::InvalidArgumentError(
          "--sweep is open loop: give a starting --rate, not --concurrency");
    }
  } else if ((c.concurrency > 0) == (c.rate > 0) || c.concurrency < 0 ||
             c.rate < 0) {
    return absl::InvalidArgumentError(
        "give exactly one of --concurrency=N (closed loop) and --rate=QPS "
        "(open loop), positive");
  }
  // Up to 30 days of seconds, a million requests per second.
  constexpr double kMaxSeconds = 30 * 86400.0;
  auto positive = [](double v, double max) { return v > 0 && v <= max; };
  if (!positive(c.duration_seconds, kMaxSeconds)) {
    return absl::InvalidArgumentError(
        "--duration must be positive seconds, at most 30 days");
  }
  if (!(c.warmup_seconds >= 0 && c.warmup_seconds <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--warmup must be >= 0 seconds");
  }
  if (!positive(c.deadline_seconds, kMaxSeconds) ||
      !positive(c.connect_timeout_seconds, kMaxSeconds)) {
    return absl::InvalidArgumentError(
        "--deadline and --connect_timeout must be positive seconds");
  }
  if (c.rate > 1e6 || std::isnan(c.rate)) {
    return absl::InvalidArgumentError(
        "--rate must be at most 1e6 requests per second");
  }
  return absl::OkStatus();
}

absl::Duration FromSeconds(double s) {
  return absl::Nanoseconds(std::llround(s * 1e9));
}

// Ranker.GetModelInfo over a channel of its own.
absl::StatusOr<v1::ModelInfo> FetchModelInfo(const LoadgenConfig& config) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   MakeChannelCredentials(config.tls));
  grpc::ChannelArguments args;
  ApplyTlsChannelArgs(config.tls, args);
  auto stub = v1::Ranker::NewStub(
      grpc::CreateCustomChannel(config.target, credentials, args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(
                           config.connect_timeout_seconds * 1000)));
  context.set_wait_for_ready(true);
  v1::ModelInfo info;
  const grpc::Status s =
      stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  if (!s.ok()) {
    return FromGrpcStatus(s);
  }
  return info;
}

}  // namespace

absl::StatusOr<nlohmann::json> RunLoadgen(const LoadgenConfig& config,
                                          std::ostream& out,
                                          std::ostream& err) {
  RETURN_IF_ERROR(Validate(config));

  RequestPoolOptions pool_options;
  pool_options.kind =
      config.target_kind == "echo" ? TargetKind::kEcho : TargetKind::kRank;
  pool_options.pool_size = config.pool_size;
  pool_options.seed = config.seed;
  pool_options.top_k = config.top_k;
  pool_options.explain = config.explain;
  pool_options.echo_response_bytes = config.echo_response_bytes;
  RequestPool pool;
  std::string candidates_spec;
  if (!config.model_dir.empty()) {
    ASSIGN_OR_RETURN(CandidateCount count,
                     CandidateCount::Parse(config.candidates));
    ASSIGN_OR_RETURN(
        pool, BuildPoolFromModelDir(config.model_dir, count, pool_options));
    candidates_spec = count.ToString();
  } else {
    ASSIGN_OR_RETURN(std::vector<Impression> impressions,
                     ReadBehaviors(config.behaviors, {}));
    ASSIGN_OR_RETURN(pool, BuildPoolFromImpressions(impressions, pool_options));
    candidates_spec = "behaviors";
  }

  GrpcTargetOptions target_options;
  target_options.address = config.target;
  target_options.channels = config.channels;
  target_options.threads = config.threads;
  target_options.deadline = FromSeconds(config.deadline_seconds);
  target_options.connect_timeout = FromSeconds(config.connect_timeout_seconds);
  target_options.tls = config.tls;
  ASSIGN_OR_RETURN(std::unique_ptr<Target> target,
                   MakeGrpcTarget(target_options, pool));

  LoadOptions load;
  load.concurrency = config.concurrency;
  load.rate = config.rate;
  load.arrival =
      config.arrival == "constant" ? Arrival::kConstant : Arrival::kPoisson;
  load.duration = FromSeconds(config.duration_seconds);
  load.warmup = FromSeconds(config.warmup_seconds);
  load.max_in_flight = config.max_in_flight;
  load.seed = config.seed;
  if (config.progress) {
    load.on_progress = [&err](const Progress& p) {
      err << absl::StrFormat(
                 "[%6.1fs]%s qps %9.1f  p50 %8.3f ms  p99 %8.3f ms  errors "
                 "%d  in flight %d",
                 p.elapsed_seconds, p.warmup ? " warm-up" : "", p.qps,
                 p.p50_seconds * 1e3, p.p99_seconds * 1e3, p.errors,
                 p.in_flight)
          << std::endl;
    };
  }

  RunInfo info;
  info.target = config.target;
  info.target_kind = config.target_kind;
  info.concurrency = config.concurrency;
  info.rate = config.rate;
  info.arrival = config.arrival;
  info.duration_seconds = config.duration_seconds;
  info.warmup_seconds = config.warmup_seconds;
  info.candidates = candidates_spec;
  info.mean_candidates = pool.mean_candidates;
  info.mean_request_bytes = pool.mean_request_bytes;
  info.channels = config.channels;
  info.threads = config.threads;
  if (pool_options.kind == TargetKind::kRank) {
    if (auto model = FetchModelInfo(config); model.ok()) {
      info.server_model_version = model->model_version();
      info.server_backend = model->backend();
      info.server_dim = model->dim();
      info.server_user_codes = model->user_codes();
      info.server_item_codes = model->item_codes();
      info.server_users = model->users();
      info.server_items = model->items();
    } else {
      err << "embsum-loadgen: GetModelInfo failed (" << model.status()
          << "); the report will not name the model" << std::endl;
    }
  }

  nlohmann::json report;
  LoadResult shown;
  if (config.sweep) {
    SweepOptions sweep_options;
    sweep_options.slo_seconds = config.slo_seconds;
    sweep_options.start_rate = config.rate;
    sweep_options.factor = config.sweep_factor;
    sweep_options.max_steps = config.sweep_max_steps;
    sweep_options.refine_steps = config.sweep_refine;
    sweep_options.max_error_ratio = config.sweep_max_error_ratio;
    ASSIGN_OR_RETURN(
        SweepResult sweep,
        RunSweep(*target, load, sweep_options, [&err](const SweepStep& s) {
          err << absl::StrFormat(
                     "sweep step: rate %.1f/s -> %.1f OK/s, p99 %.3f ms, %d "
                     "errors: %s",
                     s.rate, s.result.qps(),
                     s.result.latency.SecondsAtQuantile(0.99) * 1e3,
                     s.result.errors, s.held ? "held" : "broke")
              << std::endl;
        }));
    const SweepStep& step = sweep.steps[sweep.best >= 0 ? sweep.best : 0];
    info.rate = step.rate;
    shown = step.result;
    out << ReportText(info, shown) << SweepText(sweep, sweep_options);
    report = ReportJson(info, shown, &sweep, &sweep_options);
  } else {
    ASSIGN_OR_RETURN(shown, RunLoad(*target, load));
    out << ReportText(info, shown);
    report = ReportJson(info, shown);
  }
  out.flush();

  if (!config.json_path.empty()) {
    RETURN_IF_ERROR(WriteFile(config.json_path, report.dump(2) + "\n"));
  }
  if (!config.csv_path.empty()) {
    RETURN_IF_ERROR(WriteFile(config.csv_path, SpectrumCsv(shown.latency)));
  }
  if (!config.svg_path.empty()) {
    const std::string mode =
        info.concurrency > 0 ? absl::StrCat("concurrency ", info.concurrency)
                             : absl::StrFormat("%.0f/s", info.rate);
    std::vector<PlotSeries> series = {
        {absl::StrCat(info.target_kind, " ", mode), &shown.latency}};
    if (info.concurrency == 0) {
      series.push_back({"from actual send", &shown.service_latency});
    }
    RETURN_IF_ERROR(WriteFile(
        config.svg_path,
        SpectrumSvg(series, absl::StrCat("embsum-loadgen: ", info.target_kind,
                                         " at ", info.target, ", ",
                                         info.candidates, " candidates"))));
  }
  return report;
}

}  // namespace embsum::loadgen
