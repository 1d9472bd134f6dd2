#include "scoring/cpu_peak.h"

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 reduction intrinsics build "undefined" vectors as
// `__m512 y = y;`, which -W(maybe-)uninitialized reports falsely (GCC bug
// 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace embsum::scoring {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
// Each loop: 16 independent accumulators (latency 4-5 cycles x 2-4 pipes),
// operands in registers (fp32 and integer multiply-adds are not reassociated
// without -ffast-math, so the chains stay as written).
// The accumulators are reduced into the returned value so the work is live.

__attribute__((target("avx512f"))) float Fp32Avx512(uint64_t iterations) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
  for (uint64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) float Fp32Avx2(uint64_t iterations) {
  __m256 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
  for (uint64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

__attribute__((target("avx512f,avx512bf16"))) float Bf16Avx512(
    uint64_t iterations) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // (1, 1)
  const __m512bh y = (__m512bh)_mm512_set1_epi32(0x33803380);  // tiny
  for (uint64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx512f,avx512vnni"))) float Int8Avx512(
    uint64_t iterations) {
  __m512i acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(-1);
  for (uint64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
  }
  __m512i sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_epi32(sum, acc[i]);
  return static_cast<float>(_mm512_reduce_add_epi32(sum));
}

__attribute__((target("avx2,avxvnni"))) float Int8AvxVnni(uint64_t iterations) {
  __m256i acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i x = _mm256_set1_epi8(1), y = _mm256_set1_epi8(-1);
  for (uint64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_dpbusd_avx_epi32(acc[i], x, y);
  }
  __m256i sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm256_add_epi32(sum, acc[i]);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  int64_t total = 0;
  for (int32_t v : lanes) total += v;
  return static_cast<float>(total);
}

// AMX: four accumulator tiles (tmm0-3), each fed four times per round from
// the source tiles tmm4-7 (loaded once): 16 independent-enough tile
// products per round (4 chains, latency hidden by the other 3). The tile
// intrinsics are inline assembly, so the loop cannot be folded away.
struct PeakTileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

__attribute__((target("amx-tile"))) void LoadPeakTiles(const void* sources) {
  alignas(64) PeakTileConfig config{};
  config.palette = 1;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.colsb[t] = 64;
  }
  // The whole 64 bytes as the operand (GCC 12's _tile_loadconfig names only
  // 8 of them, and the stores of the rest may be dropped).
  __asm__ volatile("ldtilecfg %0" : : "m"(config));
  // Accumulators start at zero; sources from `sources` (4 KiB).
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const auto* bytes = static_cast<const unsigned char*>(sources);
  _tile_loadd(4, bytes, 64);
  _tile_loadd(5, bytes + 1024, 64);
  _tile_loadd(6, bytes + 2048, 64);
  _tile_loadd(7, bytes + 3072, 64);
}

// Sums the accumulator tiles (fp32 or int32 lanes) and releases the tiles.
template <typename T>
__attribute__((target("amx-tile"))) float DrainPeakTiles() {
  alignas(64) T c[4][256];
  _tile_stored(0, c[0], 64);
  _tile_stored(1, c[1], 64);
  _tile_stored(2, c[2], 64);
  _tile_stored(3, c[3], 64);
  _tile_release();
  double total = 0;
  for (const auto& tile : c) {
    for (T v : tile) total += static_cast<double>(v);
  }
  return static_cast<float>(total);
}

__attribute__((target("amx-tile,amx-bf16"))) float AmxBf16(
    uint64_t iterations) {
  // bf16 1.0 (0x3f80) against bf16 2^-24 (0x3380): sums stay small.
  alignas(64) uint16_t sources[2048];
  for (int i = 0; i < 2048; ++i) sources[i] = i < 512 ? 0x3f80 : 0x3380;
  LoadPeakTiles(sources);
  for (uint64_t it = 0; it < iterations; ++it) {
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 6);
    _tile_dpbf16ps(2, 4, 7);
    _tile_dpbf16ps(3, 5, 6);
    _tile_dpbf16ps(0, 5, 7);
    _tile_dpbf16ps(1, 6, 7);
    _tile_dpbf16ps(2, 6, 4);
    _tile_dpbf16ps(3, 7, 4);
    _tile_dpbf16ps(0, 7, 5);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 4);
    _tile_dpbf16ps(3, 6, 5);
    _tile_dpbf16ps(0, 6, 4);
    _tile_dpbf16ps(1, 7, 6);
    _tile_dpbf16ps(2, 4, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  return DrainPeakTiles<float>();
}

__attribute__((target("amx-tile,amx-int8"))) float AmxInt8(
    uint64_t iterations) {
  alignas(64) int8_t sources[4096];
  for (int i = 0; i < 4096; ++i) sources[i] = i < 1024 ? 1 : -1;
  LoadPeakTiles(sources);
  for (uint64_t it = 0; it < iterations; ++it) {
    _tile_dpbssd(0, 4, 5);
    _tile_dpbssd(1, 4, 6);
    _tile_dpbssd(2, 4, 7);
    _tile_dpbssd(3, 5, 6);
    _tile_dpbssd(0, 5, 7);
    _tile_dpbssd(1, 6, 7);
    _tile_dpbssd(2, 6, 4);
    _tile_dpbssd(3, 7, 4);
    _tile_dpbssd(0, 7, 5);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 4);
    _tile_dpbssd(3, 6, 5);
    _tile_dpbssd(0, 6, 4);
    _tile_dpbssd(1, 7, 6);
    _tile_dpbssd(2, 4, 6);
    _tile_dpbssd(3, 5, 7);
  }
  return DrainPeakTiles<int32_t>();
}

// Keeps the result alive without printing it. Atomic: peak loops run on
// several threads at once.
std::atomic<float> g_sink{0.0f};
#endif

}  // namespace

std::string_view PeakOpName(PeakOp op) {
  switch (op) {
    case PeakOp::kFp32Fma:
      return "fp32_fma";
    case PeakOp::kBf16Dot:
      return "bf16_dot";
    case PeakOp::kInt8Dot:
      return "int8_dot";
    case PeakOp::kAmxBf16:
      return "amx_bf16";
    case PeakOp::kAmxInt8:
      return "amx_int8";
  }
  return "unknown";
}

bool PeakSupported(CpuIsa isa, PeakOp op) {
  if (!CpuIsaSupported(isa)) return false;
  switch (op) {
    case PeakOp::kFp32Fma:
      return isa != CpuIsa::kScalar;
    case PeakOp::kBf16Dot:
      return CpuIsaHasBf16Dot(isa);
    case PeakOp::kInt8Dot:
      return CpuIsaHasInt8Dot(isa);
    case PeakOp::kAmxBf16:
    case PeakOp::kAmxInt8:
      return CpuIsaHasTiles(isa);
  }
  return false;
}

std::optional<double> RunPeakLoop(CpuIsa isa, PeakOp op, uint64_t iterations) {
  if (!PeakSupported(isa, op)) return std::nullopt;
#if defined(__x86_64__) && defined(__GNUC__)
  const bool wide = CpuIsaVectorBits(isa) == 512;
  const double lanes = wide ? 16.0 : 8.0;  // 32-bit lanes
  const double rounds = static_cast<double>(iterations) * 16.0;
  switch (op) {
    case PeakOp::kFp32Fma:
      g_sink.store(wide ? Fp32Avx512(iterations) : Fp32Avx2(iterations),
                   std::memory_order_relaxed);
      return rounds * lanes * 2.0;
    case PeakOp::kBf16Dot:
      g_sink.store(Bf16Avx512(iterations), std::memory_order_relaxed);
      return rounds * lanes * 4.0;
    case PeakOp::kInt8Dot:
      g_sink.store(wide ? Int8Avx512(iterations) : Int8AvxVnni(iterations),
                   std::memory_order_relaxed);
      return rounds * lanes * 8.0;
    case PeakOp::kAmxBf16:
      g_sink.store(AmxBf16(iterations), std::memory_order_relaxed);
      return rounds * 16.0 * 16.0 * 32.0 * 2.0;
    case PeakOp::kAmxInt8:
      g_sink.store(AmxInt8(iterations), std::memory_order_relaxed);
      return rounds * 16.0 * 16.0 * 64.0 * 2.0;
  }
#endif
  (void)iterations;
  return std::nullopt;
}

}  // namespace embsum::scoring
