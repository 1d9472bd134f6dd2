// AMX kernel family (CpuIsa::kAmx): kAvx512 for fp32 products, with the
// bf16 products (bf16 storage; fp16 storage rounded to bf16 when
// CpuScorerOptions::fp16_bf16_products) multiplied on AMX tiles with
// tdpbf16ps and the int8 products with tdpbssd. Used only when the CPU
// reports AMX-TILE, AMX-BF16 and AMX-INT8 (plus the AVX-512 features of
// kAvx512Bf16 and kAvx512Vnni) and Linux granted this process the tile
// data state (cpu_scorer.cc asks once, before the family is offered).
//
// Tile roles, the same for both products (M x K times K x N into M x N):
//  - bf16: the candidate's item rows are the A operand as stored (row j of
//    the block is a tile row, 32 bf16 of k per 64 bytes, stride d * 2), the
//    user panel is the B operand (pair panels of cpu_kernels_inl.h, padded
//    to 32 k: 16 pair rows x 16 users x 2), so C[j][i] lands in the [j][i]
//    layout of the softmax epilogue directly.
//  - int8: the item block is already the B operand (dtype.h's packed block:
//    row kq of a tile holds 4 k of every item, stride n * 4), the user rows,
//    quantized to s8 per row (same scale as the VNNI families, without the
//    +128 offset), are the A operand; C[i][j] (int32) is stored, then
//    scaled and transposed into the [j][i] layout.
// Registers: tmm0/tmm1 accumulate the first item group (<= 16 items)
// against user tiles u and u + 1, tmm2/tmm3 the last, partial group when
// n > 16 and n % 16 != 0; tmm4/tmm5 hold the user tiles; tmm6/tmm7 the
// items of the two kinds of group. A partial last chunk of k is copied into
// zero-padded scratch (never read past a block, no garbage times zero).
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86 && (defined(__clang__) || __GNUC__ >= 11)
// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized reports falsely (GCC bug 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx512vnni,avx2,fma,f16c,amx-tile,amx-bf16,amx-int8")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx512_inl.h"

namespace embsum::scoring::internal {
namespace {

// The 64-byte operand of ldtilecfg / sttilecfg (palette 1).
struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

// ldtilecfg / sttilecfg with the whole 64 bytes as the memory operand.
// (GCC 12's _tile_loadconfig and _tile_storeconfig name only the first 8
// bytes, so the compiler may drop or sink the stores of the rest.)
inline void LoadTileConfig(const TileConfig& config) {
  __asm__ volatile("ldtilecfg %0" : : "m"(config));
}
inline void StoreTileConfig(TileConfig* config) {
  __asm__ volatile("sttilecfg %0" : "=m"(*config));
}

// Items per group (tile rows for bf16, tile columns for int8).
constexpr uint32_t kGroup = 16;

inline uint32_t FirstGroup(uint32_t n) { return n < kGroup ? n : kGroup; }
inline uint32_t TailGroup(uint32_t n) { return n > kGroup ? n % kGroup : 0; }

// Issues prefetches of lines [chunk * lines / chunks, (chunk + 1) * lines /
// chunks) at base: a whole range spread evenly over a k loop of `chunks`.
inline void PrefetchSlice(const std::byte* base, size_t lines, size_t chunk,
                          size_t chunks) {
  if (base == nullptr) return;
  const size_t begin = chunk * lines / chunks;
  const size_t end = (chunk + 1) * lines / chunks;
  for (size_t l = begin; l < end; ++l) {
    __builtin_prefetch(base + l * 64, 0, 3);
  }
}

// The tile intrinsics name their registers by literal numbers (GCC spells
// them into the assembly), so each group routine is stamped out per set of
// registers by a macro: NAME(C0, C1, ITEMS) for the first group (tmm0,
// tmm1, tmm6) and the partial last group (tmm2, tmm3, tmm7).
//
// Bf16Group: C(C0) [and C(C1)] = items x users over k: items the A operand
// (group rows of 64 bytes per chunk at item_stride), users the B operand
// (tmm4, tmm5: 16 pair rows per chunk, user_chunk elements apart).
#define EMBSUM_AMX_BF16_GROUP(NAME, C0, C1, ITEMS)                             \
  template <bool kTwo>                                                         \
  inline void NAME(const uint16_t* items, size_t item_stride,                  \
                   size_t full_chunks, const uint16_t* tail_items,             \
                   const uint16_t* user0, const uint16_t* user1,               \
                   size_t user_chunk, size_t user_stride, float* out,          \
                   size_t ld_bytes, const std::byte* prefetch, size_t lines) { \
    _tile_zero(C0);                                                            \
    if constexpr (kTwo) _tile_zero(C1);                                        \
    const size_t chunks = full_chunks + (tail_items != nullptr ? 1 : 0);       \
    for (size_t c = 0; c < full_chunks; ++c) {                                 \
      PrefetchSlice(prefetch, lines, c, chunks);                               \
      _tile_loadd(ITEMS, items + c * 32, item_stride);                         \
      _tile_loadd(4, user0 + c * user_chunk, user_stride);                     \
      _tile_dpbf16ps(C0, ITEMS, 4);                                            \
      if constexpr (kTwo) {                                                    \
        _tile_loadd(5, user1 + c * user_chunk, user_stride);                   \
        _tile_dpbf16ps(C1, ITEMS, 5);                                          \
      }                                                                        \
    }                                                                          \
    if (tail_items != nullptr) {                                               \
      PrefetchSlice(prefetch, lines, full_chunks, chunks);                     \
      _tile_loadd(ITEMS, tail_items, 64);                                      \
      _tile_loadd(4, user0 + full_chunks * user_chunk, user_stride);           \
      _tile_dpbf16ps(C0, ITEMS, 4);                                            \
      if constexpr (kTwo) {                                                    \
        _tile_loadd(5, user1 + full_chunks * user_chunk, user_stride);         \
        _tile_dpbf16ps(C1, ITEMS, 5);                                          \
      }                                                                        \
    }                                                                          \
    _tile_stored(C0, out, ld_bytes);                                           \
    if constexpr (kTwo) _tile_stored(C1, out + kGroup, ld_bytes);              \
  }

// Int8Group: C(C0) [and C(C1)] = users x items over k: users the A operand
// (tmm4, tmm5: 16 rows of 64 bytes per chunk at user_stride), items the B
// operand (16 quad rows per chunk at item_stride); int32 stored at out0
// (out1) with ld_bytes between user rows.
#define EMBSUM_AMX_INT8_GROUP(NAME, C0, C1, ITEMS)                             \
  template <bool kTwo>                                                         \
  inline void NAME(const int8_t* items, size_t item_stride,                    \
                   size_t full_chunks, const int8_t* tail_items,               \
                   const int8_t* user0, const int8_t* user1,                   \
                   size_t user_stride, int32_t* out0, int32_t* out1,           \
                   size_t ld_bytes, const std::byte* prefetch, size_t lines) { \
    _tile_zero(C0);                                                            \
    if constexpr (kTwo) _tile_zero(C1);                                        \
    const size_t chunks = full_chunks + (tail_items != nullptr ? 1 : 0);       \
    for (size_t c = 0; c < full_chunks; ++c) {                                 \
      PrefetchSlice(prefetch, lines, c, chunks);                               \
      _tile_loadd(ITEMS, items + c * kGroup * item_stride, item_stride);       \
      _tile_loadd(4, user0 + c * 64, user_stride);                             \
      _tile_dpbssd(C0, 4, ITEMS);                                              \
      if constexpr (kTwo) {                                                    \
        _tile_loadd(5, user1 + c * 64, user_stride);                           \
        _tile_dpbssd(C1, 5, ITEMS);                                            \
      }                                                                        \
    }                                                                          \
    if (tail_items != nullptr) {                                               \
      PrefetchSlice(prefetch, lines, full_chunks, chunks);                     \
      _tile_loadd(ITEMS, tail_items, item_stride);                             \
      _tile_loadd(4, user0 + full_chunks * 64, user_stride);                   \
      _tile_dpbssd(C0, 4, ITEMS);                                              \
      if constexpr (kTwo) {                                                    \
        _tile_loadd(5, user1 + full_chunks * 64, user_stride);                 \
        _tile_dpbssd(C1, 5, ITEMS);                                            \
      }                                                                        \
    }                                                                          \
    _tile_stored(C0, out0, ld_bytes);                                          \
    if constexpr (kTwo) _tile_stored(C1, out1, ld_bytes);                      \
  }

EMBSUM_AMX_BF16_GROUP(Bf16FirstGroup, 0, 1, 6)
EMBSUM_AMX_BF16_GROUP(Bf16TailGroup, 2, 3, 7)
EMBSUM_AMX_INT8_GROUP(Int8FirstGroup, 0, 1, 6)
EMBSUM_AMX_INT8_GROUP(Int8TailGroup, 2, 3, 7)
#undef EMBSUM_AMX_BF16_GROUP
#undef EMBSUM_AMX_INT8_GROUP

// Two candidates a and b of at most 16 items at once (n <= kGroup, tiles 2,
// 3 and 7 configured as 0, 1 and 6): C0/C1 = a x user tiles u, u + 1 and
// C2/C3 = b x the same, the user tiles loaded once per chunk for both.
// Each accumulator sums its chunks in the order Bf16FirstGroup would.
template <bool kTwo>
inline void Bf16Pair(const uint16_t* items_a, const uint16_t* items_b,
                     size_t item_stride, size_t full_chunks,
                     const uint16_t* tail_a, const uint16_t* tail_b,
                     const uint16_t* user0, const uint16_t* user1,
                     size_t user_chunk, size_t user_stride, float* out_a,
                     float* out_b, size_t ld_bytes, const std::byte* prefetch_a,
                     const std::byte* prefetch_b, size_t lines) {
  _tile_zero(0);
  _tile_zero(2);
  if constexpr (kTwo) {
    _tile_zero(1);
    _tile_zero(3);
  }
  const size_t chunks = full_chunks + (tail_a != nullptr ? 1 : 0);
  for (size_t c = 0; c < chunks; ++c) {
    PrefetchSlice(prefetch_a, lines, c, chunks);
    PrefetchSlice(prefetch_b, lines, c, chunks);
    const bool full = c < full_chunks;
    _tile_loadd(4, user0 + c * user_chunk, user_stride);
    if (full) {
      _tile_loadd(6, items_a + c * 32, item_stride);
      _tile_loadd(7, items_b + c * 32, item_stride);
    } else {
      _tile_loadd(6, tail_a, 64);
      _tile_loadd(7, tail_b, 64);
    }
    _tile_dpbf16ps(0, 6, 4);
    _tile_dpbf16ps(2, 7, 4);
    if constexpr (kTwo) {
      _tile_loadd(5, user1 + c * user_chunk, user_stride);
      _tile_dpbf16ps(1, 6, 5);
      _tile_dpbf16ps(3, 7, 5);
    }
  }
  _tile_stored(0, out_a, ld_bytes);
  _tile_stored(2, out_b, ld_bytes);
  if constexpr (kTwo) {
    _tile_stored(1, out_a + kGroup, ld_bytes);
    _tile_stored(3, out_b + kGroup, ld_bytes);
  }
}

// The int8 form of Bf16Pair: users the A operand, items the B operand.
template <bool kTwo>
inline void Int8Pair(const int8_t* items_a, const int8_t* items_b,
                     size_t item_stride, size_t full_chunks,
                     const int8_t* tail_a, const int8_t* tail_b,
                     const int8_t* user0, const int8_t* user1,
                     size_t user_stride, int32_t* out_a0, int32_t* out_a1,
                     int32_t* out_b0, int32_t* out_b1, size_t ld_bytes,
                     const std::byte* prefetch_a, const std::byte* prefetch_b,
                     size_t lines) {
  _tile_zero(0);
  _tile_zero(2);
  if constexpr (kTwo) {
    _tile_zero(1);
    _tile_zero(3);
  }
  const size_t chunks = full_chunks + (tail_a != nullptr ? 1 : 0);
  for (size_t c = 0; c < chunks; ++c) {
    PrefetchSlice(prefetch_a, lines, c, chunks);
    PrefetchSlice(prefetch_b, lines, c, chunks);
    const bool full = c < full_chunks;
    _tile_loadd(4, user0 + c * 64, user_stride);
    if (full) {
      _tile_loadd(6, items_a + c * kGroup * item_stride, item_stride);
      _tile_loadd(7, items_b + c * kGroup * item_stride, item_stride);
    } else {
      _tile_loadd(6, tail_a, item_stride);
      _tile_loadd(7, tail_b, item_stride);
    }
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(2, 4, 7);
    if constexpr (kTwo) {
      _tile_loadd(5, user1 + c * 64, user_stride);
      _tile_dpbssd(1, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
  }
  _tile_stored(0, out_a0, ld_bytes);
  _tile_stored(2, out_b0, ld_bytes);
  if constexpr (kTwo) {
    _tile_stored(1, out_a1, ld_bytes);
    _tile_stored(3, out_b1, ld_bytes);
  }
}

// out[j * i_pad + i] = s_i * s_j * acc[i * n + j]: 16 users per gather.
inline void ScaleTransposed(const int32_t* acc, const float* user_scales,
                            const float* item_scales, uint32_t n, size_t i_pad,
                            float* out) {
  const __m512i index = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(n)));
  for (uint32_t j = 0; j < n; ++j) {
    float sj;
    std::memcpy(&sj, item_scales + j, sizeof(sj));
    const __m512 scale_j = _mm512_set1_ps(sj);
    for (size_t v = 0; v < i_pad / 16; ++v) {
      const __m512i sums =
          _mm512_i32gather_epi32(index, acc + v * 16 * n + j, 4);
      const __m512 su = _mm512_loadu_ps(user_scales + v * 16);
      _mm512_storeu_ps(
          out + size_t{j} * i_pad + v * 16,
          _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(su, scale_j)));
    }
  }
}

// Copies the partial last chunk of k of an n x d bf16 block into dst (n
// rows of 32, zero past d).
inline void CopyBf16Tail(const uint16_t* block, uint32_t n, uint32_t d,
                         uint16_t* dst) {
  const size_t k0 = size_t{d} / 32 * 32;
  for (uint32_t j = 0; j < n; ++j) {
    for (size_t t = 0; t < 32; ++t) {
      dst[j * 32 + t] =
          k0 + t < d ? block[size_t{j} * d + k0 + t] : uint16_t{0};
    }
  }
}

// Copies the partial last chunk of quad rows of an int8 block's values into
// dst (16 quad rows of n * 4 bytes, zero past the block's rows).
inline void CopyInt8Tail(const int8_t* values, uint32_t n, size_t kquads,
                         int8_t* dst) {
  const size_t stride = size_t{n} * 4;
  const size_t full = kquads / kGroup * kGroup;
  const size_t have = (kquads - full) * stride;
  std::memcpy(dst, values + full * stride, have);
  std::memset(dst + have, 0, kGroup * stride - have);
}

struct AmxOps : Avx512Ops {
  static constexpr bool kBf16Dot = true;
  static constexpr bool kInt8Dot = true;
  static constexpr bool kTiles = true;
  // Item codes up to which candidates go two at a time (ScorePairs).
  static constexpr uint32_t kPairItems = kGroup;

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

  // out[k] = round(clamp(x[k] * inverse, -127, 127)) as s8, k < count.
  static void QuantizeS8(const float* x, size_t count, float inverse,
                         int8_t* out) {
    const __m512 scale = _mm512_set1_ps(inverse);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    size_t k = 0;
    for (; k + 16 <= count; k += 16) {
      __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + k), scale);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k),
                       _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (; k < count; ++k) {
      out[k] = static_cast<int8_t>(QuantizeInt8Scalar(x[k], inverse));
    }
  }

  // Floats of scratch for TileProduct(Pair): per candidate of a pair, a
  // zero-padded partial chunk of k (64 bytes per item: n rows of 32 bf16,
  // or 16 quad rows of n * 4 bytes), then per candidate the int32 C of the
  // int8 product (i_pad x n).
  static size_t TileScratchFloats(size_t i_pad, uint32_t n) {
    return 32 * size_t{n} + 2 * i_pad * n;
  }

  // Loads the tile configuration for n items unless this thread has it
  // already (read back with sttilecfg: no state of our own to go stale).
  static void BeginTiles(uint32_t n, bool int8) {
    alignas(64) TileConfig want{};
    want.palette = 1;
    const uint32_t first = FirstGroup(n), tail = TailGroup(n);
    const int first_tiles[] = {0, 1, 6};
    const int tail_tiles[] = {2, 3, 7};
    for (int t : first_tiles) {
      want.rows[t] = static_cast<uint8_t>(int8 ? 16 : first);
      want.colsb[t] = static_cast<uint16_t>(int8 ? first * 4 : 64);
    }
    // Without a partial group, tmm2, tmm3 and tmm7 serve a pair's second
    // candidate, shaped as the first group.
    const uint32_t second = tail != 0 ? tail : first;
    for (int t : tail_tiles) {
      want.rows[t] = static_cast<uint8_t>(int8 ? 16 : second);
      want.colsb[t] = static_cast<uint16_t>(int8 ? second * 4 : 64);
    }
    for (int t : {4, 5}) {
      want.rows[t] = 16;
      want.colsb[t] = 64;
    }
    alignas(64) TileConfig have;
    StoreTileConfig(&have);
    if (std::memcmp(&want, &have, sizeof(want)) != 0) LoadTileConfig(want);
  }

  // out[j * i_pad + i] = K_ij (or L_ij) of one block against one user
  // panel; see the file comment. BeginTiles(n, int8) must have run on this
  // thread.
  static void TileProduct(bool int8, const void* panels, const void* items,
                          uint32_t m, uint32_t n, uint32_t d, float* out,
                          float* scratch, const std::byte* prefetch,
                          size_t lines) {
    const uint32_t width = PanelWidth<AmxOps>(m);
    const size_t i_pad = size_t{PanelCount<AmxOps>(m)} * width;
    const size_t user_tiles = i_pad / 16;
    const uint32_t first = FirstGroup(n), tail = TailGroup(n);
    if (!int8) {
      const auto* block = static_cast<const uint16_t*>(items);
      const auto* panel = static_cast<const uint16_t*>(panels);
      const size_t pairs = Bf16PanelPairs<AmxOps>(d);
      const size_t full_chunks = d / 32;
      uint16_t* tail_items = nullptr;
      if (d % 32 != 0) {
        tail_items = reinterpret_cast<uint16_t*>(scratch);
        CopyBf16Tail(block, n, d, tail_items);
      }
      // User tile u: panel u * 16 / width, lanes from (u * 16) % width.
      const size_t user_stride = size_t{width} * 4;  // one pair row
      const size_t user_chunk = size_t{16} * width * 2;
      auto user = [&](size_t u) {
        return panel +
               ((u * 16 / width) * pairs * width + (u * 16) % width) * 2;
      };
      for (size_t u = 0; u < user_tiles; u += 2) {
        const bool two = u + 1 < user_tiles;
        const uint16_t* u0 = user(u);
        const uint16_t* u1 = two ? user(u + 1) : nullptr;
        uint32_t j0 = 0;
        for (; j0 + first <= n; j0 += first) {
          const std::byte* ahead = u == 0 && j0 == 0 ? prefetch : nullptr;
          const uint16_t* tail_rows =
              tail_items == nullptr ? nullptr : tail_items + size_t{j0} * 32;
          float* o = out + size_t{j0} * i_pad + u * 16;
          if (two) {
            Bf16FirstGroup<true>(block + size_t{j0} * d, size_t{d} * 2,
                                 full_chunks, tail_rows, u0, u1, user_chunk,
                                 user_stride, o, i_pad * 4, ahead, lines);
          } else {
            Bf16FirstGroup<false>(block + size_t{j0} * d, size_t{d} * 2,
                                  full_chunks, tail_rows, u0, u1, user_chunk,
                                  user_stride, o, i_pad * 4, ahead, lines);
          }
        }
        if (tail != 0) {
          j0 = n - tail;
          const uint16_t* tail_rows =
              tail_items == nullptr ? nullptr : tail_items + size_t{j0} * 32;
          float* o = out + size_t{j0} * i_pad + u * 16;
          if (two) {
            Bf16TailGroup<true>(block + size_t{j0} * d, size_t{d} * 2,
                                full_chunks, tail_rows, u0, u1, user_chunk,
                                user_stride, o, i_pad * 4, nullptr, 0);
          } else {
            Bf16TailGroup<false>(block + size_t{j0} * d, size_t{d} * 2,
                                 full_chunks, tail_rows, u0, u1, user_chunk,
                                 user_stride, o, i_pad * 4, nullptr, 0);
          }
        }
      }
      return;
    }

    const auto* block = static_cast<const std::byte*>(items);
    const size_t d4 = RoundUp(d, 4);
    const size_t kquads = d4 / 4;
    const auto* values = reinterpret_cast<const int8_t*>(block);
    const auto* item_scales =
        reinterpret_cast<const float*>(block + size_t{n} * d4);
    const auto* panel = static_cast<const int8_t*>(panels);
    const size_t d64 = RoundUp(d, 64);
    const auto* user_scales = reinterpret_cast<const float*>(
        reinterpret_cast<const std::byte*>(panels) +
        Int8ScalesOffset<AmxOps>(i_pad, d));
    const size_t item_stride = size_t{n} * 4;
    const size_t full_chunks = kquads / kGroup;
    int8_t* tail_items = nullptr;
    if (kquads % kGroup != 0) {
      tail_items = reinterpret_cast<int8_t*>(scratch);
      CopyInt8Tail(values, n, kquads, tail_items);
    }
    auto* acc = reinterpret_cast<int32_t*>(scratch + 32 * size_t{n});
    const size_t ld = size_t{n} * 4;
    for (size_t u = 0; u < user_tiles; u += 2) {
      const bool two = u + 1 < user_tiles;
      const int8_t* u0 = panel + u * 16 * d64;
      const int8_t* u1 = two ? u0 + 16 * d64 : nullptr;
      int32_t* o0 = acc + u * 16 * n;
      int32_t* o1 = two ? o0 + 16 * size_t{n} : nullptr;
      uint32_t j0 = 0;
      for (; j0 + first <= n; j0 += first) {
        const std::byte* ahead = u == 0 && j0 == 0 ? prefetch : nullptr;
        const int8_t* tail_rows =
            tail_items == nullptr ? nullptr : tail_items + size_t{j0} * 4;
        if (two) {
          Int8FirstGroup<true>(values + size_t{j0} * 4, item_stride,
                               full_chunks, tail_rows, u0, u1, d64, o0 + j0,
                               o1 + j0, ld, ahead, lines);
        } else {
          Int8FirstGroup<false>(values + size_t{j0} * 4, item_stride,
                                full_chunks, tail_rows, u0, u1, d64, o0 + j0,
                                nullptr, ld, ahead, lines);
        }
      }
      if (tail != 0) {
        j0 = n - tail;
        const int8_t* tail_rows =
            tail_items == nullptr ? nullptr : tail_items + size_t{j0} * 4;
        if (two) {
          Int8TailGroup<true>(values + size_t{j0} * 4, item_stride, full_chunks,
                              tail_rows, u0, u1, d64, o0 + j0, o1 + j0, ld,
                              nullptr, 0);
        } else {
          Int8TailGroup<false>(values + size_t{j0} * 4, item_stride,
                               full_chunks, tail_rows, u0, u1, d64, o0 + j0,
                               nullptr, ld, nullptr, 0);
        }
      }
    }
    ScaleTransposed(acc, user_scales, item_scales, n, i_pad, out);
  }

  // TileProduct for two candidates' blocks at once (n <= kPairItems):
  // out_a and out_b as TileProduct would write them, bit for bit. Prefetches
  // `lines` lines at each of prefetch_a and prefetch_b (either may be null).
  static void TileProductPair(bool int8, const void* panels,
                              const void* items_a, const void* items_b,
                              uint32_t m, uint32_t n, uint32_t d, float* out_a,
                              float* out_b, float* scratch,
                              const std::byte* prefetch_a,
                              const std::byte* prefetch_b, size_t lines) {
    const uint32_t width = PanelWidth<AmxOps>(m);
    const size_t i_pad = size_t{PanelCount<AmxOps>(m)} * width;
    const size_t user_tiles = i_pad / 16;
    if (!int8) {
      const auto* block_a = static_cast<const uint16_t*>(items_a);
      const auto* block_b = static_cast<const uint16_t*>(items_b);
      const auto* panel = static_cast<const uint16_t*>(panels);
      const size_t pairs = Bf16PanelPairs<AmxOps>(d);
      const size_t full_chunks = d / 32;
      uint16_t* tail_a = nullptr;
      uint16_t* tail_b = nullptr;
      if (d % 32 != 0) {
        tail_a = reinterpret_cast<uint16_t*>(scratch);
        tail_b = reinterpret_cast<uint16_t*>(scratch + 16 * size_t{n});
        CopyBf16Tail(block_a, n, d, tail_a);
        CopyBf16Tail(block_b, n, d, tail_b);
      }
      const size_t user_stride = size_t{width} * 4;
      const size_t user_chunk = size_t{16} * width * 2;
      for (size_t u = 0; u < user_tiles; u += 2) {
        const uint16_t* u0 =
            panel + ((u * 16 / width) * pairs * width + (u * 16) % width) * 2;
        const bool two = u + 1 < user_tiles;
        const uint16_t* u1 =
            two ? panel + (((u + 1) * 16 / width) * pairs * width +
                           ((u + 1) * 16) % width) *
                              2
                : nullptr;
        const std::byte* ahead_a = u == 0 ? prefetch_a : nullptr;
        const std::byte* ahead_b = u == 0 ? prefetch_b : nullptr;
        if (two) {
          Bf16Pair<true>(block_a, block_b, size_t{d} * 2, full_chunks, tail_a,
                         tail_b, u0, u1, user_chunk, user_stride,
                         out_a + u * 16, out_b + u * 16, i_pad * 4, ahead_a,
                         ahead_b, lines);
        } else {
          Bf16Pair<false>(block_a, block_b, size_t{d} * 2, full_chunks, tail_a,
                          tail_b, u0, u1, user_chunk, user_stride,
                          out_a + u * 16, out_b + u * 16, i_pad * 4, ahead_a,
                          ahead_b, lines);
        }
      }
      return;
    }

    const size_t d4 = RoundUp(d, 4);
    const size_t kquads = d4 / 4;
    const auto* values_a = static_cast<const int8_t*>(items_a);
    const auto* values_b = static_cast<const int8_t*>(items_b);
    const auto* panel = static_cast<const int8_t*>(panels);
    const size_t d64 = RoundUp(d, 64);
    const auto* user_scales = reinterpret_cast<const float*>(
        reinterpret_cast<const std::byte*>(panels) +
        Int8ScalesOffset<AmxOps>(i_pad, d));
    const size_t item_stride = size_t{n} * 4;
    const size_t full_chunks = kquads / kGroup;
    int8_t* tail_a = nullptr;
    int8_t* tail_b = nullptr;
    if (kquads % kGroup != 0) {
      tail_a = reinterpret_cast<int8_t*>(scratch);
      tail_b = reinterpret_cast<int8_t*>(scratch + 16 * size_t{n});
      CopyInt8Tail(values_a, n, kquads, tail_a);
      CopyInt8Tail(values_b, n, kquads, tail_b);
    }
    auto* acc_a = reinterpret_cast<int32_t*>(scratch + 32 * size_t{n});
    int32_t* acc_b = acc_a + i_pad * n;
    const size_t ld = size_t{n} * 4;
    for (size_t u = 0; u < user_tiles; u += 2) {
      const bool two = u + 1 < user_tiles;
      const int8_t* u0 = panel + u * 16 * d64;
      const std::byte* ahead_a = u == 0 ? prefetch_a : nullptr;
      const std::byte* ahead_b = u == 0 ? prefetch_b : nullptr;
      int32_t* a0 = acc_a + u * 16 * n;
      int32_t* b0 = acc_b + u * 16 * n;
      if (two) {
        Int8Pair<true>(values_a, values_b, item_stride, full_chunks, tail_a,
                       tail_b, u0, u0 + 16 * d64, d64, a0, a0 + 16 * size_t{n},
                       b0, b0 + 16 * size_t{n}, ld, ahead_a, ahead_b, lines);
      } else {
        Int8Pair<false>(values_a, values_b, item_stride, full_chunks, tail_a,
                        tail_b, u0, nullptr, d64, a0, nullptr, b0, nullptr, ld,
                        ahead_a, ahead_b, lines);
      }
    }
    const auto* block_a = static_cast<const std::byte*>(items_a);
    const auto* block_b = static_cast<const std::byte*>(items_b);
    ScaleTransposed(acc_a, user_scales,
                    reinterpret_cast<const float*>(block_a + size_t{n} * d4), n,
                    i_pad, out_a);
    ScaleTransposed(acc_b, user_scales,
                    reinterpret_cast<const float*>(block_b + size_t{n} * d4), n,
                    i_pad, out_b);
  }
};

constexpr KernelTable kAmxTable = MakeTable<AmxOps>(CpuIsa::kAmx);

}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(AmxKernelTable, kAmxTable)

#else  // not x86-64 GCC (11 or later) or Clang

EMBSUM_KERNEL_TABLE_ABSENT(AmxKernelTable)

#endif
