#include "store/user_store.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store/npy.h"
#include "store/user_record.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

using ::testing::HasSubstr;
using testing::SmallModel;
using testing::TempDir;

class UserStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp_ / "model")).ok());
    IngestOptions o;
    o.model_dir = tmp_ / "model";
    o.data_dir = tmp_ / "data";
    ASSERT_TRUE(Ingest(o).ok());
    Reopen();
  }
  void Reopen() {
    dir_.reset();
    auto d = DataDir::Open(tmp_ / "data", DataDirOptions{});
    ASSERT_TRUE(d.ok()) << d.status();
    dir_ = std::move(*d);
  }
  UserStore& users() { return dir_->users(); }
  size_t md() const {
    return size_t{dir_->manifest().user_codes} * dir_->manifest().dim;
  }
  UserUpsert MakeUser(const std::string& id, float base) {
    UserUpsert u;
    u.user_id = id;
    u.upe.resize(md());
    u.queries.resize(md());
    for (size_t i = 0; i < md(); ++i) {
      u.upe[i] = base + static_cast<float>(i);
      u.queries[i] = base - static_cast<float>(i);
    }
    return u;
  }

  TempDir tmp_;
  std::unique_ptr<DataDir> dir_;
};

TEST_F(UserStoreTest, IngestedUsersMatchTheArtifact) {
  auto upe = NpyArray::Open(tmp_ / "model/users/upe.npy", "upe");
  auto queries = NpyArray::Open(tmp_ / "model/users/queries.npy", "q");
  ASSERT_TRUE(upe.ok() && queries.ok());
  EXPECT_EQ(users().size(), 40u);
  std::vector<float> want(md());
  for (uint64_t row : {0, 17, 39}) {
    UserEmbedding e;
    std::string id = "U" + std::to_string(row + 1);
    ASSERT_TRUE(users().Get(id, &e).ok());
    EXPECT_EQ(e.user_codes, 3u);
    EXPECT_EQ(e.dim, 16u);
    (*upe)->ReadRow(row, want);
    EXPECT_EQ(e.upe, want);
    (*queries)->ReadRow(row, want);
    EXPECT_EQ(e.queries, want);
    EXPECT_EQ(e.view().effective_queries().data(), e.queries.data());
  }
  auto summary = users().GetSummary("U1");
  ASSERT_TRUE(summary.ok());
  EXPECT_FALSE(summary->empty());
}

TEST_F(UserStoreTest, UnknownUserIsNotFound) {
  UserEmbedding e;
  absl::Status s = users().Get("nobody", &e);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"nobody\""));
  EXPECT_EQ(users().GetSummary("nobody").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(UserStoreTest, MultiGetMixesHitsAndMisses) {
  std::vector<std::string_view> ids = {"U2", "nobody", "U2", "U40"};
  std::vector<UserEmbedding> out;
  std::vector<absl::Status> statuses;
  users().MultiGet(ids, &out, &statuses);
  ASSERT_EQ(out.size(), 4u);
  ASSERT_EQ(statuses.size(), 4u);
  EXPECT_TRUE(statuses[0].ok());
  EXPECT_EQ(statuses[1].code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(statuses[2].ok());
  EXPECT_TRUE(statuses[3].ok());
  UserEmbedding single;
  ASSERT_TRUE(users().Get("U40", &single).ok());
  EXPECT_EQ(out[3].upe, single.upe);
  EXPECT_EQ(out[0].upe, out[2].upe);
}

TEST_F(UserStoreTest, UpsertInsertsReplacesAndCountsAcrossReopen) {
  std::vector<UserUpsert> batch = {MakeUser("new-1", 1), MakeUser("U1", 2),
                                   MakeUser("new-1", 3)};
  batch[1].summary = "changed";
  ASSERT_TRUE(users().Upsert(batch).ok());
  EXPECT_EQ(users().size(), 41u);
  Reopen();
  EXPECT_EQ(users().size(), 41u);
  UserEmbedding e;
  ASSERT_TRUE(users().Get("new-1", &e).ok());
  EXPECT_EQ(e.upe, batch[2].upe) << "last record of a batch wins";
  ASSERT_TRUE(users().Get("U1", &e).ok());
  EXPECT_EQ(e.upe, batch[1].upe);
  EXPECT_EQ(e.queries, batch[1].queries);
  EXPECT_EQ(*users().GetSummary("U1"), "changed");
  EXPECT_EQ(*users().GetSummary("new-1"), "");
  // An empty summary clears it.
  UserUpsert clear = MakeUser("U1", 4);
  clear.summary = "";
  ASSERT_TRUE(users().Upsert({&clear, 1}).ok());
  EXPECT_EQ(*users().GetSummary("U1"), "");
  EXPECT_EQ(users().size(), 41u);
}

TEST_F(UserStoreTest, InvalidBatchWritesNothing) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::function<void(UserUpsert*)> mutate;
    std::string message;
  } cases[] = {
      {[](UserUpsert* u) { u->user_id = ""; }, "user record 1: empty id"},
      {[](UserUpsert* u) { u->upe.pop_back(); },
       "user record 1 (\"bad\"): upe has 47 values; want user_codes*dim = "
       "3*16 = 48"},
      {[](UserUpsert* u) { u->queries.resize(5); },
       "queries has 5 values; want user_codes*dim = 3*16 = 48"},
      // One rule for users and items (store/embedding_rules.h): the model
      // has user queries, so a record must carry them.
      {[](UserUpsert* u) { u->queries.clear(); },
       "user record 1 (\"bad\"): queries missing; the model has user queries "
       "(user_codes*dim = 3*16 = 48 values)"},
      {[&](UserUpsert* u) { u->upe[20] = nan; },
       "upe[20] is NaN (vector 1, element 4)"},
      {[&](UserUpsert* u) { u->queries[47] = -inf; },
       "queries[47] is Inf (vector 2, element 15)"},
      {[](UserUpsert* u) { u->summary = std::string("\xff"); },
       "summary is not valid UTF-8"},
  };
  for (const auto& c : cases) {
    std::vector<UserUpsert> batch = {MakeUser("ok-user", 1),
                                     MakeUser("bad", 2)};
    c.mutate(&batch[1]);
    absl::Status s = users().Upsert(batch);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
    UserEmbedding e;
    EXPECT_EQ(users().Get("ok-user", &e).code(), absl::StatusCode::kNotFound)
        << "nothing of an invalid batch is written";
    EXPECT_EQ(users().size(), 40u);
  }
}

// Item 6: a model without user queries refuses records that carry them,
// as a model without item keys refuses keys.
TEST(UserStoreRuleTest, QueriesOnlyWhenTheModelHasThem) {
  TempDir tmp;
  SyntheticModelOptions model = SmallModel(tmp / "model");
  model.user_queries = false;
  ASSERT_TRUE(GenerateSyntheticModel(model).ok());
  IngestOptions o;
  o.model_dir = tmp / "model";
  o.data_dir = tmp / "data";
  ASSERT_TRUE(Ingest(o).ok());
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{});
  ASSERT_TRUE(dir.ok()) << dir.status();
  UserUpsert u;
  u.user_id = "with-queries";
  u.upe.assign(48, 0.5f);
  u.queries.assign(48, 0.25f);
  absl::Status s = (*dir)->users().Upsert({&u, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("queries given (48 values) but the model has no user "
                        "queries"));
  u.queries.clear();
  EXPECT_TRUE((*dir)->users().Upsert({&u, 1}).ok());
}

// Item 7: the embedding and the summary come from one moment. The hook
// upserts a new embedding and summary between the two reads; both reads
// still see the old version.
TEST(UserStoreSnapshotTest, EmbeddingAndSummaryAreReadTogether) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  IngestOptions o;
  o.model_dir = tmp / "model";
  o.data_dir = tmp / "data";
  ASSERT_TRUE(Ingest(o).ok());
  UserStore* store = nullptr;
  int writes = 0;
  auto make = [](float value, const std::string& summary) {
    UserUpsert u;
    u.user_id = "u-snap";
    u.upe.assign(48, value);
    u.queries.assign(48, value);
    u.summary = summary;
    return u;
  };
  DataDirOptions options;
  options.users.between_reads_for_testing = [&] {
    if (writes > 0) return;
    ++writes;
    UserUpsert next = make(2.0f, "second");
    ASSERT_TRUE(store->Upsert({&next, 1}).ok());
  };
  auto dir = DataDir::Open(tmp / "data", options);
  ASSERT_TRUE(dir.ok()) << dir.status();
  store = &(*dir)->users();
  UserUpsert first = make(1.0f, "first");
  ASSERT_TRUE(store->Upsert({&first, 1}).ok());
  UserEmbedding e;
  std::string summary;
  ASSERT_TRUE(store->GetWithSummary("u-snap", &e, &summary).ok());
  EXPECT_EQ(writes, 1) << "the hook ran between the reads";
  EXPECT_EQ(e.upe[0], 1.0f);
  EXPECT_EQ(summary, "first") << "the summary of the same version";
  ASSERT_TRUE(store->GetWithSummary("u-snap", &e, &summary).ok());
  EXPECT_EQ(e.upe[0], 2.0f);
  EXPECT_EQ(summary, "second");
  // No summary asked: the embedding alone; unknown users are NotFound.
  ASSERT_TRUE(store->GetWithSummary("u-snap", &e, nullptr).ok());
  EXPECT_EQ(store->GetWithSummary("nobody", &e, &summary).code(),
            absl::StatusCode::kNotFound);
}

TEST(UserRecordTest, RoundTripsAndRejectsCorruption) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<float> q = {-1, -2, -3, -4, -5, -6};
  std::string rec = EncodeUserRecord(2, 3, a, q);
  UserEmbedding e;
  ASSERT_TRUE(DecodeUserRecord(rec, 2, 3, "u", &e).ok());
  EXPECT_EQ(e.upe, a);
  EXPECT_EQ(e.queries, q);
  // float16 raw rows.
  const uint16_t halves[] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
  std::string rec16 =
      EncodeUserRecordRaw(2, 3, NpyDType::kFloat16,
                          reinterpret_cast<const std::byte*>(halves), nullptr);
  ASSERT_TRUE(DecodeUserRecord(rec16, 2, 3, "u", &e).ok());
  EXPECT_EQ(e.upe, a);
  EXPECT_TRUE(e.queries.empty());
  // Corruptions: DataLoss, never a crash.
  for (std::string bad : {rec.substr(0, 5), rec.substr(0, rec.size() - 1),
                          std::string("\x02") + rec.substr(1)}) {
    EXPECT_EQ(DecodeUserRecord(bad, 2, 3, "u", &e).code(),
              absl::StatusCode::kDataLoss);
  }
  EXPECT_THAT(std::string(DecodeUserRecord(rec, 3, 2, "\"u\"", &e).message()),
              HasSubstr("shape 2x3 but the model is 3x2"));
}

}  // namespace
}  // namespace embsum::store
