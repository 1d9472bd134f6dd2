#include "loadgen/ranking_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace embsum::loadgen {
namespace {

TEST(RankingMetrics, HandComputedImpression) {
  // Scores rank the items c, a, d, b; clicks on a and b.
  const std::vector<double> scores = {0.8, 0.1, 0.9, 0.4};
  const std::vector<int> labels = {1, 1, 0, 0};
  // AUC: pairs (pos, neg) ordered correctly: a>d yes, a>c no, b>c no, b>d no
  // -> 1 of 4.
  EXPECT_DOUBLE_EQ(Auc(scores, labels), 0.25);
  // Ranks of the clicks: a at 2, b at 4 -> (1/2 + 1/4) / 2.
  EXPECT_DOUBLE_EQ(Mrr(scores, labels), 0.375);
  // DCG = 1/log2(3) + 1/log2(5); ideal = 1/log2(2) + 1/log2(3).
  const double dcg = 1 / std::log2(3.0) + 1 / std::log2(5.0);
  const double ideal = 1.0 + 1 / std::log2(3.0);
  EXPECT_NEAR(Ndcg(scores, labels, 5), dcg / ideal, 1e-12);
  EXPECT_NEAR(Ndcg(scores, labels, 10), dcg / ideal, 1e-12);
  // At k = 2 only a (rank 2) counts.
  EXPECT_NEAR(Ndcg(scores, labels, 2), (1 / std::log2(3.0)) / ideal, 1e-12);
}

TEST(RankingMetrics, PerfectAndReversedRankings) {
  const std::vector<int> labels = {0, 1, 0, 0, 1, 0};
  const std::vector<double> perfect = {1, 5, 2, 3, 6, 0};
  EXPECT_DOUBLE_EQ(Auc(perfect, labels), 1.0);
  EXPECT_DOUBLE_EQ(Mrr(perfect, labels), (1.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(Ndcg(perfect, labels, 5), 1.0);
  const std::vector<double> reversed = {5, 1, 4, 3, 0, 6};
  EXPECT_DOUBLE_EQ(Auc(reversed, labels), 0.0);
  // Clicks at ranks 5 and 6.
  EXPECT_DOUBLE_EQ(Mrr(reversed, labels), (1.0 / 5 + 1.0 / 6) / 2);
  EXPECT_DOUBLE_EQ(
      Ndcg(reversed, labels, 10),
      (1 / std::log2(6.0) + 1 / std::log2(7.0)) / (1.0 + 1 / std::log2(3.0)));
}

TEST(RankingMetrics, TiesCountOneHalfInAucAndKeepInputOrderInRanks) {
  const std::vector<double> scores = {0.5, 0.5, 0.5};
  const std::vector<int> labels = {0, 1, 0};
  EXPECT_DOUBLE_EQ(Auc(scores, labels), 0.5);
  // Ties keep input order: the click is at rank 2.
  EXPECT_DOUBLE_EQ(Mrr(scores, labels), 0.5);
  // One tie between the click and a non-click, one clear win.
  EXPECT_DOUBLE_EQ(Auc(std::vector<double>{0.5, 0.5, 0.1}, labels), 0.75);
}

TEST(RankingMetrics, SingleClassImpressionsHaveNoMetrics) {
  const std::vector<double> scores = {0.3, 0.2};
  EXPECT_FALSE(ImpressionMetrics(scores, std::vector<int>{0, 0}).has_value());
  EXPECT_FALSE(ImpressionMetrics(scores, std::vector<int>{1, 1}).has_value());
  auto m = ImpressionMetrics(scores, std::vector<int>{1, 0});
  ASSERT_TRUE(m.has_value());
  EXPECT_DOUBLE_EQ(m->auc, 1.0);
  EXPECT_DOUBLE_EQ(m->mrr, 1.0);
  EXPECT_DOUBLE_EQ(m->ndcg5, 1.0);
  EXPECT_DOUBLE_EQ(m->ndcg10, 1.0);
}

TEST(RankingMetrics, MeanAveragesOverImpressions) {
  MetricsMean a, b;
  a.Add({1.0, 1.0, 1.0, 1.0});
  b.Add({0.0, 0.5, 0.25, 0.75});
  b.Add({0.5, 0.0, 0.5, 0.5});
  a.Merge(b);
  EXPECT_EQ(a.count(), 3u);
  const RankingMetrics m = a.Mean();
  EXPECT_DOUBLE_EQ(m.auc, 0.5);
  EXPECT_DOUBLE_EQ(m.mrr, 0.5);
  EXPECT_DOUBLE_EQ(m.ndcg5, 1.75 / 3);
  EXPECT_DOUBLE_EQ(m.ndcg10, 0.75);
  EXPECT_DOUBLE_EQ(MetricsMean().Mean().auc, 0.0);
}

}  // namespace
}  // namespace embsum::loadgen
