// SelectTopK: stable top-k by score descending (declared in scorer.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "scoring/scorer.h"

namespace embsum::scoring {

void SelectTopK(std::span<const float> scores, uint32_t k,
                std::vector<uint32_t>* out) {
  out->resize(scores.size());
  std::iota(out->begin(), out->end(), 0u);
  const size_t keep =
      k == 0 ? scores.size() : std::min<size_t>(k, scores.size());
  // Strict weak order: higher score first, NaN after every number, ties (and
  // NaNs among themselves) by index ascending, which keeps request order.
  auto before = [scores](uint32_t x, uint32_t y) {
    const float sx = scores[x];
    const float sy = scores[y];
    const bool nan_x = std::isnan(sx);
    const bool nan_y = std::isnan(sy);
    if (nan_x != nan_y) return nan_y;
    if (!nan_x && sx != sy) return sx > sy;
    return x < y;
  };
  if (keep < scores.size()) {
    std::nth_element(out->begin(), out->begin() + keep, out->end(), before);
    out->resize(keep);
  }
  std::sort(out->begin(), out->end(), before);
}

}  // namespace embsum::scoring
