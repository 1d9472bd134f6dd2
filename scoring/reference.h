// Float64 reference implementation of docs/design.md section 2: the oracle of
// every test. Slow and simple on purpose. Thread-safe: stateless.
#ifndef EMBSUM_SCORING_REFERENCE_H_
#define EMBSUM_SCORING_REFERENCE_H_

#include <cstdint>
#include <span>

namespace embsum::scoring {

struct ReferenceResult {
  double score = 0.0;
  int32_t top_user_code = -1;
};

// a, q: m*d (q empty: Q = A). b, g: n*d (g empty: G = B). Row-major doubles
// or floats widened to double by the caller.
ReferenceResult ReferenceScore(uint32_t m, uint32_t n, uint32_t d,
                               std::span<const double> a,
                               std::span<const double> q,
                               std::span<const double> b,
                               std::span<const double> g);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_REFERENCE_H_
