// TLS and mutual TLS with certificates made by openssl in the test.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "embsum/v1/ranking.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/server.h"
#include "server/serving_model.h"
#include "store/data_dir.h"
#include "tests/server/test_support.h"

namespace embsum::server {
namespace {

using ::embsum::testing::ReadFileOrEmpty;
using ::embsum::testing::TestCerts;
using ::embsum::testing::TestModel;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = embsum::testing::MakeTempDir("tls-test");
    ASSERT_TRUE(embsum::testing::BuildTestModel(
                    root_, embsum::testing::SmallModelOptions(), &model_)
                    .ok());
    absl::Status certs = embsum::testing::MakeTestCerts(root_, &certs_);
    ASSERT_TRUE(certs.ok()) << certs;
    auto data = store::DataDir::Open(model_.data_dir, {});
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = std::make_shared<const ServingModel>(*std::move(data), 1);
    scorer_ = scoring::MakeCpuScorer();
  }

  absl::Status StartServer(const TlsOptions& tls) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.admin_listen = "127.0.0.1:0";
    options.workers = 1;
    options.tls = tls;
    auto server = Server::Start(options, data_, scorer_.get(), &registry_);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    return absl::OkStatus();
  }

  // A Rank over a channel with `credentials`.
  grpc::Status RankWith(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    auto channel = grpc::CreateCustomChannel(
        "localhost:" + std::to_string(server_->port()), credentials, args);
    auto stub = v1::Ranker::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    v1::RankRequest request;
    request.set_user_id(model_.user_ids[0]);
    request.add_candidate_ids(model_.item_ids[0]);
    v1::RankResponse response;
    grpc::Status s = stub->Rank(&context, request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.items_size(), 1);
    }
    return s;
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca,
                                                const std::string& cert = "",
                                                const std::string& key = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFileOrEmpty(ca);
    if (!cert.empty()) {
      options.pem_cert_chain = ReadFileOrEmpty(cert);
      options.pem_private_key = ReadFileOrEmpty(key);
    }
    return grpc::SslCredentials(options);
  }

  std::string root_;
  TestModel model_;
  TestCerts certs_;
  std::shared_ptr<const ServingModel> data_;
  std::unique_ptr<scoring::Scorer> scorer_;
  metrics::Registry registry_;
  std::unique_ptr<Server> server_;
};

TEST_F(TlsTest, ServerTls) {
  ASSERT_TRUE(StartServer({.cert_file = certs_.server_cert,
                           .key_file = certs_.server_key,
                           .client_ca_file = ""})
                  .ok());
  EXPECT_TRUE(RankWith(Tls(certs_.ca_cert)).ok());
  // A client that trusts another CA refuses the server.
  EXPECT_EQ(RankWith(Tls(certs_.other_ca_cert)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // Plaintext against a TLS port fails.
  EXPECT_EQ(RankWith(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTls) {
  ASSERT_TRUE(StartServer({.cert_file = certs_.server_cert,
                           .key_file = certs_.server_key,
                           .client_ca_file = certs_.ca_cert})
                  .ok());
  EXPECT_TRUE(
      RankWith(Tls(certs_.ca_cert, certs_.client_cert, certs_.client_key))
          .ok());
  // No client certificate, or one signed by the wrong CA: refused.
  EXPECT_FALSE(RankWith(Tls(certs_.ca_cert)).ok());
  EXPECT_FALSE(RankWith(Tls(certs_.ca_cert, certs_.other_client_cert,
                            certs_.other_client_key))
                   .ok());
}

TEST_F(TlsTest, BusyPortIsUnavailable) {
  ASSERT_TRUE(StartServer({}).ok());
  ServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(server_->port());
  options.admin_listen = "127.0.0.1:0";
  metrics::Registry registry;
  auto second = Server::Start(options, data_, scorer_.get(), &registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(options.listen));
}

TEST_F(TlsTest, BadTlsOptionsAreReported) {
  absl::Status s = StartServer(
      {.cert_file = certs_.server_cert, .key_file = "", .client_ca_file = ""});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--tls_cert and --tls_key"));
  s = StartServer({.cert_file = root_ + "/missing.pem",
                   .key_file = certs_.server_key,
                   .client_ca_file = ""});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("missing.pem"));
  s = StartServer(
      {.cert_file = "", .key_file = "", .client_ca_file = certs_.ca_cert});
  EXPECT_THAT(s.message(), HasSubstr("--tls_client_ca needs"));
}

}  // namespace
}  // namespace embsum::server
