#include "store/internal/file_util.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/internal/progress.h"
#include "store_test_util.h"

namespace embsum::store::internal {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

TEST(Checksum64Test, MatchesXxh64ReferenceValues) {
  EXPECT_EQ(Checksum64("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Checksum64("abc", 3), 0x44BC2CF5AD770999ull);
  // Long inputs take the four-lane path; one flipped bit changes the sum.
  std::string data(1000, 'x');
  uint64_t a = Checksum64(data.data(), data.size());
  data[500] ^= 1;
  EXPECT_NE(Checksum64(data.data(), data.size()), a);
}

TEST(FileUtilTest, WritesDurablyAndReadsBack) {
  TempDir tmp;
  ASSERT_TRUE(WriteFileDurably(tmp / "f", "one").ok());
  ASSERT_TRUE(WriteFileDurably(tmp / "f", "two").ok());
  EXPECT_EQ(*ReadFileToString(tmp / "f"), "two");
  EXPECT_FALSE(std::filesystem::exists(tmp / "f.tmp"));
  ASSERT_TRUE(WriteNewFileDurably(tmp / "g", "abc", 3).ok());
  EXPECT_FALSE(WriteNewFileDurably(tmp / "g", "abc", 3).ok())
      << "never overwrites";
  auto missing = ReadFileToString(tmp / "none");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("none: open"));
  auto mapped = MappedFile::Open(tmp / "g");
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*mapped)->data()),
                        (*mapped)->size()),
            "abc");
  EXPECT_FALSE(MappedFile::Open(tmp.path()).ok()) << "directories are refused";
}

TEST(ProgressTest, ReportsRowsRateAndEta) {
  std::vector<std::string> lines;
  Progress p([&](const std::string& l) { lines.push_back(l); }, "users", 4, 0);
  p.Advance(1);
  p.Advance(3);
  p.Done();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0],
              ::testing::MatchesRegex(
                  "users: 1/4 rows \\([0-9]+ rows/s, ETA [0-9]+s\\)"));
  EXPECT_THAT(lines[2], ::testing::MatchesRegex(
                            "users: 4 rows done \\([0-9]+ rows/s\\)"));
  // Rate limiting: a long interval gives only the final line.
  lines.clear();
  Progress quiet([&](const std::string& l) { lines.push_back(l); }, "items",
                 100, 3600);
  for (int i = 0; i < 100; ++i) quiet.Advance(1);
  quiet.Done();
  EXPECT_EQ(lines.size(), 1u);
}

}  // namespace
}  // namespace embsum::store::internal
