// The Scorer argument contract (scoring/scorer_args.h), and the CPU
// scorer's scan of a snapshot whose arena has grown past it (issue: exact
// Retrieve failed with "live has N flags, arena has M rows" while items
// were upserted).
#include "scoring/scorer_args.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "scoring/scorer.h"

namespace embsum::scoring {
namespace {

class ScorerArgsTest : public ::testing::Test {
 protected:
  ScorerArgsTest() : arena_(ArenaLayout{2, 4, DType::kFloat32, false}, 8) {
    for (size_t r = 0; r < 8; ++r) {
      std::vector<float> cpe(8, 0.1f * static_cast<float>(r + 1));
      EXPECT_TRUE(arena_.SetRow(r, cpe, {}).ok());
    }
    arena_.Publish(5);
  }
  UserView User() const { return UserView{3, 4, upe_, {}}; }

  std::vector<float> upe_ = std::vector<float>(12, 1.0f);
  ItemArena arena_;
};

TEST_F(ScorerArgsTest, UserShapeIsChecked) {
  std::vector<float> wrong(11, 1.0f);
  Status s = CheckUserArgs("x", UserView{3, 4, wrong, {}}, arena_);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "x: user upe has 11 floats, expected user_codes*dim = 12");
  s = CheckUserArgs("x", UserView{3, 4, upe_, wrong}, arena_);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  s = CheckUserArgs("x", UserView{2, 6, upe_, {}}, arena_);
  EXPECT_EQ(s.message(), "x: user dim 6 != arena dim 4");
  EXPECT_TRUE(CheckUserArgs("x", User(), arena_).ok());
}

TEST_F(ScorerArgsTest, ScoreRowsMustBePublished) {
  std::vector<float> scores(2);
  std::vector<uint32_t> rows = {0, 4};
  EXPECT_TRUE(CheckScoreArgs("x", User(), arena_, rows, scores, {}).ok());
  rows[1] = 5;  // written but not published
  Status s = CheckScoreArgs("x", User(), arena_, rows, scores, {});
  EXPECT_EQ(s.message(),
            "x: candidate 1: row 5 out of range (arena has 5 rows)");
  std::vector<int32_t> codes(1);
  rows[1] = 1;
  s = CheckScoreArgs("x", User(), arena_, rows, scores, codes);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
}

TEST_F(ScorerArgsTest, ScanCoversTheLiveFlagsGiven) {
  std::vector<ScoredRow> out;
  size_t rows = 0;
  // A snapshot of 3 rows over an arena that has grown to 5.
  std::vector<uint8_t> live = {1, 0, 1};
  ASSERT_TRUE(CheckScanArgs("x", User(), arena_, live, &out, &rows).ok());
  EXPECT_EQ(rows, 3u);
  ASSERT_TRUE(CheckScanArgs("x", User(), arena_, {}, &out, &rows).ok());
  EXPECT_EQ(rows, 5u);
  live.assign(6, 1);
  Status s = CheckScanArgs("x", User(), arena_, live, &out, &rows);
  EXPECT_EQ(s.message(),
            "x: live has 6 flags, arena has 5 rows (want at most that, or 0)");
  EXPECT_EQ(CheckScanArgs("x", User(), arena_, {}, nullptr, &rows).code(),
            Status::Code::kInvalidArgument);
}

TEST_F(ScorerArgsTest, CpuScanOfAnOlderSnapshotSeesOnlyItsRows) {
  std::unique_ptr<Scorer> scorer = MakeCpuScorer(CpuScorerOptions{1});
  std::vector<uint8_t> live = {1, 0, 1};
  std::vector<ScoredRow> out;
  Status s = scorer->ScoreAllTopK(User(), arena_, live, 10, &out);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(out.size(), 2u);
  // Row r scores 0.1 * (r + 1) * 4 (all weights equal): row 2 first.
  EXPECT_EQ(out[0].row, 2u);
  EXPECT_EQ(out[1].row, 0u);
}

}  // namespace
}  // namespace embsum::scoring
