// MirrorCache (scoring/internal/mirror_cache.h): the CUDA scorer's device
// mirrors keyed by arena identity, tested without a device.
#include "scoring/internal/mirror_cache.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "scoring/item_arena.h"

namespace embsum::scoring::internal {
namespace {

struct FakeMirror {
  uint64_t identity = 0;
};

std::shared_ptr<FakeMirror> Make(uint64_t identity) {
  return std::make_shared<FakeMirror>(FakeMirror{identity});
}

TEST(MirrorCacheTest, ArenaIdentityIsNeverReusedEvenAtTheSameAddress) {
  const ArenaLayout layout{2, 4, DType::kFloat32, false};
  auto first = std::make_unique<ItemArena>(layout, 4);
  const uint64_t first_identity = first->identity();
  first.reset();
  // The allocator may hand out the freed address again; the identity moves
  // on regardless, so a mirror of the first arena is never found for it.
  ItemArena second(layout, 4);
  EXPECT_GT(second.identity(), first_identity);
  MirrorCache<FakeMirror> cache(2);
  cache.Insert(first_identity, Make(first_identity)).clear();
  EXPECT_EQ(cache.Find(second.identity()), nullptr);
  EXPECT_NE(cache.Find(first_identity), nullptr);
}

TEST(MirrorCacheTest, TwoArenasInUseKeepTheirMirrors) {
  // An old and a new model serving together: requests alternate between
  // the two arenas and neither mirror is dropped (with one slot keyed by
  // address they evicted each other on every switch).
  MirrorCache<FakeMirror> cache(2);
  auto old_mirror = Make(10);
  auto new_mirror = Make(11);
  EXPECT_TRUE(cache.Insert(10, old_mirror).empty());
  EXPECT_TRUE(cache.Insert(11, new_mirror).empty());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(cache.Find(10), old_mirror);
    EXPECT_EQ(cache.Find(11), new_mirror);
  }
  EXPECT_EQ(cache.Identities(), (std::vector<uint64_t>{11, 10}));
}

TEST(MirrorCacheTest, LeastRecentlyUsedLeavesAndHoldersKeepIt) {
  MirrorCache<FakeMirror> cache(2);
  cache.Insert(1, Make(1)).clear();
  cache.Insert(2, Make(2)).clear();
  std::shared_ptr<FakeMirror> held = cache.Find(1);  // 2 is now the oldest
  std::vector<std::shared_ptr<FakeMirror>> evicted = cache.Insert(3, Make(3));
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0]->identity, 2u);
  EXPECT_EQ(cache.Find(2), nullptr);
  EXPECT_EQ(cache.Identities(), (std::vector<uint64_t>{3, 1}));
  // Dropping everything (device memory pressure) leaves holders intact.
  evicted = cache.Shrink(0);
  EXPECT_EQ(evicted.size(), 2u);
  EXPECT_EQ(cache.Find(1), nullptr);
  EXPECT_EQ(held->identity, 1u);
}

TEST(MirrorCacheTest, InsertReplacesTheSameIdentity) {
  MirrorCache<FakeMirror> cache(3);
  auto a = Make(5);
  auto b = Make(5);
  cache.Insert(5, a).clear();
  std::vector<std::shared_ptr<FakeMirror>> evicted = cache.Insert(5, b);
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], a);
  EXPECT_EQ(cache.Find(5), b);
  EXPECT_EQ(cache.Identities().size(), 1u);
}

}  // namespace
}  // namespace embsum::scoring::internal
