// What every per-ISA kernel file (kernels_<family>.cc) shares: compiling a
// region of the file for a set of target features, and the family's table
// accessor with its fallback where the compiler cannot build the family.
// Macros only; no state.
//
//   #if EMBSUM_KERNELS_X86
//   EMBSUM_KERNEL_TARGET_BEGIN("avx2,fma,f16c")
//   #include "scoring/internal/cpu_kernels_inl.h"  // compiled for them
//   ... constexpr KernelTable kTable = MakeTable<Ops>(CpuIsa::k...);
//   EMBSUM_KERNEL_TARGET_END()
//   EMBSUM_KERNEL_TABLE(Avx2KernelTable, kTable)
//   #else
//   EMBSUM_KERNEL_TABLE_ABSENT(Avx2KernelTable)
//   #endif
#ifndef EMBSUM_SCORING_INTERNAL_KERNEL_TARGET_H_
#define EMBSUM_SCORING_INTERNAL_KERNEL_TARGET_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

// x86-64 with GCC or Clang: the compilers whose target pragmas and
// intrinsics the kernel files use.
#if defined(__x86_64__) && defined(__GNUC__)
#define EMBSUM_KERNELS_X86 1
#else
#define EMBSUM_KERNELS_X86 0
#endif

#define EMBSUM_KERNEL_PRAGMA_(text) _Pragma(#text)

// Functions defined (or included) between BEGIN and END are compiled for
// `features` (one string literal, GCC/Clang target syntax).
#if defined(__clang__)
#define EMBSUM_KERNEL_TARGET_BEGIN(features)  \
  EMBSUM_KERNEL_PRAGMA_(clang attribute push( \
      __attribute__((target(features))), apply_to = function))
#define EMBSUM_KERNEL_TARGET_END() EMBSUM_KERNEL_PRAGMA_(clang attribute pop)
#else
#define EMBSUM_KERNEL_TARGET_BEGIN(features) \
  EMBSUM_KERNEL_PRAGMA_(GCC push_options)    \
  EMBSUM_KERNEL_PRAGMA_(GCC target(features))
#define EMBSUM_KERNEL_TARGET_END() EMBSUM_KERNEL_PRAGMA_(GCC pop_options)
#endif

// The family's accessor (declared in cpu_kernels.h), returning `table`.
#define EMBSUM_KERNEL_TABLE(accessor, table)       \
  namespace embsum::scoring::internal {            \
  const KernelTable* accessor() { return &table; } \
  }

// The accessor where the family is not compiled: nullptr (not offered).
#define EMBSUM_KERNEL_TABLE_ABSENT(accessor)        \
  namespace embsum::scoring::internal {             \
  const KernelTable* accessor() { return nullptr; } \
  }

#endif  // EMBSUM_SCORING_INTERNAL_KERNEL_TARGET_H_
