// AVX2 kernel family (CpuIsa::kAvx2): the engine of cpu_kernels_inl.h
// compiled for AVX2 + FMA + F16C, 8 lanes. Used only when the CPU reports
// them.
#include "scoring/internal/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx2_inl.h"

namespace embsum::scoring::internal {
namespace {

constexpr KernelTable kAvx2Table = MakeTable<Avx2Ops>(CpuIsa::kAvx2);

}  // namespace
}  // namespace embsum::scoring::internal
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace embsum::scoring::internal {
const KernelTable* Avx2KernelTable() { return &kAvx2Table; }
}  // namespace embsum::scoring::internal

#else  // not x86-64 GCC or Clang

namespace embsum::scoring::internal {
const KernelTable* Avx2KernelTable() { return nullptr; }
}  // namespace embsum::scoring::internal

#endif
