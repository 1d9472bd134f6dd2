// Ingest: artifact -> data directory round trips, and every rejection class
// of docs/design.md section 3 with the existing data directory left untouched.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store/internal/npy.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ReadAll;
using testing::SmallModel;
using testing::TempDir;
using testing::WriteAll;

absl::Status IngestInto(const std::string& model, const std::string& data,
                        bool force) {
  IngestOptions o;
  o.model_dir = model;
  o.data_dir = data;
  o.force = force;
  return Ingest(o);
}

// Replaces the first `from` in the file's first 128 bytes by `to`.
void PatchHeader(const std::string& path, const std::string& from,
                 const std::string& to) {
  std::string bytes = ReadAll(path);
  size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  bytes.replace(at, from.size(), to);
  WriteAll(path, bytes);
}

// Overwrites element `index` (counting from the first element) of an fp32
// .npy file.
void PokeFloat(const std::string& path, size_t index, float value) {
  auto array = NpyArray::Open(path, path);
  ASSERT_TRUE(array.ok());
  size_t offset = (*array)->header().data_offset + index * sizeof(float);
  array->reset();
  std::string bytes = ReadAll(path);
  std::memcpy(bytes.data() + offset, &value, sizeof(float));
  WriteAll(path, bytes);
}

void ReplaceLine(const std::string& path, size_t line,
                 const std::string& text) {
  std::string all = ReadAll(path);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find('\n', pos);
    lines.push_back(all.substr(pos, end - pos));
    pos = end + 1;
  }
  lines[line - 1] = text;
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  WriteAll(path, out);
}

// The first UPE value of user U1, or NaN when the directory does not open.
float FirstValue(const std::string& data) {
  auto dir = DataDir::Open(data, DataDirOptions{});
  if (!dir.ok()) return std::numeric_limits<float>::quiet_NaN();
  UserEmbedding e;
  if (!(*dir)->users().Get("U1", &e).ok()) {
    return std::numeric_limits<float>::quiet_NaN();
  }
  return e.upe[0];
}

std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(IngestTest, RoundTripsFloat16Artifacts) {
  TempDir tmp;
  datagen::SyntheticModelOptions o = SmallModel(tmp / "model");
  o.float16 = true;
  ASSERT_TRUE(GenerateSyntheticModel(o).ok());
  ASSERT_TRUE(
      IngestInto(tmp / "model", tmp / "nested/deeper/data", false).ok());
  auto dir = DataDir::Open(tmp / "nested/deeper/data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->manifest().model_version, "synthetic-1");
  EXPECT_EQ((*dir)->users().size(), 40u);
  EXPECT_EQ((*dir)->items().Current()->size(), 120u);
  auto upe = NpyArray::Open(tmp / "model/users/upe.npy", "upe");
  auto cpe = NpyArray::Open(tmp / "model/items/cpe.npy", "cpe");
  ASSERT_TRUE(upe.ok() && cpe.ok());
  EXPECT_EQ((*upe)->dtype(), NpyDType::kFloat16);
  std::vector<float> want(3 * 16);
  (*upe)->ReadRow(9, want);
  UserEmbedding e;
  ASSERT_TRUE((*dir)->users().Get("U10", &e).ok());
  EXPECT_EQ(e.upe, want);
  std::vector<float> item(2 * 16), keys(2 * 16), want_item(2 * 16);
  auto snap = (*dir)->items().Current();
  snap->arena().ReadRow(*snap->FindRow("N8"), item, keys);
  (*cpe)->ReadRow(7, want_item);
  EXPECT_EQ(item, want_item);
  EXPECT_EQ(Listing(tmp / "nested/deeper"), std::vector<std::string>{"data"})
      << "no temporary directories left behind";
}

TEST(IngestTest, EmptyModelIngestsAndServesNothing) {
  TempDir tmp;
  const std::string m = tmp / "model";
  fs::create_directories(m + "/users");
  fs::create_directories(m + "/items");
  WriteAll(m + "/manifest.json",
           R"({"format_version": 1, "model_version": "empty", "dim": 4,
               "user_codes": 2, "item_codes": 3, "user_queries": false,
               "item_keys": false})");
  WriteAll(m + "/users/ids.txt", "");
  WriteAll(m + "/items/ids.txt", "");
  for (const auto& [file, shape] :
       {std::pair<std::string, std::vector<uint64_t>>{"users/upe.npy",
                                                      {0, 2, 4}},
        {"items/cpe.npy", {0, 3, 4}}}) {
    auto w = NpyWriter::Create(m + "/" + file, NpyDType::kFloat32, shape);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  ASSERT_TRUE(IngestInto(m, tmp / "data", false).ok());
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ((*dir)->users().size(), 0u);
  auto snap = (*dir)->items().Current();
  EXPECT_EQ(snap->size(), 0u);
  std::vector<float> upe(8, 1.0f);
  std::vector<uint32_t> rows = {7};
  ASSERT_TRUE(
      snap->AnnCandidates(scoring::UserView{2, 4, upe, {}}, 5, &rows).ok());
  EXPECT_TRUE(rows.empty());
  // The first upserts go into the empty catalogue.
  ItemUpsert item{"first", std::vector<float>(12, 0.5f), {}};
  ASSERT_TRUE((*dir)->items().Upsert({&item, 1}).ok());
  EXPECT_EQ((*dir)->items().Current()->size(), 1u);
}

TEST(IngestTest, ModelWithoutQueriesKeysOrSummaries) {
  TempDir tmp;
  datagen::SyntheticModelOptions o = SmallModel(tmp / "model");
  o.user_queries = false;
  o.item_keys = false;
  ASSERT_TRUE(GenerateSyntheticModel(o).ok());
  fs::remove(tmp / "model/users/summaries.jsonl");
  ASSERT_TRUE(IngestInto(tmp / "model", tmp / "data", false).ok());
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  UserEmbedding e;
  ASSERT_TRUE((*dir)->users().Get("U3", &e).ok());
  EXPECT_TRUE(e.queries.empty());
  EXPECT_EQ(*(*dir)->users().GetSummary("U3"), "");
  EXPECT_FALSE((*dir)->items().Current()->arena().layout().has_keys);
}

TEST(IngestTest, RefusesToReplaceWithoutForceAndReplacesWithIt) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "a", 1)).ok());
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "b", 2)).ok());
  ASSERT_TRUE(IngestInto(tmp / "a", tmp / "data", false).ok());
  const float a_value = FirstValue(tmp / "data");
  absl::Status s = IngestInto(tmp / "b", tmp / "data", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("pass --force"));
  EXPECT_EQ(FirstValue(tmp / "data"), a_value);
  ASSERT_TRUE(IngestInto(tmp / "b", tmp / "data", true).ok());
  const float b_value = FirstValue(tmp / "data");
  EXPECT_NE(b_value, a_value);
  EXPECT_EQ(Listing(tmp.path()), (std::vector<std::string>{"a", "b", "data"}));
}

TEST(IngestTest, ForceNeverReplacesWhatIsNotADataDirectory) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  fs::create_directories(tmp / "precious/sub");
  WriteAll(tmp / "precious/file.txt", "keep me");
  absl::Status s = IngestInto(tmp / "model", tmp / "precious", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("is not a data directory (no manifest.json, users/, "
                        "items/); refusing to replace it"));
  EXPECT_EQ(ReadAll(tmp / "precious/file.txt"), "keep me");
  // The model directory itself, or a directory inside it.
  s = IngestInto(tmp / "model", tmp / "model", true);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(fs::exists(tmp / "model/manifest.json"));
  s = IngestInto(tmp / "model", tmp / "model/data", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("must not contain each other"));
  // An empty directory is fine to fill.
  fs::create_directory(tmp / "empty");
  EXPECT_TRUE(IngestInto(tmp / "model", tmp / "empty", true).ok());
}

TEST(IngestTest, MissingDataDirectoryIsRefusedAtOpen) {
  TempDir tmp;
  auto dir = DataDir::Open(tmp / "none", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  fs::create_directory(tmp / "empty");
  dir = DataDir::Open(tmp / "empty", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr("manifest.json"));
}

TEST(IngestTest, CorruptDataDirectoryIsRefusedNotCrashed) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  ASSERT_TRUE(IngestInto(tmp / "model", tmp / "data", false).ok());
  const std::string shard = tmp / "data/items/snapshot-000001/cpe-00000.faiss";
  std::string bytes = ReadAll(shard);
  // One flipped bit in a vector: same size, caught by the checksum.
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  WriteAll(shard, flipped);
  auto flipped_dir = DataDir::Open(tmp / "data", DataDirOptions{});
  EXPECT_EQ(flipped_dir.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(flipped_dir.status().message()),
              HasSubstr("cpe-00000.faiss: checksum mismatch"));
  WriteAll(shard, bytes.substr(0, bytes.size() / 2));
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(dir.status().message()),
              HasSubstr("cpe-00000.faiss"));
  WriteAll(shard, std::string(bytes.size(), 'x'));
  dir = DataDir::Open(tmp / "data", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  WriteAll(tmp / "data/items/CURRENT", "../../etc\n");
  dir = DataDir::Open(tmp / "data", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  WriteAll(tmp / "data/manifest.json", "{");
  dir = DataDir::Open(tmp / "data", DataDirOptions{});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
}

struct Rejection {
  const char* name;
  std::function<void(const std::string& model)> corrupt;
  const char* message;
};

TEST(IngestTest, EveryViolationIsRejectedAndLeavesDataUntouched) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Rejection cases[] = {
      {"truncated",
       [](const std::string& m) {
         std::string b = ReadAll(m + "/users/upe.npy");
         WriteAll(m + "/users/upe.npy", b.substr(0, b.size() - 10));
       },
       "users/upe.npy: truncated: shape (40, 3, 16) needs 7680 bytes of data, "
       "file has 7670"},
      {"wrong dtype",
       [](const std::string& m) {
         PatchHeader(m + "/items/cpe.npy", "<f4", "<f8");
       },
       "items/cpe.npy: dtype '<f8' is not supported (need '<f4' or '<f2')"},
      {"fortran order",
       [](const std::string& m) {
         PatchHeader(m + "/items/keys.npy", "False", "True ");
       },
       "items/keys.npy: fortran_order is True"},
      {"shape mismatch",
       [](const std::string& m) {
         PatchHeader(m + "/manifest.json", "\"dim\": 16", "\"dim\": 17");
       },
       "users/upe.npy: shape (40, 3, 16) does not match the manifest: "
       "expected (40, 3, 17)"},
      {"count mismatch",
       [](const std::string& m) {
         WriteAll(m + "/items/ids.txt",
                  ReadAll(m + "/items/ids.txt") + "N999\n");
       },
       "items/cpe.npy: 120 rows, but items/ids.txt has 121 ids"},
      {"NaN",
       [&](const std::string& m) {
         PokeFloat(m + "/items/cpe.npy", (17 * 2 + 1) * 16 + 3, nan);
       },
       "items/cpe.npy: row 17 (item \"N18\"): NaN at vector 1, element 3"},
      {"Inf",
       [&](const std::string& m) {
         PokeFloat(m + "/users/queries.npy", 5 * 3 * 16, -inf);
       },
       "users/queries.npy: row 5 (user \"U6\"): Inf at vector 0, element 0"},
      {"duplicate id",
       [](const std::string& m) { ReplaceLine(m + "/items/ids.txt", 3, "N1"); },
       "items/ids.txt: line 3: duplicate id \"N1\" (first on line 1)"},
      {"empty id",
       [](const std::string& m) { ReplaceLine(m + "/users/ids.txt", 2, ""); },
       "users/ids.txt: line 2: empty id"},
      {"queries without flag",
       [](const std::string& m) {
         PatchHeader(m + "/manifest.json", "\"user_queries\": true",
                     "\"user_queries\": false");
       },
       "users/queries.npy: present, but manifest.json says user_queries is "
       "false"},
      {"keys missing",
       [](const std::string& m) { fs::remove(m + "/items/keys.npy"); },
       "items/keys.npy: missing, but manifest.json says item_keys is true"},
      {"summary of unknown user",
       [](const std::string& m) {
         WriteAll(m + "/users/summaries.jsonl",
                  "{\"user_id\": \"ghost\", \"summary\": \"x\"}\n");
       },
       "users/summaries.jsonl: entry 1: user \"ghost\" is not in "
       "users/ids.txt"},
      {"no manifest",
       [](const std::string& m) { fs::remove(m + "/manifest.json"); },
       "manifest.json: "},
  };
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "old", 9)).ok());
  ASSERT_TRUE(IngestInto(tmp / "old", tmp / "data", false).ok());
  const float before = FirstValue(tmp / "data");
  ASSERT_FALSE(std::isnan(before));
  for (const Rejection& c : cases) {
    SCOPED_TRACE(c.name);
    fs::remove_all(tmp / "model");
    ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model", 1)).ok());
    c.corrupt(tmp / "model");
    absl::Status s = IngestInto(tmp / "model", tmp / "data", true);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
    EXPECT_EQ(FirstValue(tmp / "data"), before) << "existing data untouched";
    EXPECT_EQ(Listing(tmp.path()),
              (std::vector<std::string>{"data", "model", "old"}))
        << "no temporary directory left behind";
  }
}

}  // namespace
}  // namespace embsum::store
