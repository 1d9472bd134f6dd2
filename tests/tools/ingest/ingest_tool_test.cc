// embsum-ingest as a user runs it: exit codes, messages and progress lines.
#include <sys/wait.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store/shard.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

using testing::Child;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using testing::SmallModel;
using testing::TempDir;

struct ToolRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

ToolRun Ingest(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {EMBSUM_INGEST_BIN};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Child child(argv, /*merge_stderr=*/true);
  std::string output = child.ReadRest();
  int status = child.Wait();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(IngestToolTest, BuildsADataDirectoryWithProgressLines) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  ToolRun r =
      Ingest({"--model_dir=" + (tmp / "model"), "--data_dir=" + (tmp / "data"),
              "--progress_interval_s=0"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("embsum-ingest: users: 1/40 rows ("));
  EXPECT_THAT(r.output, HasSubstr("embsum-ingest: items: 120/120 rows ("));
  EXPECT_THAT(r.output, ::testing::ContainsRegex(
                            "items: 120 rows done \\([0-9]+ rows/s\\)"));
  EXPECT_THAT(r.output, HasSubstr("rows/s, ETA "));
  EXPECT_THAT(r.output, HasSubstr("embsum-ingest: wrote "));
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->users().size(), 40u);
}

TEST(IngestToolTest, ViolationsExitNonZeroWithTheMessage) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  testing::WriteAll(tmp / "model/items/ids.txt", "N1\nN1\n");
  ToolRun r = Ingest(
      {"--model_dir=" + (tmp / "model"), "--data_dir=" + (tmp / "data")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output,
              HasSubstr("embsum-ingest: items/ids.txt: line 2: duplicate id "
                        "\"N1\" (first on line 1)"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "data"));

  r = Ingest({"--model_dir=" + (tmp / "nowhere"), "--data_dir=" + (tmp / "d")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("nowhere: not a directory"));

  r = Ingest({});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("both model_dir and data_dir are needed"));
}

TEST(IngestToolTest, ReplacesOnlyWithForce) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  const std::vector<std::string> flags = {"--model_dir=" + (tmp / "model"),
                                          "--data_dir=" + (tmp / "data")};
  ASSERT_EQ(Ingest(flags).exit_code, 0);
  ToolRun again = Ingest(flags);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.output, HasSubstr("already exists; pass --force"));
  std::vector<std::string> forced = flags;
  forced.push_back("--force");
  EXPECT_EQ(Ingest(forced).exit_code, 0);
}

TEST(IngestToolTest, ShardFlagsKeepOneUserShardAndRefuseBadValues) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  ToolRun r =
      Ingest({"--model_dir=" + (tmp / "model"), "--data_dir=" + (tmp / "data"),
              "--shards=2", "--shard=1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->shard(), (ShardSpec{.shard = 1, .shards = 2}));
  uint64_t want = 0;
  for (int u = 1; u <= 40; ++u) {
    want += ShardOfUser("U" + std::to_string(u), 2) == 1 ? 1 : 0;
  }
  EXPECT_EQ((*dir)->users().size(), want);
  EXPECT_EQ((*dir)->items().Current()->size(), 120u);

  r = Ingest({"--model_dir=" + (tmp / "model"), "--data_dir=" + (tmp / "d2"),
              "--shards=2", "--shard=2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("shard 2 is out of range [0, 1] for 2"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "d2"));
}

TEST(IngestToolTest, UserDTypeIsRecordedAndABadOneRefused) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  ToolRun r = Ingest({"--model_dir=" + (tmp / "model"),
                      "--data_dir=" + (tmp / "data"), "--user_dtype=bf16"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->users().user_dtype(), scoring::DType::kBFloat16);

  r = Ingest({"--model_dir=" + (tmp / "model"), "--data_dir=" + (tmp / "d2"),
              "--user_dtype=int8"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--user_dtype='int8': want fp32, fp16 or "
                                  "bf16"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "d2"));
}

}  // namespace
}  // namespace embsum::store
