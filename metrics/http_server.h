// Serves a Registry at GET /metrics (Prometheus text format 0.0.4) over
// HTTP with civetweb. Thread-safe; the server stops in the destructor.
#ifndef EMBSUM_METRICS_HTTP_SERVER_H_
#define EMBSUM_METRICS_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

struct mg_context;

namespace embsum::metrics {

struct MetricsHttpServerOptions {
  // HOST:PORT; PORT 0 picks a free port (see port()).
  std::string listen = "0.0.0.0:9464";
  // civetweb worker threads: scrapes are rare, two is plenty.
  int threads = 2;
};

class MetricsHttpServer {
 public:
  // Binds and starts serving `registry`, which must outlive the server.
  // InvalidArgument for a malformed address, Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const MetricsHttpServerOptions& options, const Registry* registry);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  mg_context* context_ = nullptr;
  const Registry* registry_ = nullptr;
  int port_ = 0;
};

}  // namespace embsum::metrics

#endif  // EMBSUM_METRICS_HTTP_SERVER_H_
