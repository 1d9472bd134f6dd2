#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/runtime_info.h"

namespace embsum::server {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", path, "' is not a PEM file"));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const TlsOptions& tls) {
  if (tls.cert_file.empty() && tls.key_file.empty()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key must be given together");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> cert = ReadPem(tls.cert_file, "--tls_cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(tls.key_file, "--tls_key");
  if (!key.ok()) return key.status();
  pair.cert_chain = *std::move(cert);
  pair.private_key = *std::move(key);
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!tls.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem(tls.client_ca_file, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::unique_ptr<grpc::Server>> BuildServer(
    const std::string& address,
    const std::shared_ptr<grpc::ServerCredentials>& credentials,
    grpc::Service* service, int max_receive_bytes, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, credentials, port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(max_receive_bytes);
  // gRPC sets SO_REUSEPORT by default: a second server on the same port
  // would silently share its traffic. Fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " (address in use, or not a HOST:PORT gRPC accepts)"));
  }
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options, std::shared_ptr<const ServingModel> model,
    const scoring::Scorer* scorer, metrics::Registry* registry) {
  if (model == nullptr) {
    return absl::InvalidArgumentError("no model to serve");
  }
  if (options.queue_size == 0 || options.admin_queue_size == 0) {
    return absl::InvalidArgumentError("queue sizes must be at least 1");
  }
  if (options.max_receive_bytes <= 0) {
    return absl::InvalidArgumentError("max_receive_bytes must be positive");
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();

  // Process-wide switches; they apply to servers built from now on.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto server = std::unique_ptr<Server>(new Server());
  server->workers_ =
      options.workers > 0
          ? options.workers
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  server->metrics_ =
      std::make_unique<ServerMetrics>(registry, std::string(scorer->backend()));
  const std::string model_version = model->manifest().model_version;
  server->models_ = std::make_shared<ModelSlot>(std::move(model));
  server->metrics_->SetModel(
      model_version,
      [models = server->models_] {
        return static_cast<double>(models->Current()->users().size());
      },
      [models = server->models_] {
        return static_cast<double>(
            models->Current()->items().Current()->size());
      });
  {
    const scoring::DType dtype =
        server->models_->Current()->items().Current()->arena().layout().dtype;
    server->metrics_->SetScorerKernel(std::string(scoring::DTypeName(dtype)),
                                      scorer->kernel_info(dtype));
  }
  server->core_ = std::make_unique<RankerCore>(
      options.core, server->models_.get(), scorer, server->metrics_.get());
  // Retrieve's ANN setting from the recall target, tuned in the background
  // (logged by the core; a failure keeps the safe setting and is logged).
  // Meanwhile Retrieve serves the safe setting (RankerCore::
  // StartRetrieveTuning), so start-up does not wait for the tuner's scans.
  server->core_->StartRetrieveTuning(server->models_->Current());
  server->pool_ = std::make_unique<WorkerPool>(WorkerPoolOptions{
      .threads = server->workers_,
      .queue_capacity = options.queue_size,
      .name = "rank",
      .max_queue_wait = options.max_queue_wait,
      .clock = options.clock,
      .queue_wait = &server->metrics_->queue_wait_seconds("rank")});
  server->admin_pool_ = std::make_unique<WorkerPool>(WorkerPoolOptions{
      .threads = 1,
      .queue_capacity = options.admin_queue_size,
      .name = "admin",
      .queue_wait = &server->metrics_->queue_wait_seconds("admin")});
  server->metrics_->SetThreads("rank", server->pool_->threads());
  server->metrics_->SetThreads("admin", server->admin_pool_->threads());
  server->metrics_->SetThreads("scorer", std::max(0, options.scorer_threads));
  const BlasInfo blas = GetBlasInfo();
  server->metrics_->SetThreads("blas", blas.threads);
  server->metrics_->SetBlasInfo(blas.core);
  server->ranker_service_ = std::make_unique<RankerService>(
      server->core_.get(), server->pool_.get(), server->metrics_.get());
  server->admin_service_ = std::make_unique<RankerAdminService>(
      options.admin, server->core_.get(), server->admin_pool_.get(),
      server->metrics_.get());

  absl::StatusOr<std::unique_ptr<grpc::Server>> main_server =
      BuildServer(options.listen, *credentials, server->ranker_service_.get(),
                  options.max_receive_bytes, &server->port_);
  if (!main_server.ok()) return main_server.status();
  server->server_ = *std::move(main_server);
  absl::StatusOr<std::unique_ptr<grpc::Server>> admin_server = BuildServer(
      options.admin_listen, *credentials, server->admin_service_.get(),
      options.max_receive_bytes, &server->admin_port_);
  if (!admin_server.ok()) return admin_server.status();
  server->admin_server_ = *std::move(admin_server);
  server->SetServing(options.start_serving);
  return server;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

std::shared_ptr<const ServingModel> Server::SwapModel(
    std::shared_ptr<const ServingModel> next) {
  const std::string version = next->manifest().model_version;
  // The previous model's Retrieve setting serves the new model until the
  // background tuner publishes one for it.
  std::shared_ptr<const ServingModel> tune = next;
  const scoring::DType dtype = next->items().Current()->arena().layout().dtype;
  std::shared_ptr<const ServingModel> previous =
      models_->Publish(std::move(next));
  metrics_->SetModelVersion(version);
  // The loader re-measured the scorer's dispatch on the new model.
  metrics_->SetScorerKernel(std::string(scoring::DTypeName(dtype)),
                            core_->scorer().kernel_info(dtype));
  core_->StartRetrieveTuning(std::move(tune));
  return previous;
}

void Server::SetServing(bool serving) {
  for (grpc::Server* s : {server_.get(), admin_server_.get()}) {
    if (s == nullptr) continue;
    if (grpc::HealthCheckServiceInterface* health =
            s->GetHealthCheckService()) {
      health->SetServingStatus(serving);
    }
  }
}

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace);
  // Both ports stop accepting at once; each Shutdown returns when its calls
  // (and so their queued work) have finished or been cancelled.
  std::thread admin_stop([this, deadline] {
    if (admin_server_ != nullptr) admin_server_->Shutdown(deadline);
  });
  if (server_ != nullptr) server_->Shutdown(deadline);
  admin_stop.join();
  if (pool_ != nullptr) pool_->Shutdown();
  if (admin_pool_ != nullptr) admin_pool_->Shutdown();
  if (server_ != nullptr) server_->Wait();
  if (admin_server_ != nullptr) admin_server_->Wait();
}

}  // namespace embsum::server
