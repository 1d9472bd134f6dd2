// Non-owning view of one user's poly-embedding. Thread-safe to read.
#ifndef EMBSUM_SCORING_USER_VIEW_H_
#define EMBSUM_SCORING_USER_VIEW_H_

#include <cstdint>
#include <span>

namespace embsum::scoring {

struct UserView {
  uint32_t user_codes = 0;  // m
  uint32_t dim = 0;         // d
  // A: UPE rows, row-major, size m*d.
  std::span<const float> upe;
  // Q: attention queries, size m*d, or empty: then Q = A.
  std::span<const float> queries;

  std::span<const float> effective_queries() const {
    return queries.empty() ? upe : queries;
  }
};

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_USER_VIEW_H_
