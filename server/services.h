// gRPC callback services: Ranker (on --listen) and RankerAdmin (on
// --admin_listen). Handlers never block a gRPC thread on a busy server or
// on store writes: they validate cheaply, hand the work to a bounded
// WorkerPool and Finish from the worker. A Rank that finds the pool idle
// (nothing queued, nothing running) runs on the gRPC thread that received
// it and finishes there, skipping two thread hand-offs
// (WorkerPool::RunHereOrSubmit); Retrieve, whose full scans are long, and
// the admin calls always go to the pool. A full queue is answered
// RESOURCE_EXHAUSTED at once (counted in embsum_shed_total). Deadlines and
// cancellation are checked when a worker picks the call up and again after the
// work.
//
// Thread-safety: gRPC calls the handlers concurrently; they are safe.
#ifndef EMBSUM_SERVER_SERVICES_H_
#define EMBSUM_SERVER_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>

#include "embsum/v1/ranking.grpc.pb.h"
#include "server/arena_allocator.h"
#include "server/ranker_core.h"
#include "server/server_metrics.h"
#include "server/worker_pool.h"
#include "server/write_log.h"

namespace embsum::server {

class RankerService final : public v1::Ranker::CallbackService {
 public:
  // All arguments must outlive the service. Rank and Retrieve messages live
  // on a per-call protobuf Arena (ArenaMessageAllocator).
  RankerService(const RankerCore* core, WorkerPool* pool,
                ServerMetrics* metrics);

  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const v1::RankRequest* request,
                                 v1::RankResponse* response) override;
  grpc::ServerUnaryReactor* Retrieve(grpc::CallbackServerContext* context,
                                     const v1::RetrieveRequest* request,
                                     v1::RetrieveResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  const RankerCore* core_;
  WorkerPool* pool_;
  ServerMetrics* metrics_;
  ArenaMessageAllocator<v1::RankRequest, v1::RankResponse> rank_allocator_;
  ArenaMessageAllocator<v1::RetrieveRequest, v1::RetrieveResponse>
      retrieve_allocator_;
};

struct AdminServiceOptions {
  // Largest total size of the records of one upsert stream: the stream is
  // collected in memory before the (atomic) write.
  size_t max_upsert_bytes = size_t{256} << 20;
  // With a write log (server/write_log.h), calls are validated, published
  // and answered after the log's ack; the stores are written by the
  // applier (server/log_applier.h). Null: applied here, as without one.
  WriteLog* write_log = nullptr;
};

class RankerAdminService final : public v1::RankerAdmin::CallbackService {
 public:
  RankerAdminService(const AdminServiceOptions& options, const RankerCore* core,
                     WorkerPool* pool, ServerMetrics* metrics);

  grpc::ServerReadReactor<v1::UserRecord>* UpsertUsers(
      grpc::CallbackServerContext* context,
      v1::UpsertResponse* response) override;
  grpc::ServerReadReactor<v1::ItemRecord>* UpsertItems(
      grpc::CallbackServerContext* context,
      v1::UpsertResponse* response) override;
  grpc::ServerUnaryReactor* DeleteItems(
      grpc::CallbackServerContext* context,
      const v1::DeleteItemsRequest* request,
      v1::DeleteItemsResponse* response) override;

 private:
  AdminServiceOptions options_;
  const RankerCore* core_;
  WorkerPool* pool_;
  ServerMetrics* metrics_;
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_SERVICES_H_
