// AVX2 kernel family (CpuIsa::kAvx2): the engine of cpu_kernels_inl.h
// compiled for AVX2 + FMA + F16C, 8 lanes. Used only when the CPU reports
// them.
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx2,fma,f16c")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx2_inl.h"

namespace embsum::scoring::internal {
namespace {

constexpr KernelTable kAvx2Table = MakeTable<Avx2Ops>(CpuIsa::kAvx2);

}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(Avx2KernelTable, kAvx2Table)

#else  // not EMBSUM_KERNELS_X86

EMBSUM_KERNEL_TABLE_ABSENT(Avx2KernelTable)

#endif
