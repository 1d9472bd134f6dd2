#include "server/services.h"

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/status_util.h"

namespace embsum::server {
namespace {

using Clock = std::chrono::steady_clock;

// Ends an RPC: records its metrics, then finishes the reactor.
template <typename Reactor>
void FinishRpc(Reactor* reactor, RpcMetrics* rpc, Clock::time_point start,
               const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::INTERNAL ||
      status.error_code() == grpc::StatusCode::UNKNOWN ||
      status.error_code() == grpc::StatusCode::DATA_LOSS) {
    LogEvent("error", "rpc_failed",
             {{"code", std::string(GrpcCodeName(status.error_code()))},
              {"message", status.error_message()}});
  }
  rpc->Handled(status.error_code(),
               std::chrono::duration<double>(Clock::now() - start).count());
  reactor->Finish(status);
}

// Non-OK when the call should not (or no longer) be worked on. The deadline
// is compared with the pool's clock (real unless a test injects one).
grpc::Status CheckCallAlive(grpc::CallbackServerContext* context,
                            const WorkerPool& pool, const char* when) {
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        absl::StrCat("call cancelled ", when));
  }
  if (context->deadline() < absl::ToChronoTime(pool.Now())) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        absl::StrCat("deadline exceeded ", when));
  }
  return grpc::Status::OK;
}

// The answer to a call the pool did not take (counted as shed unless the
// server is stopping).
grpc::Status Refused(ServerMetrics* metrics, const WorkerPool& pool,
                     WorkerPool::Admission why) {
  if (why == WorkerPool::Admission::kStopped) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
  }
  metrics
      ->shed(why == WorkerPool::Admission::kWaitTooLong
                 ? ServerMetrics::ShedReason::kPredictedWait
                 : ServerMetrics::ShedReason::kQueueFull)
      .Increment();
  if (why == WorkerPool::Admission::kWaitTooLong) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("server overloaded: the ", pool.queued(),
                                     " requests waiting would take longer than "
                                     "--max_queue_wait; retry with backoff"));
  }
  return grpc::Status(
      grpc::StatusCode::RESOURCE_EXHAUSTED,
      absl::StrCat("server overloaded: admission queue full (", pool.queued(),
                   " requests waiting); retry with backoff"));
}

// Where DispatchUnary may run a call's work.
enum class Placement {
  kPool,          // always on a worker (long calls: Retrieve, writes)
  kHereWhenIdle,  // on this gRPC thread when the pool is idle (Rank)
};

// Runs `work` (returning absl::Status) for a unary call and finishes the
// call from the thread that ran it; sheds when the queue is full.
void DispatchUnary(grpc::CallbackServerContext* context,
                   grpc::ServerUnaryReactor* reactor, WorkerPool* pool,
                   ServerMetrics* metrics, RpcMetrics* rpc,
                   Clock::time_point start, Placement placement,
                   std::function<absl::Status()> work) {
  auto submit = placement == Placement::kHereWhenIdle
                    ? &WorkerPool::RunHereOrSubmit
                    : &WorkerPool::Submit;
  const WorkerPool::Admission admission = (pool->*submit)(
      [context, reactor, pool, rpc, start, work = std::move(work)]() {
        grpc::Status alive = CheckCallAlive(context, *pool, "while queued");
        if (!alive.ok()) {
          FinishRpc(reactor, rpc, start, alive);
          return;
        }
        absl::Status status = work();
        grpc::Status result = ToGrpcStatus(status);
        if (status.ok()) {
          alive = CheckCallAlive(context, *pool, "during scoring");
          if (!alive.ok()) result = alive;
        }
        FinishRpc(reactor, rpc, start, result);
      },
      // Waited past --max_queue_wait: refused without being worked on.
      [reactor, rpc, start, metrics]() {
        metrics->shed(ServerMetrics::ShedReason::kWaited).Increment();
        const double waited =
            std::chrono::duration<double, std::milli>(Clock::now() - start)
                .count();
        FinishRpc(reactor, rpc, start,
                  grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat("server overloaded: waited ",
                                            static_cast<int64_t>(waited),
                                            " ms in the admission queue "
                                            "(--max_queue_wait); retry with "
                                            "backoff")));
      });
  if (admission != WorkerPool::Admission::kQueued &&
      admission != WorkerPool::Admission::kRanInline) {
    FinishRpc(reactor, rpc, start, Refused(metrics, *pool, admission));
  }
}

// Collects a client stream of Record, then applies it in one store call on
// the pool (atomic per RPC).
template <typename Record>
class UpsertReactor final : public grpc::ServerReadReactor<Record> {
 public:
  using Apply = std::function<absl::Status(const std::vector<Record>&,
                                           v1::UpsertResponse*)>;

  UpsertReactor(grpc::CallbackServerContext* context,
                v1::UpsertResponse* response, WorkerPool* pool,
                ServerMetrics* metrics, RpcMetrics* rpc, size_t max_bytes,
                Apply apply)
      : context_(context),
        response_(response),
        pool_(pool),
        metrics_(metrics),
        rpc_(rpc),
        max_bytes_(max_bytes),
        apply_(std::move(apply)),
        start_(Clock::now()) {
    rpc_->Started();
    this->StartRead(&record_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      bytes_ += record_.ByteSizeLong();
      if (bytes_ > max_bytes_) {
        FinishRpc(
            this, rpc_, start_,
            grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                         absl::StrCat("upsert stream exceeds ", max_bytes_,
                                      " bytes at record ", records_.size(),
                                      "; split it into smaller RPCs; "
                                      "nothing was applied")));
        return;
      }
      records_.push_back(std::move(record_));
      record_.Clear();
      this->StartRead(&record_);
      return;
    }
    // End of the client's stream (or a broken call).
    grpc::Status alive = CheckCallAlive(context_, *pool_, "before the write");
    if (!alive.ok()) {
      FinishRpc(this, rpc_, start_, alive);
      return;
    }
    // Writes never expire in the queue: nullptr.
    const WorkerPool::Admission admission = pool_->Submit(
        [this] {
          grpc::Status alive = CheckCallAlive(context_, *pool_, "while queued");
          if (!alive.ok()) {
            FinishRpc(this, rpc_, start_, alive);
            return;
          }
          FinishRpc(this, rpc_, start_,
                    ToGrpcStatus(apply_(records_, response_)));
        },
        nullptr);
    if (admission != WorkerPool::Admission::kQueued) {
      FinishRpc(this, rpc_, start_, Refused(metrics_, *pool_, admission));
    }
  }

  void OnDone() override { delete this; }

 private:
  grpc::CallbackServerContext* context_;
  v1::UpsertResponse* response_;
  WorkerPool* pool_;
  ServerMetrics* metrics_;
  RpcMetrics* rpc_;
  const size_t max_bytes_;
  Apply apply_;
  const Clock::time_point start_;
  Record record_;
  std::vector<Record> records_;
  size_t bytes_ = 0;
};

}  // namespace

RankerService::RankerService(const RankerCore* core, WorkerPool* pool,
                             ServerMetrics* metrics)
    : core_(core), pool_(pool), metrics_(metrics) {
  SetMessageAllocatorFor_Rank(&rank_allocator_);
  SetMessageAllocatorFor_Retrieve(&retrieve_allocator_);
}

grpc::ServerUnaryReactor* RankerService::Rank(
    grpc::CallbackServerContext* context, const v1::RankRequest* request,
    v1::RankResponse* response) {
  const Clock::time_point start = Clock::now();
  RpcMetrics* rpc = &metrics_->rank();
  rpc->Started();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = core_->ValidateRank(*request); !s.ok()) {
    FinishRpc(reactor, rpc, start, ToGrpcStatus(s));
    return reactor;
  }
  DispatchUnary(context, reactor, pool_, metrics_, rpc, start,
                Placement::kHereWhenIdle, [core = core_, request, response] {
                  return core->Rank(*request, response);
                });
  return reactor;
}

grpc::ServerUnaryReactor* RankerService::Retrieve(
    grpc::CallbackServerContext* context, const v1::RetrieveRequest* request,
    v1::RetrieveResponse* response) {
  const Clock::time_point start = Clock::now();
  RpcMetrics* rpc = &metrics_->retrieve();
  rpc->Started();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = core_->ValidateRetrieve(*request); !s.ok()) {
    FinishRpc(reactor, rpc, start, ToGrpcStatus(s));
    return reactor;
  }
  DispatchUnary(context, reactor, pool_, metrics_, rpc, start, Placement::kPool,
                [core = core_, request, response] {
                  return core->Retrieve(*request, response);
                });
  return reactor;
}

grpc::ServerUnaryReactor* RankerService::GetModelInfo(
    grpc::CallbackServerContext* context, const v1::GetModelInfoRequest*,
    v1::ModelInfo* response) {
  // Cheap (manifest and two counters): answered on the gRPC thread.
  const Clock::time_point start = Clock::now();
  RpcMetrics* rpc = &metrics_->get_model_info();
  rpc->Started();
  core_->GetModelInfo(response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishRpc(reactor, rpc, start, grpc::Status::OK);
  return reactor;
}

RankerAdminService::RankerAdminService(const AdminServiceOptions& options,
                                       const RankerCore* core, WorkerPool* pool,
                                       ServerMetrics* metrics)
    : options_(options), core_(core), pool_(pool), metrics_(metrics) {}

grpc::ServerReadReactor<v1::UserRecord>* RankerAdminService::UpsertUsers(
    grpc::CallbackServerContext* context, v1::UpsertResponse* response) {
  return new UpsertReactor<v1::UserRecord>(
      context, response, pool_, metrics_, &metrics_->upsert_users(),
      options_.max_upsert_bytes,
      [core = core_, log = options_.write_log](
          const std::vector<v1::UserRecord>& records, v1::UpsertResponse* out) {
        return log != nullptr ? PublishUsers(*core, *log, records, out)
                              : core->UpsertUsers(records, out);
      });
}

grpc::ServerReadReactor<v1::ItemRecord>* RankerAdminService::UpsertItems(
    grpc::CallbackServerContext* context, v1::UpsertResponse* response) {
  return new UpsertReactor<v1::ItemRecord>(
      context, response, pool_, metrics_, &metrics_->upsert_items(),
      options_.max_upsert_bytes,
      [core = core_, log = options_.write_log](
          const std::vector<v1::ItemRecord>& records, v1::UpsertResponse* out) {
        return log != nullptr ? PublishItems(*core, *log, records, out)
                              : core->UpsertItems(records, out);
      });
}

grpc::ServerUnaryReactor* RankerAdminService::DeleteItems(
    grpc::CallbackServerContext* context, const v1::DeleteItemsRequest* request,
    v1::DeleteItemsResponse* response) {
  const Clock::time_point start = Clock::now();
  RpcMetrics* rpc = &metrics_->delete_items();
  rpc->Started();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  DispatchUnary(context, reactor, pool_, metrics_, rpc, start, Placement::kPool,
                [core = core_, log = options_.write_log, request, response] {
                  return log != nullptr ? PublishDeleteItems(*core, *log,
                                                             *request, response)
                                        : core->DeleteItems(*request, response);
                });
  return reactor;
}

}  // namespace embsum::server
