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
// Each loop: asm blocks (at most 12 accumulators each: GCC allows 30
// operands) of independent multiply-adds, one per accumulator, operands in
// registers, no memory traffic and nothing else in the loop but the counter
// (the compiler's own code for these loops spilled accumulators and copied
// registers inside the loop). 512-bit loops keep 16 accumulators (32 zmm
// registers); 256-bit loops 12, which with the two operands fit the 16 ymm
// registers. 12 chains cover a 4-5 cycle latency on 2 pipes with room to spare.
// The accumulators are reduced into the returned value so the work is live.
__attribute__((target("avx512f"))) float Fp32Avx512(uint64_t iterations) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
  __m512 r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5],
         r6 = a[6], r7 = a[7], r8 = a[8], r9 = a[9], r10 = a[10], r11 = a[11],
         r12 = a[12], r13 = a[13], r14 = a[14], r15 = a[15];
  for (uint64_t it = 0; it < iterations; ++it) {
    asm volatile(
        "vfmadd231ps %[y], %[x], %[a0]\n\t"
        "vfmadd231ps %[y], %[x], %[a1]\n\t"
        "vfmadd231ps %[y], %[x], %[a2]\n\t"
        "vfmadd231ps %[y], %[x], %[a3]\n\t"
        "vfmadd231ps %[y], %[x], %[a4]\n\t"
        "vfmadd231ps %[y], %[x], %[a5]\n\t"
        "vfmadd231ps %[y], %[x], %[a6]\n\t"
        "vfmadd231ps %[y], %[x], %[a7]\n\t"
        : [a0] "+v"(r0), [a1] "+v"(r1), [a2] "+v"(r2), [a3] "+v"(r3),
          [a4] "+v"(r4), [a5] "+v"(r5), [a6] "+v"(r6), [a7] "+v"(r7)
        : [x] "v"(x), [y] "v"(y));
    asm volatile(
        "vfmadd231ps %[y], %[x], %[a8]\n\t"
        "vfmadd231ps %[y], %[x], %[a9]\n\t"
        "vfmadd231ps %[y], %[x], %[a10]\n\t"
        "vfmadd231ps %[y], %[x], %[a11]\n\t"
        "vfmadd231ps %[y], %[x], %[a12]\n\t"
        "vfmadd231ps %[y], %[x], %[a13]\n\t"
        "vfmadd231ps %[y], %[x], %[a14]\n\t"
        "vfmadd231ps %[y], %[x], %[a15]\n\t"
        : [a8] "+v"(r8), [a9] "+v"(r9), [a10] "+v"(r10), [a11] "+v"(r11),
          [a12] "+v"(r12), [a13] "+v"(r13), [a14] "+v"(r14), [a15] "+v"(r15)
        : [x] "v"(x), [y] "v"(y));
  }
  a[0] = r0;
  a[1] = r1;
  a[2] = r2;
  a[3] = r3;
  a[4] = r4;
  a[5] = r5;
  a[6] = r6;
  a[7] = r7;
  a[8] = r8;
  a[9] = r9;
  a[10] = r10;
  a[11] = r11;
  a[12] = r12;
  a[13] = r13;
  a[14] = r14;
  a[15] = r15;
  __m512 sum = a[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, a[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) float Fp32Avx2(uint64_t iterations) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.001f * i);
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
  __m256 r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5],
         r6 = a[6], r7 = a[7], r8 = a[8], r9 = a[9], r10 = a[10], r11 = a[11];
  for (uint64_t it = 0; it < iterations; ++it) {
    asm volatile(
        "vfmadd231ps %[y], %[x], %[a0]\n\t"
        "vfmadd231ps %[y], %[x], %[a1]\n\t"
        "vfmadd231ps %[y], %[x], %[a2]\n\t"
        "vfmadd231ps %[y], %[x], %[a3]\n\t"
        "vfmadd231ps %[y], %[x], %[a4]\n\t"
        "vfmadd231ps %[y], %[x], %[a5]\n\t"
        "vfmadd231ps %[y], %[x], %[a6]\n\t"
        "vfmadd231ps %[y], %[x], %[a7]\n\t"
        "vfmadd231ps %[y], %[x], %[a8]\n\t"
        "vfmadd231ps %[y], %[x], %[a9]\n\t"
        "vfmadd231ps %[y], %[x], %[a10]\n\t"
        "vfmadd231ps %[y], %[x], %[a11]\n\t"
        : [a0] "+x"(r0), [a1] "+x"(r1), [a2] "+x"(r2), [a3] "+x"(r3),
          [a4] "+x"(r4), [a5] "+x"(r5), [a6] "+x"(r6), [a7] "+x"(r7),
          [a8] "+x"(r8), [a9] "+x"(r9), [a10] "+x"(r10), [a11] "+x"(r11)
        : [x] "x"(x), [y] "x"(y));
  }
  a[0] = r0;
  a[1] = r1;
  a[2] = r2;
  a[3] = r3;
  a[4] = r4;
  a[5] = r5;
  a[6] = r6;
  a[7] = r7;
  a[8] = r8;
  a[9] = r9;
  a[10] = r10;
  a[11] = r11;
  __m256 sum = a[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, a[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

__attribute__((target("avx512f,avx512bf16"))) float Bf16Avx512(
    uint64_t iterations) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // (1, 1)
  const __m512bh y = (__m512bh)_mm512_set1_epi32(0x33803380);  // tiny
  __m512 r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5],
         r6 = a[6], r7 = a[7], r8 = a[8], r9 = a[9], r10 = a[10], r11 = a[11],
         r12 = a[12], r13 = a[13], r14 = a[14], r15 = a[15];
  for (uint64_t it = 0; it < iterations; ++it) {
    asm volatile(
        "vdpbf16ps %[y], %[x], %[a0]\n\t"
        "vdpbf16ps %[y], %[x], %[a1]\n\t"
        "vdpbf16ps %[y], %[x], %[a2]\n\t"
        "vdpbf16ps %[y], %[x], %[a3]\n\t"
        "vdpbf16ps %[y], %[x], %[a4]\n\t"
        "vdpbf16ps %[y], %[x], %[a5]\n\t"
        "vdpbf16ps %[y], %[x], %[a6]\n\t"
        "vdpbf16ps %[y], %[x], %[a7]\n\t"
        : [a0] "+v"(r0), [a1] "+v"(r1), [a2] "+v"(r2), [a3] "+v"(r3),
          [a4] "+v"(r4), [a5] "+v"(r5), [a6] "+v"(r6), [a7] "+v"(r7)
        : [x] "v"(x), [y] "v"(y));
    asm volatile(
        "vdpbf16ps %[y], %[x], %[a8]\n\t"
        "vdpbf16ps %[y], %[x], %[a9]\n\t"
        "vdpbf16ps %[y], %[x], %[a10]\n\t"
        "vdpbf16ps %[y], %[x], %[a11]\n\t"
        "vdpbf16ps %[y], %[x], %[a12]\n\t"
        "vdpbf16ps %[y], %[x], %[a13]\n\t"
        "vdpbf16ps %[y], %[x], %[a14]\n\t"
        "vdpbf16ps %[y], %[x], %[a15]\n\t"
        : [a8] "+v"(r8), [a9] "+v"(r9), [a10] "+v"(r10), [a11] "+v"(r11),
          [a12] "+v"(r12), [a13] "+v"(r13), [a14] "+v"(r14), [a15] "+v"(r15)
        : [x] "v"(x), [y] "v"(y));
  }
  a[0] = r0;
  a[1] = r1;
  a[2] = r2;
  a[3] = r3;
  a[4] = r4;
  a[5] = r5;
  a[6] = r6;
  a[7] = r7;
  a[8] = r8;
  a[9] = r9;
  a[10] = r10;
  a[11] = r11;
  a[12] = r12;
  a[13] = r13;
  a[14] = r14;
  a[15] = r15;
  __m512 sum = a[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, a[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx512f,avx512vnni"))) float Int8Avx512(
    uint64_t iterations) {
  __m512i a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_epi32(i);
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(-1);
  __m512i r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5],
          r6 = a[6], r7 = a[7], r8 = a[8], r9 = a[9], r10 = a[10], r11 = a[11],
          r12 = a[12], r13 = a[13], r14 = a[14], r15 = a[15];
  for (uint64_t it = 0; it < iterations; ++it) {
    asm volatile(
        "vpdpbusd %[y], %[x], %[a0]\n\t"
        "vpdpbusd %[y], %[x], %[a1]\n\t"
        "vpdpbusd %[y], %[x], %[a2]\n\t"
        "vpdpbusd %[y], %[x], %[a3]\n\t"
        "vpdpbusd %[y], %[x], %[a4]\n\t"
        "vpdpbusd %[y], %[x], %[a5]\n\t"
        "vpdpbusd %[y], %[x], %[a6]\n\t"
        "vpdpbusd %[y], %[x], %[a7]\n\t"
        : [a0] "+v"(r0), [a1] "+v"(r1), [a2] "+v"(r2), [a3] "+v"(r3),
          [a4] "+v"(r4), [a5] "+v"(r5), [a6] "+v"(r6), [a7] "+v"(r7)
        : [x] "v"(x), [y] "v"(y));
    asm volatile(
        "vpdpbusd %[y], %[x], %[a8]\n\t"
        "vpdpbusd %[y], %[x], %[a9]\n\t"
        "vpdpbusd %[y], %[x], %[a10]\n\t"
        "vpdpbusd %[y], %[x], %[a11]\n\t"
        "vpdpbusd %[y], %[x], %[a12]\n\t"
        "vpdpbusd %[y], %[x], %[a13]\n\t"
        "vpdpbusd %[y], %[x], %[a14]\n\t"
        "vpdpbusd %[y], %[x], %[a15]\n\t"
        : [a8] "+v"(r8), [a9] "+v"(r9), [a10] "+v"(r10), [a11] "+v"(r11),
          [a12] "+v"(r12), [a13] "+v"(r13), [a14] "+v"(r14), [a15] "+v"(r15)
        : [x] "v"(x), [y] "v"(y));
  }
  a[0] = r0;
  a[1] = r1;
  a[2] = r2;
  a[3] = r3;
  a[4] = r4;
  a[5] = r5;
  a[6] = r6;
  a[7] = r7;
  a[8] = r8;
  a[9] = r9;
  a[10] = r10;
  a[11] = r11;
  a[12] = r12;
  a[13] = r13;
  a[14] = r14;
  a[15] = r15;
  __m512i sum = a[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_epi32(sum, a[i]);
  return static_cast<float>(_mm512_reduce_add_epi32(sum));
}

__attribute__((target("avx2,avxvnni"))) float Int8AvxVnni(uint64_t iterations) {
  __m256i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_epi32(i);
  const __m256i x = _mm256_set1_epi8(1), y = _mm256_set1_epi8(-1);
  __m256i r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5],
          r6 = a[6], r7 = a[7], r8 = a[8], r9 = a[9], r10 = a[10], r11 = a[11];
  for (uint64_t it = 0; it < iterations; ++it) {
    asm volatile(
        "%{vex%} vpdpbusd %[y], %[x], %[a0]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a1]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a2]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a3]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a4]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a5]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a6]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a7]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a8]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a9]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a10]\n\t"
        "%{vex%} vpdpbusd %[y], %[x], %[a11]\n\t"
        : [a0] "+x"(r0), [a1] "+x"(r1), [a2] "+x"(r2), [a3] "+x"(r3),
          [a4] "+x"(r4), [a5] "+x"(r5), [a6] "+x"(r6), [a7] "+x"(r7),
          [a8] "+x"(r8), [a9] "+x"(r9), [a10] "+x"(r10), [a11] "+x"(r11)
        : [x] "x"(x), [y] "x"(y));
  }
  a[0] = r0;
  a[1] = r1;
  a[2] = r2;
  a[3] = r3;
  a[4] = r4;
  a[5] = r5;
  a[6] = r6;
  a[7] = r7;
  a[8] = r8;
  a[9] = r9;
  a[10] = r10;
  a[11] = r11;
  __m256i sum = a[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_epi32(sum, a[i]);
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
  // Instructions per iteration: the accumulators of the loop.
  const double rounds = static_cast<double>(iterations) * (wide ? 16.0 : 12.0);
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
