// Scalar fp16 / bf16 <-> fp32 conversions, round to nearest even, with
// correct handling of zero, subnormals, overflow to infinity and NaN.
// Internal to scoring/. Thread-safe: stateless.
#ifndef EMBSUM_SCORING_INTERNAL_HALF_H_
#define EMBSUM_SCORING_INTERNAL_HALF_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include <bit>
#include <cstdint>

namespace embsum::scoring::internal {

inline uint16_t FloatToHalf(float value) {
  // F. Giesen's float_to_half_fast3_rtne: relies on IEEE round-to-nearest-
  // even float addition for the subnormal range.
  constexpr uint32_t kInfinity = 255u << 23;
  constexpr uint32_t kHalfOverflow = (127u + 16u) << 23;  // 65536.0f
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint32_t out;
  if (bits >= kHalfOverflow) {
    out = bits > kInfinity ? 0x7e00u : 0x7c00u;  // NaN stays NaN, else Inf
  } else if (bits < (113u << 23)) {              // subnormal or zero in fp16
    float f = std::bit_cast<float>(bits) + std::bit_cast<float>(kDenormMagic);
    out = std::bit_cast<uint32_t>(f) - kDenormMagic;
  } else {
    const uint32_t mantissa_odd = (bits >> 13) & 1u;
    bits += ((15u - 127u) << 23) + 0xfffu;
    bits += mantissa_odd;
    out = bits >> 13;
  }
  return static_cast<uint16_t>(out | (sign >> 16));
}

inline float HalfToFloat(uint16_t half) {
  constexpr uint32_t kShiftedExponent = 0x7c00u << 13;
  uint32_t bits = (uint32_t{half} & 0x7fffu) << 13;
  const uint32_t exponent = bits & kShiftedExponent;
  bits += (127u - 15u) << 23;
  if (exponent == kShiftedExponent) {  // Inf or NaN
    bits += (128u - 16u) << 23;
  } else if (exponent == 0) {  // zero or subnormal: renormalise
    bits += 1u << 23;
    bits = std::bit_cast<uint32_t>(std::bit_cast<float>(bits) -
                                   std::bit_cast<float>(113u << 23));
  }
  return std::bit_cast<float>(bits | ((uint32_t{half} & 0x8000u) << 16));
}

inline uint16_t FloatToBFloat16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float BFloat16ToFloat(uint16_t bf16) {
  return std::bit_cast<float>(uint32_t{bf16} << 16);
}

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_HALF_H_
