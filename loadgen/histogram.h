// An HDR-style log-linear latency histogram: every power of two is split into
// 128 equal sub-buckets, so a recorded value is known to within 1/128 (0.8%)
// of itself; percentiles report the bucket midpoint (error <= 0.4%), clamped
// to the exact minimum and maximum. Range: 1 ns to 2^42 ns (73 minutes);
// larger values land in the top bucket and still count (max stays exact).
//
// Thread-safety: not thread-safe; give each thread its own histogram and
// Merge() them (see Recorder in driver.h). A value type: copyable.
#ifndef EMBSUM_LOADGEN_HISTOGRAM_H_
#define EMBSUM_LOADGEN_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace embsum::loadgen {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;  // 128 sub-buckets per octave
  static constexpr int kMaxExponent = 42;   // values up to 2^42 ns
  static constexpr int64_t kMaxTrackable = (int64_t{1} << kMaxExponent) - 1;

  LatencyHistogram();

  // Records one value in nanoseconds; negative values record as 0.
  void Record(int64_t nanos) { RecordN(nanos, 1); }
  void RecordN(int64_t nanos, uint64_t count);
  // Adds every sample of `other`.
  void Merge(const LatencyHistogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  // Exact extremes and mean of the recorded values; 0 when empty.
  int64_t min_nanos() const { return count_ == 0 ? 0 : min_; }
  int64_t max_nanos() const { return max_; }
  double mean_nanos() const;

  // The value at quantile q in [0, 1] (q = 0.99 for p99): the smallest
  // recorded value v such that at least ceil(q * count) samples are <= v,
  // to within the bucket resolution. q <= 0 gives min, q >= 1 gives max.
  // Returns 0 when empty.
  int64_t ValueAtQuantile(double q) const;
  double SecondsAtQuantile(double q) const {
    return static_cast<double>(ValueAtQuantile(q)) * 1e-9;
  }

  // Bucket arithmetic, exposed for tests and the report writers.
  static int BucketIndex(int64_t nanos);
  static int64_t BucketLowest(int index);
  static int64_t BucketHighest(int index);  // inclusive
  static int BucketCount();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace embsum::loadgen

#endif  // EMBSUM_LOADGEN_HISTOGRAM_H_
