// Dispatch where the server runs (Scorer::DispatchOn) and the race behind
// it (scoring/internal/family_race.h): the pick is the fastest family under
// an injected timer, a forced family stays, the timings are reported, and
// the race's stop rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scoring/cpu_scorer.h"
#include "scoring/internal/family_race.h"
#include "scoring/item_arena.h"
#include "scoring/scorer.h"
#include "scoring/user_view.h"
#include "tests/scoring/scoring_test_util.h"

namespace embsum::scoring {
namespace {

using ::embsum::scoring::internal::RaceOptions;
using ::embsum::scoring::internal::RaceResult;
using ::embsum::scoring::internal::RunFamilyRace;
using ::embsum::scoring::testing::RandomRows;

constexpr uint32_t kM = 4, kN = 3, kD = 40;

// An arena of `rows` random rows of the test shape.
std::unique_ptr<ItemArena> MakeArena(DType dtype, size_t rows) {
  std::mt19937_64 rng(7);
  auto arena =
      std::make_unique<ItemArena>(ArenaLayout{kN, kD, dtype, true}, rows);
  for (size_t r = 0; r < rows; ++r) {
    const std::vector<float> cpe = RandomRows(rng, kN, kD);
    const std::vector<float> keys = RandomRows(rng, kN, kD);
    EXPECT_TRUE(arena->SetRow(r, cpe, keys).ok());
  }
  arena->Publish(rows);
  return arena;
}

// Families DispatchOn times (one per distinct code: the narrowest).
std::vector<std::string> TimedFamilies(const Scorer& scorer, DType dtype) {
  std::vector<std::string> out;
  for (const KernelFamilyTime& f : scorer.kernel_info(dtype).families) {
    out.push_back(f.kernel);
  }
  return out;
}

// A timer that makes `fastest` take 1 ms and every other family 2 ms (a
// little jitter so quartiles are not degenerate), and still runs the call.
DispatchOptions FavouringTimer(const std::string& fastest) {
  DispatchOptions options;
  options.user_codes = kM;
  options.candidates = 20;
  auto calls = std::make_shared<int>(0);
  options.timer = [fastest, calls](std::string_view kernel,
                                   const std::function<void()>& call) {
    call();
    const double jitter = 1e-5 * ((*calls)++ % 3);
    return (kernel == fastest ? 1e-3 : 2e-3) + jitter;
  };
  return options;
}

CpuScorerOptions OneThreadUnmeasured() {
  CpuScorerOptions options;
  options.threads = 1;
  options.measure_dispatch = false;  // starts on the widest family
  return options;
}

TEST(DispatchOnTest, PicksTheFastestFamilyUnderAnInjectedTimer) {
  if (SupportedCpuIsas().size() < 2) GTEST_SKIP() << "one kernel family only";
  for (DType dtype :
       {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    const auto arena = MakeArena(dtype, 64);
    auto scorer = MakeCpuScorer(OneThreadUnmeasured());
    // Learn the entrants, then make each of them the fastest in turn: the
    // pick follows, whichever it is (not simply the widest).
    ASSERT_TRUE(scorer->DispatchOn(*arena, FavouringTimer("none")).ok());
    const std::vector<std::string> entrants = TimedFamilies(*scorer, dtype);
    ASSERT_GE(entrants.size(), 1u);
    for (const std::string& fastest : entrants) {
      SCOPED_TRACE(fastest);
      ASSERT_TRUE(scorer->DispatchOn(*arena, FavouringTimer(fastest)).ok());
      const KernelInfo info = scorer->kernel_info(dtype);
      EXPECT_EQ(info.kernel, fastest);
      EXPECT_FALSE(info.forced);
      ASSERT_EQ(info.families.size(), entrants.size());
      EXPECT_EQ(info.families[0].kernel, fastest);  // fastest first
      EXPECT_NEAR(info.families[0].seconds_p50, 1e-3, 2e-5);
      for (size_t i = 1; i < info.families.size(); ++i) {
        EXPECT_NEAR(info.families[i].seconds_p50, 2e-3, 2e-5);
        EXPECT_GE(info.families[i].samples, 2);
      }
      // A 2x gap is clear at once: the race stopped at its first chance.
      EXPECT_EQ(info.dispatch_stop, entrants.size() > 1 ? "clear" : "single");
      EXPECT_NEAR(info.measured_gflops, 4.0 * kM * kN * kD * 20 / 1e-3 / 1e9,
                  1.0);
      EXPECT_NE(info.dispatch_sample.find("m=4 n=3 d=40 candidates=20"),
                std::string::npos)
          << info.dispatch_sample;
    }
  }
}

// Every supported family but scalar is timed (for fp32 one per code: the
// dot-product families run their base family's fp32 code).
TEST(DispatchOnTest, TimesEveryDistinctFamily) {
  if (SupportedCpuIsas().size() < 2) GTEST_SKIP() << "one kernel family only";
  const auto arena = MakeArena(DType::kInt8, 16);
  auto scorer = MakeCpuScorer(OneThreadUnmeasured());
  ASSERT_TRUE(scorer->DispatchOn(*arena, FavouringTimer("none")).ok());
  const std::vector<std::string> int8 = TimedFamilies(*scorer, DType::kInt8);
  for (CpuIsa isa : SupportedCpuIsas()) {
    if (isa == CpuIsa::kScalar || isa == CpuIsa::kAvx512Bf16) continue;
    EXPECT_NE(std::find(int8.begin(), int8.end(), CpuIsaName(isa)), int8.end())
        << CpuIsaName(isa) << " not timed for int8";
  }
  EXPECT_EQ(std::find(int8.begin(), int8.end(), "avx512bf16"), int8.end());
}

// The real clock: a pick among the timed families, a positive time for
// each, and the scores of the picked family.
TEST(DispatchOnTest, RealClockPicksATimedFamilyThatScoresCorrectly) {
  const auto arena = MakeArena(DType::kFloat32, 200);
  CpuScorerOptions options = OneThreadUnmeasured();
  options.threads = 2;
  auto scorer = MakeCpuScorer(options);
  DispatchOptions dispatch;
  dispatch.user_codes = kM;
  dispatch.candidates = 100;
  dispatch.budget_seconds = 0.05;
  ASSERT_TRUE(scorer->DispatchOn(*arena, dispatch).ok());
  const KernelInfo info = scorer->kernel_info(DType::kFloat32);
  ASSERT_FALSE(info.families.empty());
  bool found = false;
  for (const KernelFamilyTime& f : info.families) {
    EXPECT_GT(f.seconds_p50, 0.0) << f.kernel;
    EXPECT_LE(f.seconds_q25, f.seconds_p50);
    EXPECT_LE(f.seconds_p50, f.seconds_q75);
    found = found || f.kernel == info.kernel;
  }
  EXPECT_TRUE(found) << info.kernel;
  EXPECT_EQ(info.kernel, info.families[0].kernel);
  EXPECT_GE(info.dispatch_rounds, 1);

  std::unique_ptr<Scorer> same;
  ASSERT_TRUE(
      MakeCpuScorerWithIsa(options, *ParseCpuIsa(info.kernel), &same).ok());
  std::mt19937_64 rng(3);
  const std::vector<float> a = RandomRows(rng, kM, kD);
  const std::vector<float> q = RandomRows(rng, kM, kD);
  const UserView user{kM, kD, a, q};
  std::vector<uint32_t> rows(50);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = 199 - 3 * i;
  std::vector<float> ours(rows.size()), theirs(rows.size());
  std::vector<int32_t> ours_codes(rows.size()), their_codes(rows.size());
  ASSERT_TRUE(scorer->Score(user, *arena, rows, ours, ours_codes).ok());
  ASSERT_TRUE(same->Score(user, *arena, rows, theirs, their_codes).ok());
  EXPECT_EQ(ours, theirs);
  EXPECT_EQ(ours_codes, their_codes);
}

// --isa: the forced family stays whatever the timings; they are reported.
TEST(DispatchOnTest, AForcedFamilyStays) {
  if (SupportedCpuIsas().size() < 2) GTEST_SKIP() << "one kernel family only";
  const CpuIsa forced = SupportedCpuIsas().back();
  std::unique_ptr<Scorer> scorer;
  ASSERT_TRUE(
      MakeCpuScorerWithIsa(OneThreadUnmeasured(), forced, &scorer).ok());
  const auto arena = MakeArena(DType::kFloat32, 32);
  ASSERT_TRUE(scorer->DispatchOn(*arena, FavouringTimer("avx2")).ok());
  const KernelInfo info = scorer->kernel_info(DType::kFloat32);
  EXPECT_EQ(info.kernel, CpuIsaName(forced));
  EXPECT_TRUE(info.forced);
  ASSERT_FALSE(info.families.empty());
  if (CpuIsaSupported(CpuIsa::kAvx2)) {
    EXPECT_EQ(info.families[0].kernel, "avx2");
  }
}

TEST(DispatchOnTest, BadOptionsAndEmptyArenas) {
  auto scorer = MakeCpuScorer(OneThreadUnmeasured());
  const auto arena = MakeArena(DType::kFloat32, 8);
  DispatchOptions options;
  options.user_codes = 0;
  const Status zero_m = scorer->DispatchOn(*arena, options);
  EXPECT_EQ(zero_m.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(zero_m.message().find("user_codes"), std::string::npos);
  options.user_codes = 2;
  options.candidates = 0;
  EXPECT_EQ(scorer->DispatchOn(*arena, options).code(),
            Status::Code::kInvalidArgument);
  // No published rows: nothing to time, the pick stays.
  const std::string before = scorer->kernel_info(DType::kFloat32).kernel;
  ItemArena empty(ArenaLayout{kN, kD, DType::kFloat32, false}, 4);
  ASSERT_TRUE(scorer->DispatchOn(empty, FavouringTimer("avx2")).ok());
  EXPECT_EQ(scorer->kernel_info(DType::kFloat32).kernel, before);
  EXPECT_TRUE(scorer->kernel_info(DType::kFloat32).families.empty());
}

// The race with scripted times: entrant i's k-th timed call takes
// times[i][k % times[i].size()]; a fake clock advances by each call's time.
struct ScriptedRace {
  explicit ScriptedRace(std::vector<std::vector<double>> t)
      : times(std::move(t)) {}
  std::vector<std::vector<double>> times;
  std::vector<size_t> calls;
  double clock = 0;
  RaceResult Run(const RaceOptions& options) {
    calls.assign(times.size(), 0);
    return RunFamilyRace(
        times.size(),
        [this](size_t i, bool timed) {
          const double t = times[i][calls[i] % times[i].size()];
          if (timed) ++calls[i];
          clock += t;
          return t;
        },
        [this] { return clock; }, options);
  }
};

TEST(FamilyRaceTest, StopsWhenTheWinnerIsClear) {
  ScriptedRace race({{2.0, 2.1, 1.9}, {1.0, 1.05, 0.95}, {3.0}});
  RaceOptions options;
  options.budget_seconds = 1e9;
  const RaceResult r = race.Run(options);
  EXPECT_EQ(r.winner, 1u);
  EXPECT_EQ(r.stop, "clear");
  EXPECT_EQ(r.rounds, options.min_rounds);
  EXPECT_DOUBLE_EQ(r.entrants[1].median, 1.0);
}

TEST(FamilyRaceTest, OverlappingTimesRunOnAndATieStops) {
  // Medians 1.0 and 1.005 with spreads of 0.2: never clear, but within the
  // tie ratio after 2 * min_rounds.
  ScriptedRace race({{0.9, 1.0, 1.1, 1.0}, {0.905, 1.005, 1.105, 1.005}});
  RaceOptions options;
  options.budget_seconds = 1e9;
  const RaceResult r = race.Run(options);
  EXPECT_EQ(r.stop, "tie");
  EXPECT_EQ(r.rounds, 2 * options.min_rounds);
  EXPECT_EQ(r.winner, 0u);
}

TEST(FamilyRaceTest, TheBudgetAndTheRoundCapBoundIt) {
  // 5% apart with 20% spreads: neither clear nor a tie.
  ScriptedRace race({{0.8, 1.0, 1.2}, {0.85, 1.05, 1.25}});
  RaceOptions options;
  options.budget_seconds = 30;  // a round costs about 6 (3 calls each)
  RaceResult r = race.Run(options);
  EXPECT_EQ(r.stop, "budget");
  EXPECT_LE(r.seconds, 30.0);
  EXPECT_GE(r.rounds, 1);
  options.budget_seconds = 1e9;
  options.max_rounds = 17;
  r = race.Run(options);
  EXPECT_EQ(r.stop, "rounds");
  EXPECT_EQ(r.rounds, 17);
  EXPECT_EQ(r.winner, 0u);
}

TEST(FamilyRaceTest, ClearlySlowerEntrantsStopRunning) {
  ScriptedRace race(
      {{0.9, 1.0, 1.1, 1.0}, {0.905, 1.005, 1.105, 1.005}, {5.0, 5.1}});
  RaceOptions options;
  options.budget_seconds = 1e9;
  const RaceResult r = race.Run(options);
  EXPECT_TRUE(r.entrants[2].eliminated);
  EXPECT_FALSE(r.entrants[0].eliminated);
  EXPECT_LT(r.entrants[2].samples.size(), r.entrants[0].samples.size());
}

TEST(FamilyRaceTest, OneEntrant) {
  ScriptedRace race(std::vector<std::vector<double>>{{1.0}});
  RaceOptions options;
  options.budget_seconds = 1e9;
  const RaceResult r = race.Run(options);
  EXPECT_EQ(r.stop, "single");
  EXPECT_EQ(r.winner, 0u);
  EXPECT_EQ(r.rounds, options.min_rounds);
}

}  // namespace
}  // namespace embsum::scoring
