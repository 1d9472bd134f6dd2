// The persistent id -> row map and copy-on-write liveness behind item
// snapshots (store/internal/row_map.h).
#include "store/internal/row_map.h"

#include <random>
#include <string>
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

TEST(RowMapTest, AWriteAddsNodesOnlyAlongItsPath) {
  RowIds ids(100001);
  std::vector<uint32_t> rows;
  for (uint32_t r = 0; r < 100000; ++r) {
    ids[r] = "id" + std::to_string(r);
    rows.push_back(r);
  }
  const RowMap base = RowMap::Build(ids, rows);
  const size_t nodes = base.NodeCountForTesting();
  EXPECT_GT(nodes, 64u);
  // A write replaces the nodes on its path (about log64(N) of them) and
  // adds at most the few a split needs; the source keeps its own.
  RowMap copy = base;
  ids[100000] = "fresh";
  copy.Set("fresh", 100000, ids);
  EXPECT_LE(copy.NodeCountForTesting(), nodes + 4);
  EXPECT_EQ(base.NodeCountForTesting(), nodes);
  EXPECT_FALSE(base.Find("fresh", ids).has_value());
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
