#include "server/arena_allocator.h"

#include <string>

#include "embsum/v1/ranking.pb.h"
#include "gtest/gtest.h"

namespace embsum::server {
namespace {

using RankAllocator = ArenaMessageAllocator<v1::RankRequest, v1::RankResponse>;

TEST(ArenaMessageAllocatorTest, RequestAndResponseShareOneArenaPerCall) {
  RankAllocator allocator;
  grpc::MessageHolder<v1::RankRequest, v1::RankResponse>* a =
      allocator.AllocateMessages();
  grpc::MessageHolder<v1::RankRequest, v1::RankResponse>* b =
      allocator.AllocateMessages();
  ASSERT_NE(a->request()->GetArena(), nullptr);
  EXPECT_EQ(a->request()->GetArena(), a->response()->GetArena());
  EXPECT_NE(a->request()->GetArena(), b->request()->GetArena());
  a->Release();
  b->Release();
}

// A Rank-sized call outgrows the inline block; every field survives, and
// Release frees it all (ASan/LSan builds check the latter).
TEST(ArenaMessageAllocatorTest, LargeCallRoundTrips) {
  v1::RankRequest sent;
  sent.set_user_id("U1");
  for (int i = 0; i < 500; ++i) {
    sent.add_candidate_ids("item-with-a-long-enough-id-" + std::to_string(i));
  }
  RankAllocator allocator;
  grpc::MessageHolder<v1::RankRequest, v1::RankResponse>* holder =
      allocator.AllocateMessages();
  ASSERT_TRUE(holder->request()->ParseFromString(sent.SerializeAsString()));
  EXPECT_EQ(holder->request()->SerializeAsString(), sent.SerializeAsString());
  for (const std::string& id : holder->request()->candidate_ids()) {
    v1::ScoredItem* item = holder->response()->add_items();
    item->set_item_id(id);
    item->set_score(1.5f);
  }
  ASSERT_EQ(holder->response()->items_size(), 500);
  EXPECT_EQ(holder->response()->items(499).item_id(),
            "item-with-a-long-enough-id-499");
  EXPECT_EQ(holder->response()->items(499).GetArena(),
            holder->request()->GetArena());
  holder->Release();
}

}  // namespace
}  // namespace embsum::server
