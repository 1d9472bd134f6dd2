#include "metrics/http_server.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/process_metrics.h"
#include "tests/metrics/http_get.h"

namespace embsum::metrics {
namespace {

using ::embsum::testing::HttpGet;
using ::embsum::testing::HttpResponse;
using ::testing::HasSubstr;

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("demo_requests_total", "Requests.", {"code"})
        .WithLabels({"OK"})
        .Increment(7);
    const std::vector<double> bounds = DecadeBuckets(1e-5, 10);
    registry_.AddHistogram("demo_seconds", "Latency.", {"method"}, bounds)
        .WithLabels({"Rank"})
        .Observe(0.003);
    RegisterProcessMetrics(&registry_);
    auto server =
        MetricsHttpServer::Start({.listen = "127.0.0.1:0"}, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }

  Registry registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, ServesTheRegistryInTextFormat) {
  const HttpResponse r = HttpGet(server_->port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: text/plain; version=0.0.4; "
                                   "charset=utf-8"));
  EXPECT_THAT(r.body, HasSubstr("demo_requests_total{code=\"OK\"} 7\n"));
  EXPECT_THAT(r.body, HasSubstr("process_resident_memory_bytes "));
}

TEST_F(MetricsHttpServerTest, UnknownPathIs404) {
  EXPECT_EQ(HttpGet(server_->port(), "/nope").status, 404);
}

TEST_F(MetricsHttpServerTest, OnlyGetAndHead) {
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", "HEAD").status, 200);
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", "DELETE").status, 405);
}

TEST_F(MetricsHttpServerTest, BusyPortIsUnavailable) {
  auto second = MetricsHttpServer::Start(
      {.listen = "127.0.0.1:" + std::to_string(server_->port())}, &registry_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("127.0.0.1:" + std::to_string(server_->port())));
}

TEST(MetricsHttpServerAddressTest, MalformedAddressIsInvalidArgument) {
  Registry registry;
  for (const char* bad : {"localhost", "127.0.0.1:http", "127.0.0.1:70000"}) {
    auto server = MetricsHttpServer::Start({.listen = bad}, &registry);
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(bad));
  }
}

// promtool (Debian package prometheus, installed by tools/setup.sh) lints the
// real HTTP output.
TEST_F(MetricsHttpServerTest, PromtoolCheckMetricsIsClean) {
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool not found: run tools/setup.sh";
  const HttpResponse r = HttpGet(server_->port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const std::string dir = ::testing::TempDir();
  const std::string in = dir + "/metrics.txt";
  const std::string out = dir + "/promtool.txt";
  std::ofstream(in) << r.body;
  const int rc = std::system(
      ("promtool check metrics < " + in + " > " + out + " 2>&1").c_str());
  std::ifstream log(out);
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_EQ(text, "") << text;
}

}  // namespace
}  // namespace embsum::metrics
