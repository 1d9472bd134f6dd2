// AVX-512 VNNI kernel family (CpuIsa::kAvx512Vnni): kAvx512 plus int8
// storage multiplied with 16-lane vpdpbusd. Used only when the CPU reports
// AVX-512 F/BW/DQ/VL and AVX512_VNNI.
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86
// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized reports falsely (GCC bug 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx512_inl.h"

namespace embsum::scoring::internal {
namespace {
struct Avx512VnniOps : Avx512Ops {
  static constexpr bool kInt8Dot = true;
  using VI = __m512i;
  static VI ZeroI() { return _mm512_setzero_si512(); }
  static VI LoadI(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static VI Set1I(int32_t x) { return _mm512_set1_epi32(x); }
  static VI SubI(VI a, VI b) { return _mm512_sub_epi32(a, b); }
  // acc + sum of 4 products u8(a) * s8(b) per int32 lane (vpdpbusd).
  static VI DotU8S8(VI acc, VI a, VI b) {
    return _mm512_dpbusd_epi32(acc, a, b);
  }
  static V ToFloat(VI x) { return _mm512_cvtepi32_ps(x); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // out[k] = 128 + round(clamp(x[k] * inverse, -127, 127)), k < count.
  static void QuantizeU8(const float* x, size_t count, float inverse,
                         uint8_t* out) {
    const __m512 scale = _mm512_set1_ps(inverse);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i offset = _mm512_set1_epi32(128);
    size_t k = 0;
    for (; k + 16 <= count; k += 16) {
      __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + k), scale);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), offset);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k),
                       _mm512_cvtusepi32_epi8(q));
    }
    for (; k < count; ++k) {
      out[k] = static_cast<uint8_t>(QuantizeInt8Scalar(x[k], inverse) + 128);
    }
  }
};
constexpr KernelTable kAvx512VnniTable =
    MakeTable<Avx512VnniOps>(CpuIsa::kAvx512Vnni);
}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(Avx512VnniKernelTable, kAvx512VnniTable)

#else  // not EMBSUM_KERNELS_X86

EMBSUM_KERNEL_TABLE_ABSENT(Avx512VnniKernelTable)

#endif
