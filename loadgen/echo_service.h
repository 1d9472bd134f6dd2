// The gRPC floor: an embsum.v1.Echo server that answers each request with a
// payload of the requested size and does no other work. Served with the
// callback API, plus grpc.health.v1.Health.
//
// With sweep_bytes > 0 it first reads one byte of every cache line of a
// buffer that large, on the thread that answers: the caches are then as
// cold for gRPC's own work as they are after a Rank has streamed its item
// rows, and the floor it gives (latency minus the mean sweep time) is the
// transport a real request pays (benchmarks/service/run_s1.sh, "cold echo").
#ifndef EMBSUM_LOADGEN_ECHO_SERVICE_H_
#define EMBSUM_LOADGEN_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "embsum/v1/echo.grpc.pb.h"
#include "loadgen/tls.h"

namespace embsum::loadgen {

// Largest EchoRequest.response_bytes accepted; larger is INVALID_ARGUMENT.
inline constexpr uint32_t kMaxEchoResponseBytes = 64u << 20;

// Time spent sweeping, over the calls that swept.
struct SweepStats {
  uint64_t calls = 0;
  double seconds = 0;
};

// Thread-safety: Echo runs concurrently on gRPC's threads; the sweep buffer
// is only read and the counters are atomic.
class EchoService final : public v1::Echo::CallbackService {
 public:
  explicit EchoService(size_t sweep_bytes = 0);
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const v1::EchoRequest* request,
                                 v1::EchoResponse* response) override;
  SweepStats sweep_stats() const;

 private:
  // Reads one byte per cache line of sweep_; returns their sum.
  uint64_t Sweep() const;

  const std::vector<uint8_t> sweep_;
  std::atomic<uint64_t> sweep_calls_{0};
  std::atomic<int64_t> sweep_nanos_{0};
  std::atomic<uint64_t> sweep_sink_{0};
};

// A running echo server. Thread-safety: Shutdown() may be called from any
// thread; the destructor shuts down and waits.
class EchoServer {
 public:
  // Listens on `address` (HOST:PORT; port 0 picks a free one), plaintext
  // unless `tls` names a certificate.
  // `sweep_bytes`: see the top of this file (0: no sweep).
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(
      const std::string& address, const TlsServerOptions& tls = {},
      size_t sweep_bytes = 0);
  ~EchoServer();

  int port() const { return port_; }
  SweepStats sweep_stats() const { return service_->sweep_stats(); }
  // Stops accepting calls, lets calls in flight finish (up to `grace`
  // seconds), then returns.
  void Shutdown(double grace_seconds = 5);
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  EchoServer() = default;
  std::unique_ptr<EchoService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_ECHO_SERVICE_H_
