// The service's metrics (docs/design.md section 7 names), registered once at
// start-up; request paths only touch lock-free counters and histograms.
// Thread-safe.
#ifndef EMBSUM_SERVER_SERVER_METRICS_H_
#define EMBSUM_SERVER_SERVER_METRICS_H_

#include <grpcpp/support/status.h>

#include <array>
#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/rank_timings.h"

namespace embsum::server {

// Metrics of one RPC method. Thread-safe, lock-free after the first RPC that
// ends with a given code.
class RpcMetrics {
 public:
  RpcMetrics(metrics::Family<metrics::Counter>* handled,
             metrics::Counter* started, metrics::Histogram* seconds,
             std::string service, std::string method);

  void Started() { started_->Increment(); }
  // One finished RPC: its code and its handling time in seconds.
  void Handled(grpc::StatusCode code, double seconds);

 private:
  metrics::Family<metrics::Counter>* handled_family_;
  metrics::Counter* started_;
  metrics::Histogram* seconds_;
  std::string service_;
  std::string method_;
  // grpc_server_handled_total children by code, created on first use.
  std::array<std::atomic<metrics::Counter*>, 17> handled_{};
};

class ServerMetrics {
 public:
  // Registers every family on `registry` (which must outlive this);
  // `backend` labels embsum_scoring_seconds.
  ServerMetrics(metrics::Registry* registry, const std::string& backend);

  // Per-method metrics; service is the full name ("embsum.v1.Ranker").
  RpcMetrics& rank() { return rank_; }
  RpcMetrics& retrieve() { return retrieve_; }
  RpcMetrics& get_model_info() { return get_model_info_; }
  RpcMetrics& upsert_users() { return upsert_users_; }
  RpcMetrics& upsert_items() { return upsert_items_; }
  RpcMetrics& delete_items() { return delete_items_; }

  // embsum_rank_candidates: candidate_ids per Rank request.
  metrics::Histogram& rank_candidates() { return *rank_candidates_; }
  // embsum_retrieve_scored_items: items scored exactly per Retrieve.
  metrics::Histogram& retrieve_scored_items() {
    return *retrieve_scored_items_;
  }
  // embsum_retrieve_shadow_recall: recall@k of a served default Retrieve
  // against an exact scan of the same snapshot, for the calls sampled by
  // --retrieve_shadow_rate (scanned off the request path).
  metrics::Histogram& retrieve_shadow_recall() {
    return *retrieve_shadow_recall_;
  }
  // embsum_retrieve_shadow_skipped_total: sampled calls not checked (the
  // shadow queue or every scan slot was busy).
  metrics::Counter& retrieve_shadow_skipped() {
    return *retrieve_shadow_skipped_;
  }
  // embsum_retrieve_widened_total: default Retrieves whose top k came
  // mostly from the far end of the candidate lists and were widened.
  metrics::Counter& retrieve_widened() { return *retrieve_widened_; }
  // embsum_scoring_seconds{backend}: time inside the scorer per request.
  metrics::Histogram& scoring_seconds() { return *scoring_seconds_; }
  // embsum_rank_phase_seconds{phase}: one observation per phase of a
  // successful Rank (phase = user, lookup, score, top_k, response).
  void ObserveRankPhases(const RankTimings& timings);
  // embsum_queue_wait_seconds{pool}: time from admission to a worker
  // starting the call (pool = "rank" or "admin").
  metrics::Histogram& queue_wait_seconds(const std::string& pool);
  // embsum_threads{pool} = threads: the size of each thread pool of the
  // process (rank workers, scorer, admin, blas). Call at start-up.
  void SetThreads(const std::string& pool, int threads);
  // embsum_blas_info{core} = 1: the BLAS core in use.
  void SetBlasInfo(const std::string& core);
  metrics::Counter& unknown_items() { return *unknown_items_; }
  // Why a call was refused with RESOURCE_EXHAUSTED (embsum_shed_total's
  // reason label).
  enum class ShedReason {
    kQueueFull,      // "queue_full": --queue_size calls already waiting
    kPredictedWait,  // "predicted_wait": those waiting would outlast
                     // --max_queue_wait
    kWaited,         // "waited": it waited past --max_queue_wait
  };
  metrics::Counter& shed(ShedReason reason) {
    return *shed_[static_cast<int>(reason)];
  }

  // embsum_users, embsum_items (read at scrape time, so they follow
  // upserts and reloads) and embsum_model_info{model_version} = 1. Call
  // once; `users` and `items` must stay callable while the registry is
  // scraped.
  void SetModel(const std::string& model_version, std::function<double()> users,
                std::function<double()> items);
  // A reload: embsum_model_info's series moves to the new model_version
  // (the old one leaves the exposition).
  void SetModelVersion(const std::string& model_version);
  // embsum_scorer_info{kernel,dtype} = 1: the scoring kernel for the item
  // arena's storage dtype (the CPU scorer's dispatch pick, or "cuda"), and
  // embsum_scorer_kernel_gflops{kernel,dtype}: its rate measured when the
  // scorer was made (NaN when not measured). Call once.
  void SetScorerInfo(const std::string& kernel, const std::string& dtype,
                     double measured_gflops);
  // The same from a KernelInfo, callable again (a reload re-measures): the
  // previous kernel's series leave the exposition. Also
  // embsum_scorer_family_seconds{kernel,dtype}: each family's time (first
  // quartile of its calls) on the served sample at the last dispatch
  // measurement (none when it was not measured), and
  // embsum_scorer_dispatch_seconds{dtype}: how long that measurement took.
  void SetScorerKernel(const std::string& dtype,
                       const scoring::KernelInfo& info);

 private:
  // Uses handled_, started_ and handling_seconds_ (initialised first).
  RpcMetrics MakeRpc(const std::string& service, const std::string& method);

  metrics::Registry* registry_;
  metrics::Family<metrics::Counter>* handled_;
  metrics::Family<metrics::Counter>* started_;
  metrics::Family<metrics::Histogram>* handling_seconds_;
  RpcMetrics rank_;
  RpcMetrics retrieve_;
  RpcMetrics get_model_info_;
  RpcMetrics upsert_users_;
  RpcMetrics upsert_items_;
  RpcMetrics delete_items_;
  metrics::Histogram* rank_candidates_;
  metrics::Histogram* retrieve_scored_items_;
  metrics::Histogram* retrieve_shadow_recall_;
  metrics::Counter* retrieve_shadow_skipped_;
  metrics::Counter* retrieve_widened_;
  metrics::Histogram* scoring_seconds_;
  metrics::Histogram* phase_user_;
  metrics::Histogram* phase_lookup_;
  metrics::Histogram* phase_score_;
  metrics::Histogram* phase_top_k_;
  metrics::Histogram* phase_response_;
  metrics::Family<metrics::Histogram>* queue_wait_;
  metrics::Family<metrics::Gauge>* threads_;
  metrics::Family<metrics::Gauge>* blas_info_;
  metrics::Counter* unknown_items_;
  metrics::Counter* shed_[3];
  metrics::Family<metrics::Gauge>* model_info_ = nullptr;
  absl::Mutex model_mu_;
  std::string model_version_ ABSL_GUARDED_BY(model_mu_);
  absl::Mutex scorer_mu_;
  metrics::Family<metrics::Gauge>* scorer_info_ ABSL_GUARDED_BY(scorer_mu_) =
      nullptr;
  metrics::Family<metrics::Gauge>* scorer_gflops_ ABSL_GUARDED_BY(scorer_mu_) =
      nullptr;
  metrics::Family<metrics::Gauge>* family_seconds_ ABSL_GUARDED_BY(scorer_mu_) =
      nullptr;
  metrics::Family<metrics::Gauge>* dispatch_seconds_
      ABSL_GUARDED_BY(scorer_mu_) = nullptr;
  // Label sets currently exported by the four families above.
  std::vector<std::vector<std::string>> scorer_series_
      ABSL_GUARDED_BY(scorer_mu_);
  std::vector<std::vector<std::string>> family_series_
      ABSL_GUARDED_BY(scorer_mu_);
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_SERVER_METRICS_H_
