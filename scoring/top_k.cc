// SelectTopK: stable top-k by score descending (declared in scorer.h).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "scoring/scorer.h"

namespace embsum::scoring {
namespace {

// One integer per score whose ascending order is the order SelectTopK
// promises: higher score first, NaN after every number, ties (+0 and -0
// among them, and NaNs among themselves) by index ascending. Sorting these
// is several times cheaper than sorting indices with a comparator that
// reads the scores.
uint64_t OrderKey(float score, uint32_t index) {
  uint32_t rank = UINT32_MAX;  // NaN: last
  if (!std::isnan(score)) {
    if (score == 0.0f) score = 0.0f;  // -0 ties with +0
    const uint32_t bits = std::bit_cast<uint32_t>(score);
    // Ascending float order as unsigned integers, then reversed. Only a
    // NaN's bits could map to UINT32_MAX.
    const uint32_t ascending =
        (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
    rank = ~ascending;
  }
  return (uint64_t{rank} << 32) | index;
}

}  // namespace

void SelectTopK(std::span<const float> scores, uint32_t k,
                std::vector<uint32_t>* out) {
  thread_local std::vector<uint64_t> keys;
  keys.resize(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    keys[i] = OrderKey(scores[i], static_cast<uint32_t>(i));
  }
  const size_t keep =
      k == 0 ? scores.size() : std::min<size_t>(k, scores.size());
  if (keep < keys.size()) {
    std::nth_element(keys.begin(), keys.begin() + keep, keys.end());
  }
  std::sort(keys.begin(), keys.begin() + keep);
  out->resize(keep);
  for (size_t i = 0; i < keep; ++i) {
    (*out)[i] = static_cast<uint32_t>(keys[i]);
  }
}

}  // namespace embsum::scoring
