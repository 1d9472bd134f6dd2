#include "metrics/http_server.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <pthread.h>

#include <cstring>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

// Debian's libcivetweb is built with a fixed 100 KiB worker stack
// (CIVETWEB_THREAD_STACK_SIZE, no run-time option), and glibc carves every
// loaded library's static TLS out of each thread's stack: OpenBLAS alone
// (pulled in by FAISS) takes 60 KiB of it. What is left is too little for
// civetweb's own request parsing, and a scrape overflowed the stack in the
// server process. This interposes pthread_attr_setstacksize for calls made
// from libcivetweb only, raising their stack to kCivetwebStackBytes; every
// other caller gets the real function unchanged.
namespace {
constexpr size_t kCivetwebStackBytes = size_t{1} << 20;

bool CalledFromCivetweb(const void* return_address) {
  Dl_info info;
  return dladdr(return_address, &info) != 0 && info.dli_fname != nullptr &&
         std::strstr(info.dli_fname, "libcivetweb") != nullptr;
}
}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr,
                                         size_t stack_size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real =
      reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (CalledFromCivetweb(__builtin_return_address(0)) &&
      stack_size < kCivetwebStackBytes) {
    stack_size = kCivetwebStackBytes;
  }
  return real(attr, stack_size);
}

namespace embsum::metrics {
namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Debian's libcivetweb 1.15, with no document root, looks for a .htpasswd
// beside an uninitialised path before it calls any request handler, and can
// crash there ("%.*s/%s"). So every path gets an auth handler that allows it,
// a request handler that answers it, and the document root names a folder
// that holds no files, for the instant between mg_start and the handlers.
int AllowAll(mg_connection*, void*) { return 1; }

// Only GET/HEAD /metrics is served; anything else is a 404.
int HandleRequest(mg_connection* conn, void* data) {
  const auto* registry = static_cast<const Registry*>(data);
  const mg_request_info* info = mg_get_request_info(conn);
  const char* uri = info->local_uri != nullptr ? info->local_uri : "";
  if (std::strcmp(uri, "/metrics") != 0) {
    mg_send_http_error(conn, 404, "%s", "not found: only GET /metrics\n");
    return 404;
  }
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
                          "document_root",
                          "/nonexistent/embsum-metrics-serves-no-files",
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
  mg_set_auth_handler(server->context_, "/", AllowAll, nullptr);
  mg_set_request_handler(server->context_, "/", HandleRequest,
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
