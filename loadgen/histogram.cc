#include "loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace embsum::loadgen {
namespace {

constexpr int64_t kSubBuckets = int64_t{1} << LatencyHistogram::kSubBucketBits;

}  // namespace

int LatencyHistogram::BucketCount() {
  // Values below kSubBuckets are exact (one bucket each); every octave from
  // 2^kSubBucketBits up to 2^kMaxExponent has kSubBuckets buckets.
  return static_cast<int>(kSubBuckets +
                          (kMaxExponent - kSubBucketBits) * kSubBuckets);
}

int LatencyHistogram::BucketIndex(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  if (nanos > kMaxTrackable) nanos = kMaxTrackable;
  if (nanos < kSubBuckets) return static_cast<int>(nanos);
  const int exponent =
      63 - std::countl_zero(static_cast<uint64_t>(nanos));  // >= 7
  const int shift = exponent - kSubBucketBits;
  const int64_t sub = (nanos >> shift) - kSubBuckets;  // [0, kSubBuckets)
  return static_cast<int>(kSubBuckets + shift * kSubBuckets + sub);
}

int64_t LatencyHistogram::BucketLowest(int index) {
  if (index < kSubBuckets) return index;
  const int shift = static_cast<int>((index - kSubBuckets) / kSubBuckets);
  const int64_t sub = (index - kSubBuckets) % kSubBuckets;
  return (kSubBuckets + sub) << shift;
}

int64_t LatencyHistogram::BucketHighest(int index) {
  if (index < kSubBuckets) return index;
  const int shift = static_cast<int>((index - kSubBuckets) / kSubBuckets);
  return BucketLowest(index) + (int64_t{1} << shift) - 1;
}

LatencyHistogram::LatencyHistogram() : counts_(BucketCount(), 0) {}

void LatencyHistogram::RecordN(int64_t nanos, uint64_t count) {
  if (count == 0) return;
  if (nanos < 0) nanos = 0;
  counts_[BucketIndex(nanos)] += count;
  if (count_ == 0) {
    min_ = nanos;
    max_ = nanos;
  } else {
    min_ = std::min(min_, nanos);
    max_ = std::max(max_, nanos);
  }
  count_ += count;
  sum_ += static_cast<long double>(nanos) * count;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  count_ += other.count_;
  sum_ += other.sum_;
}

void LatencyHistogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = 0;
  max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::mean_nanos() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_);
}

int64_t LatencyHistogram::ValueAtQuantile(double q) const {
  if (count_ == 0) return 0;
  if (!(q > 0.0)) return min_;  // also catches NaN
  if (q >= 1.0) return max_;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * count_));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const int index = static_cast<int>(i);
      const int64_t lo = BucketLowest(index);
      const int64_t mid = lo + (BucketHighest(index) - lo) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace embsum::loadgen
