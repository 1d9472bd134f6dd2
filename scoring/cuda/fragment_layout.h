// Register-fragment geometry shared by the fused CUDA kernel and its host-side
// tests (plain C++; the functions are also device functions under nvcc).
//
// The kernel treats one user as the MMA "A" operand (rows = user codes i,
// padded to 32 = two 16-row tiles) and gathered item rows as the "B"
// operand (columns = (candidate, item code) slots, 16 per warp task = two
// 8-column tiles). Each lane loads 16 contiguous bytes of one item row per
// "chunk" (64 bytes of a row across the 4 lanes of a quad), so the physical
// order of the d axis inside a chunk differs from the order the MMA
// instruction assumes. Because A·Bᵀ sums over d, any permutation applied to
// both operands gives the same product: the user side is stored pre-permuted
// ("prepared") so that lane l finds its A fragment for (chunk, step, m-tile)
// as 16 contiguous bytes in shared memory.
//
// fp32 storage uses mma.m16n8k8 with tf32 operands split into hi + lo parts
// (3 products: ~fp32 accuracy); fp16/bf16 use mma.m16n8k16 with the fp32 user
// split into a 16-bit hi + lo pair (2 products), so only the item side is
// rounded to 16 bits, as on the CPU scorer.
//
// Thread-safety: stateless functions.
#ifndef EMBSUM_SCORING_CUDA_FRAGMENT_LAYOUT_H_
#define EMBSUM_SCORING_CUDA_FRAGMENT_LAYOUT_H_

#include <cstdint>

#if defined(__CUDACC__)
#define EMBSUM_HOST_DEVICE __host__ __device__
#else
#define EMBSUM_HOST_DEVICE
#endif

namespace embsum::scoring::cuda_internal {

// User rows per pass of the fast kernel (two m16 tiles).
inline constexpr uint32_t kUserRowsPerPass = 32;
// Item-row slots per warp task (two n8 tiles).
inline constexpr uint32_t kSlotsPerTask = 16;
// Bytes each lane loads per item row and chunk; a quad covers 64 bytes.
inline constexpr uint32_t kLaneBytes = 16;
inline constexpr uint32_t kChunkBytes = 64;
// MMA k-steps per chunk.
inline constexpr uint32_t kStepsPerChunk = 2;
inline constexpr uint32_t kMTiles = 2;

// Elements of d covered by one chunk: 16 for 4-byte, 32 for 2-byte storage.
EMBSUM_HOST_DEVICE constexpr uint32_t ChunkElements(uint32_t elem_bytes) {
  return kChunkBytes / elem_bytes;
}

// Bytes of one prepared fragment (32 lanes x 16 bytes), times two for the
// 16-bit hi/lo pair.
EMBSUM_HOST_DEVICE constexpr uint32_t FragmentBytes(uint32_t elem_bytes) {
  return elem_bytes == 4 ? 512u : 1024u;
}

// Row of the user matrix held by `lane` in register `reg` (0..3) of m-tile
// `mtile`. Same for both MMA shapes.
EMBSUM_HOST_DEVICE constexpr uint32_t FragmentRow(uint32_t mtile, uint32_t lane,
                                                  uint32_t reg) {
  return mtile * 16 + (lane >> 2) + 8 * (reg & 1);
}

// Column (index into d) of the user matrix held by `lane` in register `reg`,
// half `half` (0 for 4-byte storage; 0/1 for the two 16-bit halves) in step
// `step` of chunk `chunk`. Matches the item column the same lane loads.
EMBSUM_HOST_DEVICE constexpr uint32_t FragmentColumn(
    uint32_t elem_bytes, uint32_t chunk, uint32_t step, uint32_t lane,
    uint32_t reg, uint32_t half) {
  const uint32_t t = lane & 3;
  if (elem_bytes == 4) {
    // m16n8k8.tf32: a_r covers logical k = t + 4*(r>>1); lane t holds
    // physical columns 4t..4t+3 of the chunk, step s uses 4t+2s, 4t+2s+1.
    return chunk * 16 + 4 * t + 2 * step + (reg >> 1);
  }
  // m16n8k16: a_r covers logical k = 2t + 8*(r>>1) + half; lane t holds
  // physical columns 8t..8t+7, step s uses 8t+4s .. 8t+4s+3.
  return chunk * 32 + 8 * t + 4 * step + 2 * (reg >> 1) + half;
}

// Byte offset of the fragment word for (chunk, step, mtile, part) inside one
// prepared matrix (A or Q); part is 0 (hi) or 1 (lo, 16-bit storage only).
// A lane's 16 bytes follow at + lane * 16.
EMBSUM_HOST_DEVICE constexpr uint32_t FragmentOffset(uint32_t elem_bytes,
                                                     uint32_t chunk,
                                                     uint32_t step,
                                                     uint32_t mtile,
                                                     uint32_t part) {
  return ((chunk * kStepsPerChunk + step) * kMTiles + mtile) *
             FragmentBytes(elem_bytes) +
         part * 512u;
}

// Inverse of the maps above: byte offset, inside one prepared matrix, of
// user element (row, col), row < 32. For 16-bit storage this is the hi
// half; the lo half sits 512 bytes further.
EMBSUM_HOST_DEVICE constexpr uint32_t FragmentSlot(uint32_t elem_bytes,
                                                   uint32_t row, uint32_t col) {
  const uint32_t mtile = row / 16;
  const uint32_t lane_row = row % 8;
  const uint32_t reg_lo = (row % 16) / 8;
  if (elem_bytes == 4) {
    const uint32_t within = col % 16;
    const uint32_t lane = lane_row * 4 + within / 4;
    const uint32_t reg = (within % 2) * 2 + reg_lo;
    return FragmentOffset(4, col / 16, (within % 4) / 2, mtile, 0) + lane * 16 +
           reg * 4;
  }
  const uint32_t within = col % 32;
  const uint32_t lane = lane_row * 4 + within / 8;
  const uint32_t reg = ((within % 4) / 2) * 2 + reg_lo;
  return FragmentOffset(2, col / 32, (within % 8) / 4, mtile, 0) + lane * 16 +
         reg * 4 + (within % 2) * 2;
}

// Bytes of one prepared matrix (A or Q) for dimension d.
EMBSUM_HOST_DEVICE constexpr uint32_t PreparedMatrixBytes(uint32_t elem_bytes,
                                                          uint32_t dim) {
  const uint32_t chunks =
      (dim + ChunkElements(elem_bytes) - 1) / ChunkElements(elem_bytes);
  return chunks * kStepsPerChunk * kMTiles * FragmentBytes(elem_bytes);
}

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_FRAGMENT_LAYOUT_H_
