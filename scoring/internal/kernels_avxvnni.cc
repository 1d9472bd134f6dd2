// AVX-VNNI kernel family (CpuIsa::kAvxVnni): kAvx2 plus int8 storage
// multiplied with 8-lane vpdpbusd (VEX encoding). Used only when the CPU
// reports AVX2, FMA, F16C and AVX-VNNI.
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx2,fma,f16c,avxvnni")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx2_inl.h"

namespace embsum::scoring::internal {
namespace {

struct AvxVnniOps : Avx2Ops {
  static constexpr bool kInt8Dot = true;
  using VI = __m256i;
  static VI ZeroI() { return _mm256_setzero_si256(); }
  static VI LoadI(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static VI Set1I(int32_t x) { return _mm256_set1_epi32(x); }
  static VI SubI(VI a, VI b) { return _mm256_sub_epi32(a, b); }
  // acc + sum of 4 products u8(a) * s8(b) per int32 lane (VEX vpdpbusd).
  static VI DotU8S8(VI acc, VI a, VI b) {
    return _mm256_dpbusd_avx_epi32(acc, a, b);
  }
  static V ToFloat(VI x) { return _mm256_cvtepi32_ps(x); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // out[k] = 128 + round(clamp(x[k] * inverse, -127, 127)), k < count.
  static void QuantizeU8(const float* x, size_t count, float inverse,
                         uint8_t* out) {
    for (size_t k = 0; k < count; ++k) {
      out[k] = static_cast<uint8_t>(QuantizeInt8Scalar(x[k], inverse) + 128);
    }
  }
};

constexpr KernelTable kAvxVnniTable = MakeTable<AvxVnniOps>(CpuIsa::kAvxVnni);

}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(AvxVnniKernelTable, kAvxVnniTable)

#else  // not EMBSUM_KERNELS_X86

EMBSUM_KERNEL_TABLE_ABSENT(AvxVnniKernelTable)

#endif
