#include "store/internal/file_util.h"

#include <algorithm>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/internal/item_files.h"
#include "store/internal/npy.h"
#include "store/internal/progress.h"
#include "store/manifest.h"
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

// Digests the store wrote before it used libxxhash (its own XXH64 code):
// every length class (tail bytes, 4- and 8-byte steps, one or more 32-byte
// stripes) must keep its value, or existing snapshots fail to load.
TEST(Checksum64Test, KeepsTheDigestsOfEarlierReleases) {
  struct Case {
    size_t size;
    uint64_t digest;
  };
  constexpr Case kCases[] = {
      {1, 0xA96C7F0CE858BBB7ull},    {4, 0xFA212AE44B3BB23Dull},
      {7, 0x2744460DD675D2C0ull},    {8, 0x994B676B71CE94DDull},
      {31, 0x6711D55E306B5D8Full},   {32, 0x07F7B8E3BC5D6E25ull},
      {33, 0x09F85EEB4E1CBE9Full},   {63, 0xB7C9968C066CB6A5ull},
      {64, 0x50D4159A0411632Eull},   {100, 0x9DDADA11D3DC2D8Full},
      {1000, 0x0BF0BDBCC82EB373ull}, {4099, 0xC2C15A86D6A1985Bull},
  };
  for (const Case& c : kCases) {
    std::string data(c.size, '\0');
    for (size_t i = 0; i < c.size; ++i) {
      data[i] = static_cast<char>((i * 131 + 7) & 0xff);
    }
    EXPECT_EQ(Checksum64(data.data(), data.size()), c.digest)
        << "size " << c.size;
  }
}

// testdata/snapshot_xxh64_v1 is an item snapshot written by an earlier
// release (embsum-datagen --users=3 --items=6 --dim=4 --user_codes=2
// --item_codes=2 --seed=7, then embsum-ingest), with the manifest and the
// artifact's cpe.npy and keys.npy it was ingested from. Its meta.json holds
// the shard checksums that release computed.
TEST(Checksum64Test, ReadsASnapshotWrittenByAnEarlierRelease) {
  const std::string dir = EMBSUM_TESTDATA_DIR "/snapshot_xxh64_v1";
  absl::StatusOr<std::string> manifest_json =
      ReadFileToString(dir + "/manifest.json");
  ASSERT_TRUE(manifest_json.ok()) << manifest_json.status();
  absl::StatusOr<ModelManifest> manifest =
      ParseManifest(*manifest_json, "manifest.json");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  auto cpe = NpyArray::Open(dir + "/cpe.npy", "cpe.npy");
  auto keys = NpyArray::Open(dir + "/keys.npy", "keys.npy");
  ASSERT_TRUE(cpe.ok()) << cpe.status();
  ASSERT_TRUE(keys.ok()) << keys.status();

  auto reader = SnapshotReader::Open(dir, *manifest);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*reader)->ids().size(), 6u);
  const size_t row = manifest->item_codes * manifest->dim;
  uint64_t rows_seen = 0;
  absl::Status s = (*reader)->ForEachShard(
      [&](uint64_t first_row, uint64_t rows, std::span<const float> shard_cpe,
          std::span<const float> shard_keys) -> absl::Status {
        std::vector<float> want(row);
        for (uint64_t r = 0; r < rows; ++r) {
          (*cpe)->ReadRow(first_row + r, want);
          EXPECT_TRUE(
              std::equal(want.begin(), want.end(), shard_cpe.begin() + r * row))
              << "cpe row " << first_row + r;
          (*keys)->ReadRow(first_row + r, want);
          EXPECT_TRUE(std::equal(want.begin(), want.end(),
                                 shard_keys.begin() + r * row))
              << "keys row " << first_row + r;
        }
        rows_seen += rows;
        return absl::OkStatus();
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(rows_seen, 6u);

  // The checksum is checked: the same files with one byte changed fail.
  TempDir tmp;
  std::filesystem::copy(dir, tmp.path(),
                        std::filesystem::copy_options::recursive);
  std::string shard = *ReadFileToString(tmp / "cpe-00000.faiss");
  shard[shard.size() - 9] ^= 1;
  std::filesystem::remove(tmp / "cpe-00000.faiss");
  ASSERT_TRUE(
      WriteNewFileDurably(tmp / "cpe-00000.faiss", shard.data(), shard.size())
          .ok());
  auto corrupt = SnapshotReader::Open(tmp.path(), *manifest);
  absl::Status cs =
      corrupt.ok()
          ? (*corrupt)->ForEachShard(
                [](uint64_t, uint64_t, std::span<const float>,
                   std::span<const float>) { return absl::OkStatus(); })
          : corrupt.status();
  EXPECT_EQ(cs.code(), absl::StatusCode::kDataLoss) << cs;
  EXPECT_THAT(std::string(cs.message()), HasSubstr("checksum mismatch"));
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
