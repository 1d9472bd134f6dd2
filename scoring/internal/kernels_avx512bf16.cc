// AVX-512 + AVX512_BF16 kernel family (CpuIsa::kAvx512Bf16): as kAvx512,
// plus bf16 storage multiplied with vdpbf16ps (two bf16 products summed
// into each fp32 lane per instruction: twice the fp32 FMA rate, half the
// bytes). The user panels are rounded to bf16 for this path.
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86
// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized reports falsely (GCC bug 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx512_inl.h"

namespace embsum::scoring::internal {
namespace {

struct Avx512Bf16Ops : Avx512Ops {
  static constexpr bool kBf16Dot = true;

  // out[i] = bf16(fp16 in[i]) for i < count, rounded to nearest even.
  static void HalfToBf16(const uint16_t* in, size_t count, uint16_t* out) {
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
      const __m512 lo = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
      const __m512 hi = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 16)));
      _mm512_storeu_si512(out + i, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    for (; i < count; ++i) out[i] = FloatToBFloat16(HalfToFloat(in[i]));
  }

  // dst[2 * i] = bf16(lo[i]), dst[2 * i + 1] = bf16(hi[i]) for i < count
  // (a multiple of 16), rounded to nearest even.
  static void PackBf16Pairs(const float* lo, const float* hi, size_t count,
                            uint16_t* dst) {
    for (size_t i = 0; i < count; i += 16) {
      const __m512i lo16 = _mm512_cvtepu16_epi32(
          (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(lo + i)));
      const __m512i hi16 = _mm512_cvtepu16_epi32(
          (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(hi + i)));
      _mm512_storeu_si512(dst + 2 * i,
                          _mm512_or_si512(lo16, _mm512_slli_epi32(hi16, 16)));
    }
  }

  // acc[v][j] = sum_k panel(k, v * 16 + lane) * items[j * d + k], with the
  // panel in pair layout ([kp][lane][2] bf16, zero-padded to an even d) and
  // items bf16 rows of d; stored at out[j * ld + v * 16 + lane].
  template <int NV, int J>
  static void TileBf16(const uint16_t* panel, const uint16_t* items, size_t d,
                       float* out, size_t ld, const Prefetch& prefetch) {
    constexpr int kWidth = NV * 16;
    __m512 acc[NV][J];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) acc[v][j] = _mm512_setzero_ps();
    }
    const uint16_t* item_rows[J];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) item_rows[j] = items + j * d;
    const size_t pairs = d / 2;
    const Prefetch ahead = prefetch;  // in registers
#pragma GCC unroll 2
    for (size_t kp = 0; kp < pairs; ++kp) {
      ahead.At(kp);
      __m512bh a[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        a[v] = (__m512bh)_mm512_loadu_si512(panel + (kp * kWidth + v * 16) * 2);
      }
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        int32_t pair;
        std::memcpy(&pair, item_rows[j] + 2 * kp, sizeof(pair));
        const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
          acc[v][j] = _mm512_dpbf16_ps(acc[v][j], a[v], b);
        }
      }
    }
    if (d % 2 != 0) {  // last k: the panel's second half of the pair is 0
      __m512bh a[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        a[v] =
            (__m512bh)_mm512_loadu_si512(panel + (pairs * kWidth + v * 16) * 2);
      }
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        const __m512bh b =
            (__m512bh)_mm512_set1_epi32(int32_t{item_rows[j][d - 1]});
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
          acc[v][j] = _mm512_dpbf16_ps(acc[v][j], a[v], b);
        }
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        _mm512_storeu_ps(out + j * ld + v * 16, acc[v][j]);
      }
    }
  }
};

constexpr KernelTable kAvx512Bf16Table =
    MakeTable<Avx512Bf16Ops>(CpuIsa::kAvx512Bf16);

}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(Avx512Bf16KernelTable, kAvx512Bf16Table)

#else  // not EMBSUM_KERNELS_X86

EMBSUM_KERNEL_TABLE_ABSENT(Avx512Bf16KernelTable)

#endif
