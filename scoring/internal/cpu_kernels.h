// Internal interface between the CPU scorer (scoring/cpu_scorer.cc) and its
// per-instruction-set kernels (scoring/internal/kernels_*.cc). Each kernel
// file is compiled for its own instruction set (#pragma GCC target, never
// global -m flags) and exports one KernelTable; the scorer picks a table at
// run time. Thread-safety: tables are immutable; kernels are reentrant and
// write only to caller-provided buffers.
#ifndef EMBSUM_SCORING_INTERNAL_CPU_KERNELS_H_
#define EMBSUM_SCORING_INTERNAL_CPU_KERNELS_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include <cstddef>
#include <cstdint>

#include "scoring/cpu_scorer.h"
#include "scoring/dtype.h"

namespace embsum::scoring::internal {

// How the products K = A B^T and L = Q G^T are computed.
enum class Products : uint8_t {
  // Items widened to fp32 (exact for every storage type), fp32 FMA.
  kFp32 = 0,
  // Items (bf16, or fp16 rounded to bf16) and user panels in bf16, bf16 dot
  // products with fp32 accumulation. Only where KernelTable::bf16_products.
  kBf16 = 1,
  // int8 storage against the user rows quantized to int8 per row (symmetric
  // scale, offset by +128 to u8), integer dot products (vpdpbusd) with int32
  // accumulation, then K_ij = s_i * s_j * (acc_ij - 128 * sum_j). Only
  // where KernelTable::int8_products and only for DType::kInt8.
  kInt8 = 2,
};

// Everything a kernel needs to score candidate rows for one user.
struct KernelArgs {
  uint32_t m = 0;                 // user codes
  uint32_t n = 0;                 // item codes
  uint32_t d = 0;                 // dimension
  DType dtype = DType::kFloat32;  // kFloat32 requires Products::kFp32
  Products products = Products::kFp32;
  bool has_keys = false;
  size_t row_bytes = 0;
  size_t block_bytes = 0;  // ArenaLayout::block_bytes(): offset of the keys
  const std::byte* arena = nullptr;  // ItemArena::data()
  // User matrices in the kernel's panel layout (KernelTable::build_panels).
  const void* a_panels = nullptr;
  const void* q_panels = nullptr;
  // Q = A and G = B: L = K, computed once.
  bool logits_equal_matches = false;
};

struct KernelTable {
  CpuIsa isa;
  // Whether Products::kBf16 is available.
  bool bf16_products;
  // Whether Products::kInt8 is available.
  bool int8_products;
  // Bytes of the panel form of one m x d user matrix.
  size_t (*panel_bytes)(uint32_t m, uint32_t d, Products products);
  // Writes the panel form of x (m x d, row-major fp32) into `out`
  // (panel_bytes(m, d, products) bytes, 64-byte aligned).
  void (*build_panels)(const float* x, uint32_t m, uint32_t d,
                       Products products, void* out);
  // Floats of per-thread scratch that score_rows needs.
  size_t (*scratch_floats)(uint32_t m, uint32_t n, uint32_t d, DType dtype,
                           Products products);
  // Scores rows[0..count): scores[c], and codes[c] when codes != nullptr.
  // scratch: scratch_floats(...) floats, 64-byte aligned. Rows must be
  // valid arena rows (the caller checks).
  void (*score_rows)(const KernelArgs& args, const uint32_t* rows, size_t count,
                     float* scores, int32_t* codes, float* scratch);
};

// The table of each family; null when this binary lacks the kernel (e.g.
// non-x86 builds). Support by the running CPU is checked by the caller.
const KernelTable* ScalarKernelTable();
const KernelTable* Avx2KernelTable();
const KernelTable* Avx512KernelTable();
const KernelTable* Avx512Bf16KernelTable();
const KernelTable* AvxVnniKernelTable();
const KernelTable* Avx512VnniKernelTable();
const KernelTable* AmxKernelTable();

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_CPU_KERNELS_H_
