// AVX-512 VNNI kernel family (CpuIsa::kAvx512Vnni): kAvx512 plus int8
// storage multiplied with 16-lane vpdpbusd. Used only when the CPU reports
// AVX-512 F/BW/DQ/VL and AVX512_VNNI.
#include "scoring/internal/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 intrinsics build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized reports falsely (GCC bug 105593).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "scoring/internal/half.h"

#if defined(__clang__)
#pragma clang attribute push(                                             \
    __attribute__((target(                                                \
        "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target( \
    "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")
#endif
#include "scoring/internal/cpu_kernels_inl.h"
#include "scoring/internal/ops_avx512_inl.h"

namespace embsum::scoring::internal {
namespace {
struct Avx512VnniOps : Avx512Ops {
  static constexpr bool kInt8Dot = true;
};
constexpr KernelTable kAvx512VnniTable =
    MakeTable<Avx512VnniOps>(CpuIsa::kAvx512Vnni);
}  // namespace
}  // namespace embsum::scoring::internal
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace embsum::scoring::internal {
const KernelTable* Avx512VnniKernelTable() { return &kAvx512VnniTable; }
}  // namespace embsum::scoring::internal

#else  // not x86-64 GCC or Clang

namespace embsum::scoring::internal {
const KernelTable* Avx512VnniKernelTable() { return nullptr; }
}  // namespace embsum::scoring::internal

#endif
