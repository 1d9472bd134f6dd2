#include "server/server_metrics.h"

#include <utility>
#include <vector>

#include "server/status_util.h"

namespace embsum::server {
namespace {

using metrics::Counter;
using metrics::Family;
using metrics::Histogram;

constexpr char kRanker[] = "embsum.v1.Ranker";
constexpr char kAdmin[] = "embsum.v1.RankerAdmin";

Family<Counter>* AddHandled(metrics::Registry* r) {
  return &r->AddCounter(
      "grpc_server_handled_total",
      "Total number of RPCs completed on the server, regardless of success "
      "or failure.",
      {"grpc_service", "grpc_method", "grpc_code"});
}

Family<Counter>* AddStarted(metrics::Registry* r) {
  return &r->AddCounter("grpc_server_started_total",
                        "Total number of RPCs started on the server.",
                        {"grpc_service", "grpc_method"});
}

Family<Histogram>* AddHandlingSeconds(metrics::Registry* r) {
  return &r->AddHistogram(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been "
      "application-level handled by the server.",
      {"grpc_service", "grpc_method"}, metrics::DecadeBuckets(1e-5, 10));
}

}  // namespace

RpcMetrics::RpcMetrics(Family<Counter>* handled, Counter* started,
                       Histogram* seconds, std::string service,
                       std::string method)
    : handled_family_(handled),
      started_(started),
      seconds_(seconds),
      service_(std::move(service)),
      method_(std::move(method)) {
  // OK is pre-created so that dashboards see a zero series from the start.
  handled_[0] = &handled_family_->WithLabels({service_, method_, "OK"});
}

void RpcMetrics::Handled(grpc::StatusCode code, double seconds) {
  seconds_->Observe(seconds);
  size_t index = static_cast<size_t>(code);
  if (index >= handled_.size()) index = grpc::StatusCode::UNKNOWN;
  Counter* counter = handled_[index].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // First RPC with this code: WithLabels is idempotent, so a race between
    // two threads stores the same pointer twice.
    counter = &handled_family_->WithLabels(
        {service_, method_,
         std::string(GrpcCodeName(static_cast<grpc::StatusCode>(index)))});
    handled_[index].store(counter, std::memory_order_release);
  }
  counter->Increment();
}

ServerMetrics::ServerMetrics(metrics::Registry* registry,
                             const std::string& backend)
    : registry_(registry),
      handled_(AddHandled(registry)),
      started_(AddStarted(registry)),
      handling_seconds_(AddHandlingSeconds(registry)),
      rank_(MakeRpc(kRanker, "Rank")),
      retrieve_(MakeRpc(kRanker, "Retrieve")),
      get_model_info_(MakeRpc(kRanker, "GetModelInfo")),
      upsert_users_(MakeRpc(kAdmin, "UpsertUsers")),
      upsert_items_(MakeRpc(kAdmin, "UpsertItems")),
      delete_items_(MakeRpc(kAdmin, "DeleteItems")) {
  rank_candidates_ = &registry
                          ->AddHistogram("embsum_rank_candidates",
                                         "Candidate ids per Rank request.", {},
                                         {1, 10, 50, 100, 200, 500, 1000, 2000,
                                          5000, 10000, 20000, 50000, 100000})
                          .WithLabels({});
  retrieve_scored_items_ =
      &registry
           ->AddHistogram("embsum_retrieve_scored_items",
                          "Items scored exactly per Retrieve request.", {},
                          {10, 100, 1000, 2000, 5000, 10000, 20000, 50000,
                           100000, 200000, 500000, 1000000, 10000000})
           .WithLabels({});
  retrieve_shadow_recall_ =
      &registry
           ->AddHistogram(
               "embsum_retrieve_shadow_recall",
               "recall@k of sampled default Retrieve answers against an "
               "exact scan (--retrieve_shadow_rate).",
               {}, {0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1})
           .WithLabels({});
  retrieve_shadow_skipped_ =
      &registry
           ->AddCounter("embsum_retrieve_shadow_skipped_total",
                        "Retrieve calls sampled for a shadow scan but not "
                        "checked: the shadow queue or the scan slots were "
                        "busy.")
           .WithLabels({});
  retrieve_widened_ =
      &registry
           ->AddCounter("embsum_retrieve_widened_total",
                        "Default Retrieve calls widened and rescored because "
                        "their top k came mostly from the far end of the "
                        "candidate lists.")
           .WithLabels({});
  scoring_seconds_ =
      &registry
           ->AddHistogram("embsum_scoring_seconds",
                          "Time spent in the scorer per request (seconds).",
                          {"backend"}, metrics::DecadeBuckets(1e-6, 10))
           .WithLabels({backend});
  auto& phases = registry->AddHistogram(
      "embsum_rank_phase_seconds",
      "Time per phase of a successful Rank inside the server (seconds): "
      "user fetch and decode, candidate lookup, scoring, top-k, response.",
      {"phase"}, metrics::DecadeBuckets(1e-6, 10));
  phase_user_ = &phases.WithLabels({"user"});
  phase_lookup_ = &phases.WithLabels({"lookup"});
  phase_score_ = &phases.WithLabels({"score"});
  phase_top_k_ = &phases.WithLabels({"top_k"});
  phase_response_ = &phases.WithLabels({"response"});
  queue_wait_ = &registry->AddHistogram(
      "embsum_queue_wait_seconds",
      "Time from admission to a worker starting the call (seconds).", {"pool"},
      metrics::DecadeBuckets(1e-6, 10));
  threads_ = &registry->AddGauge("embsum_threads",
                                 "Threads of each thread pool of the process.",
                                 {"pool"});
  blas_info_ = &registry->AddGauge(
      "embsum_blas_info", "The BLAS core in use; the value is always 1.",
      {"core"});
  unknown_items_ =
      &registry
           ->AddCounter("embsum_unknown_items_total",
                        "Candidate ids of Rank requests that are not in the "
                        "catalogue.")
           .WithLabels({});
  auto& shed = registry->AddCounter(
      "embsum_shed_total",
      "Calls refused with RESOURCE_EXHAUSTED without being worked on, by "
      "reason: queue_full (--queue_size calls already waiting), "
      "predicted_wait (the calls waiting would outlast --max_queue_wait), "
      "waited (it waited past --max_queue_wait).",
      {"reason"});
  shed_[static_cast<int>(ShedReason::kQueueFull)] =
      &shed.WithLabels({"queue_full"});
  shed_[static_cast<int>(ShedReason::kPredictedWait)] =
      &shed.WithLabels({"predicted_wait"});
  shed_[static_cast<int>(ShedReason::kWaited)] = &shed.WithLabels({"waited"});
}

void ServerMetrics::ObserveRankPhases(const RankTimings& timings) {
  phase_user_->Observe(timings.user);
  phase_lookup_->Observe(timings.lookup);
  phase_score_->Observe(timings.score);
  phase_top_k_->Observe(timings.top_k);
  phase_response_->Observe(timings.response);
}

metrics::Histogram& ServerMetrics::queue_wait_seconds(const std::string& pool) {
  return queue_wait_->WithLabels({pool});
}

void ServerMetrics::SetThreads(const std::string& pool, int threads) {
  threads_->WithLabels({pool}).Set(threads);
}

void ServerMetrics::SetBlasInfo(const std::string& core) {
  blas_info_->WithLabels({core}).Set(1);
}

RpcMetrics ServerMetrics::MakeRpc(const std::string& service,
                                  const std::string& method) {
  return RpcMetrics(handled_, &started_->WithLabels({service, method}),
                    &handling_seconds_->WithLabels({service, method}), service,
                    method);
}

void ServerMetrics::SetModel(const std::string& model_version,
                             std::function<double()> users,
                             std::function<double()> items) {
  registry_->AddCallback("embsum_users", "Users in the user store.",
                         metrics::MetricType::kGauge, std::move(users));
  registry_->AddCallback("embsum_items", "Live items in the catalogue.",
                         metrics::MetricType::kGauge, std::move(items));
  model_info_ = &registry_->AddGauge("embsum_model_info",
                                     "The served model; the value is always 1.",
                                     {"model_version"});
  SetModelVersion(model_version);
}

void ServerMetrics::SetModelVersion(const std::string& model_version) {
  absl::MutexLock lock(&model_mu_);
  if (model_info_ == nullptr) return;
  if (model_version_ != model_version) model_info_->Remove({model_version_});
  model_info_->WithLabels({model_version}).Set(1);
  model_version_ = model_version;
}

void ServerMetrics::SetScorerInfo(const std::string& kernel,
                                  const std::string& dtype,
                                  double measured_gflops) {
  scoring::KernelInfo info;
  info.kernel = kernel;
  info.measured_gflops = measured_gflops;
  SetScorerKernel(dtype, info);
}

void ServerMetrics::SetScorerKernel(const std::string& dtype,
                                    const scoring::KernelInfo& info) {
  absl::MutexLock lock(&scorer_mu_);
  if (scorer_info_ == nullptr) {
    scorer_info_ = &registry_->AddGauge(
        "embsum_scorer_info",
        "The scoring kernel in use; the value is always 1.",
        {"kernel", "dtype"});
    scorer_gflops_ = &registry_->AddGauge(
        "embsum_scorer_kernel_gflops",
        "The scoring kernel's rate on its dispatch sample (GFLOP/s; NaN: not "
        "measured).",
        {"kernel", "dtype"});
    family_seconds_ = &registry_->AddGauge(
        "embsum_scorer_family_seconds",
        "Seconds of one call of each CPU kernel family on the served shape "
        "and arena at the last dispatch measurement (start-up or reload; "
        "first quartile of the calls, the ranking statistic); the fastest "
        "is used unless one is forced (--isa).",
        {"kernel", "dtype"});
    dispatch_seconds_ = &registry_->AddGauge(
        "embsum_scorer_dispatch_seconds",
        "Wall time of the last dispatch measurement of the kernel families.",
        {"dtype"});
  }
  for (const auto& labels : scorer_series_) {
    scorer_info_->Remove(labels);
    scorer_gflops_->Remove(labels);
  }
  for (const auto& labels : family_series_) family_seconds_->Remove(labels);
  scorer_series_ = {{info.kernel, dtype}};
  scorer_info_->WithLabels({info.kernel, dtype}).Set(1);
  scorer_gflops_->WithLabels({info.kernel, dtype}).Set(info.measured_gflops);
  family_series_.clear();
  for (const scoring::KernelFamilyTime& f : info.families) {
    family_series_.push_back({f.kernel, dtype});
    family_seconds_->WithLabels({f.kernel, dtype}).Set(f.seconds_q25);
  }
  if (!info.families.empty()) {
    dispatch_seconds_->WithLabels({dtype}).Set(info.dispatch_seconds);
  }
}

}  // namespace embsum::server
