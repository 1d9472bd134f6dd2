#include "loadgen/echo_service.h"

#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace embsum::loadgen {

EchoService::EchoService(size_t sweep_bytes) : sweep_(sweep_bytes, 1) {}

uint64_t EchoService::Sweep() const {
  uint64_t sum = 0;
  for (size_t i = 0; i < sweep_.size(); i += 64) sum += sweep_[i];
  return sum;
}

SweepStats EchoService::sweep_stats() const {
  return SweepStats{sweep_calls_.load(std::memory_order_relaxed),
                    sweep_nanos_.load(std::memory_order_relaxed) * 1e-9};
}

grpc::ServerUnaryReactor* EchoService::Echo(
    grpc::CallbackServerContext* context, const v1::EchoRequest* request,
    v1::EchoResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const uint32_t n = request->response_bytes();
  if (n > kMaxEchoResponseBytes) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("response_bytes is ", n, ", the limit is ",
                                  kMaxEchoResponseBytes)));
    return reactor;
  }
  const std::string& in = request->payload();
  std::string* out = response->mutable_payload();
  out->reserve(n);
  if (in.empty()) {
    out->assign(n, '\0');
  } else {
    while (out->size() < n) {
      out->append(in, 0, std::min<size_t>(in.size(), n - out->size()));
    }
  }
  if (!sweep_.empty()) {
    const auto start = std::chrono::steady_clock::now();
    sweep_sink_.fetch_add(Sweep(), std::memory_order_relaxed);
    sweep_nanos_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count(),
                           std::memory_order_relaxed);
    sweep_calls_.fetch_add(1, std::memory_order_relaxed);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(
    const std::string& address, const TlsServerOptions& tls,
    size_t sweep_bytes) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(tls);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<EchoServer> server(new EchoServer);
  server->service_ = std::make_unique<EchoService>(sweep_bytes);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, *credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, " (address in use, or not HOST:PORT?)"));
  }
  return server;
}

EchoServer::~EchoServer() {
  if (server_ != nullptr) {
    Shutdown(0);
    server_->Wait();
  }
}

void EchoServer::Shutdown(double grace_seconds) {
  if (auto* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  server_->Shutdown(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000)));
}

void EchoServer::Wait() { server_->Wait(); }

}  // namespace embsum::loadgen
