// The gRPC side of embsum-server: two grpc::Server instances (Ranker on
// --listen, RankerAdmin on --admin_listen: write RPCs never share a port with
// Ranker), each with grpc.health.v1.Health and server reflection, optional
// TLS / mutual TLS, the worker pools and the metrics of docs/design.md
// section 7.
//
// Thread-safety: Shutdown may be called from any thread, once; the accessors
// are safe at any time.
#ifndef EMBSUM_SERVER_SERVER_H_
#define EMBSUM_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/ranker_core.h"
#include "server/server_metrics.h"
#include "server/services.h"
#include "server/serving_model.h"
#include "server/worker_pool.h"

namespace embsum::server {

struct TlsOptions {
  // PEM files. cert and key both empty: plaintext. client_ca set: mutual
  // TLS, clients must present a certificate signed by it.
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

struct ServerOptions {
  // HOST:PORT; port 0 picks a free port (see Server::port()).
  std::string listen = "0.0.0.0:50051";
  std::string admin_listen = "127.0.0.1:50052";
  TlsOptions tls;
  // Rank/Retrieve worker threads (0 = hardware concurrency). The thread
  // model (docs/server.md "Threads"): one worker per core, and the CPU
  // scorer's pool of the same size lends the idle cores to a request that
  // runs alone.
  int workers = 0;
  // The scorer's threads, callers included (0: it has none of its own, as
  // the CUDA scorer): reported in embsum_threads{pool="scorer"} only.
  int scorer_threads = 0;
  // Ranker calls waiting for a worker beyond those running; when full, new
  // calls get RESOURCE_EXHAUSTED. Bounds queueing delay to about
  // queue_size / throughput.
  size_t queue_size = 128;
  // Ranker calls that waited (or would wait) longer than this in the queue
  // are refused with RESOURCE_EXHAUSTED (WorkerPoolOptions::max_queue_wait;
  // zero: only queue_size bounds the wait).
  absl::Duration max_queue_wait = absl::Milliseconds(200);
  // Admin writes are serialised by the stores: one thread, small queue.
  size_t admin_queue_size = 16;
  // Largest request message (bytes); larger ones get RESOURCE_EXHAUSTED
  // from gRPC before any work.
  int max_receive_bytes = 16 << 20;
  AdminServiceOptions admin;
  RankerCoreOptions core;
  // Clock of the Ranker pool: queue waits (max_queue_wait) and the deadline
  // checks of queued calls. Null: the real clock. For tests.
  std::function<absl::Time()> clock = nullptr;
  // Health at start: SERVING, or NOT_SERVING until SetServing(true) (a
  // server that must catch up with the write log first).
  bool start_serving = true;
};

class Server {
 public:
  // Starts serving `model` (shared: the caller may keep a reference).
  // Scorer and registry are borrowed and must outlive the server. Errors:
  // InvalidArgument (unreadable TLS files, bad options, no model),
  // Unavailable (cannot bind).
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options, std::shared_ptr<const ServingModel> model,
      const scoring::Scorer* scorer, metrics::Registry* registry);
  // Shutdown(0) if still running.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  int admin_port() const { return admin_port_; }
  int workers() const { return workers_; }
  // Ranker calls admitted and waiting for a worker.
  size_t queued_calls() const { return pool_->queued(); }

  // The model requests are answered from now.
  std::shared_ptr<const ServingModel> model() const {
    return models_->Current();
  }
  // Hot reload: requests that start from now on are answered from `next`;
  // those in flight finish on the model they started with. Returns the
  // replaced model: it closes when the caller and the last request holding
  // it let go. `next` must have the same scorer attached (AttachScorer).
  std::shared_ptr<const ServingModel> SwapModel(
      std::shared_ptr<const ServingModel> next);

  // The request logic (the write log's applier uses it).
  const RankerCore* core() const { return core_.get(); }

  // Health of every service on both ports (grpc.health.v1).
  void SetServing(bool serving);

  // Graceful stop: health NOT_SERVING, new calls refused, calls in flight
  // (queued or running) complete; after `grace` the remaining ones are
  // cancelled. Returns when everything has finished. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  Server() = default;

  std::unique_ptr<ServerMetrics> metrics_;
  // Shared with the metrics callbacks, which the registry keeps.
  std::shared_ptr<ModelSlot> models_;
  std::unique_ptr<RankerCore> core_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<WorkerPool> admin_pool_;
  std::unique_ptr<RankerService> ranker_service_;
  std::unique_ptr<RankerAdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> admin_server_;
  int port_ = 0;
  int admin_port_ = 0;
  int workers_ = 0;
  bool shut_down_ = false;
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_SERVER_H_
