// The service through real gRPC channels: an in-process embsum::server::Server
// over a synthetic model ingested into a temporary data directory.
#include "server/server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "embsum/v1/ranking.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/runtime_info.h"
#include "server/serving_model.h"
#include "store/data_dir.h"
#include "tests/server/test_support.h"

namespace embsum::server {
namespace {

using ::embsum::testing::TestModel;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAreArray;

// Wraps the real CPU scorer with a gate: while closed, Score waits, so a
// test can hold the workers busy deterministically.
class GatedScorer : public scoring::Scorer {
 public:
  GatedScorer() : inner_(scoring::MakeCpuScorer({.threads = 1})) {}
  std::string_view backend() const override { return inner_->backend(); }

  scoring::Status Score(const scoring::UserView& user,
                        const scoring::ItemArena& arena,
                        std::span<const uint32_t> rows, std::span<float> scores,
                        std::span<int32_t> top_codes) const override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      ++waiting_;
      mu_.Await(absl::Condition(&open_));
      --waiting_;
    }
    return inner_->Score(user, arena, rows, scores, top_codes);
  }
  scoring::Status ScoreAllTopK(
      const scoring::UserView& user, const scoring::ItemArena& arena,
      std::span<const uint8_t> live, uint32_t k,
      std::vector<scoring::ScoredRow>* out) const override {
    return inner_->ScoreAllTopK(user, arena, live, k, out);
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  // Score calls so far.
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // Blocks until `n` calls wait at the closed gate.
  void AwaitWaiting(int n) {
    absl::MutexLock lock(&mu_);
    auto cond = [this, n]()
                    ABSL_SHARED_LOCKS_REQUIRED(mu_) { return waiting_ >= n; };
    mu_.Await(absl::Condition(&cond));
  }

 private:
  std::unique_ptr<scoring::Scorer> inner_;
  mutable absl::Mutex mu_;
  mutable bool open_ ABSL_GUARDED_BY(mu_) = true;
  mutable int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  mutable int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

constexpr uint32_t kMaxCandidates = 400;
constexpr uint32_t kMaxRetrieveK = 200;
constexpr int kMaxReceiveBytes = 256 << 10;
constexpr size_t kMaxUpsertBytes = 64 << 10;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string root = embsum::testing::MakeTempDir("server-test");
    ASSERT_TRUE(embsum::testing::BuildTestModel(
                    root, embsum::testing::SmallModelOptions(), &model_)
                    .ok());
    auto data = store::DataDir::Open(model_.data_dir, {});
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = std::make_shared<const ServingModel>(*std::move(data), 1);
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.admin_listen = "127.0.0.1:0";
    options.workers = 1;
    options.queue_size = 2;
    // The gated tests hold calls in the queue as long as they need.
    options.max_queue_wait = absl::ZeroDuration();
    options.max_receive_bytes = kMaxReceiveBytes;
    options.core.max_candidates = kMaxCandidates;
    options.core.max_retrieve_k = kMaxRetrieveK;
    options.admin.max_upsert_bytes = kMaxUpsertBytes;
    auto server = Server::Start(options, data_, &scorer_, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
    auto admin_channel = grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->admin_port()),
        grpc::InsecureChannelCredentials());
    ranker_ = v1::Ranker::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
    admin_ = v1::RankerAdmin::NewStub(admin_channel);
    ranker_on_admin_port_ = v1::Ranker::NewStub(admin_channel);
    admin_on_main_port_ = v1::RankerAdmin::NewStub(channel);
  }

  void TearDown() override {
    scorer_.Open();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
  }

  // A second server over the same model and gated scorer, with one worker,
  // whose queue waits and deadlines run on a fake clock (starting at the
  // real time) that the test moves by hand.
  struct FakeClockServer {
    std::atomic<int64_t> now_ns{absl::ToUnixNanos(absl::Now())};
    metrics::Registry registry;
    std::unique_ptr<Server> server;
    std::unique_ptr<v1::Ranker::Stub> ranker;
  };
  void StartFakeClockServer(absl::Duration max_queue_wait,
                            FakeClockServer* fake) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.admin_listen = "127.0.0.1:0";
    options.workers = 1;
    options.max_queue_wait = max_queue_wait;
    options.clock = [fake] { return absl::FromUnixNanos(fake->now_ns.load()); };
    auto server = Server::Start(options, data_, &scorer_, &fake->registry);
    ASSERT_TRUE(server.ok()) << server.status();
    fake->server = *std::move(server);
    fake->ranker = v1::Ranker::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(fake->server->port()),
                            grpc::InsecureChannelCredentials()));
  }

  grpc::Status Rank(const v1::RankRequest& request, v1::RankResponse* response,
                    v1::Ranker::Stub* stub = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    return (stub ? stub : ranker_.get())->Rank(&context, request, response);
  }

  v1::RankRequest AllItemsRequest(size_t user) const {
    v1::RankRequest request;
    request.set_user_id(model_.user_ids[user]);
    for (const std::string& id : model_.item_ids) {
      request.add_candidate_ids(id);
    }
    request.set_explain(true);
    return request;
  }

  template <typename Record>
  grpc::Status Upsert(std::unique_ptr<grpc::ClientWriter<Record>> (
                          v1::RankerAdmin::Stub::*method)(grpc::ClientContext*,
                                                          v1::UpsertResponse*),
                      const std::vector<Record>& records,
                      v1::UpsertResponse* response,
                      v1::RankerAdmin::Stub* stub = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    auto writer = ((stub ? stub : admin_.get())->*method)(&context, response);
    for (const Record& r : records) {
      if (!writer->Write(r)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  grpc::Status UpsertUsers(const std::vector<v1::UserRecord>& records,
                           v1::UpsertResponse* response) {
    return Upsert(&v1::RankerAdmin::Stub::UpsertUsers, records, response);
  }
  grpc::Status UpsertItems(const std::vector<v1::ItemRecord>& records,
                           v1::UpsertResponse* response) {
    return Upsert(&v1::RankerAdmin::Stub::UpsertItems, records, response);
  }

  v1::UserRecord MakeUser(const std::string& id, float scale) const {
    v1::UserRecord r;
    r.set_user_id(id);
    const size_t n = size_t{model_.options.user_codes} * model_.options.dim;
    for (size_t i = 0; i < n; ++i) {
      r.add_upe(scale * std::sin(0.37f * i + 1));
      r.add_queries(scale * std::cos(0.11f * i));
    }
    return r;
  }
  v1::ItemRecord MakeItem(const std::string& id, float scale) const {
    v1::ItemRecord r;
    r.set_item_id(id);
    const size_t n = size_t{model_.options.item_codes} * model_.options.dim;
    for (size_t i = 0; i < n; ++i) {
      r.add_cpe(scale * std::cos(0.23f * i + 2));
      r.add_keys(scale * std::sin(0.05f * i));
    }
    return r;
  }

  // A health check of the whole server ("").
  grpc::health::v1::HealthCheckResponse::ServingStatus Health() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = health_->Check(
        &context, grpc::health::v1::HealthCheckRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  TestModel model_;
  std::shared_ptr<const ServingModel> data_;
  GatedScorer scorer_;
  metrics::Registry registry_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Ranker::Stub> ranker_;
  std::unique_ptr<v1::RankerAdmin::Stub> admin_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<v1::Ranker::Stub> ranker_on_admin_port_;
  std::unique_ptr<v1::RankerAdmin::Stub> admin_on_main_port_;
};

std::span<const float> Span(const google::protobuf::RepeatedField<float>& v) {
  return std::span<const float>(v.data(), v.size());
}

void ExpectNear(double got, double want) {
  EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want)));
}

TEST_F(ServerTest, RankEqualsTheFloat64ReferenceOnIngestedData) {
  for (size_t u : {size_t{0}, size_t{5}, model_.user_ids.size() - 1}) {
    v1::RankResponse response;
    grpc::Status s = Rank(AllItemsRequest(u), &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(response.items_size(), static_cast<int>(model_.item_ids.size()));
    EXPECT_EQ(response.model_version(), "test-model-7");
    EXPECT_TRUE(response.unknown_item_ids().empty());
    std::vector<std::string> seen;
    for (int k = 0; k < response.items_size(); ++k) {
      const v1::ScoredItem& item = response.items(k);
      if (k > 0) {
        EXPECT_LE(item.score(), response.items(k - 1).score());
      }
      const size_t i = std::find(model_.item_ids.begin(), model_.item_ids.end(),
                                 item.item_id()) -
                       model_.item_ids.begin();
      ASSERT_LT(i, model_.item_ids.size()) << item.item_id();
      const scoring::ReferenceResult want = model_.Reference(u, i);
      ExpectNear(item.score(), want.score);
      EXPECT_EQ(item.top_user_code(), want.top_user_code) << item.item_id();
      seen.push_back(item.item_id());
    }
    EXPECT_THAT(seen, UnorderedElementsAreArray(model_.item_ids));
  }
}

TEST_F(ServerTest, SixteenBitUsersStayWithinTheSixteenBitContract) {
  // The same artifact ingested with users stored as fp16 and as bf16: every
  // score within docs/design.md section 2's 2e-2 of the float64 reference on
  // the fp32 artifact, and the same answer layout.
  std::unique_ptr<scoring::Scorer> scorer = scoring::MakeCpuScorer({});
  for (scoring::DType dtype :
       {scoring::DType::kFloat16, scoring::DType::kBFloat16}) {
    const std::string name(scoring::DTypeName(dtype));
    store::IngestOptions ingest;
    ingest.model_dir = model_.model_dir;
    ingest.data_dir = model_.data_dir + "-" + name;
    ingest.user_dtype = dtype;
    ASSERT_TRUE(store::Ingest(ingest).ok()) << name;
    auto data = store::DataDir::Open(ingest.data_dir, {});
    ASSERT_TRUE(data.ok()) << data.status();
    ASSERT_EQ((*data)->users().user_dtype(), dtype);
    ModelSlot models(std::make_shared<const ServingModel>(*std::move(data), 1));
    RankerCore core(RankerCoreOptions{}, &models, scorer.get(), nullptr);
    double worst = 0;
    for (size_t u : {size_t{0}, model_.user_ids.size() - 1}) {
      v1::RankResponse response;
      ASSERT_TRUE(core.Rank(AllItemsRequest(u), &response).ok()) << name;
      ASSERT_EQ(response.items_size(),
                static_cast<int>(model_.item_ids.size()));
      for (const v1::ScoredItem& item : response.items()) {
        const size_t i = std::find(model_.item_ids.begin(),
                                   model_.item_ids.end(), item.item_id()) -
                         model_.item_ids.begin();
        ASSERT_LT(i, model_.item_ids.size());
        const double want = model_.Reference(u, i).score;
        const double error =
            std::abs(item.score() - want) / std::max(1.0, std::abs(want));
        worst = std::max(worst, error);
        EXPECT_LE(error, 2e-2) << name << " " << item.item_id();
      }
    }
    // Rounded, so not the fp32 answer to the last bit.
    EXPECT_GT(worst, 0) << name;
  }
}

// docs/design.md section 2's int8 contract through the server's Rank path, on
// datagen S1 data (m 32, n 8, d 512, 500 candidates, with Q and G): the
// same data directory served with an int8 item arena and with fp32; every
// score within 5e-2 of fp32's (relative to the user's largest |score|) and
// the top-10 agreeing on >= 95 % of entries over the users.
TEST(ServerInt8Test, Int8ItemsMeetTheContractThroughRank) {
  datagen::SyntheticModelOptions shape = embsum::testing::SmallModelOptions();
  shape.users = 8;
  shape.items = 500;
  shape.dim = 512;
  shape.user_codes = 32;
  shape.item_codes = 8;
  shape.user_queries = true;
  shape.item_keys = true;
  embsum::testing::TestModel model;
  ASSERT_TRUE(embsum::testing::BuildTestModel(
                  embsum::testing::MakeTempDir("server-int8"), shape, &model)
                  .ok());
  std::unique_ptr<scoring::Scorer> scorer = scoring::MakeCpuScorer({});
  // Per dtype: for each user, item id -> score, and the top-10 ids.
  struct Answer {
    std::vector<std::map<std::string, float>> scores;
    std::vector<std::vector<std::string>> top10;
  };
  auto serve = [&](scoring::DType dtype, Answer* out) {
    store::DataDirOptions options;
    options.items.dtype = dtype;
    options.items.ann.enabled = false;
    auto data = store::DataDir::Open(model.data_dir, options);
    ASSERT_TRUE(data.ok()) << data.status();
    ASSERT_EQ((*data)->items().Current()->arena().layout().dtype, dtype);
    ModelSlot models(std::make_shared<const ServingModel>(*std::move(data), 1));
    RankerCore core(RankerCoreOptions{}, &models, scorer.get(), nullptr);
    for (const std::string& user : model.user_ids) {
      v1::RankRequest request;
      request.set_user_id(user);
      for (const std::string& id : model.item_ids) {
        request.add_candidate_ids(id);
      }
      v1::RankResponse response;
      ASSERT_TRUE(core.Rank(request, &response).ok());
      ASSERT_EQ(response.items_size(), static_cast<int>(shape.items));
      std::map<std::string, float> scores;
      std::vector<std::string> top;
      for (const v1::ScoredItem& item : response.items()) {
        scores[item.item_id()] = item.score();
        if (top.size() < 10) top.push_back(item.item_id());
      }
      out->scores.push_back(std::move(scores));
      out->top10.push_back(std::move(top));
    }
  };
  Answer fp32, int8;
  serve(scoring::DType::kFloat32, &fp32);
  serve(scoring::DType::kInt8, &int8);
  ASSERT_EQ(fp32.scores.size(), model.user_ids.size());
  ASSERT_EQ(int8.scores.size(), model.user_ids.size());
  double worst = 0.0, agreement = 0.0, any_difference = 0.0;
  for (size_t u = 0; u < model.user_ids.size(); ++u) {
    float scale = 0.0f;
    for (const auto& [id, score] : fp32.scores[u]) {
      scale = std::max(scale, std::fabs(score));
    }
    ASSERT_GT(scale, 0.0f);
    for (const auto& [id, score] : fp32.scores[u]) {
      const double error = std::fabs(double{int8.scores[u].at(id)} - score);
      any_difference = std::max(any_difference, error);
      worst = std::max(worst, error / scale);
    }
    size_t common = 0;
    for (const std::string& id : int8.top10[u]) {
      common += std::count(fp32.top10[u].begin(), fp32.top10[u].end(), id);
    }
    agreement += static_cast<double>(common) / 10.0 / model.user_ids.size();
  }
  EXPECT_LE(worst, 5e-2);
  EXPECT_GE(agreement, 0.95);
  // The int8 arena really served: quantised scores differ from fp32's.
  EXPECT_GT(any_difference, 0.0);
}

TEST_F(ServerTest, RankUnknownUserIsNotFound) {
  v1::RankRequest request;
  request.set_user_id("no-such-user");
  request.add_candidate_ids(model_.item_ids[0]);
  v1::RankResponse response;
  grpc::Status s = Rank(request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no-such-user"));
}

TEST_F(ServerTest, UnknownItemsAreListedDuplicatesOnceTopK) {
  v1::RankRequest request;
  request.set_user_id(model_.user_ids[1]);
  for (const char* id : {"ghost-1", "", "ghost-1"})
    request.add_candidate_ids(id);
  for (int i = 0; i < 10; ++i) request.add_candidate_ids(model_.item_ids[i]);
  request.add_candidate_ids(model_.item_ids[3]);  // duplicate
  request.add_candidate_ids("ghost-2");
  v1::RankResponse all;
  ASSERT_TRUE(Rank(request, &all).ok());
  EXPECT_EQ(all.items_size(), 10);
  EXPECT_THAT(std::vector<std::string>(all.unknown_item_ids().begin(),
                                       all.unknown_item_ids().end()),
              ::testing::ElementsAre("ghost-1", "", "ghost-2"));

  request.set_top_k(4);
  v1::RankResponse top;
  ASSERT_TRUE(Rank(request, &top).ok());
  ASSERT_EQ(top.items_size(), 4);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(top.items(k).item_id(), all.items(k).item_id());
    EXPECT_EQ(top.items(k).score(), all.items(k).score());
  }
  // top_k beyond the candidates returns them all.
  request.set_top_k(1000);
  v1::RankResponse more;
  ASSERT_TRUE(Rank(request, &more).ok());
  EXPECT_EQ(more.items_size(), 10);
}

TEST_F(ServerTest, EmptyCandidatesGiveAnEmptyRanking) {
  v1::RankRequest request;
  request.set_user_id(model_.user_ids[0]);
  v1::RankResponse response;
  ASSERT_TRUE(Rank(request, &response).ok());
  EXPECT_EQ(response.items_size(), 0);
  EXPECT_EQ(response.model_version(), "test-model-7");
}

TEST_F(ServerTest, TiesKeepRequestOrderAndExplainIsOptIn) {
  v1::UpsertResponse upserted;
  ASSERT_TRUE(
      UpsertItems({MakeItem("twin-a", 1), MakeItem("twin-b", 1)}, &upserted)
          .ok());
  for (auto order : {std::vector<std::string>{"twin-b", "twin-a"},
                     std::vector<std::string>{"twin-a", "twin-b"}}) {
    v1::RankRequest request;
    request.set_user_id(model_.user_ids[2]);
    for (const auto& id : order) request.add_candidate_ids(id);
    v1::RankResponse response;
    ASSERT_TRUE(Rank(request, &response).ok());
    ASSERT_EQ(response.items_size(), 2);
    EXPECT_EQ(response.items(0).score(), response.items(1).score());
    EXPECT_EQ(response.items(0).item_id(), order[0]);
    EXPECT_EQ(response.items(1).item_id(), order[1]);
  }
}

TEST_F(ServerTest, BadRankInputsAreInvalidArgumentAndTheServerKeepsServing) {
  struct Case {
    v1::RankRequest request;
    std::string message;
  };
  std::vector<Case> cases;
  {
    Case c;
    c.request.add_candidate_ids(model_.item_ids[0]);
    c.message = "user_id is empty";
    cases.push_back(c);
  }
  {
    Case c;
    c.request.set_user_id(model_.user_ids[0]);
    for (uint32_t i = 0; i <= kMaxCandidates; ++i) {
      c.request.add_candidate_ids("c" + std::to_string(i));
    }
    c.message = "candidate_ids has 401 entries; the limit is 400";
    cases.push_back(c);
  }
  {
    Case c;
    c.request.set_user_id(std::string(300, 'u'));
    c.message = "user_id is 300 bytes; the limit is 256";
    cases.push_back(c);
  }
  {
    Case c;
    c.request.set_user_id("tab\there");
    c.message = "user_id has a control character at byte 3";
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    v1::RankResponse response;
    grpc::Status s = Rank(c.request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
    v1::RankResponse ok;
    EXPECT_TRUE(Rank(AllItemsRequest(0), &ok).ok());
  }
}

TEST_F(ServerTest, OversizedMessageIsResourceExhausted) {
  v1::RankRequest request;
  request.set_user_id(model_.user_ids[0]);
  for (int i = 0; i < 300; ++i)
    request.add_candidate_ids(std::string(1000, 'x'));
  ASSERT_GT(request.ByteSizeLong(), static_cast<size_t>(kMaxReceiveBytes));
  v1::RankResponse response;
  EXPECT_EQ(Rank(request, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Rank(AllItemsRequest(0), &response).ok());
}

TEST_F(ServerTest, IncludeSummaryReturnsTheStoredSummary) {
  v1::UserRecord user = MakeUser("reader-1", 1);
  user.set_summary("Follows Formula 1 and sourdough baking.");
  v1::UpsertResponse upserted;
  ASSERT_TRUE(UpsertUsers({user}, &upserted).ok());
  v1::RankRequest request;
  request.set_user_id("reader-1");
  request.add_candidate_ids(model_.item_ids[0]);
  request.set_include_summary(true);
  v1::RankResponse response;
  ASSERT_TRUE(Rank(request, &response).ok());
  EXPECT_EQ(response.user_summary(), "Follows Formula 1 and sourdough baking.");
  request.set_include_summary(false);
  v1::RankResponse without;
  ASSERT_TRUE(Rank(request, &without).ok());
  EXPECT_EQ(without.user_summary(), "");
}

TEST_F(ServerTest, UpsertsAreVisibleToTheNextRank) {
  const v1::UserRecord user = MakeUser("fresh-user", 0.5f);
  v1::ItemRecord item = MakeItem(model_.item_ids[7], 0.25f);  // overwrite
  v1::UpsertResponse response;
  ASSERT_TRUE(UpsertUsers({user}, &response).ok());
  EXPECT_EQ(response.accepted(), 1u);
  ASSERT_TRUE(UpsertItems({item, MakeItem("fresh-item", 2)}, &response).ok());
  EXPECT_EQ(response.accepted(), 2u);

  v1::RankRequest request;
  request.set_user_id("fresh-user");
  request.add_candidate_ids(model_.item_ids[7]);
  request.add_candidate_ids("fresh-item");
  request.set_explain(true);
  v1::RankResponse ranked;
  grpc::Status s = Rank(request, &ranked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(ranked.items_size(), 2);
  const auto ref = [&](const v1::ItemRecord& it) {
    return embsum::testing::ReferenceOf(
        model_.options.user_codes, model_.options.item_codes,
        model_.options.dim, Span(user.upe()), Span(user.queries()),
        Span(it.cpe()), Span(it.keys()));
  };
  for (const v1::ScoredItem& scored : ranked.items()) {
    const v1::ItemRecord& it =
        scored.item_id() == "fresh-item" ? MakeItem("fresh-item", 2) : item;
    ExpectNear(scored.score(), ref(it).score);
    EXPECT_EQ(scored.top_user_code(), ref(it).top_user_code);
  }
}

TEST_F(ServerTest, UpsertStreamWithOneInvalidRecordAppliesNothing) {
  v1::UserRecord bad = MakeUser("bad-user", 1);
  bad.mutable_upe()->Truncate(5);
  v1::UpsertResponse response;
  grpc::Status s = UpsertUsers({MakeUser("good-user", 1), bad}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("record 1 (user_id 'bad-user'): upe has 5 values; "
                        "want user_codes*dim = 4*16 = 64"));
  v1::RankRequest request;
  request.set_user_id("good-user");
  v1::RankResponse ranked;
  EXPECT_EQ(Rank(request, &ranked).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::ItemRecord nan_item = MakeItem("nan-item", 1);
  nan_item.set_cpe(17, std::nanf(""));
  s = UpsertItems({MakeItem("good-item", 1), nan_item}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("record 1 (item_id 'nan-item'): cpe[17] is NaN "
                        "(vector 1, element 1)"));
  request.set_user_id(model_.user_ids[0]);
  request.add_candidate_ids("good-item");
  ASSERT_TRUE(Rank(request, &ranked).ok());
  EXPECT_EQ(ranked.unknown_item_ids_size(), 1);
}

TEST_F(ServerTest, LaterRecordOfTheSameIdWinsAndCountsUpdate) {
  grpc::ClientContext before_context;
  v1::ModelInfo before;
  ASSERT_TRUE(
      ranker_->GetModelInfo(&before_context, v1::GetModelInfoRequest(), &before)
          .ok());
  const v1::UserRecord first = MakeUser("twice", 1);
  const v1::UserRecord second = MakeUser("twice", -3);
  v1::UpsertResponse response;
  ASSERT_TRUE(UpsertUsers({first, second}, &response).ok());
  EXPECT_EQ(response.accepted(), 2u);
  ASSERT_TRUE(
      UpsertItems({MakeItem("new-1", 1), MakeItem("new-2", 2)}, &response)
          .ok());

  v1::RankRequest request;
  request.set_user_id("twice");
  request.add_candidate_ids(model_.item_ids[0]);
  v1::RankResponse ranked;
  ASSERT_TRUE(Rank(request, &ranked).ok());
  const auto want = embsum::testing::ReferenceOf(
      model_.options.user_codes, model_.options.item_codes, model_.options.dim,
      Span(second.upe()), Span(second.queries()), model_.cpe.row(0),
      model_.keys.row(0));
  ExpectNear(ranked.items(0).score(), want.score);

  grpc::ClientContext after_context;
  v1::ModelInfo after;
  ASSERT_TRUE(
      ranker_->GetModelInfo(&after_context, v1::GetModelInfoRequest(), &after)
          .ok());
  EXPECT_EQ(after.users(), before.users() + 1);
  EXPECT_EQ(after.items(), before.items() + 2);
  EXPECT_THAT(registry_.Serialize(),
              HasSubstr("embsum_users " + std::to_string(after.users())));
}

TEST_F(ServerTest, OversizedUpsertStreamIsRefusedAndAppliesNothing) {
  std::vector<v1::UserRecord> records;
  size_t bytes = 0;
  for (int i = 0; bytes <= kMaxUpsertBytes; ++i) {
    records.push_back(MakeUser("bulk-" + std::to_string(i), 1));
    bytes += records.back().ByteSizeLong();
  }
  v1::UpsertResponse response;
  grpc::Status s = UpsertUsers(records, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("nothing was applied"));
  v1::RankRequest request;
  request.set_user_id("bulk-0");
  v1::RankResponse ranked;
  EXPECT_EQ(Rank(request, &ranked).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, BadUpsertRecordsNameTheProblem) {
  struct Case {
    v1::ItemRecord item;
    std::string message;
  };
  std::vector<Case> cases;
  {
    Case c{MakeItem("", 1), "record 0: item_id is empty"};
    cases.push_back(c);
  }
  {
    Case c{MakeItem("no-keys", 1), "keys missing; the model has item keys"};
    c.item.clear_keys();
    cases.push_back(c);
  }
  {
    Case c{MakeItem("inf-keys", 1), "keys[2] is Inf"};
    c.item.set_keys(2, INFINITY);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    v1::UpsertResponse response;
    grpc::Status s = UpsertItems({c.item}, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  v1::RankResponse ok;
  EXPECT_TRUE(Rank(AllItemsRequest(0), &ok).ok());
}

TEST_F(ServerTest, DeletedItemsBecomeUnknown) {
  v1::UpsertResponse upserted;
  ASSERT_TRUE(UpsertItems({MakeItem("doomed", 1)}, &upserted).ok());
  grpc::ClientContext context;
  v1::DeleteItemsRequest request;
  request.add_item_ids("doomed");
  request.add_item_ids("never-existed");
  v1::DeleteItemsResponse deleted;
  ASSERT_TRUE(admin_->DeleteItems(&context, request, &deleted).ok());
  EXPECT_EQ(deleted.deleted(), 1u);
  v1::RankRequest rank;
  rank.set_user_id(model_.user_ids[0]);
  rank.add_candidate_ids("doomed");
  v1::RankResponse ranked;
  ASSERT_TRUE(Rank(rank, &ranked).ok());
  EXPECT_EQ(ranked.items_size(), 0);
  EXPECT_EQ(ranked.unknown_item_ids(0), "doomed");
}

TEST_F(ServerTest, ExactRetrieveIsTheTrueTopKWithoutExcludedItems) {
  const size_t u = 3;
  std::vector<std::pair<double, size_t>> all;
  for (size_t i = 0; i < model_.item_ids.size(); ++i) {
    all.push_back({model_.Reference(u, i).score, i});
  }
  std::stable_sort(all.begin(), all.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  v1::RetrieveRequest request;
  request.set_user_id(model_.user_ids[u]);
  request.set_k(5);
  request.set_exact(true);
  request.add_exclude_item_ids(model_.item_ids[all[1].second]);
  request.add_exclude_item_ids("not-an-item");
  grpc::ClientContext context;
  v1::RetrieveResponse response;
  grpc::Status s = ranker_->Retrieve(&context, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.items_size(), 5);
  EXPECT_EQ(response.model_version(), "test-model-7");
  const std::vector<size_t> want = {all[0].second, all[2].second, all[3].second,
                                    all[4].second, all[5].second};
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(response.items(k).item_id(), model_.item_ids[want[k]]);
    ExpectNear(response.items(k).score(), all[k == 0 ? 0 : k + 1].first);
  }
}

TEST_F(ServerTest, AnnRetrieveReranksExactly) {
  v1::RetrieveRequest request;
  request.set_user_id(model_.user_ids[4]);
  request.set_k(8);
  request.add_exclude_item_ids(model_.item_ids[0]);
  grpc::ClientContext context;
  v1::RetrieveResponse response;
  grpc::Status s = ranker_->Retrieve(&context, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.items_size(), 8);
  for (int k = 0; k < response.items_size(); ++k) {
    const std::string& id = response.items(k).item_id();
    EXPECT_NE(id, model_.item_ids[0]);
    const size_t i =
        std::find(model_.item_ids.begin(), model_.item_ids.end(), id) -
        model_.item_ids.begin();
    ASSERT_LT(i, model_.item_ids.size());
    ExpectNear(response.items(k).score(), model_.Reference(4, i).score);
    if (k > 0) {
      EXPECT_LE(response.items(k).score(), response.items(k - 1).score());
    }
  }
}

TEST_F(ServerTest, BadRetrieveInputs) {
  for (uint32_t k : {0u, kMaxRetrieveK + 1}) {
    v1::RetrieveRequest request;
    request.set_user_id(model_.user_ids[0]);
    request.set_k(k);
    grpc::ClientContext context;
    v1::RetrieveResponse response;
    grpc::Status s = ranker_->Retrieve(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("k is " + std::to_string(k)));
  }
  v1::RetrieveRequest request;
  request.set_user_id("nobody");
  request.set_k(3);
  grpc::ClientContext context;
  v1::RetrieveResponse response;
  EXPECT_EQ(ranker_->Retrieve(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, GetModelInfo) {
  grpc::ClientContext context;
  v1::ModelInfo info;
  ASSERT_TRUE(
      ranker_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_version(), "test-model-7");
  EXPECT_EQ(info.dim(), 16u);
  EXPECT_EQ(info.user_codes(), 4u);
  EXPECT_EQ(info.item_codes(), 3u);
  EXPECT_EQ(info.users(), 24u);
  EXPECT_EQ(info.items(), 300u);
  EXPECT_EQ(info.backend(), "cpu");
}

TEST_F(ServerTest, AdminRpcsAreOnlyOnTheAdminPort) {
  v1::UpsertResponse response;
  grpc::Status s = Upsert(&v1::RankerAdmin::Stub::UpsertUsers,
                          std::vector<v1::UserRecord>{MakeUser("sneaky", 1)},
                          &response, admin_on_main_port_.get());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  v1::RankResponse ranked;
  EXPECT_EQ(Rank(AllItemsRequest(0), &ranked, ranker_on_admin_port_.get())
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(ServerTest, BurstBeyondTheQueueIsShedWhileHealthAnswers) {
  scorer_.Close();
  // One call occupies the single worker, two fill the queue (queue_size 2).
  struct Pending {
    grpc::ClientContext context;
    v1::RankResponse response;
    grpc::Status status;
    absl::Notification done;
  };
  std::vector<std::unique_ptr<Pending>> pending;
  const v1::RankRequest request = AllItemsRequest(0);
  auto start = [&] {
    pending.push_back(std::make_unique<Pending>());
    Pending* p = pending.back().get();
    ranker_->async()->Rank(&p->context, &request, &p->response,
                           [p](grpc::Status s) {
                             p->status = s;
                             p->done.Notify();
                           });
  };
  start();
  scorer_.AwaitWaiting(1);
  start();
  start();
  while (server_->queued_calls() < 2) {  // both queued, not in flight
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  v1::RankResponse shed;
  grpc::Status s = Rank(request, &shed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("admission queue full"));
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  scorer_.Open();
  for (auto& p : pending) {
    p->done.WaitForNotification();
    EXPECT_TRUE(p->status.ok()) << p->status.error_message();
    EXPECT_EQ(p->response.items_size(),
              static_cast<int>(model_.item_ids.size()));
  }
  const std::string text = registry_.Serialize();
  EXPECT_THAT(text, HasSubstr("embsum_shed_total{reason=\"queue_full\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("embsum_shed_total{reason=\"waited\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("grpc_server_handled_total{grpc_service=\"embsum.v1."
                        "Ranker\",grpc_method=\"Rank\",grpc_code=\"RESOURCE_"
                        "EXHAUSTED\"} 1\n"));
}

TEST_F(ServerTest, CallsThatWaitedPastMaxQueueWaitAreShedUnscored) {
  FakeClockServer fake;
  ASSERT_NO_FATAL_FAILURE(StartFakeClockServer(absl::Milliseconds(30), &fake));
  scorer_.Close();
  struct Pending {
    grpc::ClientContext context;
    v1::RankResponse response;
    grpc::Status status;
    absl::Notification done;
  };
  Pending running, waiting;
  const v1::RankRequest request = AllItemsRequest(0);
  for (Pending* p : {&running, &waiting}) {
    fake.ranker->async()->Rank(&p->context, &request, &p->response,
                               [p](grpc::Status s) {
                                 p->status = s;
                                 p->done.Notify();
                               });
    if (p == &running) scorer_.AwaitWaiting(1);
  }
  while (fake.server->queued_calls() < 1) std::this_thread::yield();
  fake.now_ns += absl::ToInt64Nanoseconds(absl::Milliseconds(31));
  scorer_.Open();
  running.done.WaitForNotification();
  waiting.done.WaitForNotification();
  EXPECT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(waiting.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(waiting.status.error_message(),
              HasSubstr("in the admission queue (--max_queue_wait)"));
  EXPECT_EQ(scorer_.calls(), 1);  // the expired call was never scored
  EXPECT_THAT(fake.registry.Serialize(),
              HasSubstr("embsum_shed_total{reason=\"waited\"} 1\n"));
  fake.server->Shutdown(absl::Seconds(5));
}

TEST_F(ServerTest, DeadlinePassedWhileQueuedIsNotScored) {
  // The worker checks deadlines against a fake clock that starts at the
  // real time: moved an hour on, every queued call's deadline has passed
  // when the worker takes it, however late the cancellation arrives.
  FakeClockServer fake;
  ASSERT_NO_FATAL_FAILURE(StartFakeClockServer(absl::ZeroDuration(), &fake));
  scorer_.Close();
  // Occupy the worker.
  grpc::ClientContext blocker_context;
  v1::RankResponse blocker_response;
  absl::Notification blocker_done;
  const v1::RankRequest request = AllItemsRequest(0);
  fake.ranker->async()->Rank(&blocker_context, &request, &blocker_response,
                             [&](grpc::Status) { blocker_done.Notify(); });
  scorer_.AwaitWaiting(1);
  // This one waits in the queue past its deadline.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(200));
  v1::RankResponse response;
  EXPECT_EQ(fake.ranker->Rank(&context, request, &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  fake.now_ns += absl::ToInt64Nanoseconds(absl::Hours(1));
  scorer_.Open();
  blocker_done.WaitForNotification();
  // Shutdown returns once every call has finished: the worker saw the
  // expired call and finished it without scoring (as cancelled when the
  // client's cancellation arrived first).
  fake.server->Shutdown(absl::Seconds(5));
  const std::string want =
      "grpc_server_handled_total{grpc_service=\"embsum.v1.Ranker\","
      "grpc_method=\"Rank\",grpc_code=\"";
  const std::string text = fake.registry.Serialize();
  EXPECT_THAT(text,
              HasSubstr("embsum_scoring_seconds_count{backend=\"cpu\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(want + "OK\"} 1\n"));
  EXPECT_THAT(text, AnyOf(HasSubstr(want + "DEADLINE_EXCEEDED\"} 1\n"),
                          HasSubstr(want + "CANCELLED\"} 1\n")));
  EXPECT_EQ(scorer_.calls(), 1);
}

TEST_F(ServerTest, MetricsCountRequestsAndModel) {
  v1::RankRequest request = AllItemsRequest(0);
  request.add_candidate_ids("ghost");
  v1::RankResponse response;
  ASSERT_TRUE(Rank(request, &response).ok());
  request.set_user_id("nobody");
  EXPECT_FALSE(Rank(request, &response).ok());
  const std::string text = registry_.Serialize();
  const std::string rank =
      "{grpc_service=\"embsum.v1.Ranker\",grpc_method=\"Rank\"";
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total" + rank +
                              ",grpc_code=\"OK\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total" + rank +
                              ",grpc_code=\"NOT_FOUND\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("grpc_server_handling_seconds_count" + rank + "} 2\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handling_seconds_bucket" + rank +
                              ",le=\"1e-05\"}"));
  EXPECT_THAT(text, HasSubstr("embsum_rank_candidates_count 2\n"));
  EXPECT_THAT(text, HasSubstr("embsum_rank_candidates_sum 602\n"));
  EXPECT_THAT(text, HasSubstr("embsum_unknown_items_total 1\n"));
  EXPECT_THAT(text,
              HasSubstr("embsum_scoring_seconds_count{backend=\"cpu\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("embsum_users 24\n"));
  EXPECT_THAT(text, HasSubstr("embsum_items 300\n"));
  EXPECT_THAT(
      text, HasSubstr("embsum_model_info{model_version=\"test-model-7\"} 1\n"));
  for (const char* reason : {"queue_full", "predicted_wait", "waited"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("embsum_shed_total{reason=\"",
                                             reason, "\"} 0\n")));
  }
  // The scoring kernel for the arena's dtype, from Scorer::kernel_info.
  EXPECT_THAT(text, HasSubstr("embsum_scorer_info{kernel=\""));
  EXPECT_THAT(text, HasSubstr(",dtype=\"fp32\"} 1\n"));
}

TEST_F(ServerTest, RankReportsItsPhases) {
  ModelSlot models(data_);
  RankerCore core(RankerCoreOptions{}, &models, &scorer_, nullptr);
  RankTimings timings;
  v1::RankResponse response;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(core.Rank(AllItemsRequest(0), &response, &timings).ok());
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_GT(timings.user, 0);  // a RocksDB read
  EXPECT_GT(timings.score, 0);
  EXPECT_GE(timings.lookup, 0);
  EXPECT_GE(timings.top_k, 0);
  EXPECT_GE(timings.response, 0);
  EXPECT_LE(timings.user + timings.lookup + timings.score + timings.top_k +
                timings.response,
            total);
  // Without candidates nothing is scored (the same struct, reused).
  v1::RankRequest none;
  none.set_user_id(AllItemsRequest(0).user_id());
  ASSERT_TRUE(core.Rank(none, &response, &timings).ok());
  EXPECT_EQ(timings.score, 0);
  EXPECT_GT(timings.user, 0);
}

TEST_F(ServerTest, MetricsShowRankPhasesQueueWaitThreadsAndBlasCore) {
  v1::RankResponse response;
  ASSERT_TRUE(Rank(AllItemsRequest(0), &response).ok());
  // A failed Rank observes no phases.
  v1::RankRequest unknown = AllItemsRequest(0);
  unknown.set_user_id("nobody");
  EXPECT_FALSE(Rank(unknown, &response).ok());
  const std::string text = registry_.Serialize();
  for (const char* phase : {"user", "lookup", "score", "top_k", "response"}) {
    EXPECT_THAT(text, HasSubstr(std::string("embsum_rank_phase_seconds_count{"
                                            "phase=\"") +
                                phase + "\"} 1\n"))
        << phase;
  }
  // Both calls went through the rank pool's queue.
  EXPECT_THAT(text,
              HasSubstr("embsum_queue_wait_seconds_count{pool=\"rank\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("embsum_threads{pool=\"rank\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("embsum_threads{pool=\"admin\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("embsum_threads{pool=\"scorer\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("embsum_threads{pool=\"blas\"} "));
  const BlasInfo blas = GetBlasInfo();
  EXPECT_THAT(text,
              HasSubstr("embsum_blas_info{core=\"" + blas.core + "\"} 1\n"));
}

TEST_F(ServerTest,
       SwapModelAnswersNewCallsFromTheNewModelAndLetsCallsInFlightFinish) {
  // A second model: other version, more items, other vectors.
  datagen::SyntheticModelOptions options = embsum::testing::SmallModelOptions();
  options.model_version = "test-model-8";
  options.items += 50;
  options.seed += 1;
  TestModel next_model;
  ASSERT_TRUE(
      embsum::testing::BuildTestModel(
          embsum::testing::MakeTempDir("server-swap"), options, &next_model)
          .ok());
  auto dir = store::DataDir::Open(next_model.data_dir, {});
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto next = std::make_shared<const ServingModel>(*std::move(dir), 2);

  // A call in flight on the old model, held inside the scorer.
  scorer_.Close();
  grpc::ClientContext context;
  v1::RankResponse in_flight;
  grpc::Status in_flight_status;
  absl::Notification done;
  const v1::RankRequest request = AllItemsRequest(0);
  ranker_->async()->Rank(&context, &request, &in_flight, [&](grpc::Status s) {
    in_flight_status = s;
    done.Notify();
  });
  scorer_.AwaitWaiting(1);
  std::shared_ptr<const ServingModel> previous = server_->SwapModel(next);
  EXPECT_EQ(previous, data_);
  EXPECT_EQ(server_->model(), next);
  scorer_.Open();
  done.WaitForNotification();
  ASSERT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();
  EXPECT_EQ(in_flight.model_version(), "test-model-7");
  EXPECT_EQ(in_flight.items_size(), static_cast<int>(model_.item_ids.size()));

  // New calls: the new model's version, items and scores.
  v1::RankRequest again;
  again.set_user_id(next_model.user_ids[0]);
  for (const std::string& id : next_model.item_ids) {
    again.add_candidate_ids(id);
  }
  v1::RankResponse response;
  ASSERT_TRUE(Rank(again, &response).ok());
  EXPECT_EQ(response.model_version(), "test-model-8");
  ASSERT_EQ(response.items_size(),
            static_cast<int>(next_model.item_ids.size()));
  for (const v1::ScoredItem& item : response.items()) {
    const size_t i = std::find(next_model.item_ids.begin(),
                               next_model.item_ids.end(), item.item_id()) -
                     next_model.item_ids.begin();
    EXPECT_NEAR(item.score(), next_model.Reference(0, i).score, 1e-4);
  }
  v1::ModelInfo info;
  {
    grpc::ClientContext info_context;
    ASSERT_TRUE(
        ranker_->GetModelInfo(&info_context, v1::GetModelInfoRequest(), &info)
            .ok());
  }
  EXPECT_EQ(info.model_version(), "test-model-8");
  EXPECT_EQ(info.items(), next_model.item_ids.size());
  // Writes go to the model in service.
  v1::DeleteItemsRequest erase;
  erase.add_item_ids(next_model.item_ids.back());
  v1::DeleteItemsResponse erased;
  {
    grpc::ClientContext erase_context;
    ASSERT_TRUE(admin_->DeleteItems(&erase_context, erase, &erased).ok());
  }
  EXPECT_EQ(erased.deleted(), 1u);
  EXPECT_EQ(next->items().Current()->size(), next_model.item_ids.size() - 1);
  EXPECT_EQ(data_->items().Current()->size(), model_.item_ids.size());
  // The metrics follow: one model_info series, the new one.
  const std::string text = registry_.Serialize();
  EXPECT_THAT(
      text, HasSubstr("embsum_model_info{model_version=\"test-model-8\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("test-model-7")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("embsum_items ",
                                     next_model.item_ids.size() - 1, "\n")));
}

TEST_F(ServerTest, ShutdownGoesNotServingAndFinishesCallsInFlight) {
  scorer_.Close();
  grpc::ClientContext context;
  v1::RankResponse response;
  grpc::Status status;
  absl::Notification done;
  const v1::RankRequest request = AllItemsRequest(0);
  ranker_->async()->Rank(&context, &request, &response, [&](grpc::Status s) {
    status = s;
    done.Notify();
  });
  scorer_.AwaitWaiting(1);
  server_->SetServing(false);
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  std::thread stopper([this] { server_->Shutdown(absl::Seconds(30)); });
  // Shutdown has begun once the server takes no new calls: health checks,
  // answered so far (NOT_SERVING), start failing.
  for (;;) {
    grpc::ClientContext check_context;
    check_context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse check;
    if (!health_
             ->Check(&check_context, grpc::health::v1::HealthCheckRequest(),
                     &check)
             .ok()) {
      break;
    }
    EXPECT_EQ(check.status(),
              grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  scorer_.Open();
  done.WaitForNotification();
  stopper.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.items_size(), static_cast<int>(model_.item_ids.size()));
}

}  // namespace
}  // namespace embsum::server
