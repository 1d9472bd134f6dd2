// The SIMD scoring engine, written once against an `Ops` policy (vector
// type, lane count, arithmetic) and included by each kernel file
// (kernels_avx2.cc, kernels_avx512.cc, ...) AFTER its `#pragma GCC target`,
// so that every function here is compiled for that file's instruction set.
// Everything is in an anonymous namespace, so each file gets its own copies
// and no wide instruction can reach code that runs on a narrower CPU. Before
// the pragma a kernel file includes the standard headers, cpu_kernels.h and
// half.h (whose inline functions must keep the default target); nothing from
// the standard library is instantiated here.
//
// Algorithm, per candidate row (see docs/design.md section 2):
//  1. The user matrices A and Q are rearranged once per request into
//     "panels" of P = NV * kLanes user rows: panel[k][lane] = x[row][k], so
//     one vector load gives one k for P user rows.
//  2. K = A B^T and L = Q G^T are computed as outer products: for each k,
//     NV panel vectors times a broadcast of b[j][k] for J item rows, into
//     NV * J accumulators that stay in registers for the whole k loop. The
//     m x n result lands vectorised over user rows, in L1 scratch.
//  3. Softmax over all m*n logits (max subtracted first), the weighted sum
//     and the per-row sums for top_user_code, vectorised over user rows.
// 16-bit storage is widened to fp32 per candidate block (L1-resident), or,
// for bf16 storage with Ops::kBf16Dot, multiplied directly with vdpbf16ps.
// A policy with Ops::kTiles (the AMX family, kernels_amx.cc) computes the
// bf16 and int8 products of step 2 with its own tile routine
// (Ops::TileProduct) on panels laid out for it (see BuildPanels) and keeps
// this file's fp32 products and step 3.
#ifndef EMBSUM_SCORING_INTERNAL_CPU_KERNELS_INL_H_
#define EMBSUM_SCORING_INTERNAL_CPU_KERNELS_INL_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/half.h"

namespace embsum::scoring::internal {
namespace {

// The scalar tail every int8 family quantizes a user value with:
// round(clamp(x * inverse, -127, 127)), NaN to 0.
inline int QuantizeInt8Scalar(float x, float inverse) {
  float v = x * inverse;
  if (!(v == v)) return 0;
  v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
  return static_cast<int>(__builtin_rintf(v));
}

constexpr size_t RoundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }

// User rows per panel: one vector when m fits in it, else two.
template <class O>
inline uint32_t PanelWidth(uint32_t m) {
  return m <= static_cast<uint32_t>(O::kLanes) ? O::kLanes : 2 * O::kLanes;
}

template <class O>
inline uint32_t PanelCount(uint32_t m) {
  const uint32_t width = PanelWidth<O>(m);
  return (m + width - 1) / width;
}

// bf16 dot products (pair-interleaved bf16 panels).
template <class O>
inline bool UsesBf16Dot(Products products) {
  return O::kBf16Dot && products == Products::kBf16;
}

// int8 dot products (u8 quad panels).
template <class O>
inline bool UsesInt8Dot(Products products) {
  return O::kInt8Dot && products == Products::kInt8;
}

// Offset of the per-row user scales in an int8 panel buffer: quad panels
// (d rounded up to 4), or with Ops::kTiles row-major rows of d rounded up
// to 64 (one tile row of k per 64 bytes).
template <class O>
inline size_t Int8ScalesOffset(size_t rows, uint32_t d) {
  return RoundUp(rows * RoundUp(d, O::kTiles ? 64 : 4), 64);
}

// bf16 pairs per panel row: d rounded up to 2, or with Ops::kTiles to 32
// (the k of one tile), zero-padded.
template <class O>
inline size_t Bf16PanelPairs(uint32_t d) {
  return RoundUp(d, O::kTiles ? 32 : 2) / 2;
}

template <class O>
size_t PanelBytes(uint32_t m, uint32_t d, Products products) {
  const size_t rows = size_t{PanelCount<O>(m)} * PanelWidth<O>(m);
  if (UsesInt8Dot<O>(products)) {
    return Int8ScalesOffset<O>(rows, d) + rows * sizeof(float);
  }
  if (UsesBf16Dot<O>(products)) {
    return rows * Bf16PanelPairs<O>(d) * 2 * sizeof(uint16_t);
  }
  return rows * d * sizeof(float);
}

// fp32 panels: out[(p * d + k) * P + lane] = x[(p * P + lane) * d + k], zero
// for rows >= m. bf16 pair panels: out[((p * d2 + kp) * P + lane) * 2 + h] =
// bf16(x[p * P + lane][2 * kp + h]), zero past d or m (d2 =
// Bf16PanelPairs<O>(d)). With Ops::kTiles, int8 panels are rows instead:
// out[i * d64 + k] = s8 round(x[i][k] / s_i), zero past d or m (d64 = d
// rounded up to 64), then the scales.
template <class O>
void BuildPanels(const float* x, uint32_t m, uint32_t d, Products products,
                 void* out) {
  // Transposed in blocks of kBlock k: each user row's block is one cache
  // line read in full, and the block's output is a few contiguous lines.
  // (Row-by-row strided reads would alias in L1: rows are d * 4 bytes
  // apart, often a multiple of 4 KiB.)
  constexpr size_t kBlock = 16;
  const uint32_t width = PanelWidth<O>(m);
  const uint32_t panels = PanelCount<O>(m);
  if constexpr (O::kTiles) {
    if (products == Products::kInt8) {
      const size_t d64 = RoundUp(d, 64);
      const size_t rows = size_t{panels} * width;
      auto* bytes = static_cast<int8_t*>(out);
      auto* scales =
          reinterpret_cast<float*>(bytes + Int8ScalesOffset<O>(rows, d));
      for (size_t i = 0; i < rows * d64; ++i) bytes[i] = 0;
      for (uint32_t i = 0; i < m; ++i) {
        const float* row = x + size_t{i} * d;
        float max_abs = 0.0f;
        for (uint32_t k = 0; k < d; ++k) {
          const float v = row[k] < 0 ? -row[k] : row[k];
          if (v > max_abs && v <= __FLT_MAX__) max_abs = v;
        }
        const float scale = max_abs / 127.0f;
        scales[i] = scale;
        O::QuantizeS8(row, d, scale > 0.0f ? 1.0f / scale : 0.0f,
                      bytes + size_t{i} * d64);
      }
      for (size_t i = m; i < rows; ++i) scales[i] = 0.0f;
      return;
    }
  } else if constexpr (O::kInt8Dot) {
    if (products == Products::kInt8) {
      // u8 quad panels: out[((p * d4/4 + kq) * P + lane) * 4 + r] =
      // 128 + round(x[p * P + lane][4 * kq + r] / s_row), 128 (zero) past d
      // or m; then the scales s_row = max|x_row| / 127 (0 for padding).
      const size_t d4 = RoundUp(d, 4);
      const size_t rows = size_t{panels} * width;
      auto* bytes = static_cast<uint8_t*>(out);
      auto* scales =
          reinterpret_cast<float*>(bytes + Int8ScalesOffset<O>(rows, d));
      for (size_t i = 0; i < rows * d4; ++i) bytes[i] = 128;
      // One row at a time: quantized contiguously into `quantized` (d4
      // bytes, 128 past d), then copied out quad by quad.
      alignas(64) uint8_t quantized[4096];
      for (uint32_t i = 0; i < m; ++i) {
        const float* row = x + size_t{i} * d;
        const uint32_t p = i / width, lane = i % width;
        uint8_t* dst = bytes + size_t{p} * (d4 / 4) * width * 4;
        float max_abs = 0.0f;
        for (uint32_t k = 0; k < d; ++k) {
          const float v = row[k] < 0 ? -row[k] : row[k];
          if (v > max_abs && v <= __FLT_MAX__) max_abs = v;
        }
        const float scale = max_abs / 127.0f;
        const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
        scales[i] = scale;
        // Long rows in pieces of 4096 values (a multiple of 4).
        for (size_t k0 = 0; k0 < d; k0 += sizeof(quantized)) {
          const size_t count =
              d - k0 < sizeof(quantized) ? d - k0 : sizeof(quantized);
          O::QuantizeU8(row + k0, count, inverse, quantized);
          for (size_t k = count; k % 4 != 0; ++k) quantized[k] = 128;
          for (size_t kq = 0; kq < (count + 3) / 4; ++kq) {
            __builtin_memcpy(dst + ((k0 / 4 + kq) * width + lane) * 4,
                             quantized + kq * 4, 4);
          }
        }
      }
      for (size_t i = m; i < rows; ++i) scales[i] = 0.0f;
      return;
    }
  }
  if constexpr (O::kBf16Dot) {
    if (products == Products::kBf16) {
      // Transpose a block of 2 * kBlock k into fp32 first, then pack each
      // pair of k rows into bf16 pairs with the vector converter.
      const size_t pairs = Bf16PanelPairs<O>(d);
      auto* panel = static_cast<uint16_t*>(out);
      alignas(64) float block[2 * kBlock][2 * O::kLanes];
      for (uint32_t p = 0; p < panels; ++p) {
        const uint32_t rows = m - p * width < width ? m - p * width : width;
        const float* src = x + size_t{p} * width * d;
        uint16_t* dst = panel + size_t{p} * pairs * width * 2;
        for (size_t k0 = 0; k0 < 2 * pairs; k0 += 2 * kBlock) {
          const size_t k_count =
              k0 + 2 * kBlock < 2 * pairs ? 2 * kBlock : 2 * pairs - k0;
          for (uint32_t lane = 0; lane < width; ++lane) {
            const float* row = src + size_t{lane} * d;
            for (size_t k = 0; k < k_count; ++k) {
              block[k][lane] = lane < rows && k0 + k < d ? row[k0 + k] : 0.0f;
            }
          }
          for (size_t k = 0; k < k_count; k += 2) {
            O::PackBf16Pairs(block[k], block[k + 1], width,
                             dst + ((k0 + k) / 2) * width * 2);
          }
        }
      }
      return;
    }
  }
  auto* panel = static_cast<float*>(out);
  for (uint32_t p = 0; p < panels; ++p) {
    const uint32_t rows = m - p * width < width ? m - p * width : width;
    const float* src = x + size_t{p} * width * d;
    float* dst = panel + size_t{p} * d * width;
    for (size_t k0 = 0; k0 < d; k0 += kBlock) {
      const size_t k_end = k0 + kBlock < d ? k0 + kBlock : d;
      for (uint32_t lane = 0; lane < width; ++lane) {
        const float* row = src + size_t{lane} * d;
        for (size_t k = k0; k < k_end; ++k) {
          dst[k * width + lane] = lane < rows ? row[k] : 0.0f;
        }
      }
    }
  }
}

// Scratch (floats, each part 16-float aligned): K tile, L tile (n x i_pad
// each, [j][i] layout), row bias (i_pad: 0, or -inf for padding rows), row
// sums (i_pad), and one converted n*d block: fp32 for 16-bit storage with
// fp32 products, bf16 for fp16 storage with bf16 products; then, with
// Ops::kTiles, the tile routine's own scratch.
template <class O>
size_t ScratchFloats(uint32_t m, uint32_t n, uint32_t d, DType dtype,
                     Products /*products*/) {
  const size_t i_pad = size_t{PanelCount<O>(m)} * PanelWidth<O>(m);
  size_t total = 2 * RoundUp(size_t{n} * i_pad, 16) + 2 * RoundUp(i_pad, 16);
  if (dtype != DType::kFloat32) total += RoundUp(size_t{n} * d, 16);
  if constexpr (O::kTiles) {
    // The tile routine's scratch, then K and L of a pair's second candidate
    // and its converted block (ScorePairs).
    total += RoundUp(O::TileScratchFloats(i_pad, n), 16) +
             2 * RoundUp(size_t{n} * i_pad, 16);
    if (dtype != DType::kFloat32) total += RoundUp(size_t{n} * d, 16);
  }
  return total;
}

// Software prefetch of the next candidate's row spread over a tile's k
// loop: one prefetch per k step, at base + ((k * step) >> 16) rounded down
// to a line, so that `lines` cache lines are covered evenly over d steps
// (step = lines * 64 * 2^16 / d). Spreading them keeps the core's miss
// buffers from filling in a burst (a burst of hundreds of prefetches is
// partly dropped, or stalls the loads of the loop).
struct Prefetch {
  const std::byte* base = nullptr;  // null: none
  uint64_t step = 0;

  static Prefetch Over(const std::byte* base, size_t lines, size_t d) {
    return Prefetch{base, d == 0 ? 0 : (uint64_t{lines} * 64 << 16) / d};
  }
  void At(size_t k) const {
    if (base != nullptr) {
      __builtin_prefetch(
          base + (static_cast<uint64_t>(k) * step >> 16 & ~uint64_t{63}), 0, 3);
    }
  }
};

// acc[v][j] = sum_k panel[k][v * kLanes + lane] * items[j * d + k]; stored
// at out[j * ld + v * kLanes + lane].
template <class O, int NV, int J>
inline void TileF32(const float* panel, const float* items, size_t d,
                    float* out, size_t ld, const Prefetch& prefetch) {
  using V = typename O::V;
  constexpr int kWidth = NV * O::kLanes;
  V acc[NV][J];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) acc[v][j] = O::Zero();
  }
  const float* item_rows[J];
#pragma GCC unroll 16
  for (int j = 0; j < J; ++j) item_rows[j] = items + j * d;
  // A local copy keeps the prefetch state in registers; two k per round
  // halve the loop's scalar overhead (11 of its 36 instructions).
  const Prefetch ahead = prefetch;
#pragma GCC unroll 2
  for (size_t k = 0; k < d; ++k) {
    ahead.At(k);
    V a[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      a[v] = O::Load(panel + k * kWidth + v * O::kLanes);
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      const V b = O::Set1(item_rows[j][k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[v][j] = O::Fma(a[v], b, acc[v][j]);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j)
      O::Store(out + j * ld + v * O::kLanes, acc[v][j]);
  }
}

// Item rows per register tile with NV panel vectors: as many accumulators
// as the register file holds (O::kAccumulators), at most 16 rows.
template <class O, int NV>
constexpr int MaxTileRows() {
  return O::kAccumulators / NV < 16 ? O::kAccumulators / NV : 16;
}

// Calls the tile for a run-time J in [1, MaxTileRows<O, NV>()].
template <class O, int NV, int J = 1>
inline void DispatchTile(int j_count, bool bf16_dot, const void* panel,
                         const void* items, size_t d, float* out, size_t ld,
                         const Prefetch& prefetch) {
  if constexpr (J <= MaxTileRows<O, NV>()) {
    if (j_count == J) {
      if constexpr (O::kBf16Dot && !O::kTiles) {
        if (bf16_dot) {
          O::template TileBf16<NV, J>(static_cast<const uint16_t*>(panel),
                                      static_cast<const uint16_t*>(items), d,
                                      out, ld, prefetch);
          return;
        }
      }
      TileF32<O, NV, J>(static_cast<const float*>(panel),
                        static_cast<const float*>(items), d, out, ld, prefetch);
      return;
    }
    DispatchTile<O, NV, J + 1>(j_count, bf16_dot, panel, items, d, out, ld,
                               prefetch);
  }
}

// out[j * i_pad + i] = dot(x_i, y_j) for all panel rows i and item rows j.
// Items are fp32 (or bf16 when bf16_dot), n rows of d.
// Prefetches `prefetch_lines` lines at `prefetch` (may be null) meanwhile,
// spread over the first register tile.
template <class O>
void Product(const void* panels, const void* items, bool bf16_dot, uint32_t m,
             uint32_t n, uint32_t d, float* out, const std::byte* prefetch,
             size_t prefetch_lines) {
  const uint32_t width = PanelWidth<O>(m);
  const uint32_t panel_count = PanelCount<O>(m);
  const size_t i_pad = size_t{panel_count} * width;
  const size_t elem = bf16_dot ? sizeof(uint16_t) : sizeof(float);
  const size_t panel_bytes =
      (bf16_dot ? RoundUp(d, 2) : size_t{d}) * width * elem;
  // Item rows split into near-equal register tiles.
  const uint32_t max_rows = width == static_cast<uint32_t>(O::kLanes)
                                ? MaxTileRows<O, 1>()
                                : MaxTileRows<O, 2>();
  const uint32_t blocks = (n + max_rows - 1) / max_rows;
  const uint32_t base = n / blocks, extra = n % blocks;
  for (uint32_t p = 0; p < panel_count; ++p) {
    const auto* panel = static_cast<const std::byte*>(panels) + p * panel_bytes;
    uint32_t j0 = 0;
    for (uint32_t blk = 0; blk < blocks; ++blk) {
      const uint32_t j_count = base + (blk < extra ? 1 : 0);
      const auto* item_rows =
          static_cast<const std::byte*>(items) + size_t{j0} * d * elem;
      float* tile = out + size_t{j0} * i_pad + size_t{p} * width;
      // The k loop runs d (bf16 dot: d / 2) steps.
      const Prefetch ahead =
          p == 0 && blk == 0
              ? Prefetch::Over(prefetch, prefetch_lines, bf16_dot ? d / 2 : d)
              : Prefetch{};
      if (width == static_cast<uint32_t>(O::kLanes)) {
        DispatchTile<O, 1>(static_cast<int>(j_count), bf16_dot, panel,
                           item_rows, d, tile, i_pad, ahead);
      } else {
        DispatchTile<O, 2>(static_cast<int>(j_count), bf16_dot, panel,
                           item_rows, d, tile, i_pad, ahead);
      }
      j0 += j_count;
    }
  }
}

// int8 tile: acc[v][j] = sum_kq dpbusd(panel quad (kq, v*kLanes + lane),
// item quad (j, kq)); then out[j * ld + v * kLanes + lane] =
// s_user * s_j * (acc - 128 * sum_j). Items: the packed int8 block of
// dtype.h starting at row j0 (`items` points at value(j0, 0); quads of one
// kq are n * 4 bytes apart).
template <class O, int NV, int J>
inline void TileInt8(const uint8_t* panel, const int8_t* items, size_t n,
                     size_t kquads, const float* user_scales,
                     const float* item_scales, const int32_t* item_sums,
                     float* out, size_t ld, const Prefetch& prefetch) {
  using VI = typename O::VI;
  constexpr int kWidth = NV * O::kLanes;
  VI acc[NV][J];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) acc[v][j] = O::ZeroI();
  }
  const size_t stride = n * 4;
  const Prefetch ahead = prefetch;  // in registers
#pragma GCC unroll 2
  for (size_t kq = 0; kq < kquads; ++kq) {
    ahead.At(kq);
    VI a[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      a[v] = O::LoadI(panel + (kq * kWidth + v * O::kLanes) * 4);
    }
    const int8_t* quads = items + kq * stride;
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      int32_t quad;
      __builtin_memcpy(&quad, quads + j * 4, sizeof(quad));
      const VI b = O::Set1I(quad);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[v][j] = O::DotU8S8(acc[v][j], a[v], b);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const typename O::V su = O::Load(user_scales + v * O::kLanes);
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      int32_t sum;
      float scale;
      __builtin_memcpy(&sum, item_sums + j, sizeof(sum));
      __builtin_memcpy(&scale, item_scales + j, sizeof(scale));
      const VI corrected = O::SubI(acc[v][j], O::Set1I(128 * sum));
      O::Store(out + j * ld + v * O::kLanes,
               O::Mul(O::ToFloat(corrected), O::Mul(su, O::Set1(scale))));
    }
  }
}

template <class O, int NV, int J = 1>
inline void DispatchTileInt8(int j_count, const uint8_t* panel,
                             const int8_t* items, size_t n, size_t kquads,
                             const float* user_scales, const float* scales,
                             const int32_t* sums, float* out, size_t ld,
                             const Prefetch& prefetch) {
  if constexpr (J <= MaxTileRows<O, NV>()) {
    if (j_count == J) {
      TileInt8<O, NV, J>(panel, items, n, kquads, user_scales, scales, sums,
                         out, ld, prefetch);
      return;
    }
    DispatchTileInt8<O, NV, J + 1>(j_count, panel, items, n, kquads,
                                   user_scales, scales, sums, out, ld,
                                   prefetch);
  }
}

// out[j * i_pad + i] = K_ij (or L_ij) for an int8 block (dtype.h layout)
// against u8 quad panels (BuildPanels with Products::kInt8).
template <class O>
void ProductInt8(const void* panels, const std::byte* block, uint32_t m,
                 uint32_t n, uint32_t d, float* out, const std::byte* prefetch,
                 size_t prefetch_lines) {
  if constexpr (O::kInt8Dot && !O::kTiles) {
    const uint32_t width = PanelWidth<O>(m);
    const uint32_t panel_count = PanelCount<O>(m);
    const size_t i_pad = size_t{panel_count} * width;
    const size_t d4 = RoundUp(d, 4);
    const size_t kquads = d4 / 4;
    const auto* panel_bytes = static_cast<const uint8_t*>(panels);
    const auto* user_scales = reinterpret_cast<const float*>(
        panel_bytes + Int8ScalesOffset<O>(i_pad, d));
    const auto* values = reinterpret_cast<const int8_t*>(block);
    const auto* scales = reinterpret_cast<const float*>(block + size_t{n} * d4);
    const auto* sums = reinterpret_cast<const int32_t*>(block + size_t{n} * d4 +
                                                        4 * size_t{n});
    const uint32_t max_rows = width == static_cast<uint32_t>(O::kLanes)
                                  ? MaxTileRows<O, 1>()
                                  : MaxTileRows<O, 2>();
    const uint32_t blocks = (n + max_rows - 1) / max_rows;
    const uint32_t base = n / blocks, extra = n % blocks;
    for (uint32_t p = 0; p < panel_count; ++p) {
      const uint8_t* panel = panel_bytes + size_t{p} * kquads * width * 4;
      uint32_t j0 = 0;
      for (uint32_t blk = 0; blk < blocks; ++blk) {
        const uint32_t j_count = base + (blk < extra ? 1 : 0);
        float* tile = out + size_t{j0} * i_pad + size_t{p} * width;
        const Prefetch ahead =
            p == 0 && blk == 0
                ? Prefetch::Over(prefetch, prefetch_lines, kquads)
                : Prefetch{};
        if (width == static_cast<uint32_t>(O::kLanes)) {
          DispatchTileInt8<O, 1>(static_cast<int>(j_count), panel,
                                 values + size_t{j0} * 4, n, kquads,
                                 user_scales + size_t{p} * width, scales + j0,
                                 sums + j0, tile, i_pad, ahead);
        } else {
          DispatchTileInt8<O, 2>(static_cast<int>(j_count), panel,
                                 values + size_t{j0} * 4, n, kquads,
                                 user_scales + size_t{p} * width, scales + j0,
                                 sums + j0, tile, i_pad, ahead);
        }
        j0 += j_count;
      }
    }
  } else {
    (void)panels, (void)block, (void)m, (void)n, (void)d, (void)out;
    (void)prefetch, (void)prefetch_lines;
  }
}

// Dequantizes an int8 block (dtype.h layout) to row-major fp32.
inline void WidenInt8Block(const std::byte* block, uint32_t n, uint32_t d,
                           float* dst) {
  const size_t d4 = RoundUp(d, 4);
  const auto* values = reinterpret_cast<const int8_t*>(block);
  const std::byte* scale_bytes = block + size_t{n} * d4;
  for (uint32_t j = 0; j < n; ++j) {
    float scale;
    __builtin_memcpy(&scale, scale_bytes + 4 * size_t{j}, sizeof(scale));
    float* out = dst + size_t{j} * d;
    for (uint32_t k = 0; k < d; ++k) {
      out[k] =
          scale * static_cast<float>(values[((k / 4) * n + j) * 4 + k % 4]);
    }
  }
}

// Widens an n x d block of 16-bit or int8 storage to fp32.
template <class O>
inline void WidenBlock(const std::byte* src, DType dtype, uint32_t n,
                       uint32_t d, float* dst) {
  if (dtype == DType::kInt8) {
    WidenInt8Block(src, n, d, dst);
    return;
  }
  const size_t count = size_t{n} * d;
  const auto* in = reinterpret_cast<const uint16_t*>(src);
  if (dtype == DType::kFloat16) {
    O::WidenHalf(in, count, dst);
  } else {
    O::WidenBf16(in, count, dst);
  }
}

// Rounds `count` fp16 elements to bf16, written at dst (count uint16).
template <class O>
inline void NarrowBlock(const std::byte* src, size_t count, float* dst) {
  if constexpr (O::kBf16Dot) {
    O::HalfToBf16(reinterpret_cast<const uint16_t*>(src), count,
                  reinterpret_cast<uint16_t*>(dst));
  }
}

// One product (K or L) of a candidate block into out ([j][i], i_pad
// columns): the tile routine for the bf16 and int8 products of a policy
// with Ops::kTiles, else Product / ProductInt8.
template <class O>
inline void RunProduct(const void* panels, const void* items, bool bf16_dot,
                       bool int8_dot, uint32_t m, uint32_t n, uint32_t d,
                       float* out, float* tile_scratch,
                       const std::byte* prefetch, size_t prefetch_lines) {
  if constexpr (O::kTiles) {
    if (bf16_dot || int8_dot) {
      O::TileProduct(int8_dot, panels, items, m, n, d, out, tile_scratch,
                     prefetch, prefetch_lines);
      return;
    }
  } else {
    (void)tile_scratch;
  }
  if (int8_dot) {
    ProductInt8<O>(panels, static_cast<const std::byte*>(items), m, n, d, out,
                   prefetch, prefetch_lines);
  } else {
    Product<O>(panels, items, bf16_dot, m, n, d, out, prefetch, prefetch_lines);
  }
}

// Softmax over all m*n logits (padding rows biased to -inf), weighted sum
// of K, per-row sums: *score, and *code when code != nullptr.
template <class O>
inline void Epilogue(const float* k_tile, const float* logits,
                     const float* bias, float* row_sums, uint32_t m, uint32_t n,
                     size_t i_pad, float* score, int32_t* code) {
  using V = typename O::V;
  constexpr int kLanes = O::kLanes;
  const size_t vectors = i_pad / kLanes;
  V max_v = O::Set1(-__builtin_inff());
  for (uint32_t j = 0; j < n; ++j) {
    for (size_t v = 0; v < vectors; ++v) {
      max_v = O::Max(max_v, O::Add(O::Load(logits + j * i_pad + v * kLanes),
                                   O::Load(bias + v * kLanes)));
    }
  }
  const V max_logit = O::Set1(O::ReduceMax(max_v));
  V weight_sum = O::Zero();
  V total = O::Zero();
  for (size_t v = 0; v < vectors; ++v) {
    const V row_bias = O::Sub(O::Load(bias + v * kLanes), max_logit);
    V row_sum = O::Zero();
    for (uint32_t j = 0; j < n; ++j) {
      const size_t at = j * i_pad + v * kLanes;
      const V w = O::Exp(O::Add(O::Load(logits + at), row_bias));
      weight_sum = O::Add(weight_sum, w);
      row_sum = O::Fma(w, O::Load(k_tile + at), row_sum);
    }
    total = O::Add(total, row_sum);
    O::Store(row_sums + v * kLanes, row_sum);
  }
  *score = O::ReduceAdd(total) / O::ReduceAdd(weight_sum);
  if (code != nullptr) {
    int32_t best = 0;
    for (uint32_t i = 1; i < m; ++i) {
      if (row_sums[i] > row_sums[best]) best = static_cast<int32_t>(i);
    }
    *code = best;
  }
}

// With Ops::kTiles and at most Ops::kPairItems item codes: candidates two at
// a time (Ops::TileProductPair shares each user tile between them and keeps
// four independent accumulator chains); each candidate's sums are formed in
// the same order as alone, so the results do not depend on the pairing.
// Returns the candidates scored (an even count); the caller does the rest.
template <class O>
size_t ScorePairs(const KernelArgs& args, const uint32_t* rows, size_t count,
                  float* scores, int32_t* codes, const float* bias,
                  float* row_sums, float* k_tile, float* l_tile, float* widened,
                  float* tile_scratch) {
  const uint32_t m = args.m, n = args.n, d = args.d;
  const size_t i_pad = size_t{PanelCount<O>(m)} * PanelWidth<O>(m);
  const size_t block = size_t{n} * d;
  const bool int8_dot = UsesInt8Dot<O>(args.products);
  const bool narrow =
      UsesBf16Dot<O>(args.products) && args.dtype == DType::kFloat16;
  float* k_b = tile_scratch + RoundUp(O::TileScratchFloats(i_pad, n), 16);
  float* l_b = k_b + RoundUp(size_t{n} * i_pad, 16);
  float* widened_b = l_b + RoundUp(size_t{n} * i_pad, 16);
  const size_t lines = (args.row_bytes + 63) / 64;
  const size_t first_lines = args.logits_equal_matches ? lines : lines / 2;
  size_t c = 0;
  for (; c + 2 <= count; c += 2) {
    const std::byte* row_a = args.arena + size_t{rows[c]} * args.row_bytes;
    const std::byte* row_b = args.arena + size_t{rows[c + 1]} * args.row_bytes;
    // The next pair's rows, half during each product.
    const std::byte* next_a =
        c + 2 < count ? args.arena + size_t{rows[c + 2]} * args.row_bytes
                      : nullptr;
    const std::byte* next_b =
        c + 3 < count ? args.arena + size_t{rows[c + 3]} * args.row_bytes
                      : nullptr;
    const void* b_a = row_a;
    const void* b_b = row_b;
    if (narrow) {
      NarrowBlock<O>(row_a, block, widened);
      NarrowBlock<O>(row_b, block, widened_b);
      b_a = widened;
      b_b = widened_b;
    }
    O::TileProductPair(int8_dot, args.a_panels, b_a, b_b, m, n, d, k_tile, k_b,
                       tile_scratch, next_a, next_b, first_lines);
    const float* logits_a = k_tile;
    const float* logits_b = k_b;
    if (!args.logits_equal_matches) {
      const void* g_a = b_a;
      const void* g_b = b_b;
      if (args.has_keys) {
        g_a = row_a + args.block_bytes;
        g_b = row_b + args.block_bytes;
        if (narrow) {
          NarrowBlock<O>(row_a + args.block_bytes, block, widened);
          NarrowBlock<O>(row_b + args.block_bytes, block, widened_b);
          g_a = widened;
          g_b = widened_b;
        }
      }
      O::TileProductPair(
          int8_dot, args.q_panels, g_a, g_b, m, n, d, l_tile, l_b, tile_scratch,
          next_a == nullptr ? nullptr : next_a + first_lines * 64,
          next_b == nullptr ? nullptr : next_b + first_lines * 64,
          lines - first_lines);
      logits_a = l_tile;
      logits_b = l_b;
    }
    Epilogue<O>(k_tile, logits_a, bias, row_sums, m, n, i_pad, scores + c,
                codes == nullptr ? nullptr : codes + c);
    Epilogue<O>(k_b, logits_b, bias, row_sums, m, n, i_pad, scores + c + 1,
                codes == nullptr ? nullptr : codes + c + 1);
  }
  return c;
}

template <class O>
void ScoreRows(const KernelArgs& args, const uint32_t* rows, size_t count,
               float* scores, int32_t* codes, float* scratch) {
  const uint32_t m = args.m, n = args.n, d = args.d;
  const size_t i_pad = size_t{PanelCount<O>(m)} * PanelWidth<O>(m);
  const size_t block = size_t{n} * d;
  const size_t block_bytes = args.block_bytes;
  const bool bf16_dot = UsesBf16Dot<O>(args.products);
  const bool int8_dot = UsesInt8Dot<O>(args.products);
  // fp32 products of 16-bit storage: widen each block to fp32. bf16
  // products of fp16 storage: round each block to bf16.
  const bool widen = args.dtype != DType::kFloat32 && !bf16_dot && !int8_dot;
  const bool narrow = bf16_dot && args.dtype == DType::kFloat16;

  float* k_tile = scratch;
  float* l_tile = k_tile + RoundUp(size_t{n} * i_pad, 16);
  float* bias = l_tile + RoundUp(size_t{n} * i_pad, 16);
  float* row_sums = bias + RoundUp(i_pad, 16);
  float* widened = row_sums + RoundUp(i_pad, 16);
  float* tile_scratch =
      widened + (args.dtype != DType::kFloat32 ? RoundUp(block, 16) : 0);
  for (size_t i = 0; i < i_pad; ++i) {
    bias[i] = i < m ? 0.0f : -__builtin_inff();
  }
  size_t first = 0;  // candidates already scored
  if constexpr (O::kTiles) {
    if (bf16_dot || int8_dot) {
      O::BeginTiles(n, int8_dot);
      if (n <= O::kPairItems) {
        first = ScorePairs<O>(args, rows, count, scores, codes, bias, row_sums,
                              k_tile, l_tile, widened, tile_scratch);
      }
    }
  }

  for (size_t c = first; c < count; ++c) {
    const std::byte* row = args.arena + size_t{rows[c]} * args.row_bytes;
    // Prefetch the next candidate's whole row into L2 while this one is
    // computed: short item rows (small n * d) are too short for the
    // hardware stream prefetcher to ramp up.
    const std::byte* next =
        c + 2 < count ? args.arena + size_t{rows[c + 2]} * args.row_bytes
                      : nullptr;
    const size_t lines = (args.row_bytes + 63) / 64;
    // With one product the whole next row is prefetched during it; with two,
    // half during each.
    const size_t first_lines = args.logits_equal_matches ? lines : lines / 2;
    const void* b = row;
    if (widen) {
      WidenBlock<O>(row, args.dtype, n, d, widened);
      b = widened;
    } else if (narrow) {
      NarrowBlock<O>(row, block, widened);
      b = widened;
    }
    RunProduct<O>(args.a_panels, b, bf16_dot, int8_dot, m, n, d, k_tile,
                  tile_scratch, next, first_lines);
    const float* logits = k_tile;
    if (!args.logits_equal_matches) {
      const void* g = b;
      if (args.has_keys) {
        g = row + block_bytes;
        if (widen) {
          WidenBlock<O>(row + block_bytes, args.dtype, n, d, widened);
          g = widened;
        } else if (narrow) {
          NarrowBlock<O>(row + block_bytes, block, widened);
          g = widened;
        }
      }
      const std::byte* next_half =
          next == nullptr ? nullptr : next + first_lines * 64;
      RunProduct<O>(args.q_panels, g, bf16_dot, int8_dot, m, n, d, l_tile,
                    tile_scratch, next_half, lines - first_lines);
      logits = l_tile;
    }

    Epilogue<O>(k_tile, logits, bias, row_sums, m, n, i_pad, scores + c,
                codes == nullptr ? nullptr : codes + c);
  }
}

template <class O>
constexpr KernelTable MakeTable(CpuIsa isa) {
  return KernelTable{isa,
                     O::kBf16Dot,
                     O::kInt8Dot,
                     &PanelBytes<O>,
                     &BuildPanels<O>,
                     &ScratchFloats<O>,
                     &ScoreRows<O>};
}

}  // namespace
}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_CPU_KERNELS_INL_H_
