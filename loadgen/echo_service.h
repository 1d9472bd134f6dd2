// The gRPC floor: an embsum.v1.Echo server that answers each request with a
// payload of the requested size and does no other work. Served with the
// callback API, plus grpc.health.v1.Health.
#ifndef EMBSUM_LOADGEN_ECHO_SERVICE_H_
#define EMBSUM_LOADGEN_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "embsum/v1/echo.grpc.pb.h"
#include "loadgen/tls.h"

namespace embsum::loadgen {

// Largest EchoRequest.response_bytes accepted; larger is INVALID_ARGUMENT.
inline constexpr uint32_t kMaxEchoResponseBytes = 64u << 20;

// Thread-safety: stateless; Echo runs concurrently on gRPC's threads.
class EchoService final : public v1::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const v1::EchoRequest* request,
                                 v1::EchoResponse* response) override;
};

// A running echo server. Thread-safety: Shutdown() may be called from any
// thread; the destructor shuts down and waits.
class EchoServer {
 public:
  // Listens on `address` (HOST:PORT; port 0 picks a free one), plaintext
  // unless `tls` names a certificate.
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(
      const std::string& address, const TlsServerOptions& tls = {});
  ~EchoServer();

  int port() const { return port_; }
  // Stops accepting calls, lets calls in flight finish (up to `grace`
  // seconds), then returns.
  void Shutdown(double grace_seconds = 5);
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  EchoServer() = default;
  EchoService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_ECHO_SERVICE_H_
