#include "scoring/cuda/launch_plan.h"

#include <gtest/gtest.h>

namespace embsum::scoring::cuda_internal {
namespace {

// An H100/H200: 132 multiprocessors, 227 KiB of opt-in shared memory.
constexpr DeviceLimits kHopper{132, 232448};

ScoreShape S1(DType dtype) {
  ScoreShape shape;
  shape.user_codes = 32;
  shape.item_codes = 8;
  shape.dim = 512;
  shape.dtype = dtype;
  shape.has_queries = true;
  shape.has_keys = true;
  return shape;
}

TEST(LaunchPlanTest, S1TakesTheFastPathForEveryDtype) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    const ScoreShape shape = S1(dtype);
    EXPECT_EQ(FastPathRejection(shape, kHopper), "");
    const LaunchPlan plan = PlanLaunch(shape, 1, 500, 500, kHopper);
    EXPECT_TRUE(plan.fast);
    EXPECT_EQ(plan.candidates_per_task, 2u);
    // 32 rows x 512 x 4 bytes, for A and for Q.
    EXPECT_EQ(plan.prepared_bytes, 2u * 32 * 512 * 4);
    EXPECT_EQ(plan.smem_bytes,
              plan.prepared_bytes + plan.warps * kWarpTileBytes);
    EXPECT_LE(plan.smem_bytes, kHopper.max_smem_per_block);
    EXPECT_EQ(plan.warps % plan.ksplit, 0u);
  }
}

TEST(LaunchPlanTest, SmallRequestsSplitTheDimensionAcrossWarps) {
  const ScoreShape shape = S1(DType::kFloat32);
  // 250 tasks cannot fill 132 x 16 warps alone.
  const LaunchPlan small = PlanLaunch(shape, 1, 500, 500, kHopper);
  EXPECT_GT(small.ksplit, 1u);
  EXPECT_LE(small.ksplit, small.chunks);
  // Every task gets its own warp group in the first wave.
  EXPECT_GE(uint64_t{small.blocks_x} * (small.warps / small.ksplit), 250u);
  // A full scan fills the device with whole tasks, one block per SM.
  const LaunchPlan scan = PlanLaunch(shape, 1, 1000000, 1000000, kHopper);
  EXPECT_EQ(scan.ksplit, 1u);
  EXPECT_EQ(scan.blocks_x, kHopper.sm_count);
}

TEST(LaunchPlanTest, ManyUsersShareTheGrid) {
  const ScoreShape shape = S1(DType::kBFloat16);
  const LaunchPlan plan = PlanLaunch(shape, 256, 500, 256 * 500, kHopper);
  EXPECT_TRUE(plan.fast);
  EXPECT_EQ(plan.ksplit, 1u);
  EXPECT_EQ(plan.blocks_x, 1u);  // grid.y = 256 users already fills it
  const LaunchPlan two = PlanLaunch(shape, 2, 500, 1000, kHopper);
  EXPECT_LE(two.blocks_x, kHopper.sm_count / 2);
}

TEST(LaunchPlanTest, NoQueriesNeedsHalfTheSharedMemory) {
  ScoreShape shape = S1(DType::kFloat32);
  shape.has_queries = false;
  EXPECT_EQ(PlanLaunch(shape, 1, 10, 10, kHopper).prepared_bytes,
            32u * 512 * 4);
}

TEST(LaunchPlanTest, OddShapesFallBackWithAReason) {
  ScoreShape shape = S1(DType::kFloat32);
  shape.user_codes = 33;
  EXPECT_NE(FastPathRejection(shape, kHopper).find("user_codes 33"),
            std::string::npos);
  EXPECT_FALSE(PlanLaunch(shape, 1, 10, 10, kHopper).fast);

  shape = S1(DType::kFloat32);
  shape.item_codes = 17;
  EXPECT_NE(FastPathRejection(shape, kHopper).find("item_codes 17"),
            std::string::npos);

  shape = S1(DType::kBFloat16);
  shape.dim = 100;  // 200 bytes per row: not a multiple of 16
  EXPECT_NE(FastPathRejection(shape, kHopper).find("dim 100"),
            std::string::npos);
  shape.dtype = DType::kFloat32;  // 400 bytes: fine
  EXPECT_EQ(FastPathRejection(shape, kHopper), "");

  shape = S1(DType::kFloat32);
  shape.dim = 1024;  // 256 KiB of prepared user: too much shared memory
  EXPECT_NE(FastPathRejection(shape, kHopper).find("shared memory"),
            std::string::npos);
  const LaunchPlan plan = PlanLaunch(shape, 3, 100, 300, kHopper);
  EXPECT_FALSE(plan.fast);
  EXPECT_EQ(plan.warps, kFallbackWarpsPerBlock);
  EXPECT_GE(plan.blocks_x, 1u);
}

TEST(LaunchPlanTest, CandidatesPerTaskFollowItemCodes) {
  ScoreShape shape = S1(DType::kFloat16);
  for (uint32_t n : {1u, 3u, 8u, 9u, 16u}) {
    shape.item_codes = n;
    EXPECT_EQ(PlanLaunch(shape, 1, 100, 100, kHopper).candidates_per_task,
              16u / n);
  }
}

TEST(LaunchPlanTest, DefaultsAreTheModesMeasuredBest) {
  const LaunchPlan plan = PlanLaunch(S1(DType::kFloat16), 1, 500, 500, kHopper);
  EXPECT_EQ(plan.load_mode, kLoadL2Fetch256);
  EXPECT_EQ(plan.prepare_mode, kPreparePass);
  EXPECT_EQ(plan.epilogue_mode, kEpilogueSerial);
  EXPECT_EQ(KernelModeRejection(plan.load_mode, plan.prepare_mode,
                                plan.epilogue_mode),
            "");
}

TEST(LaunchPlanTest, KnownKernelModesAreAcceptedAndOthersNamed) {
  for (uint32_t load = 0; load < 16; ++load) {
    for (uint32_t prepare :
         {kPreparePass, kPreparePassOverlap, kPrepareScatter}) {
      for (uint32_t epilogue : {kEpilogueSerial, kEpilogueReduce}) {
        EXPECT_EQ(KernelModeRejection(load, prepare, epilogue), "")
            << load << " " << prepare << " " << epilogue;
      }
    }
  }
  EXPECT_NE(KernelModeRejection(16, kPreparePass, kEpilogueSerial)
                .find("load_mode 16"),
            std::string::npos);
  EXPECT_NE(KernelModeRejection(kLoadL2Fetch256, 3, kEpilogueSerial)
                .find("prepare_mode 3"),
            std::string::npos);
  EXPECT_NE(KernelModeRejection(kLoadL2Fetch256, kPrepareScatter, 2)
                .find("epilogue_mode 2"),
            std::string::npos);
}

}  // namespace
}  // namespace embsum::scoring::cuda_internal
