// The gRPC Target: a generic stub over several channels, completion queues
// drained by client-owned threads.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "loadgen/grpc_status.h"
#include "loadgen/target.h"

namespace embsum::loadgen {
namespace {

// One call in flight: owned by itself from Start() until its completion.
struct Call {
  grpc::ClientContext context;
  grpc::ByteBuffer response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> reader;
  Completion done;
};

class GrpcTarget final : public Target {
 public:
  GrpcTarget(const GrpcTargetOptions& options, const RequestPool& pool)
      : options_(options), pool_(pool) {}

  ~GrpcTarget() override {
    for (auto& cq : queues_) cq->Shutdown();
    for (auto& t : threads_) t.join();
  }

  absl::Status Init() {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeChannelCredentials(options_.tls);
    if (!credentials.ok()) return credentials.status();
    payloads_.reserve(pool_.payloads.size());
    for (const std::string& p : pool_.payloads) {
      grpc::Slice slice(p);
      payloads_.emplace_back(&slice, 1);
    }
    const auto connect_deadline =
        std::chrono::system_clock::now() +
        absl::ToChronoMilliseconds(options_.connect_timeout);
    for (int i = 0; i < options_.channels; ++i) {
      grpc::ChannelArguments args;
      // Distinct arguments and a local subchannel pool give every channel
      // its own TCP connection.
      args.SetInt("embsum.loadgen.channel_index", i);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetMaxReceiveMessageSize(-1);
      args.SetMaxSendMessageSize(-1);
      ApplyTlsChannelArgs(options_.tls, args);
      auto channel =
          grpc::CreateCustomChannel(options_.address, *credentials, args);
      if (!channel->WaitForConnected(connect_deadline)) {
        return absl::UnavailableError(
            absl::StrCat("cannot connect to ", options_.address, " within ",
                         absl::FormatDuration(options_.connect_timeout)));
      }
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
    for (int i = 0; i < options_.threads; ++i) {
      queues_.push_back(std::make_unique<grpc::CompletionQueue>());
    }
    for (int i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([cq = queues_[i].get()] { Drain(cq); });
    }
    return absl::OkStatus();
  }

  size_t request_count() const override { return payloads_.size(); }

  void Start(size_t request_index, Completion done) override {
    const uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
    auto* call = new Call;
    call->done = std::move(done);
    call->context.set_deadline(std::chrono::system_clock::now() +
                               absl::ToChronoNanoseconds(options_.deadline));
    if (request_index < pool_.user_ids.size() &&
        !pool_.user_ids[request_index].empty()) {
      call->context.AddMetadata("x-user-id", pool_.user_ids[request_index]);
    }
    call->reader = stubs_[n % stubs_.size()]->PrepareUnaryCall(
        &call->context, pool_.method, payloads_[request_index],
        queues_[n % queues_.size()].get());
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
  }

 private:
  static void Drain(grpc::CompletionQueue* cq) {
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
      std::unique_ptr<Call> call(static_cast<Call*>(tag));
      const absl::StatusCode code = FromGrpcCode(call->status.error_code());
      const size_t bytes = call->status.ok() ? call->response.Length() : 0;
      call->done(code, bytes);
    }
  }

  const GrpcTargetOptions options_;
  const RequestPool& pool_;
  std::vector<grpc::ByteBuffer> payloads_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Target>> MakeGrpcTarget(
    const GrpcTargetOptions& options, const RequestPool& pool) {
  if (options.channels < 1 || options.threads < 1) {
    return absl::InvalidArgumentError(
        "--channels and --threads must be at least 1");
  }
  if (pool.payloads.empty()) {
    return absl::InvalidArgumentError("the request pool is empty");
  }
  auto target = std::make_unique<GrpcTarget>(options, pool);
  if (absl::Status s = target->Init(); !s.ok()) return s;
  return std::unique_ptr<Target>(std::move(target));
}

}  // namespace embsum::loadgen
