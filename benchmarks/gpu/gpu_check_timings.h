// Check 2 of embsum-gpu-check for one storage dtype: Rank(500) at S1, one
// launch for 1..256 users, full scans against the copy bandwidth,
// ScoreAllTopK and Score end to end, concurrent throughput with and without
// dynamic batching, each kernel variant against the defaults.
#ifndef EMBSUM_BENCHMARKS_GPU_GPU_CHECK_TIMINGS_H_
#define EMBSUM_BENCHMARKS_GPU_GPU_CHECK_TIMINGS_H_

#include <random>

#include "benchmarks/gpu/gpu_check_common.h"

namespace embsum::scoring::gpu_check {

// `copy_bw`: the device-to-device copy bandwidth of this run, bytes/s (the
// scans' bound). Adds to `report`; clears *ok when a correctness check of
// a variant fails. Exits the process on a CUDA error.
void TimeDtype(const Flags& flags, DType dtype, double copy_bw,
               const DeviceLimits& limits, std::mt19937_64& rng, Report& report,
               bool* ok);

}  // namespace embsum::scoring::gpu_check

#endif  // EMBSUM_BENCHMARKS_GPU_GPU_CHECK_TIMINGS_H_
