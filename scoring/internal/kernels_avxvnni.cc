// AVX-VNNI kernel family (CpuIsa::kAvxVnni): kAvx2 plus int8 storage
// multiplied with 8-lane vpdpbusd (VEX encoding). Used only when the CPU
// reports AVX2, FMA, F16C and AVX-VNNI.
#include "scoring/internal/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx2_inl.h"

namespace embsum::scoring::internal {
namespace {

struct AvxVnniOps : Avx2Ops {
  static constexpr bool kInt8Dot = true;
};

constexpr KernelTable kAvxVnniTable = MakeTable<AvxVnniOps>(CpuIsa::kAvxVnni);

}  // namespace
}  // namespace embsum::scoring::internal
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace embsum::scoring::internal {
const KernelTable* AvxVnniKernelTable() { return &kAvxVnniTable; }
}  // namespace embsum::scoring::internal

#else  // not x86-64 GCC or Clang

namespace embsum::scoring::internal {
const KernelTable* AvxVnniKernelTable() { return nullptr; }
}  // namespace embsum::scoring::internal

#endif
