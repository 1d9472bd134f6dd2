// Host-only benchmark helpers for embsum-bench-scoring --backend=cuda:
// the bound (cuBLAS sgemm of the two products) and device copy bandwidth,
// timed with CUDA events, median of `reps` after warm-up.
#ifndef EMBSUM_SCORING_CUDA_CUDA_BENCH_H_
#define EMBSUM_SCORING_CUDA_CUDA_BENCH_H_

#include <cstdint>

#include "scoring/status.h"

namespace embsum::scoring {

// Seconds (median) for the two products A·Bᵀ and Q·Gᵀ over `candidates`
// items of n×d (as two sgemm calls of m × (candidates*n) × d) on device.
Status CudaSgemmBoundSeconds(uint32_t m, uint32_t n, uint32_t d,
                             uint32_t candidates, int reps, double* seconds);

// Device-to-device copy bandwidth in bytes/s (read + written) over `bytes`.
Status CudaCopyBandwidth(size_t bytes, int reps, double* bytes_per_second);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_CUDA_CUDA_BENCH_H_
