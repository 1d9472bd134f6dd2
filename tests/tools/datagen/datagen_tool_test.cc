// embsum-datagen as a user runs it: flags of docs/design.md section 6.
#include <sys/wait.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/internal/artifact.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

using testing::Child;
using ::testing::HasSubstr;
using testing::ReadAll;
using testing::TempDir;

struct ToolRun {
  int exit_code;
  std::string output;
};

ToolRun Datagen(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {EMBSUM_DATAGEN_BIN};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Child child(argv, /*merge_stderr=*/true);
  std::string output = child.ReadRest();
  int status = child.Wait();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(DatagenToolTest, WritesTheRequestedShapes) {
  TempDir tmp;
  ToolRun r =
      Datagen({"--out=" + (tmp / "m"), "--users=7", "--items=30", "--dim=8",
               "--user_codes=5", "--item_codes=3", "--seed=11", "--topics=4",
               "--impressions=9", "--impression_size=6", "--dtype=fp16",
               "--item_keys=false", "--model_version=test-v2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("wrote 7 users, 30 items, 9 impressions"));
  auto a = ModelArtifact::Open(tmp / "m");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->manifest.model_version, "test-v2");
  EXPECT_EQ(a->upe->shape(), (std::vector<uint64_t>{7, 5, 8}));
  EXPECT_EQ(a->cpe->shape(), (std::vector<uint64_t>{30, 3, 8}));
  EXPECT_EQ(a->cpe->dtype(), NpyDType::kFloat16);
  EXPECT_FALSE(a->manifest.item_keys);
  EXPECT_EQ(a->keys, nullptr);
  std::string tsv = ReadAll(tmp / "m/behaviors.tsv");
  EXPECT_EQ(std::count(tsv.begin(), tsv.end(), '\n'), 9);
  // Same seed, same files.
  ASSERT_EQ(
      Datagen({"--out=" + (tmp / "m2"), "--users=7", "--items=30", "--dim=8",
               "--user_codes=5", "--item_codes=3", "--seed=11", "--topics=4",
               "--impressions=9", "--impression_size=6", "--dtype=fp16",
               "--item_keys=false", "--model_version=test-v2"})
          .exit_code,
      0);
  EXPECT_EQ(ReadAll(tmp / "m/users/upe.npy"),
            ReadAll(tmp / "m2/users/upe.npy"));
  EXPECT_EQ(tsv, ReadAll(tmp / "m2/behaviors.tsv"));
}

TEST(DatagenToolTest, BadFlagsExitNonZero) {
  TempDir tmp;
  ToolRun r = Datagen({"--out=" + (tmp / "m"), "--dtype=fp64"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--dtype must be fp32 or fp16"));
  r = Datagen({"--out=" + (tmp / "m"), "--items=0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--items must be >= 1"));
  r = Datagen({});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--out is required"));
}

}  // namespace
}  // namespace embsum::store
