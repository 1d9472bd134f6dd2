// The machine's arithmetic ceiling, measured: register-resident loops of
// the multiply-add instructions the CPU kernels use (fp32 FMA, bf16 dot
// products, int8 dot products), with enough independent accumulators to
// hide their latency and no memory traffic. embsum-bench-scoring divides a
// request's FLOPs by these rates to get the physical limit of the request
// (docs/design.md section 6). Thread-safe: stateless; each call runs on the
// calling thread only.
#ifndef EMBSUM_SCORING_CPU_PEAK_H_
#define EMBSUM_SCORING_CPU_PEAK_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "scoring/cpu_scorer.h"

namespace embsum::scoring {

enum class PeakOp : uint8_t {
  kFp32Fma = 0,  // vfmadd231ps: 2 FLOP per lane
  kBf16Dot = 1,  // vdpbf16ps: 2 products summed per fp32 lane = 4 FLOP/lane
  kInt8Dot = 2,  // vpdpbusd: 4 u8*s8 products per int32 lane = 8 OP/lane
  // AMX tile products (CpuIsa::kAmx): 16 x 16 fp32 (int32) results of 32
  // bf16 (64 int8) products each per instruction; 4 accumulator tiles
  // (tmm0-3) fed from 4 source tiles (tmm4-7) that stay in the tile file.
  kAmxBf16 = 3,  // tdpbf16ps: 16 * 16 * 32 * 2 = 16384 FLOP
  kAmxInt8 = 4,  // tdpbssd: 16 * 16 * 64 * 2 = 32768 OP
};

// "fp32_fma", "bf16_dot", "int8_dot", "amx_bf16", "amx_int8".
std::string_view PeakOpName(PeakOp op);

// Whether this binary has a loop for (isa, op) and the CPU runs it. fp32
// FMA exists for avx2 and avx512 (and avx512bf16, which is avx512 for it);
// bf16 dot for avx512bf16; int8 dot for the VNNI families; the AMX ops for
// amx (which also has the AVX-512 ones).
bool PeakSupported(CpuIsa isa, PeakOp op);

// Runs the (isa, op) loop for `iterations` rounds on the calling thread and
// returns the FLOPs (or integer OPs) it executed: one round is 16 (512-bit
// families) or 12 (256-bit) independent vector instructions of the widest
// width of `isa` (AMX: 16 tile
// instructions, four on each accumulator tile).
// nullopt when !PeakSupported(isa, op). Time it with a steady clock.
std::optional<double> RunPeakLoop(CpuIsa isa, PeakOp op, uint64_t iterations);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_CPU_PEAK_H_
