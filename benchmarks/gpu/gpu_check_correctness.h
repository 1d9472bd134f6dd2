// Check 1 of embsum-gpu-check: CudaScorer::Score over many shapes (odd ones
// included) against the float64 reference, with outputs poisoned before
// every call; batched concurrent calls and full-scan top-k the same way.
// Dumps each shape's inputs and outputs for torch_compare.py.
#ifndef EMBSUM_BENCHMARKS_GPU_GPU_CHECK_CORRECTNESS_H_
#define EMBSUM_BENCHMARKS_GPU_GPU_CHECK_CORRECTNESS_H_

#include <random>

#include "benchmarks/gpu/gpu_check_common.h"

namespace embsum::scoring::gpu_check {

// Adds its fields and summary lines to `report`; clears *ok when a bound
// is missed. Exits the process on a CUDA error (the check cannot go on).
void CheckCorrectness(const Flags& flags, std::mt19937_64& rng, Report& report,
                      bool* ok);

}  // namespace embsum::scoring::gpu_check

#endif  // EMBSUM_BENCHMARKS_GPU_GPU_CHECK_CORRECTNESS_H_
