// Launchers of the fused EmbSum scoring kernels (fused_score.cu) and the
// device top-k (top_k.cu). Internal to scoring/cuda: host-only C++ that uses
// CUDA runtime types. All pointers in the structs are device pointers.
// Thread-safety: launches on different streams may run concurrently.
#ifndef EMBSUM_SCORING_CUDA_FUSED_SCORE_H_
#define EMBSUM_SCORING_CUDA_FUSED_SCORE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "scoring/cuda/launch_plan.h"
#include "scoring/status.h"

namespace embsum::scoring::cuda_internal {

// One launch: `num_users` users, each with its own list of candidate rows.
struct FusedBatch {
  const std::byte* arena = nullptr;  // row r at arena + r * row_bytes
  uint64_t row_bytes = 0;
  ScoreShape shape;
  uint32_t num_users = 0;
  // Per user, user_stride floats apart: A (m*d) then Q (m*d) when
  // shape.has_queries.
  const float* users = nullptr;
  uint64_t user_stride = 0;
  // Scratch of num_users * plan.prepared_bytes (fast kernel only).
  std::byte* prepared = nullptr;
  // Candidates of user u are rows[offsets[u] .. offsets[u+1]). offsets null:
  // one user with `count` candidates. rows null: the identity (rows
  // 0..count-1, full scans; one user only).
  const uint32_t* rows = nullptr;
  const uint32_t* offsets = nullptr;
  uint32_t count = 0;
  // Outputs, indexed like rows: score and top_user_code.
  float* scores = nullptr;
  int32_t* codes = nullptr;
};

// Raises the dynamic shared-memory limit of the fast kernels to
// limits.max_smem_per_block. Call once per device before launching.
Status ConfigureKernels(const DeviceLimits& limits);

// Enqueues the scoring of `batch` on `stream` (the user preparation pass
// and one fused kernel). Checks launch errors; execution errors surface at
// the next synchronization.
Status LaunchFusedScore(const FusedBatch& batch, const LaunchPlan& plan,
                        cudaStream_t stream);

// Device top-k over a full scan. scores and codes (n each) come from
// LaunchFusedScore with identity rows. Orders live rows by score descending
// (NaN after every number, -0 equal to +0), ties by row ascending, non-live
// rows after all live ones; writes the first k (<= n) to out_scores,
// out_rows and out_codes.
struct TopKBatch {
  const float* scores = nullptr;
  const int32_t* codes = nullptr;
  const uint8_t* live = nullptr;  // n flags, or null: all live
  uint32_t n = 0;
  uint32_t k = 0;
  // Scratch: temp (TopKTempBytes(n) bytes); keys, sorted_keys, iota (n
  // each).
  void* temp = nullptr;
  size_t temp_bytes = 0;
  uint32_t* keys = nullptr;
  uint32_t* sorted_keys = nullptr;
  uint32_t* iota = nullptr;
  // Outputs: out_rows must hold n entries (sort output); out_scores and
  // out_codes k.
  uint32_t* out_rows = nullptr;
  float* out_scores = nullptr;
  int32_t* out_codes = nullptr;
};

// Enqueues a one-thread kernel that spins for `microseconds` on the device
// clock. Timing aid (benchmarks/gpu): launches enqueued behind it start
// back to back, so events around them measure device time without the
// host's launch latency.
Status LaunchDelay(uint32_t microseconds, cudaStream_t stream);

Status TopKTempBytes(uint32_t n, size_t* bytes);
Status LaunchTopK(const TopKBatch& batch, cudaStream_t stream);

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_FUSED_SCORE_H_
