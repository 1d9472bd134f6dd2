// server/shard.h: another shard's user is FAILED_PRECONDITION naming both
// shards; an unsharded server holds everyone.
#include "server/shard.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embsum::server {
namespace {

using ::testing::HasSubstr;

TEST(CheckUserShardTest, UnshardedHoldsEveryUser) {
  EXPECT_TRUE(CheckUserShard(store::ShardSpec{}, "user42").ok());
}

TEST(CheckUserShardTest, OwnShardPassesOtherShardNamesBoth) {
  // crc32("user42") = 2083503798; mod 7 = 5.
  ASSERT_EQ(store::ShardOfUser("user42", 7), 5u);
  EXPECT_TRUE(CheckUserShard({.shard = 5, .shards = 7}, "user42").ok());
  const absl::Status s = CheckUserShard({.shard = 3, .shards = 7}, "user42");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("user_id 'user42' belongs to shard 5 of "
                                     "7; this server holds shard 3 of 7"));
}

}  // namespace
}  // namespace embsum::server
