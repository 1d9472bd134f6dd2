#include "scoring/cuda/launch_plan.h"

#include <algorithm>

#include "scoring/cuda/fragment_layout.h"

namespace embsum::scoring::cuda_internal {
namespace {

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

size_t PreparedUserBytes(const ScoreShape& shape) {
  const uint32_t elem = static_cast<uint32_t>(DTypeSize(shape.dtype));
  return size_t{PreparedMatrixBytes(elem, shape.dim)} *
         (shape.has_queries ? 2 : 1);
}

}  // namespace

std::string FastPathRejection(const ScoreShape& shape,
                              const DeviceLimits& limits) {
  const size_t elem = DTypeSize(shape.dtype);
  if (shape.user_codes == 0 || shape.user_codes > kUserRowsPerPass) {
    return "user_codes " + std::to_string(shape.user_codes) + " outside 1..32";
  }
  if (shape.item_codes == 0 || shape.item_codes > kSlotsPerTask) {
    return "item_codes " + std::to_string(shape.item_codes) + " outside 1..16";
  }
  if (shape.dim == 0 || (size_t{shape.dim} * elem) % kLaneBytes != 0) {
    return "dim " + std::to_string(shape.dim) + " times " +
           std::to_string(elem) + " bytes is not a multiple of 16";
  }
  const size_t need = PreparedUserBytes(shape) + kWarpTileBytes;
  if (need > limits.max_smem_per_block) {
    return "needs " + std::to_string(need) + " bytes of shared memory, " +
           "device allows " + std::to_string(limits.max_smem_per_block);
  }
  return "";
}

std::string KernelModeRejection(uint32_t load_mode, uint32_t prepare_mode,
                                uint32_t epilogue_mode) {
  constexpr uint32_t kLoadBits =
      kLoadL2Fetch256 | kLoadPrefetchL2 | kLoadNoL1 | kLoadEarly;
  if ((load_mode & ~kLoadBits) != 0) {
    return "load_mode " + std::to_string(load_mode) + " has bits outside 0.." +
           std::to_string(kLoadBits);
  }
  if (prepare_mode != kPreparePass && prepare_mode != kPreparePassOverlap &&
      prepare_mode != kPrepareScatter) {
    return "prepare_mode " + std::to_string(prepare_mode) + " is not " +
           std::to_string(kPreparePass) + " (pass), " +
           std::to_string(kPreparePassOverlap) + " (overlapped pass) or " +
           std::to_string(kPrepareScatter) + " (scatter)";
  }
  if (epilogue_mode != kEpilogueSerial && epilogue_mode != kEpilogueReduce) {
    return "epilogue_mode " + std::to_string(epilogue_mode) + " is not " +
           std::to_string(kEpilogueSerial) + " (serial) or " +
           std::to_string(kEpilogueReduce) + " (reduce)";
  }
  return "";
}

LaunchPlan PlanLaunch(const ScoreShape& shape, uint32_t num_users,
                      uint64_t max_count, uint64_t total_count,
                      const DeviceLimits& limits) {
  LaunchPlan plan;
  const uint64_t sms = std::max<uint32_t>(limits.sm_count, 1);
  num_users = std::max<uint32_t>(num_users, 1);
  if (!FastPathRejection(shape, limits).empty()) {
    plan.fast = false;
    plan.warps = kFallbackWarpsPerBlock;
    const uint64_t wanted =
        CeilDiv(std::max<uint64_t>(max_count, 1), kFallbackWarpsPerBlock);
    const uint64_t cap = std::max<uint64_t>(1, sms * 8 / num_users);
    plan.blocks_x = static_cast<uint32_t>(std::min(wanted, cap));
    return plan;
  }
  plan.fast = true;
  plan.elem_bytes = static_cast<uint32_t>(DTypeSize(shape.dtype));
  plan.chunks =
      static_cast<uint32_t>(CeilDiv(shape.dim, ChunkElements(plan.elem_bytes)));
  plan.candidates_per_task = kSlotsPerTask / shape.item_codes;
  plan.prepared_bytes = PreparedUserBytes(shape);
  const uint32_t max_warps = static_cast<uint32_t>(std::min<size_t>(
      kMaxWarpsPerBlock,
      (limits.max_smem_per_block - plan.prepared_bytes) / kWarpTileBytes));
  const uint64_t total_tasks =
      std::max<uint64_t>(1, CeilDiv(total_count, plan.candidates_per_task));
  const uint64_t max_tasks =
      std::max<uint64_t>(1, CeilDiv(max_count, plan.candidates_per_task));
  // Split the d axis across warps while the tasks alone cannot fill the
  // device (one block of max_warps per multiprocessor): small requests
  // such as Rank(500) are otherwise bound by one warp's load latency.
  const uint64_t device_warps = sms * max_warps;
  uint32_t ksplit = 1;
  while (ksplit * 2 <= max_warps && ksplit * 2 <= plan.chunks &&
         total_tasks * ksplit * 2 <= device_warps) {
    ksplit *= 2;
  }
  plan.ksplit = ksplit;
  plan.warps = max_warps / ksplit * ksplit;
  const uint32_t groups = plan.warps / ksplit;
  plan.smem_bytes = plan.prepared_bytes + plan.warps * kWarpTileBytes;
  const uint64_t wanted = CeilDiv(max_tasks, groups);
  const uint64_t cap = std::max<uint64_t>(1, sms / num_users);
  plan.blocks_x = static_cast<uint32_t>(std::min(wanted, cap));
  return plan;
}

}  // namespace embsum::scoring::cuda_internal
