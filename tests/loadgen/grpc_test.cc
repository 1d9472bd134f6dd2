// The gRPC pieces end to end, in process: the echo server, the generic-stub
// target, RunLoadgen's reports and RunEval, against a fake Ranker.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "embsum/v1/echo.grpc.pb.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "loadgen/driver.h"
#include "loadgen/echo_service.h"
#include "loadgen/eval.h"
#include "loadgen/loadgen.h"
#include "loadgen/request_source.h"
#include "loadgen/target.h"
#include "tests/loadgen/test_files.h"

namespace embsum::loadgen {
namespace {

using ::testing::HasSubstr;

// A call without the x-user-id header naming its user (what Envoy's
// consistent hashing routes on, deploy/envoy) -> FAILED_PRECONDITION;
// unknown user "missing" -> NOT_FOUND; otherwise every candidate scored,
// items starting with 'p' at 1, others at 0.
class FakeRanker final : public v1::Ranker::CallbackService {
 public:
  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const v1::RankRequest* request,
                                 v1::RankResponse* response) override {
    auto* reactor = context->DefaultReactor();
    const auto& metadata = context->client_metadata();
    const auto header = metadata.find("x-user-id");
    if (header == metadata.end() ||
        std::string(header->second.data(), header->second.size()) !=
            request->user_id()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   "x-user-id missing or not the user_id"));
      return reactor;
    }
    if (request->user_id() == "missing") {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown user"));
      return reactor;
    }
    for (const std::string& id : request->candidate_ids()) {
      auto* item = response->add_items();
      item->set_item_id(id);
      item->set_score(id[0] == 'p' ? 1.0f : 0.0f);
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest*,
                                         v1::ModelInfo* info) override {
    info->set_model_version("fake-7");
    info->set_backend("cpu");
    info->set_dim(16);
    info->set_user_codes(4);
    info->set_item_codes(2);
    info->set_users(2);
    info->set_items(3);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class FakeRankerServer {
 public:
  FakeRankerServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeRankerServer() { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  FakeRanker service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

std::unique_ptr<v1::Echo::Stub> EchoStub(const EchoServer& server) {
  return v1::Echo::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()),
                          grpc::InsecureChannelCredentials()));
}

TEST(EchoServer, EchoesThePayloadToTheRequestedSize) {
  auto server = EchoServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = EchoStub(**server);
  v1::EchoRequest request;
  request.set_payload("abc");
  request.set_response_bytes(8);
  v1::EchoResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->Echo(&context, request, &response).ok());
  EXPECT_EQ(response.payload(), "abcabcab");

  request.set_response_bytes(kMaxEchoResponseBytes + 1);
  grpc::ClientContext context2;
  const grpc::Status too_big = stub->Echo(&context2, request, &response);
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_big.error_message(), HasSubstr("response_bytes"));
}

TEST(EchoServer, SweepsItsBufferBeforeEachAnswerWhenAsked) {
  for (size_t sweep_bytes : {size_t{0}, size_t{1} << 20}) {
    auto server = EchoServer::Start("127.0.0.1:0", {}, sweep_bytes);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = EchoStub(**server);
    v1::EchoRequest request;
    request.set_payload("xy");
    request.set_response_bytes(5);
    for (int i = 0; i < 3; ++i) {
      v1::EchoResponse response;
      grpc::ClientContext context;
      ASSERT_TRUE(stub->Echo(&context, request, &response).ok());
      EXPECT_EQ(response.payload(), "xyxyx");
    }
    const SweepStats sweep = (*server)->sweep_stats();
    if (sweep_bytes == 0) {
      EXPECT_EQ(sweep.calls, 0u);
      EXPECT_EQ(sweep.seconds, 0.0);
    } else {
      EXPECT_EQ(sweep.calls, 3u);
      EXPECT_GT(sweep.seconds, 0.0);
    }
  }
}

TEST(GrpcTarget, EchoRunHasNoErrorsAndRankSizedResponses) {
  auto server = EchoServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok());
  std::vector<std::string> users = {"u1", "u2"}, items;
  for (int i = 0; i < 300; ++i) items.push_back("item" + std::to_string(i));
  RequestPoolOptions pool_options;
  pool_options.kind = TargetKind::kEcho;
  pool_options.pool_size = 16;
  auto pool = BuildPoolFromIds(users, items, *CandidateCount::Parse("100"),
                               pool_options);
  ASSERT_TRUE(pool.ok());
  GrpcTargetOptions target_options;
  target_options.address = absl::StrCat("127.0.0.1:", (*server)->port());
  target_options.channels = 2;
  target_options.threads = 2;
  auto target = MakeGrpcTarget(target_options, *pool);
  ASSERT_TRUE(target.ok()) << target.status();
  LoadOptions load;
  load.concurrency = 4;
  load.warmup = absl::Milliseconds(100);
  load.duration = absl::Milliseconds(300);
  auto r = RunLoad(**target, load);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->requests, 10u);
  EXPECT_EQ(r->errors, 0u);
  EXPECT_EQ(r->codes[absl::StatusCode::kOk], r->requests);
  // The echo answers with the bytes a Rank response for the request would
  // have (EchoResponse adds a few bytes of framing).
  const double mean_response =
      static_cast<double>(r->response_bytes) / r->requests;
  EXPECT_NEAR(mean_response, pool->echo_response_bytes, 8);
}

TEST(GrpcTarget, CountsServerStatusCodes) {
  FakeRankerServer server;
  RequestPoolOptions pool_options;
  pool_options.pool_size = 64;
  auto pool = BuildPoolFromIds({"u1", "missing"}, {"p1", "n1", "n2"},
                               *CandidateCount::Parse("3"), pool_options);
  ASSERT_TRUE(pool.ok());
  GrpcTargetOptions target_options;
  target_options.address = server.address();
  auto target = MakeGrpcTarget(target_options, *pool);
  ASSERT_TRUE(target.ok()) << target.status();
  LoadOptions load;
  load.rate = 500;
  load.warmup = absl::ZeroDuration();
  load.duration = absl::Milliseconds(300);
  auto r = RunLoad(**target, load);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->codes[absl::StatusCode::kOk], 0u);
  EXPECT_GT(r->codes[absl::StatusCode::kNotFound], 0u);
  EXPECT_EQ(r->errors, r->codes[absl::StatusCode::kNotFound]);
  EXPECT_EQ(r->codes.size(), 2u);
}

TEST(GrpcTarget, UnreachableTargetIsUnavailable) {
  // A port nobody listens on: bind one, then close the server.
  int port = 0;
  {
    auto server = EchoServer::Start("127.0.0.1:0");
    ASSERT_TRUE(server.ok());
    port = (*server)->port();
  }
  RequestPool pool;
  pool.method = "/embsum.v1.Echo/Echo";
  pool.payloads = {""};
  GrpcTargetOptions options;
  options.address = absl::StrCat("127.0.0.1:", port);
  options.connect_timeout = absl::Milliseconds(300);
  auto target = MakeGrpcTarget(options, pool);
  EXPECT_EQ(target.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(target.status().message(), HasSubstr("cannot connect to"));
}

TEST(RunLoadgen, WritesJsonCsvAndSvgReports) {
  auto server = EchoServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok());
  TempDir dir;
  dir.Write("model/users/ids.txt", "u1\nu2\n");
  std::string items;
  for (int i = 0; i < 50; ++i) absl::StrAppend(&items, "i", i, "\n");
  dir.Write("model/items/ids.txt", items);
  LoadgenConfig c;
  c.target = absl::StrCat("127.0.0.1:", (*server)->port());
  c.target_kind = "echo";
  c.model_dir = dir.path() + "/model";
  c.candidates = "20";
  c.rate = 200;
  c.duration_seconds = 0.3;
  c.warmup_seconds = 0.1;
  c.json_path = dir.path() + "/r.json";
  c.csv_path = dir.path() + "/r.csv";
  c.svg_path = dir.path() + "/r.svg";
  std::ostringstream out, err;
  auto report = RunLoadgen(c, out, err);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["errors"].get<uint64_t>(), 0u);
  EXPECT_GT((*report)["qps"].get<double>(), 0);
  EXPECT_EQ(nlohmann::json::parse(ReadAll(c.json_path)), *report);
  EXPECT_THAT(ReadAll(c.csv_path), HasSubstr("percentile,latency_seconds"));
  EXPECT_THAT(ReadAll(c.svg_path), HasSubstr("<polyline"));
  EXPECT_THAT(out.str(), HasSubstr("open loop, poisson arrivals at 200.0/s"));
}

TEST(RunLoadgen, RankReportsNameTheServedModel) {
  FakeRankerServer server;
  TempDir dir;
  dir.Write("model/users/ids.txt", "u1\nmissing\n");
  dir.Write("model/items/ids.txt", "p1\nn1\nn2\n");
  LoadgenConfig c;
  c.target = server.address();
  c.model_dir = dir.path() + "/model";
  c.candidates = "3";
  c.concurrency = 2;
  c.duration_seconds = 0.2;
  c.warmup_seconds = 0;
  c.progress = false;
  std::ostringstream out, err;
  auto report = RunLoadgen(c, out, err);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ((*report)["server"]["model_version"], "fake-7");
  EXPECT_EQ((*report)["server"]["backend"], "cpu");
  EXPECT_EQ((*report)["server"]["dim"], 16);
  EXPECT_GT((*report)["codes"]["NOT_FOUND"].get<uint64_t>(), 0u);
  EXPECT_THAT(out.str(),
              HasSubstr("model fake-7 (d=16 m=4 n=2, 2 users, 3 items), cpu"));
  EXPECT_EQ(err.str(), "");  // no progress, no warnings
}

TEST(RunLoadgen, RejectsBadConfiguration) {
  std::ostringstream out, err;
  LoadgenConfig c;
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--target"));
  c.target = "127.0.0.1:1";
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--model_dir=DIR or --behaviors=FILE"));
  c.model_dir = "/nonexistent";
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--concurrency=N"));
  c.concurrency = 2;
  c.target_kind = "grpc";
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--target_kind='grpc'"));
  c.target_kind = "rank";
  c.duration_seconds = 1e300;
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--duration"));
  c.duration_seconds = 1;
  c.sweep = true;
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("--sweep is open loop"));
  c.sweep = false;
  EXPECT_THAT(RunLoadgen(c, out, err).status().message(),
              HasSubstr("/nonexistent/users/ids.txt"));
}

TEST(RunEval, RejectsBadOptions) {
  EvalOptions options;
  EXPECT_THAT(RunEval(options).status().message(), HasSubstr("--target"));
  options.target = "127.0.0.1:1";
  EXPECT_THAT(RunEval(options).status().message(), HasSubstr("--behaviors"));
  options.behaviors = "b.tsv";
  options.deadline = absl::InfiniteDuration();
  EXPECT_THAT(RunEval(options).status().message(), HasSubstr("--deadline"));
  options.deadline = absl::Seconds(1);
  EXPECT_THAT(RunEval(options).status().message(),
              HasSubstr("b.tsv: cannot open"));
}

TEST(RunEval, ScoresAFakeRankerOverBehaviors) {
  FakeRankerServer server;
  TempDir dir;
  const std::string path = dir.Write("behaviors.tsv",
                                     "1\tu1\tt\t\tp1-1 n1-0 n2-0\n"
                                     "2\tmissing\tt\t\tp1-1 n1-0\n"
                                     "3\tu2\tt\tn1\tn3-0 p2-1 p3-1\n");
  EvalOptions options;
  options.target = server.address();
  options.behaviors = path;
  auto r = RunEval(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->impressions, 3u);
  EXPECT_EQ(r->evaluated, 2u);
  EXPECT_EQ(r->skipped_unknown_user, 1u);
  EXPECT_DOUBLE_EQ(r->mean.auc, 1.0);
  EXPECT_DOUBLE_EQ(r->mean.ndcg10, 1.0);
}

}  // namespace
}  // namespace embsum::loadgen
