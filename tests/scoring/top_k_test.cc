#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "scoring/scorer.h"

namespace embsum::scoring {
namespace {

std::vector<uint32_t> TopK(const std::vector<float>& scores, uint32_t k) {
  std::vector<uint32_t> out = {12345};  // overwritten
  SelectTopK(scores, k, &out);
  return out;
}

TEST(SelectTopKTest, TiesKeepRequestOrder) {
  const std::vector<float> scores = {1, 3, 2, 3, 1, 3};
  EXPECT_EQ(TopK(scores, 0), (std::vector<uint32_t>{1, 3, 5, 2, 0, 4}));
  EXPECT_EQ(TopK(scores, 2), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(TopK(scores, 4), (std::vector<uint32_t>{1, 3, 5, 2}));
}

TEST(SelectTopKTest, KLargerThanCountAndZeroCandidates) {
  EXPECT_EQ(TopK({0.5f, 2.0f}, 10), (std::vector<uint32_t>{1, 0}));
  EXPECT_TRUE(TopK({}, 10).empty());
  EXPECT_TRUE(TopK({}, 0).empty());
}

TEST(SelectTopKTest, NanRanksLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(TopK({nan, 1.0f, nan, -5.0f}, 0),
            (std::vector<uint32_t>{1, 3, 0, 2}));
}

TEST(SelectTopKTest, MatchesStableSortOnRandomScores) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> coarse(0, 50);  // many ties
  std::vector<float> scores(3000);
  for (float& s : scores) s = static_cast<float>(coarse(rng)) * 0.5f;
  std::vector<uint32_t> want(scores.size());
  std::iota(want.begin(), want.end(), 0u);
  std::stable_sort(want.begin(), want.end(), [&](uint32_t x, uint32_t y) {
    return scores[x] > scores[y];
  });
  for (uint32_t k : {1u, 7u, 100u, 2999u, 3000u, 0u}) {
    std::vector<uint32_t> prefix(want.begin(),
                                 want.begin() + (k == 0 ? want.size() : k));
    EXPECT_EQ(TopK(scores, k), prefix) << "k=" << k;
  }
}

TEST(SelectTopKTest, OrdersSignsInfinitiesZerosAndNansLikeTheComparator) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float tiny = std::numeric_limits<float>::denorm_min();
  std::vector<float> scores = {-0.0f, 0.0f, -inf, inf,   -nan,   nan,
                               -1.5f, 1.5f, tiny, -tiny, -3e38f, 3e38f};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int i = 0; i < 500; ++i) scores.push_back(normal(rng));
  for (int i = 0; i < 20; ++i) scores.push_back(scores[rng() % 12]);
  std::shuffle(scores.begin(), scores.end(), rng);
  // Higher first, NaN last, ties (+0 == -0, NaN with NaN) by index.
  std::vector<uint32_t> want(scores.size());
  std::iota(want.begin(), want.end(), 0u);
  std::stable_sort(want.begin(), want.end(), [&](uint32_t x, uint32_t y) {
    const bool nx = std::isnan(scores[x]);
    const bool ny = std::isnan(scores[y]);
    if (nx != ny) return ny;
    return !nx && scores[x] > scores[y];
  });
  for (uint32_t k : {0u, 1u, 13u, 260u}) {
    std::vector<uint32_t> prefix(want.begin(),
                                 want.begin() + (k == 0 ? want.size() : k));
    EXPECT_EQ(TopK(scores, k), prefix) << "k=" << k;
  }
}

}  // namespace
}  // namespace embsum::scoring
