#include "metrics/http_server.h"

#include <civetweb.h>

#include <cstring>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace embsum::metrics {
namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

int HandleMetrics(mg_connection* conn, void* data) {
  const auto* registry = static_cast<const Registry*>(data);
  const mg_request_info* info = mg_get_request_info(conn);
  if (std::strcmp(info->request_method, "GET") != 0 &&
      std::strcmp(info->request_method, "HEAD") != 0) {
    mg_send_http_error(conn, 405, "%s", "only GET /metrics\n");
    return 405;
  }
  const std::string body = registry->Serialize();
  mg_send_http_ok(conn, kContentType, static_cast<long long>(body.size()));
  if (std::strcmp(info->request_method, "GET") == 0) {
    mg_write(conn, body.data(), body.size());
  }
  return 200;
}

// civetweb's startup errors arrive through this callback; keep the last one
// for the error message of Start (startup is serialised by a mutex).
std::mutex start_mu;
std::string* start_error = nullptr;

int LogMessage(const mg_connection*, const char* message) {
  if (start_error != nullptr) *start_error = message;
  return 1;  // handled: civetweb prints nothing
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsHttpServerOptions& options, const Registry* registry) {
  const size_t colon = options.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics listen address '", options.listen, "': want HOST:PORT"));
  }
  static std::once_flag init_once;
  std::call_once(init_once, [] { mg_init_library(0); });

  auto server = std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer());
  server->registry_ = registry;
  const std::string threads = std::to_string(options.threads);
  const char* config[] = {"listening_ports",
                          options.listen.c_str(),
                          "num_threads",
                          threads.c_str(),
                          "enable_keep_alive",
                          "yes",
                          nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = LogMessage;
  std::string error;
  {
    std::lock_guard<std::mutex> lock(start_mu);
    start_error = &error;
    server->context_ = mg_start(&callbacks, nullptr, config);
    start_error = nullptr;
  }
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", options.listen,
                     error.empty() ? "" : ": ", error));
  }
  mg_set_request_handler(server->context_, "/metrics$", HandleMetrics,
                         const_cast<Registry*>(registry));
  mg_server_port ports[4] = {};
  if (mg_get_server_ports(server->context_, 4, ports) < 1) {
    return absl::InternalError("metrics: civetweb reports no listening port");
  }
  server->port_ = ports[0].port;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

}  // namespace embsum::metrics
