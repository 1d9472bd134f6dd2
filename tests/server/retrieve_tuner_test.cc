// The Retrieve tuner's steps alone (server/retrieve_tuner.h): the random
// sample and its seed, per-user recall from a rank table, the tail summary,
// the choice that must satisfy the 1st-percentile user and not only the
// mean, and the rank measurement on a real catalogue.
#include "server/retrieve_tuner.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scoring/scorer.h"
#include "store/data_dir.h"
#include "test_support.h"

namespace embsum::server {
namespace {

using ::testing::ElementsAre;

TEST(SummariseRecalls, MeanPercentilesAndMin) {
  // 200 users, two of them with nothing found: the 1st-percentile user
  // (nearest rank 2) is one of them, the 5th (rank 10) is not.
  std::vector<double> recalls(200, 1.0);
  recalls[17] = 0.0;
  recalls[150] = 0.0;
  recalls[3] = 0.5;
  RecallSummary s = SummariseRecalls(recalls);
  EXPECT_DOUBLE_EQ(s.mean, (197 + 0.5) / 200);
  EXPECT_DOUBLE_EQ(s.min, 0.0);
  EXPECT_DOUBLE_EQ(s.p1, 0.0);
  EXPECT_DOUBLE_EQ(s.p5, 1.0);
  // One such user in 200 is below the 1st percentile.
  recalls[150] = 1.0;
  s = SummariseRecalls(recalls);
  EXPECT_DOUBLE_EQ(s.p1, 0.5);
  EXPECT_DOUBLE_EQ(s.min, 0.0);
  EXPECT_DOUBLE_EQ(SummariseRecalls({}).mean, 0.0);
}

// A table by hand: `users` users with one true item each, found by the mean
// list at mean_pos[u] and by the first two codes at code_pos[u].
RankTable OneItemTable(const std::vector<uint32_t>& mean_pos,
                       const std::vector<uint32_t>& code_pos) {
  RankTable t;
  t.mean_probes = {0};
  t.code_probes = {0};
  t.code_counts = {0, 2};
  t.users = static_cast<uint32_t>(mean_pos.size());
  t.truth = 1;
  t.truth_size.assign(t.users, 1);
  t.mean_pos = mean_pos;
  t.code_pos.assign(t.users, RankTable::kAbsent);  // 0 codes: none
  t.code_pos.insert(t.code_pos.end(), code_pos.begin(), code_pos.end());
  return t;
}

TEST(UserRecalls, AnItemCountsWhenAnyListReachesIt) {
  RankTable t =
      OneItemTable({3, 50, RankTable::kAbsent}, {RankTable::kAbsent, 1, 0});
  // Mean list only, depth 10: the first user.
  EXPECT_THAT(UserRecalls(t, TableSetting{0, 0, 0, 10, 0}, 10),
              ElementsAre(1.0, 0.0, 0.0));
  // Plus two codes, 2 deep each: all three.
  EXPECT_THAT(UserRecalls(t, TableSetting{0, 0, 1, 10, 2}, 10),
              ElementsAre(1.0, 1.0, 1.0));
  // Codes 1 deep: the second user's item (position 1) is missed.
  EXPECT_THAT(UserRecalls(t, TableSetting{0, 0, 1, 10, 1}, 10),
              ElementsAre(1.0, 0.0, 1.0));
}

TEST(ChooseSetting, TheTailDecidesNotOnlyTheMean) {
  // 100 users; the mean proxy finds 98 of them at once, two never; their
  // items are first in a code's list.
  std::vector<uint32_t> mean_pos(100, 0), code_pos(100, RankTable::kAbsent);
  mean_pos[40] = mean_pos[90] = RankTable::kAbsent;
  code_pos[40] = code_pos[90] = 0;
  RankTable t = OneItemTable(mean_pos, code_pos);
  TunerSpace space;
  space.user_codes = 2;
  space.item_codes = 1;
  space.live_items = 100000;
  space.shape.items = 100000;
  space.shape.code_index = true;
  space.shape.code_rows = 100000;
  space.mean_target = 0.98;
  space.tail_target = 0.99;
  RetrieveTuning tail = ChooseSetting(t, space);
  EXPECT_TRUE(tail.met_target);
  EXPECT_EQ(tail.codes, 2u);  // the mean (0.98) alone met the mean target
  EXPECT_DOUBLE_EQ(tail.at_10.p1, 1.0);
  EXPECT_DOUBLE_EQ(tail.at_100.min, 1.0);
  EXPECT_EQ(tail.fetch_factor, 1u);
  // Asking for the mean only, the cheaper mean-vector setting wins.
  space.tail_target = 0;
  RetrieveTuning mean_only = ChooseSetting(t, space);
  EXPECT_TRUE(mean_only.met_target);
  EXPECT_EQ(mean_only.codes, 0u);
  EXPECT_DOUBLE_EQ(mean_only.at_10.mean, 0.98);
  EXPECT_DOUBLE_EQ(mean_only.at_10.p1, 0.0);
}

TEST(ChooseSetting, UnreachableTargetFallsBackToTheBestTail) {
  std::vector<uint32_t> mean_pos(100, 0), code_pos(100, RankTable::kAbsent);
  mean_pos[5] = RankTable::kAbsent;
  mean_pos[6] = RankTable::kAbsent;
  RankTable t = OneItemTable(mean_pos, code_pos);
  TunerSpace space;
  space.user_codes = 2;
  space.item_codes = 1;
  space.live_items = 1000;
  space.shape.items = 1000;
  space.mean_target = 0.999;
  space.tail_target = 0.99;
  RetrieveTuning r = ChooseSetting(t, space);
  EXPECT_FALSE(r.met_target);
  EXPECT_DOUBLE_EQ(r.at_10.mean, 0.98);
}

TEST(ChooseSetting, ASettingAsLargeAsAScanIsNotChosen) {
  // Only a very deep mean list reaches the items.
  std::vector<uint32_t> mean_pos(100, 500), code_pos(100, RankTable::kAbsent);
  RankTable t = OneItemTable(mean_pos, code_pos);
  TunerSpace space;
  space.user_codes = 2;
  space.item_codes = 1;
  space.live_items = 100000;
  space.shape.items = 100000;
  space.mean_target = 0.99;
  space.tail_target = 0.99;
  space.scan_items = 20000;
  RetrieveTuning r = ChooseSetting(t, space);
  EXPECT_TRUE(r.met_target);
  EXPECT_GE(r.Fetch(10), 501u);
  // k = 10 needs 64 * 10 candidates: a fetch of 6 * k + 580, 1180 at
  // k = 100, more than a "scan" of 1000.
  space.scan_items = 1000;
  r = ChooseSetting(t, space);
  EXPECT_FALSE(r.met_target);
  // Nor is the fallback one that would scan.
  EXPECT_LT(r.MaxCandidates(100), 1000u);
}

TEST(ProbeChoices, PowersOfTwoAndTheCap) {
  EXPECT_THAT(ProbeChoices(false, 0, 16), ElementsAre(0u));
  EXPECT_THAT(ProbeChoices(true, 10, 256), ElementsAre(1u, 2u, 4u, 8u, 10u));
  EXPECT_THAT(ProbeChoices(true, 700, 16), ElementsAre(1u, 2u, 4u, 8u, 16u));
  EXPECT_THAT(CodeCountChoices(32, true),
              ElementsAre(0u, 2u, 4u, 8u, 16u, 32u));
  EXPECT_THAT(CodeCountChoices(3, true), ElementsAre(0u, 2u, 3u));
  EXPECT_THAT(CodeCountChoices(32, false), ElementsAre(0u));
}

class TunerStepsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string root = embsum::testing::MakeTempDir("tuner-steps");
    datagen::SyntheticModelOptions shape = embsum::testing::SmallModelOptions();
    shape.users = 40;
    ASSERT_TRUE(embsum::testing::BuildTestModel(root, shape, &model_).ok());
    store::DataDirOptions data_options;
    data_options.items.ann.gpu = store::AnnOptions::Gpu::kOff;
    data_options.items.ann.code_index = store::AnnOptions::CodeIndex::kFp32;
    auto data = store::DataDir::Open(model_.data_dir, data_options);
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = *std::move(data);
  }
  embsum::testing::TestModel model_;
  std::unique_ptr<store::DataDir> data_;
  std::unique_ptr<scoring::Scorer> scorer_ =
      scoring::MakeCpuScorer({.threads = 1});
};

TEST_F(TunerStepsTest, SampleIsRandomRepeatableBySeedAndCoversSmallStores) {
  auto a = SampleTuningUsers(data_->users(), 10, 11);
  auto b = SampleTuningUsers(data_->users(), 10, 11);
  auto c = SampleTuningUsers(data_->users(), 10, 12);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(std::set<std::string>(a->begin(), a->end()).size(), 10u);
  // Not the first ids in key order.
  std::vector<std::string> sorted = model_.user_ids;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> first(sorted.begin(), sorted.begin() + 10);
  std::vector<std::string> got = *a;
  std::sort(got.begin(), got.end());
  EXPECT_NE(got, first);
  // More wanted than stored: every user once.
  auto all = SampleTuningUsers(data_->users(), 256, 5);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(
      std::set<std::string>(all->begin(), all->end()),
      std::set<std::string>(model_.user_ids.begin(), model_.user_ids.end()));
}

TEST_F(TunerStepsTest, RanksOnAFlatCatalogueFindEveryTrueItem) {
  auto snap = data_->items().Current();
  auto ids = SampleTuningUsers(data_->users(), 8, 3);
  ASSERT_TRUE(ids.ok());
  auto users = ExactTops(*scorer_, *snap, data_->users(), *ids, 20);
  ASSERT_TRUE(users.ok()) << users.status();
  ASSERT_EQ(users->size(), 8u);
  for (const TuningUser& u : *users) EXPECT_EQ(u.top.size(), 20u);
  const uint32_t items = static_cast<uint32_t>(snap->size());
  auto table = MeasureRanks(*snap, *users, {0}, {0}, {0, 2, 4}, items, items);
  ASSERT_TRUE(table.ok()) << table.status();
  // The whole mean list, or the whole list of every code, holds every item.
  for (double r : UserRecalls(*table, TableSetting{0, 0, 0, items, 0}, 20)) {
    EXPECT_DOUBLE_EQ(r, 1.0);
  }
  for (double r : UserRecalls(*table, TableSetting{0, 0, 2, 0, items}, 20)) {
    EXPECT_DOUBLE_EQ(r, 1.0);
  }
  // Nothing fetched, nothing found.
  for (double r : UserRecalls(*table, TableSetting{0, 0, 0, 0, 0}, 20)) {
    EXPECT_DOUBLE_EQ(r, 0.0);
  }
}

}  // namespace
}  // namespace embsum::server
