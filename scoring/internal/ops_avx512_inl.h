// AVX-512 policy of the scoring engine (cpu_kernels_inl.h). Include only
// after `#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,...")` and
// after <immintrin.h>; see cpu_kernels_inl.h for why.
#ifndef EMBSUM_SCORING_INTERNAL_OPS_AVX512_INL_H_
#define EMBSUM_SCORING_INTERNAL_OPS_AVX512_INL_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

namespace embsum::scoring::internal {
namespace {

struct Avx512Ops {
  using V = __m512;
  static constexpr int kLanes = 16;
  // Accumulators per register tile (NV panel vectors x J item rows): 16
  // plus NV panel vectors and a broadcast of the 32 zmm registers; more
  // would leave the core load-bound with no gain at S1.
  static constexpr int kAccumulators = 16;
  static constexpr bool kBf16Dot = false;
  static constexpr bool kInt8Dot = false;
  static constexpr bool kTiles = false;  // AMX tile products

  static V Zero() { return _mm512_setzero_ps(); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V Set1(float x) { return _mm512_set1_ps(x); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Max(V a, V b) { return _mm512_max_ps(a, b); }
  static float ReduceAdd(V v) { return _mm512_reduce_add_ps(v); }
  static float ReduceMax(V v) { return _mm512_reduce_max_ps(v); }

  // e^x for x <= 0 (Cephes expf polynomial, ~2 ulp); exactly 0 below
  // -87.3 (and for -inf).
  static V Exp(V x) {
    const V lowest = _mm512_set1_ps(-87.3365448f);
    const __mmask16 in_range = _mm512_cmp_ps_mask(x, lowest, _CMP_GE_OQ);
    x = _mm512_max_ps(x, lowest);
    const V n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
    V y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), x);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(in_range, _mm512_scalef_ps(y, n));
  }

  static void WidenHalf(const uint16_t* in, size_t count, float* out) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
      _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                    reinterpret_cast<const __m256i*>(in + i))));
    }
    for (; i < count; ++i) out[i] = HalfToFloat(in[i]);
  }

  static void WidenBf16(const uint16_t* in, size_t count, float* out) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
      const __m512i wide = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
      _mm512_storeu_ps(out + i,
                       _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
    }
    for (; i < count; ++i) out[i] = BFloat16ToFloat(in[i]);
  }
};

}  // namespace
}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_OPS_AVX512_INL_H_
