// AVX-512 kernel family (CpuIsa::kAvx512): the engine of cpu_kernels_inl.h
// compiled for AVX-512 F/BW/DQ/VL. Used only when the CPU reports them.
#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/kernel_target.h"

#if EMBSUM_KERNELS_X86
// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized reports falsely (GCC bug 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

// clang-format off
EMBSUM_KERNEL_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
// clang-format on
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx512_inl.h"

namespace embsum::scoring::internal {
namespace {
constexpr KernelTable kAvx512Table = MakeTable<Avx512Ops>(CpuIsa::kAvx512);
}  // namespace
}  // namespace embsum::scoring::internal
EMBSUM_KERNEL_TARGET_END()

EMBSUM_KERNEL_TABLE(Avx512KernelTable, kAvx512Table)

#else  // not EMBSUM_KERNELS_X86

EMBSUM_KERNEL_TABLE_ABSENT(Avx512KernelTable)

#endif
