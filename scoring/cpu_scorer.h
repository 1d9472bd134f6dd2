// Instruction-set control of the CPU scorer (MakeCpuScorer in scorer.h).
// MakeCpuScorer picks the best kernel for the running CPU at run time; the
// functions here report that choice and force a specific one (tests,
// benchmarks, comparing paths on one machine). Thread-safe: stateless.
#ifndef EMBSUM_SCORING_CPU_SCORER_H_
#define EMBSUM_SCORING_CPU_SCORER_H_

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "scoring/scorer.h"
#include "scoring/status.h"

namespace embsum::scoring {

// Kernel families, slowest to fastest. Every family computes the same
// function with fp32 accumulation; they differ in speed and rounding:
enum class CpuIsa {
  kScalar = 0,  // portable C++; any CPU
  kAvx2 = 1,    // AVX2 + FMA + F16C, 8 lanes
  kAvx512 = 2,  // AVX-512 F/BW/DQ/VL + FMA + F16C, 16 lanes
  // kAvx512 plus AVX512_BF16: with bf16 storage, products run as bf16 dot
  // products (vdpbf16ps, twice the fp32 FMA rate) with the user vectors
  // rounded to bf16 as well; fp32 and fp16 storage behave as kAvx512.
  kAvx512Bf16 = 3,
};

// "scalar", "avx2", "avx512", "avx512bf16".
std::string_view CpuIsaName(CpuIsa isa);
// Accepts the names above; nullopt otherwise.
std::optional<CpuIsa> ParseCpuIsa(std::string_view name);
// Whether this binary has the kernel and the running CPU (and OS) support it.
bool CpuIsaSupported(CpuIsa isa);
// The fastest supported family: what MakeCpuScorer uses, except that for
// requests with m <= 8 user codes on an AVX-512 CPU it runs the AVX2 kernels
// (8 lanes fit 8 user rows; 16 would be half empty), bf16 dot products
// excepted.
CpuIsa BestCpuIsa();
// All supported families, slowest first.
std::vector<CpuIsa> SupportedCpuIsas();

// MakeCpuScorer with a fixed kernel family. FailedPrecondition when `isa`
// is not supported here.
Status MakeCpuScorerWithIsa(const CpuScorerOptions& options, CpuIsa isa,
                            std::unique_ptr<Scorer>* out);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_CPU_SCORER_H_
