#include "loadgen/eval.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

namespace embsum::loadgen {
namespace {

using ::testing::HasSubstr;

// Impressions over items "p<k>" (clicked) and "n<k>" (not clicked).
std::vector<Impression> MakeImpressions(int count) {
  std::vector<Impression> imps;
  for (int i = 0; i < count; ++i) {
    Impression imp;
    imp.user_id = "U" + std::to_string(i);
    imp.line = i + 1;
    for (int k = 0; k < 8; ++k) {
      const bool click = k % 4 == 1;
      imp.candidates.push_back((click ? "p" : "n") + std::to_string(k));
      imp.labels.push_back(click ? 1 : 0);
    }
    imps.push_back(imp);
  }
  return imps;
}

// Scores clicked items high (or low when `reverse`), like a server would.
RankFunction Oracle(bool reverse) {
  return
      [reverse](
          const v1::RankRequest& request) -> absl::StatusOr<v1::RankResponse> {
        v1::RankResponse response;
        for (const std::string& id : request.candidate_ids()) {
          auto* item = response.add_items();
          item->set_item_id(id);
          const bool click = id[0] == 'p';
          item->set_score(click != reverse ? 1.0f : 0.0f);
        }
        return response;
      };
}

TEST(EvaluateImpressions, PerfectAndReversedRankers) {
  const auto imps = MakeImpressions(20);
  EvalOptions options;
  auto perfect = EvaluateImpressions(imps, Oracle(false), options);
  ASSERT_TRUE(perfect.ok()) << perfect.status();
  EXPECT_EQ(perfect->evaluated, 20u);
  EXPECT_DOUBLE_EQ(perfect->mean.auc, 1.0);
  // Two clicks at ranks 1 and 2: (1 + 1/2) / 2.
  EXPECT_DOUBLE_EQ(perfect->mean.mrr, 0.75);
  EXPECT_DOUBLE_EQ(perfect->mean.ndcg5, 1.0);
  EXPECT_DOUBLE_EQ(perfect->mean.ndcg10, 1.0);
  auto reversed = EvaluateImpressions(imps, Oracle(true), options);
  ASSERT_TRUE(reversed.ok());
  EXPECT_DOUBLE_EQ(reversed->mean.auc, 0.0);
  EXPECT_LT(reversed->mean.mrr, 0.5);
}

TEST(EvaluateImpressions, ShuffledLabelsGiveChanceAuc) {
  const auto imps = MakeImpressions(2000);
  EvalOptions options;
  options.shuffle_labels = true;
  options.seed = 5;
  auto r = EvaluateImpressions(imps, Oracle(false), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->mean.auc, 0.5, 0.03);
}

TEST(EvaluateImpressions, UnknownItemsRankLastAndUsersAreSkipped) {
  auto imps = MakeImpressions(3);
  imps[2].user_id = "ghost";
  RankFunction rank =
      [](const v1::RankRequest& request) -> absl::StatusOr<v1::RankResponse> {
    if (request.user_id() == "ghost") return absl::NotFoundError("no user");
    v1::RankResponse response;
    for (const std::string& id : request.candidate_ids()) {
      // The server does not know the clicked items: they rank last, and
      // every known (non-clicked) item scores the same.
      if (id[0] == 'p') {
        response.add_unknown_item_ids(id);
        continue;
      }
      auto* item = response.add_items();
      item->set_item_id(id);
      item->set_score(0.3f);
    }
    return response;
  };
  auto r = EvaluateImpressions(imps, rank, EvalOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->skipped_unknown_user, 1u);
  EXPECT_EQ(r->evaluated, 2u);
  EXPECT_EQ(r->unknown_items, 4u);  // 2 clicks in each of 2 impressions
  EXPECT_DOUBLE_EQ(r->mean.auc, 0.0);
}

TEST(EvaluateImpressions, SingleClassImpressionsAreSkipped) {
  auto imps = MakeImpressions(2);
  for (int& l : imps[0].labels) l = 0;
  auto r = EvaluateImpressions(imps, Oracle(false), EvalOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->skipped_single_class, 1u);
  EXPECT_EQ(r->evaluated, 1u);
}

TEST(EvaluateImpressions, OtherErrorsStopWithTheLine) {
  const auto imps = MakeImpressions(5);
  std::atomic<int> calls{0};
  RankFunction rank =
      [&](const v1::RankRequest& request) -> absl::StatusOr<v1::RankResponse> {
    ++calls;
    if (request.user_id() == "U3") return absl::UnavailableError("down");
    return Oracle(false)(request);
  };
  EvalOptions options;
  options.behaviors = "b.tsv";
  options.concurrency = 1;
  auto r = EvaluateImpressions(imps, rank, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("b.tsv:4: Rank failed: down"));
  EXPECT_EQ(calls.load(), 4);  // stopped at the failure
}

TEST(EvaluateImpressions, NeedsLabelsAndSomethingToEvaluate) {
  auto imps = MakeImpressions(1);
  imps[0].labels.clear();
  EXPECT_THAT(EvaluateImpressions(imps, Oracle(false), EvalOptions{})
                  .status()
                  .message(),
              HasSubstr("line 1: impression has no -0/-1 click labels"));
  auto all_unknown = MakeImpressions(2);
  RankFunction none =
      [](const v1::RankRequest&) -> absl::StatusOr<v1::RankResponse> {
    return absl::NotFoundError("x");
  };
  auto r = EvaluateImpressions(all_unknown, none, EvalOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("2 of unknown users"));
}

TEST(EvalText, PrintsTheFourMetrics) {
  EvalResult r;
  r.mean = {0.91234, 0.5, 0.6, 0.7};
  const std::string text = EvalText(r);
  EXPECT_THAT(text, HasSubstr("AUC: 0.9123\n"));
  EXPECT_THAT(text, HasSubstr("MRR: 0.5000\n"));
  EXPECT_THAT(text, HasSubstr("nDCG@5: 0.6000\n"));
  EXPECT_THAT(text, HasSubstr("nDCG@10: 0.7000\n"));
}

// A fake Retrieve: exact answers items e0..e(k-1); the default path answers
// the same except that for user "miss" it swaps its last `misses` items for
// others. Each call advances the fake clock by 10 ms (exact) or 1 ms.
struct FakeRetrieve {
  int misses = 0;
  double now = 0;
  RetrieveFunction Function() {
    return [this](const v1::RetrieveRequest& request)
               -> absl::StatusOr<v1::RetrieveResponse> {
      if (request.user_id() == "ghost") return absl::NotFoundError("ghost");
      if (request.user_id() == "broken") return absl::InternalError("boom");
      v1::RetrieveResponse response;
      for (uint32_t i = 0; i < request.k(); ++i) {
        const bool swap = !request.exact() && request.user_id() == "miss" &&
                          i >= request.k() - misses;
        response.add_items()->set_item_id((swap ? "x" : "e") +
                                          std::to_string(i));
      }
      response.set_scored_items(request.exact() ? 1000 : 50);
      response.set_certified_exact(request.exact());
      now += request.exact() ? 0.010 : 0.001;
      return response;
    };
  }
};

TEST(EvaluateRetrieval, RecallPerKAndLatencies) {
  FakeRetrieve fake;
  fake.misses = 5;  // of the top 100; none of the top 10
  RetrievalOptions options;
  options.ks = {10, 100};
  auto r = EvaluateRetrieval({"good", "ghost", "miss"}, fake.Function(),
                             options, [&] { return fake.now; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->users, 2u);
  EXPECT_EQ(r->skipped_unknown_user, 1u);
  EXPECT_DOUBLE_EQ(r->mean_recall[0], 1.0);
  EXPECT_DOUBLE_EQ(r->mean_recall[1], (1.0 + 0.95) / 2);
  EXPECT_DOUBLE_EQ(r->min_recall[1], 0.95);
  // Two users: the 1st and 5th percentile users are the worse one.
  EXPECT_DOUBLE_EQ(r->p1_recall[1], 0.95);
  EXPECT_DOUBLE_EQ(r->p5_recall[1], 0.95);
  EXPECT_DOUBLE_EQ(r->p1_recall[0], 1.0);
  EXPECT_NEAR(r->exact.mean_seconds, 0.010, 1e-9);
  EXPECT_NEAR(r->approximate.mean_seconds, 0.001, 1e-9);
  EXPECT_DOUBLE_EQ(r->mean_scored_items_exact, 1000);
  EXPECT_DOUBLE_EQ(r->mean_scored_items_approximate, 50);
  EXPECT_EQ(r->certified_approximate, 0u);
  EXPECT_THAT(RetrievalText(*r),
              HasSubstr("recall@100: 0.9750 (p1 0.95, p5 0.95, min 0.95)"));
  EXPECT_THAT(RetrievalText(*r),
              HasSubstr("latency ratio default/exact: mean 0.100"));
}

TEST(EvaluateRetrieval, ErrorsAndBadOptions) {
  FakeRetrieve fake;
  auto clock = [&] { return fake.now; };
  auto broken =
      EvaluateRetrieval({"broken"}, fake.Function(), RetrievalOptions{}, clock);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(broken.status().message(), HasSubstr("'broken'"));
  RetrievalOptions descending;
  descending.ks = {100, 10};
  EXPECT_EQ(EvaluateRetrieval({"good"}, fake.Function(), descending, clock)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EvaluateRetrieval({"ghost"}, fake.Function(), RetrievalOptions{}, clock)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace embsum::loadgen
