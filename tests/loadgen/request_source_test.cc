#include "loadgen/request_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "embsum/v1/echo.pb.h"
#include "embsum/v1/ranking.pb.h"
#include "tests/loadgen/test_files.h"

namespace embsum::loadgen {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Ids(const std::string& prefix, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(prefix + std::to_string(i));
  return ids;
}

TEST(CandidateCount, ParsesTheThreeDistributions) {
  std::mt19937_64 rng(1);
  auto fixed = CandidateCount::Parse("500");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->Draw(rng), 500u);
  EXPECT_EQ(fixed->ToString(), "500");

  auto uniform = CandidateCount::Parse("uniform:10:20");
  ASSERT_TRUE(uniform.ok());
  std::set<uint32_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const uint32_t v = uniform->Draw(rng);
    ASSERT_GE(v, 10u);
    ASSERT_LE(v, 20u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 11u);

  auto lognormal = CandidateCount::Parse("lognormal:200:0.5");
  ASSERT_TRUE(lognormal.ok());
  std::vector<uint32_t> draws;
  for (int i = 0; i < 4001; ++i) draws.push_back(lognormal->Draw(rng));
  std::nth_element(draws.begin(), draws.begin() + 2000, draws.end());
  EXPECT_NEAR(draws[2000], 200.0, 20.0);  // the median
  EXPECT_EQ(lognormal->ToString(), "lognormal:200:0.5");
}

TEST(CandidateCount, RejectsBadSpecs) {
  for (const char* bad :
       {"", "0", "-3", "abc", "uniform:5", "uniform:9:3", "lognormal:100:x",
        "lognormal:100:-1", "zipf:1:2", "100001"}) {
    auto c = CandidateCount::Parse(bad);
    EXPECT_FALSE(c.ok()) << bad;
    EXPECT_THAT(c.status().message(), HasSubstr("--candidates")) << bad;
  }
}

TEST(BuildPoolFromIds, DrawsDistinctKnownCandidates) {
  const auto users = Ids("u", 10);
  const auto items = Ids("i", 1000);
  RequestPoolOptions options;
  options.pool_size = 64;
  options.top_k = 7;
  auto pool =
      BuildPoolFromIds(users, items, *CandidateCount::Parse("50"), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->method, "/embsum.v1.Ranker/Rank");
  ASSERT_EQ(pool->payloads.size(), 64u);
  EXPECT_DOUBLE_EQ(pool->mean_candidates, 50);
  std::set<std::string> users_seen;
  ASSERT_EQ(pool->user_ids.size(), pool->payloads.size());
  for (size_t i = 0; i < pool->payloads.size(); ++i) {
    v1::RankRequest r;
    ASSERT_TRUE(r.ParseFromString(pool->payloads[i]));
    EXPECT_EQ(pool->user_ids[i], r.user_id());  // the x-user-id header
    EXPECT_EQ(r.top_k(), 7u);
    users_seen.insert(r.user_id());
    std::set<std::string> distinct(r.candidate_ids().begin(),
                                   r.candidate_ids().end());
    EXPECT_EQ(distinct.size(), 50u);
    for (const auto& id : distinct) {
      EXPECT_EQ(id[0], 'i');
    }
  }
  EXPECT_GT(users_seen.size(), 5u);
}

TEST(UserIdHeader, PrintableAsciiOnly) {
  EXPECT_EQ(UserIdHeader("U-17 a~"), "U-17 a~");
  EXPECT_EQ(UserIdHeader("us\xc3\xa9r"), "");  // UTF-8: no header
  EXPECT_EQ(UserIdHeader("a\tb"), "");
  EXPECT_EQ(UserIdHeader("a\x7f"), "");
}

TEST(BuildPoolFromIds, IsDeterministicBySeedAndClampsToCatalogue) {
  const auto users = Ids("u", 3);
  const auto items = Ids("i", 20);
  RequestPoolOptions options;
  options.pool_size = 8;
  auto a =
      BuildPoolFromIds(users, items, *CandidateCount::Parse("30"), options);
  auto b =
      BuildPoolFromIds(users, items, *CandidateCount::Parse("30"), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->payloads, b->payloads);
  EXPECT_DOUBLE_EQ(a->mean_candidates, 20);  // all 20 items
  options.seed = 2;
  auto c =
      BuildPoolFromIds(users, items, *CandidateCount::Parse("30"), options);
  EXPECT_NE(a->payloads, c->payloads);
}

TEST(BuildPoolFromIds, EchoRequestsCarryTheRankRequestAndResponseSize) {
  const auto users = Ids("user", 5);
  const auto items = Ids("item", 100);
  RequestPoolOptions rank_options;
  rank_options.pool_size = 4;
  RequestPoolOptions echo_options = rank_options;
  echo_options.kind = TargetKind::kEcho;
  const auto count = *CandidateCount::Parse("40");
  auto rank = BuildPoolFromIds(users, items, count, rank_options);
  auto echo = BuildPoolFromIds(users, items, count, echo_options);
  ASSERT_TRUE(rank.ok() && echo.ok());
  EXPECT_EQ(echo->method, "/embsum.v1.Echo/Echo");
  EXPECT_DOUBLE_EQ(echo->mean_request_bytes, rank->mean_request_bytes);
  for (size_t i = 0; i < echo->payloads.size(); ++i) {
    v1::EchoRequest e;
    ASSERT_TRUE(e.ParseFromString(echo->payloads[i]));
    EXPECT_EQ(e.payload(), rank->payloads[i]);  // same seed, same request
    // A RankResponse lists each candidate id with a score: larger than the
    // request's id list.
    EXPECT_GT(e.response_bytes(), rank->payloads[i].size());
  }
  echo_options.echo_response_bytes = 999;
  auto fixed = BuildPoolFromIds(users, items, count, echo_options);
  v1::EchoRequest e;
  ASSERT_TRUE(e.ParseFromString(fixed->payloads[0]));
  EXPECT_EQ(e.response_bytes(), 999u);
  EXPECT_EQ(fixed->echo_response_bytes, 999u);
}

TEST(BuildPoolFromModelDir, ReadsTheArtifactIdsAndNamesBadFiles) {
  TempDir dir;
  dir.Write("users/ids.txt", "u1\nu2\n");
  dir.Write("items/ids.txt", "a\nb\nc\n");
  RequestPoolOptions options;
  options.pool_size = 3;
  auto pool =
      BuildPoolFromModelDir(dir.path(), *CandidateCount::Parse("2"), options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->payloads.size(), 3u);

  dir.Write("items/ids.txt", "a\na\n");
  auto bad =
      BuildPoolFromModelDir(dir.path(), *CandidateCount::Parse("2"), options);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("items/ids.txt:2: duplicate id 'a'"));
  auto missing = BuildPoolFromModelDir(dir.path() + "/nope",
                                       *CandidateCount::Parse("2"), options);
  EXPECT_THAT(missing.status().message(), HasSubstr("users/ids.txt"));
}

TEST(BuildPoolFromImpressions, OneRequestPerImpression) {
  std::vector<Impression> imps(3);
  for (int i = 0; i < 3; ++i) {
    imps[i].user_id = "U" + std::to_string(i);
    imps[i].candidates = Ids("N", i + 1);
  }
  RequestPoolOptions options;
  options.pool_size = 0;  // all
  auto pool = BuildPoolFromImpressions(imps, options);
  ASSERT_TRUE(pool.ok());
  ASSERT_EQ(pool->payloads.size(), 3u);
  EXPECT_DOUBLE_EQ(pool->mean_candidates, 2.0);
  v1::RankRequest r;
  ASSERT_TRUE(r.ParseFromString(pool->payloads[2]));
  EXPECT_EQ(r.user_id(), "U2");
  EXPECT_EQ(r.candidate_ids_size(), 3);
  options.pool_size = 2;
  EXPECT_EQ(BuildPoolFromImpressions(imps, options)->payloads.size(), 2u);
  EXPECT_FALSE(BuildPoolFromImpressions({}, options).ok());
}

}  // namespace
}  // namespace embsum::loadgen
