#include "loadgen/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace embsum::loadgen {
namespace {

// The exact value at quantile q: the ceil(q*n)-th smallest sample.
int64_t ExactQuantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

void ExpectQuantilesWithin1Percent(const std::vector<int64_t>& samples) {
  LatencyHistogram h;
  for (int64_t s : samples) h.Record(s);
  ASSERT_EQ(h.count(), samples.size());
  for (double q : {0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999}) {
    const double exact = static_cast<double>(ExactQuantile(samples, q));
    const double got = static_cast<double>(h.ValueAtQuantile(q));
    EXPECT_LE(std::abs(got - exact), 0.01 * exact + 1)
        << "q=" << q << " exact=" << exact << " got=" << got;
  }
  EXPECT_EQ(h.ValueAtQuantile(1.0), ExactQuantile(samples, 1.0));
  EXPECT_EQ(h.ValueAtQuantile(0.0),
            *std::min_element(samples.begin(), samples.end()));
}

TEST(LatencyHistogram, QuantilesOfLogNormalLatenciesWithin1Percent) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> d(std::log(2e6), 0.8);  // ~2 ms
  std::vector<int64_t> samples;
  for (int i = 0; i < 200000; ++i) {
    samples.push_back(static_cast<int64_t>(d(rng)));
  }
  ExpectQuantilesWithin1Percent(samples);
}

TEST(LatencyHistogram, QuantilesAcrossMicrosecondsToMinutesWithin1Percent) {
  // Log-uniform from 1 us to 10 minutes.
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> e(std::log(1e3), std::log(600e9));
  std::vector<int64_t> samples;
  for (int i = 0; i < 100000; ++i) {
    samples.push_back(static_cast<int64_t>(std::exp(e(rng))));
  }
  ExpectQuantilesWithin1Percent(samples);
}

TEST(LatencyHistogram, BucketsTileTheRangeWithSmallRelativeWidth) {
  for (int i = 1; i < LatencyHistogram::BucketCount(); ++i) {
    ASSERT_EQ(LatencyHistogram::BucketLowest(i),
              LatencyHistogram::BucketHighest(i - 1) + 1)
        << i;
    const double lo = static_cast<double>(LatencyHistogram::BucketLowest(i));
    const double width =
        static_cast<double>(LatencyHistogram::BucketHighest(i)) - lo + 1;
    if (lo < 128) {
      ASSERT_EQ(width, 1) << i;  // exact below 128 ns
    } else {
      ASSERT_LE(width / lo, 1.0 / 128) << i;
    }
  }
  for (int64_t v : {int64_t{0}, int64_t{127}, int64_t{128}, int64_t{1000},
                    int64_t{123456789}, LatencyHistogram::kMaxTrackable}) {
    const int i = LatencyHistogram::BucketIndex(v);
    EXPECT_LE(LatencyHistogram::BucketLowest(i), v);
    EXPECT_GE(LatencyHistogram::BucketHighest(i), v);
  }
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> d(1.0 / 5e5);
  LatencyHistogram all, a, b;
  for (int i = 0; i < 50000; ++i) {
    const int64_t v = static_cast<int64_t>(d(rng));
    all.Record(v);
    (i % 3 == 0 ? a : b).Record(v);
  }
  LatencyHistogram merged;
  merged.Merge(a);
  merged.Merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min_nanos(), all.min_nanos());
  EXPECT_EQ(merged.max_nanos(), all.max_nanos());
  EXPECT_DOUBLE_EQ(merged.mean_nanos(), all.mean_nanos());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    EXPECT_EQ(merged.ValueAtQuantile(q), all.ValueAtQuantile(q)) << q;
  }
}

TEST(LatencyHistogram, EmptyResetNegativeAndHugeValues) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.ValueAtQuantile(0.99), 0);
  EXPECT_EQ(h.mean_nanos(), 0.0);
  h.Record(-5);
  EXPECT_EQ(h.min_nanos(), 0);
  const int64_t huge = int64_t{1} << 50;  // beyond the tracked range
  h.Record(huge);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.max_nanos(), huge);
  EXPECT_EQ(h.ValueAtQuantile(1.0), huge);
  EXPECT_GT(h.ValueAtQuantile(0.99), LatencyHistogram::kMaxTrackable / 2);
  h.RecordN(1000, 10);
  EXPECT_EQ(h.count(), 12u);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max_nanos(), 0);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 0);
}

TEST(LatencyHistogram, SingleValueIsReportedExactly) {
  LatencyHistogram h;
  h.RecordN(1234567, 3);
  for (double q : {0.0, 0.5, 0.99, 1.0}) {
    EXPECT_EQ(h.ValueAtQuantile(q), 1234567) << q;
  }
}

}  // namespace
}  // namespace embsum::loadgen
