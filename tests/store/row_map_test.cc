// The layered id -> row map and copy-on-write liveness behind item
// snapshots (store/internal/row_map.h).
#include "store/internal/row_map.h"

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"

namespace embsum::store::internal {
namespace {

TEST(RowMapTest, MatchesAReferenceMapUnderRandomWrites) {
  RowIds ids(40000);
  std::unordered_map<std::string, uint32_t> want;
  std::vector<uint32_t> initial;
  for (uint32_t r = 0; r < 10000; ++r) {
    ids[r] = "item-" + std::to_string(r);
    want[ids[r]] = r;
    initial.push_back(r);
  }
  RowMap map = RowMap::Build(ids, initial);
  EXPECT_EQ(map.size(), 10000u);
  std::mt19937 rng(3);
  uint32_t next = 10000;
  for (int op = 0; op < 20000; ++op) {
    const std::string id = "item-" + std::to_string(rng() % 15000);
    if (rng() % 3 == 0) {
      auto it = want.find(id);
      std::optional<uint32_t> erased = map.Erase(id, ids);
      ASSERT_EQ(erased.has_value(), it != want.end()) << id;
      if (it != want.end()) {
        EXPECT_EQ(*erased, it->second);
        want.erase(it);
      }
    } else if (next < ids.size()) {
      ids[next] = id;
      auto it = want.find(id);
      std::optional<uint32_t> replaced = map.Set(id, next, ids);
      ASSERT_EQ(replaced.has_value(), it != want.end()) << id;
      if (it != want.end()) {
        EXPECT_EQ(*replaced, it->second);
      }
      want[id] = next++;
    }
  }
  EXPECT_EQ(map.size(), want.size());
  for (uint32_t i = 0; i < 15000; ++i) {
    const std::string id = "item-" + std::to_string(i);
    auto it = want.find(id);
    std::optional<uint32_t> row = map.Find(id, ids);
    ASSERT_EQ(row.has_value(), it != want.end()) << id;
    if (row) {
      EXPECT_EQ(*row, it->second);
    }
  }
  EXPECT_FALSE(map.Find("absent", ids).has_value());
}

TEST(RowMapTest, ACopyIsUnchangedByWritesToTheOther) {
  RowIds ids = {"a", "b", "c", "a"};
  const std::vector<uint32_t> rows = {0, 1, 2};
  const RowMap before = RowMap::Build(ids, rows);
  RowMap after = before;
  EXPECT_EQ(after.Set("a", 3, ids), std::optional<uint32_t>(0));
  EXPECT_EQ(after.Erase("b", ids), std::optional<uint32_t>(1));
  EXPECT_EQ(before.Find("a", ids), std::optional<uint32_t>(0));
  EXPECT_EQ(before.Find("b", ids), std::optional<uint32_t>(1));
  EXPECT_EQ(before.size(), 3u);
  EXPECT_EQ(after.Find("a", ids), std::optional<uint32_t>(3));
  EXPECT_FALSE(after.Find("b", ids).has_value());
  EXPECT_EQ(after.size(), 2u);
}

TEST(RowMapTest, AWriteToACopyAddsTrieNodesOnlyAlongItsPath) {
  RowIds ids(100003);
  std::vector<uint32_t> rows;
  for (uint32_t r = 0; r < 100000; ++r) {
    ids[r] = "id" + std::to_string(r);
    rows.push_back(r);
  }
  RowMap base = RowMap::Build(ids, rows);
  EXPECT_EQ(base.recent_entries(), 0u);
  ids[100000] = "a";
  ids[100001] = "b";
  base.Set("a", 100000, ids);
  base.Set("b", 100001, ids);
  const size_t nodes = base.RecentNodeCountForTesting();
  // A write replaces the trie nodes on its path and adds at most the few a
  // split needs; the source keeps its own, and the flat base is shared.
  RowMap copy = base;
  ids[100002] = "fresh";
  copy.Set("fresh", 100002, ids);
  EXPECT_LE(copy.RecentNodeCountForTesting(), nodes + 4);
  EXPECT_EQ(base.RecentNodeCountForTesting(), nodes);
  EXPECT_FALSE(base.Find("fresh", ids).has_value());
  EXPECT_EQ(copy.Find("fresh", ids), std::optional<uint32_t>(100002));
}

TEST(RowMapTest, DeletingABaseIdHidesItUntilItIsWrittenAgain) {
  RowIds ids = {"x", "y", "x"};
  RowMap map = RowMap::Build(ids, std::vector<uint32_t>{0, 1});
  EXPECT_EQ(map.Erase("x", ids), std::optional<uint32_t>(0));
  EXPECT_FALSE(map.Find("x", ids).has_value());
  EXPECT_FALSE(map.Erase("x", ids).has_value());
  EXPECT_EQ(map.size(), 1u);
  // The tombstone is replaced, not counted as a row that was replaced.
  EXPECT_FALSE(map.Set("x", 2, ids).has_value());
  EXPECT_EQ(map.Find("x", ids), std::optional<uint32_t>(2));
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map.Erase("x", ids), std::optional<uint32_t>(2));
  EXPECT_EQ(map.size(), 1u);
  EXPECT_FALSE(map.Find("x", ids).has_value());
}

TEST(RowMapTest, RecentWritesAreFoldedIntoTheBaseAndACopyKeepsItsView) {
  const uint32_t base_rows = 20000;
  const size_t limit =
      std::max(RowMap::kMinRecent, size_t{base_rows} / RowMap::kRecentDivisor);
  RowIds ids(base_rows + limit + 1);
  std::vector<uint32_t> rows;
  for (uint32_t r = 0; r < base_rows; ++r) {
    ids[r] = "item-" + std::to_string(r);
    rows.push_back(r);
  }
  RowMap map = RowMap::Build(ids, rows);
  RowMap before;
  // Half the writes delete base ids, half rewrite others to new rows.
  uint32_t next = base_rows;
  for (size_t w = 0; w < limit; ++w) {
    if (w == limit / 2) before = map;
    const std::string id = "item-" + std::to_string(w);
    if (w % 2 == 0) {
      ASSERT_TRUE(map.Erase(id, ids).has_value());
    } else {
      ids[next] = id;
      ASSERT_EQ(map.Set(id, next, ids), std::optional<uint32_t>(w));
      ++next;
    }
  }
  EXPECT_EQ(map.recent_entries(), limit);
  // One more write passes the limit: the trie is folded into a new base.
  ids[next] = "new";
  map.Set("new", next, ids);
  EXPECT_EQ(map.recent_entries(), 0u);
  EXPECT_EQ(map.size(), base_rows - (limit + 1) / 2 + 1);
  for (size_t w = 0; w < limit; ++w) {
    const std::string id = "item-" + std::to_string(w);
    if (w % 2 == 0) {
      EXPECT_FALSE(map.Find(id, ids).has_value()) << id;
    } else {
      ASSERT_TRUE(map.Find(id, ids).has_value()) << id;
      EXPECT_GE(*map.Find(id, ids), base_rows) << id;
    }
  }
  EXPECT_EQ(map.Find("item-19999", ids), std::optional<uint32_t>(19999));
  EXPECT_EQ(map.Find("new", ids), std::optional<uint32_t>(next));
  // The copy taken halfway still answers as it did then.
  EXPECT_FALSE(before.Find("item-0", ids).has_value());
  EXPECT_EQ(before.Find("item-" + std::to_string(limit - 1), ids),
            std::optional<uint32_t>(limit - 1));
  EXPECT_FALSE(before.Find("new", ids).has_value());
}

TEST(RowMapTest, FindManyGivesFindsAnswers) {
  RowIds ids(3000);
  std::vector<uint32_t> rows;
  for (uint32_t r = 0; r < 2000; ++r) {
    // Long ids too: their bytes live outside the string object.
    ids[r] = (r % 3 == 0 ? "a-long-item-identifier-" : "i") + std::to_string(r);
    rows.push_back(r);
  }
  RowMap map = RowMap::Build(ids, rows);
  for (uint32_t r = 0; r < 100; ++r) map.Erase(ids[r * 7], ids);
  for (uint32_t r = 2000; r < 2100; ++r) {
    ids[r] = ids[r - 1000];
    map.Set(ids[r], r, ids);
  }
  std::vector<std::string> keys;
  for (uint32_t r = 0; r < 2100; r += 3) keys.push_back(ids[r]);
  keys.push_back("absent");
  keys.push_back("");
  std::vector<std::string_view> views(keys.begin(), keys.end());
  std::vector<uint32_t> got(keys.size());
  map.FindMany(views, ids, got);
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::optional<uint32_t> want = map.Find(keys[i], ids);
    EXPECT_EQ(got[i], want.value_or(RowMap::kNoRow)) << keys[i];
  }
  EXPECT_EQ(got[keys.size() - 2], RowMap::kNoRow);
  const RowMap empty;
  std::vector<uint32_t> none(views.size());
  empty.FindMany(views, ids, none);
  for (uint32_t r : none) EXPECT_EQ(r, RowMap::kNoRow);
}

TEST(LiveMaskTest, CopiesShareUntouchedPages) {
  LiveMask mask(3 * LiveMask::kPageRows + 5, 2 * LiveMask::kPageRows + 1);
  EXPECT_TRUE(mask.Get(0));
  EXPECT_TRUE(mask.Get(2 * LiveMask::kPageRows));
  EXPECT_FALSE(mask.Get(2 * LiveMask::kPageRows + 1));
  EXPECT_FALSE(mask.Get(mask.size()));
  LiveMask copy = mask;
  copy.Set(7, false);
  copy.Set(3 * LiveMask::kPageRows + 4, true);
  EXPECT_TRUE(mask.Get(7));
  EXPECT_FALSE(mask.Get(3 * LiveMask::kPageRows + 4));
  EXPECT_FALSE(copy.Get(7));
  EXPECT_TRUE(copy.Get(3 * LiveMask::kPageRows + 4));
  std::vector<uint8_t> flat(10);
  copy.CopyTo(LiveMask::kPageRows - 5, LiveMask::kPageRows + 5, flat.data());
  EXPECT_EQ(flat, std::vector<uint8_t>(10, 1));
  copy.CopyTo(0, 10, flat.data());
  EXPECT_EQ(flat[7], 0);
  EXPECT_EQ(flat[6], 1);
}

}  // namespace
}  // namespace embsum::store::internal
