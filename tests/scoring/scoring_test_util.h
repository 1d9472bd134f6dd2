// Helpers shared by the scoring tests: random inputs, storage rounding and
// an error measure that is meaningful for sums that may cancel.
#ifndef EMBSUM_TESTS_SCORING_SCORING_TEST_UTIL_H_
#define EMBSUM_TESTS_SCORING_SCORING_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "scoring/dtype.h"
#include "scoring/reference.h"

namespace embsum::scoring::testing {

// Seed for "fresh" random inputs: EMBSUM_TEST_SEED when set (to reproduce a
// failure), else a new one per run. Tests print it with SCOPED_TRACE.
inline uint64_t TestSeed() {
  if (const char* env = std::getenv("EMBSUM_TEST_SEED")) {
    return std::strtoull(env, nullptr, 10);
  }
  static const uint64_t seed = std::random_device{}();
  return seed;
}

// rows*d normal values with standard deviation `scale` / sqrt(d), so that
// dot products of two such rows have a standard deviation of about scale^2.
inline std::vector<float> RandomRows(std::mt19937_64& rng, size_t rows,
                                     size_t d, double scale = 1.0) {
  std::normal_distribution<float> normal(
      0.0f, static_cast<float>(scale / std::sqrt(std::max<double>(d, 1))));
  std::vector<float> out(rows * d);
  for (float& x : out) x = normal(rng);
  return out;
}

// The values after storing them as `dtype` and reading them back.
inline std::vector<float> Rounded(std::span<const float> x, DType dtype) {
  std::vector<uint8_t> stored(x.size() * DTypeSize(dtype));
  ConvertFromFloat(x, dtype, stored.data());
  std::vector<float> out(x.size());
  ConvertToFloat(stored.data(), dtype, out);
  return out;
}

// The values after int8 quantization with one symmetric scale per row of d
// (the ItemArena's int8 storage, and the user side of int8 dot products).
inline std::vector<float> RoundedInt8Rows(std::span<const float> x,
                                          uint32_t d) {
  if (d == 0 || x.empty()) return std::vector<float>(x.begin(), x.end());
  const uint32_t rows = static_cast<uint32_t>(x.size() / d);
  std::vector<uint8_t> stored(Int8BlockBytes(rows, d));
  QuantizeInt8Block(x.data(), rows, d, stored.data());
  std::vector<float> out(x.size());
  DequantizeInt8Block(stored.data(), rows, d, out.data());
  return out;
}

inline std::vector<double> Widen(std::span<const float> x) {
  return std::vector<double>(x.begin(), x.end());
}

// Reference score plus its magnitude. The score is a weighted sum of dot
// products whose terms may cancel to near zero, so errors are measured
// relative to max(|score|, magnitude) with
//   magnitude = sum_ij w_ij * max(|K_ij|, sqrt(sum_k (a_ik b_jk)^2)),
// the size of the terms being summed (the root-sum-square is the expected
// size of a sum of random-sign terms): what fp32 accumulation and 16-bit
// rounding of the elements can promise.
struct ReferenceWithScale {
  double score = 0.0;
  int32_t top_user_code = -1;
  double magnitude = 0.0;
  // (best - second best) row sum of the top_user_code argmax, divided by
  // magnitude; infinity when m == 1. Tests compare top_user_code only when
  // the argmax is clear of rounding.
  double top_margin = 0.0;
};

inline ReferenceWithScale ComputeReference(uint32_t m, uint32_t n, uint32_t d,
                                           std::span<const float> a,
                                           std::span<const float> q,
                                           std::span<const float> b,
                                           std::span<const float> g) {
  const std::vector<double> a64 = Widen(a), q64 = Widen(q), b64 = Widen(b),
                            g64 = Widen(g);
  const ReferenceResult ref = ReferenceScore(m, n, d, a64, q64, b64, g64);
  ReferenceWithScale out;
  out.score = ref.score;
  out.top_user_code = ref.top_user_code;
  if (m == 0 || n == 0) return out;
  const std::vector<double>& qq = q64.empty() ? a64 : q64;
  const std::vector<double>& gg = g64.empty() ? b64 : g64;
  std::vector<double> k(size_t{m} * n), l(size_t{m} * n), size(size_t{m} * n);
  for (uint32_t i = 0; i < m; ++i) {
    for (uint32_t j = 0; j < n; ++j) {
      double sk = 0, sl = 0, squares = 0;
      for (uint32_t x = 0; x < d; ++x) {
        const double term = a64[size_t{i} * d + x] * b64[size_t{j} * d + x];
        sk += term;
        squares += term * term;
        sl += qq[size_t{i} * d + x] * gg[size_t{j} * d + x];
      }
      k[size_t{i} * n + j] = sk;
      l[size_t{i} * n + j] = sl;
      size[size_t{i} * n + j] = std::max(std::abs(sk), std::sqrt(squares));
    }
  }
  const double max_logit = *std::max_element(l.begin(), l.end());
  double z = 0, magnitude = 0;
  std::vector<double> row_sums(m, 0.0);
  for (size_t e = 0; e < l.size(); ++e) {
    const double w = std::exp(l[e] - max_logit);
    z += w;
    magnitude += w * size[e];
    row_sums[e / n] += w * k[e];
  }
  out.magnitude = magnitude / z;
  std::sort(row_sums.begin(), row_sums.end(), std::greater<double>());
  out.top_margin = m == 1 ? HUGE_VAL
                          : (row_sums[0] - row_sums[1]) / z /
                                std::max(out.magnitude, 1e-300);
  return out;
}

inline double RelativeError(double ours, const ReferenceWithScale& ref) {
  const double denom = std::max(std::abs(ref.score), ref.magnitude);
  if (denom == 0.0) return std::abs(ours);
  return std::abs(ours - ref.score) / denom;
}

}  // namespace embsum::scoring::testing

#endif  // EMBSUM_TESTS_SCORING_SCORING_TEST_UTIL_H_
