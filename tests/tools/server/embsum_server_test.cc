// embsum-server as a process: start-up line, health and reflection, SIGTERM
// under load, promtool on the real /metrics, and a real Prometheus scrape.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/metrics/http_get.h"
#include "tests/server/test_support.h"
#include "tests/tools/server/server_process.h"

namespace embsum::testing {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kBinary[] = EMBSUM_SERVER_BINARY;

class EmbsumServerTest : public ::testing::Test {
 protected:
  // A data dir of the given shape, and a server on free loopback ports.
  void StartServer(const datagen::SyntheticModelOptions& model,
                   std::vector<std::string> extra_args = {}) {
    root_ = MakeTempDir("embsum-server-test");
    ASSERT_TRUE(BuildTestModel(root_, model, &model_).ok());
    std::vector<std::string> args = {
        "--data_dir=" + model_.data_dir, "--listen=127.0.0.1:0",
        "--admin_listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto server = ServerProcess::Start(kBinary, args, root_ + "/server.log");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
    ranker_ = v1::Ranker::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
  }

  v1::RankRequest RankAll(size_t user, size_t max = 1u << 30) const {
    v1::RankRequest request;
    request.set_user_id(model_.user_ids[user]);
    for (size_t i = 0; i < model_.item_ids.size() && i < max; ++i) {
      request.add_candidate_ids(model_.item_ids[i]);
    }
    return request;
  }

  grpc::Status Rank(const v1::RankRequest& request,
                    v1::RankResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    return ranker_->Rank(&context, request, response);
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& service = "") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = health_->Check(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  std::string Metrics() {
    const HttpResponse r = HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_EQ(r.status, 200);
    return r.body;
  }

  std::string root_;
  TestModel model_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ranker::Stub> ranker_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(EmbsumServerTest, StartupLineHealthReflectionAndCleanExit) {
  StartServer(SmallModelOptions());
  const auto& f = server_->start_fields();
  EXPECT_EQ(f.at("model_version"), "test-model-7");
  EXPECT_EQ(f.at("users"), "24");
  EXPECT_EQ(f.at("items"), "300");
  EXPECT_EQ(f.at("backend"), "cpu");
  // What runs: pools, the BLAS core, the users' storage type.
  EXPECT_EQ(f.at("user_dtype"), "fp32");
  EXPECT_EQ(f.at("scorer_threads"), f.at("workers"));
  EXPECT_FALSE(f.at("blas_core").empty());
  EXPECT_EQ(f.at("blas_threads"), f.at("blas_core") == "none" ? "0" : "1");
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("embsum_threads{pool=\"rank\"} " +
                                 f.at("workers") + "\n"));
  EXPECT_THAT(metrics, HasSubstr("embsum_threads{pool=\"scorer\"} " +
                                 f.at("scorer_threads") + "\n"));
  EXPECT_THAT(metrics, HasSubstr("embsum_blas_info{core=\"" +
                                 f.at("blas_core") + "\"} 1\n"));
  EXPECT_GT(server_->port(), 0);
  EXPECT_GT(server_->admin_port(), 0);
  EXPECT_GT(server_->metrics_port(), 0);

  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Server reflection lists the services of each port.
  auto list = [](std::shared_ptr<grpc::Channel> channel) {
    auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
    grpc::ClientContext context;
    auto stream = stub->ServerReflectionInfo(&context);
    grpc::reflection::v1alpha::ServerReflectionRequest request;
    request.set_list_services("");
    stream->Write(request);
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse response;
    std::vector<std::string> names;
    while (stream->Read(&response)) {
      for (const auto& s : response.list_services_response().service()) {
        names.push_back(s.name());
      }
    }
    EXPECT_TRUE(stream->Finish().ok());
    return names;
  };
  const std::vector<std::string> main_services = list(channel_);
  EXPECT_THAT(main_services, Contains("embsum.v1.Ranker"));
  EXPECT_THAT(main_services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(main_services, ::testing::Not(Contains("embsum.v1.RankerAdmin")));
  EXPECT_THAT(list(grpc::CreateChannel(
                  "127.0.0.1:" + std::to_string(server_->admin_port()),
                  grpc::InsecureChannelCredentials())),
              Contains("embsum.v1.RankerAdmin"));

  v1::RankResponse response;
  ASSERT_TRUE(Rank(RankAll(0), &response).ok());
  EXPECT_EQ(response.items_size(), 300);

  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0);
  EXPECT_THAT(server_->Log(), HasSubstr("event=shutdown_done"));
}

TEST_F(EmbsumServerTest, SigtermDuringLoadFinishesCallsInFlightAndExitsZero) {
  datagen::SyntheticModelOptions model = SmallModelOptions();
  model.items = 12000;
  model.dim = 64;
  model.user_codes = 8;
  model.item_codes = 4;
  // Every call must be admitted and wait: no queue-wait bound here.
  StartServer(model, {"--workers=1", "--queue_size=64", "--max_queue_wait=0"});
  constexpr int kCalls = 24;
  struct Call {
    grpc::ClientContext context;
    v1::RankResponse response;
    grpc::Status status;
    absl::Notification done;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<v1::RankRequest> requests;
  for (int i = 0; i < kCalls; ++i) requests.push_back(RankAll(i % 24, 10000));
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* c = calls.back().get();
    c->context.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(60));
    ranker_->async()->Rank(&c->context, &requests[i], &c->response,
                           [c](grpc::Status s) {
                             c->status = s;
                             c->done.Notify();
                           });
  }
  // Wait until the server has received every call, then stop it.
  const std::string started =
      "grpc_server_started_total{grpc_service=\"embsum.v1.Ranker\","
      "grpc_method=\"Rank\"} " +
      std::to_string(kCalls) + "\n";
  for (int i = 0; i < 3000 && Metrics().find(started) == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string before = Metrics();
  ASSERT_THAT(before, HasSubstr(started));
  server_->Signal(SIGTERM);
  // For the log: how many calls had already finished when SIGTERM went out
  // (with one worker and 10000 candidates each, most are still queued).
  const std::string ok_prefix =
      "grpc_server_handled_total{grpc_service=\"embsum.v1.Ranker\","
      "grpc_method=\"Rank\",grpc_code=\"OK\"} ";
  const size_t at = before.find(ok_prefix);
  std::cout << "calls finished before SIGTERM: "
            << before.substr(at + ok_prefix.size(),
                             before.find('\n', at) - at - ok_prefix.size())
            << " of " << kCalls << "\n";
  for (auto& c : calls) {
    c->done.WaitForNotification();
    EXPECT_TRUE(c->status.ok()) << c->status.error_message();
    EXPECT_EQ(c->response.items_size(), 10000);
  }
  EXPECT_EQ(server_->Wait(), 0);
  const std::string log = server_->Log();
  EXPECT_THAT(log, HasSubstr("event=shutdown_begin signal=SIGTERM"));
  EXPECT_THAT(log, HasSubstr("event=shutdown_done"));
}

TEST_F(EmbsumServerTest, NotServingDuringTheShutdownDelayWhileStillAnswering) {
  StartServer(SmallModelOptions(), {"--shutdown_delay=3s"});
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  server_->Signal(SIGTERM);
  for (int i = 0; i < 200 && server_->Log().find("event=shutdown_begin") ==
                                 std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  v1::RankResponse response;
  EXPECT_TRUE(Rank(RankAll(1), &response).ok());
  EXPECT_EQ(server_->Wait(), 0);
}

// In the server process (OpenBLAS's 60 KiB of static TLS on every thread
// stack) civetweb's 100 KiB workers overflowed on the first request; any
// path, served or not, must now be answered and leave the server up.
TEST_F(EmbsumServerTest, MetricsEndpointSurvivesAnyPath) {
  StartServer(SmallModelOptions());
  for (const char* path :
       {"/", "/nope", "/a/b/c/.htpasswd", "/metrics/x", "/../../etc/passwd"}) {
    EXPECT_EQ(HttpGet(server_->metrics_port(), path).status, 404) << path;
  }
  EXPECT_THAT(Metrics(), HasSubstr("grpc_server_handled_total"));
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(EmbsumServerTest, PromtoolIsCleanOnTheRealMetrics) {
  StartServer(SmallModelOptions());
  v1::RankResponse response;
  ASSERT_TRUE(Rank(RankAll(0), &response).ok());
  v1::RankRequest unknown = RankAll(0, 3);
  unknown.set_user_id("nobody");
  EXPECT_FALSE(Rank(unknown, &response).ok());
  const std::string text = Metrics();
  for (const char* name :
       {"grpc_server_handled_total{", "grpc_server_handling_seconds_bucket{",
        "embsum_rank_candidates_bucket{", "embsum_scoring_seconds_bucket{",
        "embsum_unknown_items_total ", "embsum_shed_total{", "embsum_users ",
        "embsum_items ", "embsum_model_info{", "embsum_scorer_info{",
        "embsum_scorer_family_seconds{", "embsum_scorer_dispatch_seconds{",
        "process_cpu_seconds_total ", "process_resident_memory_bytes ",
        "process_start_time_seconds "}) {
    EXPECT_THAT(text, HasSubstr(std::string("\n") + name)) << name;
  }
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool not found: run tools/setup.sh";
  std::ofstream(root_ + "/metrics.txt") << text;
  const int rc = std::system(("promtool check metrics < " + root_ +
                              "/metrics.txt > " + root_ + "/promtool.txt 2>&1")
                                 .c_str());
  const std::string verdict = ReadFileOrEmpty(root_ + "/promtool.txt");
  EXPECT_EQ(rc, 0) << verdict;
  EXPECT_EQ(verdict, "");
}

// Dispatch where the server runs: the start line names every timed family
// and the kernel in use (one of them, the fastest), /metrics has each
// family's time; --isa forces a family, still timed beside the others.
TEST_F(EmbsumServerTest, StartLineAndMetricsShowEveryFamilysTime) {
  StartServer(SmallModelOptions());
  const auto& f = server_->start_fields();
  const std::string families = f.at("scorer_families");
  ASSERT_FALSE(families.empty());
  EXPECT_EQ(f.at("scorer_kernel_forced"), "no");
  // "avx512:0.012ms,avx2:0.020ms": fastest first, and that one is in use.
  EXPECT_EQ(families.substr(0, families.find(':')), f.at("scorer_kernel"));
  const std::string metrics = Metrics();
  const std::string labels =
      "{kernel=\"" + f.at("scorer_kernel") + "\",dtype=\"fp32\"} ";
  EXPECT_THAT(metrics, HasSubstr("embsum_scorer_family_seconds" + labels));
  EXPECT_THAT(metrics, HasSubstr("embsum_scorer_info" + labels + "1\n"));
  EXPECT_THAT(ReadFileOrEmpty(root_ + "/server.log"),
              HasSubstr("event=scorer_dispatch dtype=fp32 kernel=" +
                        f.at("scorer_kernel") + " forced=no"));
}

TEST_F(EmbsumServerTest, IsaForcesAFamily) {
  StartServer(SmallModelOptions(), {"--isa=scalar"});
  const auto& f = server_->start_fields();
  EXPECT_EQ(f.at("scorer_kernel"), "scalar");
  EXPECT_EQ(f.at("scorer_kernel_forced"), "yes");
  EXPECT_THAT(
      Metrics(),
      HasSubstr("embsum_scorer_info{kernel=\"scalar\",dtype=\"fp32\"} 1\n"));
  v1::RankResponse response;
  ASSERT_TRUE(Rank(RankAll(0), &response).ok());
  EXPECT_EQ(response.items_size(), 300);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST_F(EmbsumServerTest, RealPrometheusScrapesGrpcServerHandledTotal) {
  ASSERT_EQ(std::system("command -v prometheus >/dev/null"), 0)
      << "prometheus not found: run tools/setup.sh";
  StartServer(SmallModelOptions());
  v1::RankResponse response;
  ASSERT_TRUE(Rank(RankAll(2), &response).ok());

  const int prometheus_port = FreePort();
  std::ofstream(root_ + "/prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n  - job_name: embsum\n    static_configs:\n"
      << "      - targets: ['127.0.0.1:" << server_->metrics_port() << "']\n";
  const std::vector<std::string> args = {
      "--config.file=" + root_ + "/prometheus.yml",
      "--storage.tsdb.path=" + root_ + "/tsdb",
      "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)};
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = open((root_ + "/prometheus.log").c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    std::vector<char*> argv = {const_cast<char*>("prometheus")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp("prometheus", argv.data());
    _exit(127);
  }
  std::string body;
  bool found = false;
  for (int i = 0; i < 600 && !found; ++i) {  // up to about a minute
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const HttpResponse r = HttpGet(
        prometheus_port,
        "/api/v1/query?query=grpc_server_handled_total%7Bgrpc_method%3D%22"
        "Rank%22%2Cgrpc_code%3D%22OK%22%7D");
    body = r.body;
    found = r.status == 200 &&
            body.find("\"grpc_service\":\"embsum.v1.Ranker\"") !=
                std::string::npos &&
            body.find("\"job\":\"embsum\"") != std::string::npos;
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  EXPECT_TRUE(found) << "last answer: " << body << "\nprometheus log:\n"
                     << ReadFileOrEmpty(root_ + "/prometheus.log");
  // The scraped value is the one count the server reports.
  EXPECT_THAT(body, HasSubstr("\"1\"]"));
}

TEST(EmbsumServerStartTest, StartupFailuresExitOneWithAReason) {
  const std::string dir = MakeTempDir("embsum-server-bad");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--listen=127.0.0.1:0", "--metrics_listen="}, "--data_dir is required"},
      {{"--data_dir=" + dir + "/nope", "--listen=127.0.0.1:0",
        "--admin_listen=127.0.0.1:0", "--metrics_listen="},
       "nope"},
      {{"--demo", "--demo_users=5", "--demo_items=20", "--backend=tpu",
        "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
        "--metrics_listen="},
       "--backend='tpu': want auto, cpu or cuda"},
      {{"--data_dir=x", "--item_dtype=fp8"}, "--item_dtype='fp8'"},
      {{"--data_dir=x", "--retrieve_recall_target=1.5"},
       "--retrieve_recall_target=1.5"},
      {{"--data_dir=x", "--max_retrieve_k=0"}, "--max_retrieve_k=0"},
      {{"--demo", "--demo_users=5", "--demo_items=20", "--isa=sse9",
        "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
        "--metrics_listen="},
       "--isa='sse9': want auto or one of scalar, avx2"},
      {{"--data_dir=x", "--dispatch_budget=-1s"},
       "--dispatch_budget must not be negative"},
  };
  for (const Case& c : cases) {
    const std::string log = dir + "/run.log";
    EXPECT_EQ(ServerProcess::Run(kBinary, c.args, log), 1) << c.message;
    const std::string text = ReadFileOrEmpty(log);
    EXPECT_THAT(text,
                AllOf(HasSubstr("event=start_failed"), HasSubstr(c.message)))
        << text;
  }
}

}  // namespace
}  // namespace embsum::testing
