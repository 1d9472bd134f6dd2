#include "datagen/synthetic_model.h"

#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/internal/artifact.h"
#include "store_test_util.h"

namespace embsum::datagen {
namespace {

using store::ModelArtifact;
using store::NpyDType;
using store::testing::ReadAll;
using store::testing::SmallModel;
using store::testing::TempDir;
using ::testing::HasSubstr;

const char* const kFiles[] = {
    "manifest.json", "behaviors.tsv",     "users/ids.txt",
    "users/upe.npy", "users/queries.npy", "users/summaries.jsonl",
    "items/ids.txt", "items/cpe.npy",     "items/keys.npy"};

TEST(SyntheticModelTest, SameSeedSameBytesOtherSeedOtherData) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "a", 5)).ok());
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "b", 5)).ok());
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "c", 6)).ok());
  for (const char* f : kFiles) {
    EXPECT_EQ(ReadAll(tmp / "a/" + f), ReadAll(tmp / "b/" + f)) << f;
  }
  EXPECT_NE(ReadAll(tmp / "a/users/upe.npy"), ReadAll(tmp / "c/users/upe.npy"));
  EXPECT_NE(ReadAll(tmp / "a/behaviors.tsv"), ReadAll(tmp / "c/behaviors.tsv"));
}

TEST(SyntheticModelTest, WritesAValidArtifact) {
  TempDir tmp;
  SyntheticModelOptions o = SmallModel(tmp / "m");
  o.float16 = true;
  ASSERT_TRUE(GenerateSyntheticModel(o).ok());
  auto a = ModelArtifact::Open(tmp / "m");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->manifest.dim, 16u);
  EXPECT_EQ(a->manifest.user_codes, 3u);
  EXPECT_EQ(a->manifest.item_codes, 2u);
  EXPECT_TRUE(a->manifest.user_queries);
  EXPECT_TRUE(a->manifest.item_keys);
  EXPECT_EQ(a->user_ids.size(), 40u);
  EXPECT_EQ(a->item_ids.size(), 120u);
  EXPECT_EQ(a->upe->dtype(), NpyDType::kFloat16);
  ASSERT_EQ(a->summaries.size(), 40u);
  EXPECT_THAT(
      a->summaries[0].summary,
      ::testing::AnyOf(HasSubstr("Interested in"), HasSubstr("Follows")));
  // keys = gelu(B W): gelu output is > -0.17 everywhere.
  std::vector<float> keys(32);
  for (uint64_t r = 0; r < 120; ++r) {
    a->keys->ReadRow(r, keys);
    for (float k : keys) ASSERT_GT(k, -0.1701f);
  }
}

// Max inner product between the user's UPE rows and the item's CPE rows.
float Affinity(const ModelArtifact& a, uint64_t user, uint64_t item) {
  std::vector<float> upe(3 * 16), cpe(2 * 16);
  a.upe->ReadRow(user, upe);
  a.cpe->ReadRow(item, cpe);
  float best = -1e30f;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 2; ++j) {
      float dot = 0;
      for (int c = 0; c < 16; ++c) dot += upe[i * 16 + c] * cpe[j * 16 + c];
      best = std::max(best, dot);
    }
  }
  return best;
}

TEST(SyntheticModelTest, BehaviorsAreMindFormatWithPlantedSignal) {
  TempDir tmp;
  SyntheticModelOptions o = SmallModel(tmp / "m", 3);
  o.impressions = 200;
  ASSERT_TRUE(GenerateSyntheticModel(o).ok());
  auto a = ModelArtifact::Open(tmp / "m");
  ASSERT_TRUE(a.ok());
  std::map<std::string, uint64_t> user_row, item_row;
  for (size_t i = 0; i < a->user_ids.size(); ++i) user_row[a->user_ids[i]] = i;
  for (size_t i = 0; i < a->item_ids.size(); ++i) item_row[a->item_ids[i]] = i;
  std::vector<std::string> lines =
      absl::StrSplit(ReadAll(tmp / "m/behaviors.tsv"), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 200u);
  // AUC of the affinity over all (click, non-click) pairs per impression.
  double pairs = 0, wins = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    std::vector<std::string> cols = absl::StrSplit(lines[k], '\t');
    ASSERT_EQ(cols.size(), 5u) << lines[k];
    EXPECT_EQ(cols[0], std::to_string(k + 1));
    ASSERT_TRUE(user_row.count(cols[1])) << cols[1];
    EXPECT_THAT(cols[2],
                ::testing::MatchesRegex(
                    "11/[0-9]+/2019 [0-9]+:[0-9]{2}:[0-9]{2} (AM|PM)"));
    for (absl::string_view h :
         absl::StrSplit(cols[3], ' ', absl::SkipEmpty())) {
      EXPECT_TRUE(item_row.count(std::string(h))) << h;
    }
    std::vector<std::string> shown = absl::StrSplit(cols[4], ' ');
    ASSERT_EQ(shown.size(), 8u);
    std::set<std::string> distinct;
    std::vector<float> clicked, skipped;
    for (const std::string& s : shown) {
      size_t dash = s.rfind('-');
      ASSERT_NE(dash, std::string::npos);
      std::string item = s.substr(0, dash);
      ASSERT_TRUE(item_row.count(item)) << item;
      distinct.insert(item);
      float aff = Affinity(*a, user_row[cols[1]], item_row[item]);
      std::string label = s.substr(dash + 1);
      ASSERT_TRUE(label == "0" || label == "1") << s;
      (label == "1" ? clicked : skipped).push_back(aff);
    }
    EXPECT_EQ(distinct.size(), 8u);
    ASSERT_FALSE(clicked.empty());
    ASSERT_FALSE(skipped.empty());
    for (float c : clicked) {
      for (float s : skipped) {
        pairs += 1;
        wins += c > s ? 1 : (c == s ? 0.5 : 0);
      }
    }
  }
  EXPECT_GT(wins / pairs, 0.75) << "clicks follow the planted interests";
}

TEST(SyntheticModelTest, RejectsBadOptions) {
  TempDir tmp;
  SyntheticModelOptions o = SmallModel(tmp / "m");
  o.items = 0;
  EXPECT_EQ(GenerateSyntheticModel(o).code(),
            absl::StatusCode::kInvalidArgument);
  o = SmallModel(tmp / "m");
  o.impression_size = 500;
  EXPECT_THAT(std::string(GenerateSyntheticModel(o).message()),
              HasSubstr("impression_size"));
  o = SmallModel("");
  EXPECT_THAT(std::string(GenerateSyntheticModel(o).message()),
              HasSubstr("--out"));
}

}  // namespace
}  // namespace embsum::datagen
