// How the CUDA scorer launches one batch: fast tensor-core kernel or the
// generic fallback, warps per block, d-axis split and grid size. Plain C++
// so the choice is tested without a device. Thread-safe: stateless.
#ifndef EMBSUM_SCORING_CUDA_LAUNCH_PLAN_H_
#define EMBSUM_SCORING_CUDA_LAUNCH_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "scoring/dtype.h"

namespace embsum::scoring::cuda_internal {

// What the plan needs to know about the device.
struct DeviceLimits {
  uint32_t sm_count = 0;
  // Largest dynamic shared memory one block may opt in to, in bytes.
  size_t max_smem_per_block = 0;
};

struct ScoreShape {
  uint32_t user_codes = 0;  // m
  uint32_t item_codes = 0;  // n
  uint32_t dim = 0;         // d
  DType dtype = DType::kFloat32;
  bool has_queries = false;  // false: Q = A
  bool has_keys = false;     // false: G = B
};

// Per-warp shared memory of the fast kernel: the K and L tiles of one task
// (16 slots x 33 padded rows, fp32).
inline constexpr size_t kWarpTileBytes = 2 * 16 * 33 * sizeof(float);
inline constexpr uint32_t kMaxWarpsPerBlock = 16;
inline constexpr uint32_t kFallbackWarpsPerBlock = 8;

// LaunchPlan::load_mode bits: how the fast kernel reads item rows.
inline constexpr uint32_t kLoadL2Fetch256 = 1;  // ld.global.L2::256B hint
inline constexpr uint32_t kLoadPrefetchL2 = 2;  // prefetch 4 chunks ahead
inline constexpr uint32_t kLoadNoL1 = 4;        // with kLoadL2Fetch256 only
// Issue the first chunk of a task before the wait that precedes it: the
// user staging (a block's first task) or the softmax epilogue of the
// previous task, so that one device-memory latency per task overlaps work.
// Not yet measured on a device (docs/gpu.md).
inline constexpr uint32_t kLoadEarly = 8;
// Measured on an H200 (docs/gpu.md): the 256-byte L2 fill alone streams
// best; the explicit prefetch adds requests without adding bandwidth.
inline constexpr uint32_t kDefaultLoadMode = kLoadL2Fetch256;

// LaunchPlan::prepare_mode: how a block gets the user's MMA fragments.
// kPreparePass: a preparation kernel writes them once, every block copies
// them with cp.async (two launches; measured best on an H200, docs/gpu.md).
// kPrepareScatter: every block scatters the fp32 user, read coalesced,
// into fragment order itself (one launch; not yet measured on a device).
// (Building them word by word in every block, a gather, measured 9 us
// slower at Rank(500) and was dropped.)
// kPreparePassOverlap: the preparation pass with programmatic dependent
// launch (sm_90 and newer; elsewhere the same as kPreparePass): the fused
// kernel starts while the pass runs and waits for it only before reading
// the fragments, so its start-up (and, with kLoadEarly, its first row
// loads) overlaps the pass. Not yet measured on a device.
inline constexpr uint32_t kPreparePass = 0;
inline constexpr uint32_t kPreparePassOverlap = 1;
inline constexpr uint32_t kPrepareScatter = 2;
inline constexpr uint32_t kDefaultPrepareMode = kPreparePass;

// LaunchPlan::epilogue_mode: how the warps that split a task's d axis
// (ksplit > 1) combine their partial K and L tiles.
// kEpilogueSerial: the softmax reads all ksplit partial tiles per logit.
// kEpilogueReduce: the group first sums the partial tiles in parallel (each
// warp a slice, same order of additions, so the same bits), then the
// softmax reads one tile. Not yet measured on a device (docs/gpu.md).
inline constexpr uint32_t kEpilogueSerial = 0;
inline constexpr uint32_t kEpilogueReduce = 1;
inline constexpr uint32_t kDefaultEpilogueMode = kEpilogueSerial;

struct LaunchPlan {
  bool fast = false;
  // Fast kernel only.
  uint32_t elem_bytes = 0;
  uint32_t chunks = 0;               // 64-byte chunks per item row of d
  uint32_t candidates_per_task = 0;  // floor(16 / n)
  uint32_t ksplit = 1;               // warps sharing one task's d axis
  size_t prepared_bytes = 0;         // per user, A then Q (when present)
  size_t smem_bytes = 0;
  uint32_t load_mode = kDefaultLoadMode;
  uint32_t prepare_mode = kDefaultPrepareMode;
  uint32_t epilogue_mode = kDefaultEpilogueMode;
  // Both kernels.
  uint32_t warps = 0;     // per block
  uint32_t blocks_x = 0;  // per user (grid.y = users)
};

// Empty when the fast kernel handles `shape` on a device with `limits`,
// otherwise why not (for logs and tests).
std::string FastPathRejection(const ScoreShape& shape,
                              const DeviceLimits& limits);

// Empty when the three kernel modes are known values (load_mode: any
// combination of the kLoad* bits; prepare_mode: kPreparePass,
// kPreparePassOverlap or kPrepareScatter; epilogue_mode: kEpilogueSerial or
// kEpilogueReduce), otherwise which one is not.
std::string KernelModeRejection(uint32_t load_mode, uint32_t prepare_mode,
                                uint32_t epilogue_mode);

// Plans a launch for `num_users` users with at most `max_count` and in total
// `total_count` candidates.
LaunchPlan PlanLaunch(const ScoreShape& shape, uint32_t num_users,
                      uint64_t max_count, uint64_t total_count,
                      const DeviceLimits& limits);

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_LAUNCH_PLAN_H_
