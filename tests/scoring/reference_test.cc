#include "scoring/reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace embsum::scoring {
namespace {

TEST(ReferenceTest, HandComputedExample) {
  // m = 2, n = 2, d = 2; Q = A, G = B.
  const std::vector<double> a = {1, 0, 0, 1};
  const std::vector<double> b = {2, 0, 0, 1};
  // K = L = [[2, 0], [0, 1]]; w = e^L / (e^2 + 2 + e).
  const double z = std::exp(2.0) + 2.0 + std::exp(1.0);
  const double row0 = std::exp(2.0) / z * 2.0;
  const double row1 = std::exp(1.0) / z * 1.0;
  const ReferenceResult r = ReferenceScore(2, 2, 2, a, {}, b, {});
  EXPECT_NEAR(r.score, row0 + row1, 1e-15);
  EXPECT_EQ(r.top_user_code, 0);
}

TEST(ReferenceTest, QueriesAndKeysDriveTheWeights) {
  const std::vector<double> a = {1, 0, 0, 1};
  const std::vector<double> b = {2, 0, 0, 1};
  // L = Q G^T puts all the weight on entry (1, 1): K_11 = 1.
  const std::vector<double> q = {0, 0, 0, 100};
  const std::vector<double> g = {0, 0, 0, 100};
  const ReferenceResult r = ReferenceScore(2, 2, 2, a, q, b, g);
  EXPECT_NEAR(r.score, 1.0, 1e-12);
  EXPECT_EQ(r.top_user_code, 1);
}

TEST(ReferenceTest, HugeLogitsDoNotOverflow) {
  const std::vector<double> a = {1e6, 0, 0, -1e6};
  const std::vector<double> b = {1, 0, 0, 1};
  const ReferenceResult r = ReferenceScore(2, 2, 2, a, {}, b, {});
  ASSERT_TRUE(std::isfinite(r.score));
  EXPECT_NEAR(r.score, 1e6, 1e-6);  // all weight on K_00 = 1e6
  EXPECT_EQ(r.top_user_code, 0);
}

TEST(ReferenceTest, EmptyShapes) {
  const ReferenceResult r = ReferenceScore(0, 0, 4, {}, {}, {}, {});
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(r.top_user_code, -1);
}

}  // namespace
}  // namespace embsum::scoring
