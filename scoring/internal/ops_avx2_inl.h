// AVX2 policy of the scoring engine (cpu_kernels_inl.h). Include only
// after `#pragma GCC target("avx2,fma,f16c")` and after <immintrin.h>; see
// cpu_kernels_inl.h for why.
#ifndef EMBSUM_SCORING_INTERNAL_OPS_AVX2_INL_H_
#define EMBSUM_SCORING_INTERNAL_OPS_AVX2_INL_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

namespace embsum::scoring::internal {
namespace {

struct Avx2Ops {
  using V = __m256;
  static constexpr int kLanes = 8;
  // Accumulators per register tile: 12 plus NV panel vectors and a
  // broadcast of the 16 ymm registers.
  static constexpr int kAccumulators = 12;
  static constexpr bool kBf16Dot = false;
  static constexpr bool kInt8Dot = false;
  static constexpr bool kTiles = false;  // AMX tile products

  static V Zero() { return _mm256_setzero_ps(); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Set1(float x) { return _mm256_set1_ps(x); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Max(V a, V b) { return _mm256_max_ps(a, b); }

  static float ReduceAdd(V v) {
    __m128 x =
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static float ReduceMax(V v) {
    __m128 x =
        _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }

  // e^x for x <= 0 (Cephes expf polynomial, ~2 ulp); exactly 0 below
  // -87.3 (and for -inf).
  static V Exp(V x) {
    const V lowest = _mm256_set1_ps(-87.3365448f);
    const V in_range = _mm256_cmp_ps(x, lowest, _CMP_GE_OQ);
    x = _mm256_max_ps(x, lowest);
    const V n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    V y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    // 2^n: n in [-126, 0] here, so the biased exponent stays normal.
    const __m256i exponent = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
    return _mm256_and_ps(y, in_range);
  }

  static void WidenHalf(const uint16_t* in, size_t count, float* out) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
      _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                    reinterpret_cast<const __m128i*>(in + i))));
    }
    for (; i < count; ++i) out[i] = HalfToFloat(in[i]);
  }

  static void WidenBf16(const uint16_t* in, size_t count, float* out) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
      const __m256i wide = _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
      _mm256_storeu_ps(out + i,
                       _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    }
    for (; i < count; ++i) out[i] = BFloat16ToFloat(in[i]);
  }
};

}  // namespace
}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_OPS_AVX2_INL_H_
