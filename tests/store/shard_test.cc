// User shards (store/shard.h): the hash is zlib's IEEE CRC-32 (the values
// HAProxy 2.6's `crc32` converter printed for the same ids), and
// Ingest --shards/--shard keeps exactly one shard's users and every item,
// recorded in DATA_DIR/shard.json.
#include "store/shard.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

using ::testing::HasSubstr;
using testing::SmallModel;
using testing::TempDir;

TEST(ShardTest, HashIsIeeeCrc32AsZlibAndHaproxyComputeIt) {
  EXPECT_EQ(UserIdCrc32("123456789"), 0xCBF43926u);  // the CRC-32 check value
  EXPECT_EQ(UserIdCrc32(""), 0u);
  // Printed by `req.hdr(x-user-id),crc32` in HAProxy 2.6.12 (Debian 12).
  EXPECT_EQ(UserIdCrc32("user42"), 2083503798u);
  EXPECT_EQ(UserIdCrc32("h\xc3\xa9llo"), 2654700086u);  // UTF-8 bytes
  EXPECT_EQ(UserIdCrc32("U1"), 3620453332u);            // Python zlib.crc32
}

TEST(ShardTest, ShardIsCrcModCount) {
  EXPECT_EQ(ShardOfUser("123456789", 7), 0xCBF43926u % 7);
  EXPECT_EQ(ShardOfUser("user42", 7), 2083503798u % 7);
  EXPECT_EQ(ShardOfUser("anything", 1), 0u);
  EXPECT_TRUE(HoldsUser(ShardSpec{}, "anything"));
  EXPECT_TRUE(HoldsUser({.shard = 3620453332u % 5, .shards = 5}, "U1"));
  EXPECT_FALSE(HoldsUser({.shard = (3620453332u + 1) % 5, .shards = 5}, "U1"));
}

TEST(ShardTest, SpecRoundTripsAndBadFilesAreNamed) {
  const ShardSpec spec{.shard = 2, .shards = 3};
  auto parsed = ParseShardSpec(ShardSpecToJson(spec), "d/shard.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, spec);
  for (const char* bad :
       {"", "[]", "{\"shards\": 2}", "{\"shard\": 2, \"shards\": 2}",
        "{\"shard\": -1, \"shards\": 2}", "{\"shard\": 0, \"shards\": 0}",
        "{\"shard\": \"0\", \"shards\": 2}"}) {
    auto s = ParseShardSpec(bad, "d/shard.json");
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("d/shard.json")) << bad;
  }
  EXPECT_FALSE(ValidateShardSpec({.shard = 2, .shards = 2}).ok());
  EXPECT_FALSE(ValidateShardSpec({.shard = 0, .shards = 0}).ok());
  EXPECT_FALSE(ValidateShardSpec({.shard = 0, .shards = kMaxShards + 1}).ok());
}

TEST(ShardTest, IngestKeepsOneShardsUsersAndEveryItem) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  constexpr uint32_t kShards = 3;
  std::set<std::string> seen;
  for (uint32_t shard = 0; shard < kShards; ++shard) {
    const std::string data = tmp / ("data" + std::to_string(shard));
    IngestOptions o;
    o.model_dir = tmp / "model";
    o.data_dir = data;
    o.shard = {.shard = shard, .shards = kShards};
    ASSERT_TRUE(Ingest(o).ok());
    auto dir = DataDir::Open(data, DataDirOptions{});
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_EQ((*dir)->shard(), o.shard);
    EXPECT_EQ((*dir)->items().Current()->size(), 120u);
    uint64_t held = 0;
    for (int u = 1; u <= 40; ++u) {
      const std::string id = "U" + std::to_string(u);
      UserEmbedding e;
      const absl::Status s = (*dir)->users().Get(id, &e);
      if (ShardOfUser(id, kShards) == shard) {
        EXPECT_TRUE(s.ok()) << id << ": " << s;
        EXPECT_TRUE(seen.insert(id).second) << id << " in two shards";
        ++held;
      } else {
        EXPECT_TRUE(absl::IsNotFound(s)) << id << " in shard " << shard;
      }
    }
    EXPECT_GT(held, 0u);
    EXPECT_EQ((*dir)->users().size(), held);
  }
  EXPECT_EQ(seen.size(), 40u) << "every user is in some shard";
}

TEST(ShardTest, UnshardedIngestRecordsOneShardAndOldDirectoriesOpen) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  IngestOptions o;
  o.model_dir = tmp / "model";
  o.data_dir = tmp / "data";
  ASSERT_TRUE(Ingest(o).ok());
  ASSERT_TRUE(std::filesystem::exists(tmp / "data/shard.json"));
  {
    auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_EQ((*dir)->shard(), ShardSpec{});
    EXPECT_EQ((*dir)->users().size(), 40u);
  }
  // A directory written before shards existed has no shard.json.
  std::filesystem::remove(tmp / "data/shard.json");
  {
    auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_EQ((*dir)->shard(), ShardSpec{});
  }
  std::ofstream(tmp / "data/shard.json") << "{\"shard\": 5, \"shards\": 2}";
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_FALSE(dir.ok());
  EXPECT_TRUE(absl::IsDataLoss(dir.status())) << dir.status();
  EXPECT_THAT(dir.status().message(), HasSubstr("data/shard.json"));
}

TEST(ShardTest, BadShardFlagsAreRefusedBeforeAnythingIsWritten) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  IngestOptions o;
  o.model_dir = tmp / "model";
  o.data_dir = tmp / "data";
  o.shard = {.shard = 2, .shards = 2};
  const absl::Status s = Ingest(o);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("shard 2 is out of range [0, 1]"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "data"));
}

}  // namespace
}  // namespace embsum::store
