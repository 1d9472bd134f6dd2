#include "scoring/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace embsum::scoring {
namespace {

// Row-major (rows x d) times (cols x d)^T.
std::vector<double> MultiplyTransposed(uint32_t rows, uint32_t cols, uint32_t d,
                                       std::span<const double> x,
                                       std::span<const double> y) {
  std::vector<double> out(size_t{rows} * cols, 0.0);
  for (uint32_t i = 0; i < rows; ++i) {
    for (uint32_t j = 0; j < cols; ++j) {
      double sum = 0.0;
      for (uint32_t k = 0; k < d; ++k) {
        sum += x[size_t{i} * d + k] * y[size_t{j} * d + k];
      }
      out[size_t{i} * cols + j] = sum;
    }
  }
  return out;
}

}  // namespace

ReferenceResult ReferenceScore(uint32_t m, uint32_t n, uint32_t d,
                               std::span<const double> a,
                               std::span<const double> q,
                               std::span<const double> b,
                               std::span<const double> g) {
  ReferenceResult result;
  if (m == 0 || n == 0) return result;
  if (q.empty()) q = a;
  if (g.empty()) g = b;
  const std::vector<double> k = MultiplyTransposed(m, n, d, a, b);
  const std::vector<double> l = MultiplyTransposed(m, n, d, q, g);

  const double max_logit = *std::max_element(l.begin(), l.end());
  double total_weight = 0.0;
  for (double logit : l) total_weight += std::exp(logit - max_logit);

  double best = -std::numeric_limits<double>::infinity();
  for (uint32_t i = 0; i < m; ++i) {
    double row_sum = 0.0;
    for (uint32_t j = 0; j < n; ++j) {
      const size_t at = size_t{i} * n + j;
      row_sum += std::exp(l[at] - max_logit) / total_weight * k[at];
    }
    result.score += row_sum;
    if (row_sum > best) {
      best = row_sum;
      result.top_user_code = static_cast<int32_t>(i);
    }
  }
  return result;
}

}  // namespace embsum::scoring
