// Instruction-set control of the CPU scorer (MakeCpuScorer in scorer.h).
// MakeCpuScorer times the kernel families the running CPU supports and keeps
// the fastest per storage dtype (Scorer::kernel_info reports the choice);
// the functions here list the families, run that timing and force a
// specific family (tests, benchmarks, --isa). Thread-safe: stateless.
#ifndef EMBSUM_SCORING_CPU_SCORER_H_
#define EMBSUM_SCORING_CPU_SCORER_H_

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "scoring/scorer.h"
#include "scoring/status.h"

namespace embsum::scoring {

// Kernel families (the enum values are stable; SupportedCpuIsas orders
// them narrowest first). Every family computes the same function with fp32
// (int8 dot products: exact int32) accumulation; they differ in speed and
// rounding:
enum class CpuIsa {
  kScalar = 0,  // portable C++; any CPU
  kAvx2 = 1,    // AVX2 + FMA + F16C, 8 lanes
  kAvx512 = 2,  // AVX-512 F/BW/DQ/VL + FMA + F16C, 16 lanes
  // kAvx512 plus AVX512_BF16: with bf16 storage, products run as bf16 dot
  // products (vdpbf16ps, twice the fp32 FMA rate) with the user vectors
  // rounded to bf16 as well; fp16 storage too when
  // CpuScorerOptions::fp16_bf16_products; fp32 and int8 as kAvx512.
  kAvx512Bf16 = 3,
  // kAvx2 plus AVX-VNNI: int8 storage multiplied with 8-lane vpdpbusd
  // (four u8 x s8 products summed per int32 lane); other dtypes as kAvx2.
  kAvxVnni = 4,
  // kAvx512 plus AVX512_VNNI: int8 storage multiplied with 16-lane
  // vpdpbusd; other dtypes as kAvx512.
  kAvx512Vnni = 5,
  // kAvx512 plus AMX (AMX-TILE, AMX-BF16, AMX-INT8, with AVX512_BF16 and
  // AVX512_VNNI): bf16 storage (and fp16 with
  // CpuScorerOptions::fp16_bf16_products) multiplied on tiles with
  // tdpbf16ps, user vectors rounded to bf16 as for kAvx512Bf16; int8
  // storage with tdpbssd, user rows quantized as for the VNNI families;
  // fp32 as kAvx512. Offered only where Linux grants the process the tile
  // data state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once per process).
  kAmx = 6,
};

// "scalar", "avx2", "avx512", "avx512bf16", "avxvnni", "avx512vnni", "amx".
std::string_view CpuIsaName(CpuIsa isa);
// Accepts the names above; nullopt otherwise.
std::optional<CpuIsa> ParseCpuIsa(std::string_view name);
// Widest vector of the family in bits: 0 (scalar), 256 or 512.
int CpuIsaVectorBits(CpuIsa isa);
// Whether the family multiplies bf16 with dot-product instructions.
bool CpuIsaHasBf16Dot(CpuIsa isa);
// Whether the family multiplies int8 with integer dot-product instructions
// (others widen int8 storage to fp32).
bool CpuIsaHasInt8Dot(CpuIsa isa);
// Whether the family runs its bf16 and int8 products on AMX tiles.
bool CpuIsaHasTiles(CpuIsa isa);
// Whether this binary has the kernel and the running CPU (and OS) support it.
bool CpuIsaSupported(CpuIsa isa);
// The widest supported family (the last of SupportedCpuIsas()). MakeCpuScorer
// does not simply use it: it times every supported family per storage dtype
// (TimeCpuKernels) and keeps the fastest; Scorer::kernel_info says which.
CpuIsa BestCpuIsa();
// All supported families, narrowest first: scalar, avx2, avxvnni, avx512,
// avx512vnni, avx512bf16, amx (those this CPU and binary have).
std::vector<CpuIsa> SupportedCpuIsas();

// One family's rate on the dispatch sample.
struct CpuKernelTiming {
  CpuIsa isa;
  double gflops;  // 4*m*n*d FLOP per candidate / best-of-3 seconds
};

// Times each supported family (the scalar one only when it is the only one;
// of families that run the same code for `dtype`, the narrowest) on one
// thread, round robin, over a few synthetic candidates of
// options.dispatch_shape stored as `dtype`: what MakeCpuScorer's dispatch
// measures. Takes about a millisecond in all at S1.
std::vector<CpuKernelTiming> TimeCpuKernels(const CpuScorerOptions& options,
                                            DType dtype);

// MakeCpuScorer with a fixed kernel family for every dtype (no timing).
// FailedPrecondition when `isa` is not supported here.
Status MakeCpuScorerWithIsa(const CpuScorerOptions& options, CpuIsa isa,
                            std::unique_ptr<Scorer>* out);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_CPU_SCORER_H_
