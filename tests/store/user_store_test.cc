#include "store/user_store.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store/internal/npy.h"
#include "store/internal/user_record.h"
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

TEST_F(UserStoreTest, SecondOpenOfAHeldDirectorySaysItIsHeld) {
  auto second = DataDir::Open(tmp_ / "data", DataDirOptions{});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("held by another process"));
  EXPECT_THAT(second.status().message(), HasSubstr(tmp_ / "data"));
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

TEST_F(UserStoreTest, LogSequenceAndOnlineWritesAreKeptWithTheUsers) {
  EXPECT_EQ(users().applied_log_sequence(), 0u);
  EXPECT_EQ(users().online_writes(), 0u);
  std::vector<UserUpsert> batch = {MakeUser("new-1", 1), MakeUser("U1", 2)};
  ASSERT_TRUE(users().Upsert(batch, WriteStamp{7}).ok());
  EXPECT_EQ(users().applied_log_sequence(), 7u);
  EXPECT_EQ(users().online_writes(), 2u);
  // A sequence alone (a skipped message) moves it, writes no user.
  ASSERT_TRUE(users().Upsert({}, WriteStamp{9}).ok());
  // A local write leaves the sequence as it is.
  UserUpsert local = MakeUser("new-2", 3);
  ASSERT_TRUE(users().Upsert({&local, 1}).ok());
  Reopen();
  EXPECT_EQ(users().applied_log_sequence(), 9u);
  EXPECT_EQ(users().online_writes(), 3u);
  EXPECT_EQ(users().size(), 42u);
  // An invalid batch writes neither the users nor its sequence.
  UserUpsert bad = MakeUser("bad", 1);
  bad.upe.pop_back();
  EXPECT_FALSE(users().Upsert({&bad, 1}, WriteStamp{10}).ok());
  EXPECT_EQ(users().applied_log_sequence(), 9u);
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
  datagen::SyntheticModelOptions model = SmallModel(tmp / "model");
  model.user_queries = false;
  ASSERT_TRUE(datagen::GenerateSyntheticModel(model).ok());
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
  DataDirTestingHooks testing;
  testing.users.between_reads = [&] {
    if (writes > 0) return;
    ++writes;
    UserUpsert next = make(2.0f, "second");
    ASSERT_TRUE(store->Upsert({&next, 1}).ok());
  };
  auto dir = DataDir::Open(tmp / "data", DataDirOptions{}, testing);
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
                          std::string("\x03") + rec.substr(1)}) {
    EXPECT_EQ(DecodeUserRecord(bad, 2, 3, "u", &e).code(),
              absl::StatusCode::kDataLoss);
  }
  EXPECT_THAT(std::string(DecodeUserRecord(rec, 3, 2, "\"u\"", &e).message()),
              HasSubstr("shape 2x3 but the model is 3x2"));
}

// Relative rounding of one element: bf16 keeps 8 significant bits, fp16 11.
double HalfUlp(scoring::DType dtype) {
  return dtype == scoring::DType::kBFloat16 ? std::ldexp(1.0, -8)
                                            : std::ldexp(1.0, -11);
}

TEST(UserRecordTest, SixteenBitRecordsHalveTheBytesAndRoundToNearest) {
  const uint32_t m = 3, d = 37;  // d not a multiple of the vector width
  std::vector<float> a(m * d), q(m * d);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = std::sin(0.37 * static_cast<double>(i)) * 3.0f;
    q[i] = std::cos(0.11 * static_cast<double>(i)) * 1e-3f;
  }
  const std::string fp32 = EncodeUserRecord(m, d, a, q);
  EXPECT_EQ(fp32[0], static_cast<char>(kUserRecordVersion));
  for (scoring::DType dtype :
       {scoring::DType::kFloat16, scoring::DType::kBFloat16}) {
    const std::string rec = EncodeUserRecord(m, d, a, q, dtype);
    EXPECT_EQ(rec.size() - kUserRecordHeaderBytes,
              (fp32.size() - kUserRecordHeaderBytes) / 2);
    EXPECT_EQ(UserRecordDType(rec), dtype);
    UserEmbedding e;
    ASSERT_TRUE(DecodeUserRecord(rec, m, d, "u", &e).ok());
    ASSERT_EQ(e.upe.size(), a.size());
    ASSERT_EQ(e.queries.size(), q.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_LE(std::abs(e.upe[i] - a[i]), std::abs(a[i]) * HalfUlp(dtype))
          << scoring::DTypeName(dtype) << " upe " << i;
      // fp16 subnormals (below 2^-14) are spaced 2^-24 apart.
      EXPECT_LE(std::abs(e.queries[i] - q[i]),
                std::abs(q[i]) * HalfUlp(dtype) + std::ldexp(1.0, -25))
          << scoring::DTypeName(dtype) << " queries " << i;
    }
    // Decoding into the same buffers again gives the same values (reuse).
    const std::vector<float> first = e.upe;
    ASSERT_TRUE(DecodeUserRecord(rec, m, d, "u", &e).ok());
    EXPECT_EQ(e.upe, first);
  }
}

TEST(UserRecordTest, VersionOneRecordsStillReadAndKnowNoBf16) {
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::string v1 = EncodeUserRecord(2, 3, a, {});
  v1[0] = 1;  // what version 1 wrote for float32
  UserEmbedding e;
  ASSERT_TRUE(DecodeUserRecord(v1, 2, 3, "u", &e).ok());
  EXPECT_EQ(e.upe, a);
  std::string v1_bf16 =
      EncodeUserRecord(2, 3, a, {}, scoring::DType::kBFloat16);
  v1_bf16[0] = 1;
  absl::Status s = DecodeUserRecord(v1_bf16, 2, 3, "\"u\"", &e);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("unknown element type 2 for record version 1"));
}

TEST(UserRecordTest, ValuesThatOverflowSixteenBitsAreNamed) {
  std::vector<float> v = {1.0f, 65504.0f, -70000.0f, 2.0f};
  absl::Status s =
      CheckUserValuesFit(v, 2, scoring::DType::kFloat16, "upe", "record 4");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("record 4: upe[2] = -70000 (vector 1, element 0) does "
                        "not fit the users' storage type fp16"));
  EXPECT_TRUE(
      CheckUserValuesFit(v, 2, scoring::DType::kBFloat16, "upe", "r").ok());
  EXPECT_TRUE(
      CheckUserValuesFit(v, 2, scoring::DType::kFloat32, "upe", "r").ok());
  const std::vector<float> huge = {std::numeric_limits<float>::max()};
  EXPECT_FALSE(
      CheckUserValuesFit(huge, 1, scoring::DType::kBFloat16, "upe", "r").ok());
}

TEST(UserStoreDTypeTest, IngestRecordsTheUserDTypeAndUpsertsFollowIt) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  auto upe = NpyArray::Open(tmp / "model/users/upe.npy", "upe");
  ASSERT_TRUE(upe.ok());
  for (scoring::DType dtype :
       {scoring::DType::kFloat32, scoring::DType::kFloat16,
        scoring::DType::kBFloat16}) {
    const std::string name(scoring::DTypeName(dtype));
    IngestOptions o;
    o.model_dir = tmp / "model";
    o.data_dir = tmp / ("data-" + name);
    o.user_dtype = dtype;
    ASSERT_TRUE(Ingest(o).ok()) << name;
    auto dir = DataDir::Open(o.data_dir, DataDirOptions{});
    ASSERT_TRUE(dir.ok()) << dir.status();
    UserStore& users = (*dir)->users();
    EXPECT_EQ(users.user_dtype(), dtype) << name;
    const size_t md =
        size_t{(*dir)->manifest().user_codes} * (*dir)->manifest().dim;
    std::vector<float> want(md);
    (*upe)->ReadRow(4, want);
    UserEmbedding e;
    ASSERT_TRUE(users.Get("U5", &e).ok());
    const double tolerance =
        dtype == scoring::DType::kFloat32 ? 0.0 : HalfUlp(dtype);
    for (size_t i = 0; i < md; ++i) {
      EXPECT_LE(std::abs(e.upe[i] - want[i]), std::abs(want[i]) * tolerance)
          << name << " element " << i;
    }
    // An upsert is rounded to the store's type.
    UserUpsert u;
    u.user_id = "new-user";
    u.upe.assign(md, 1.0f + 1.0f / 1024.0f + 1.0f / 4096.0f);
    u.queries.assign(md, 0.5f);  // the model has user queries
    ASSERT_TRUE(users.Upsert({&u, 1}).ok());
    ASSERT_TRUE(users.Get("new-user", &e).ok());
    const float stored = e.upe[0];
    switch (dtype) {
      case scoring::DType::kFloat32:
        EXPECT_EQ(stored, u.upe[0]);
        break;
      case scoring::DType::kFloat16:  // 10 fraction bits
        EXPECT_EQ(stored, 1.0f + 1.0f / 1024.0f);
        break;
      case scoring::DType::kBFloat16:  // 7 fraction bits
        EXPECT_EQ(stored, 1.0f);
        break;
      case scoring::DType::kInt8:
        FAIL() << "int8 is not a user type";
    }
    // What a 16-bit store cannot hold is refused, naming the record.
    u.upe[5] = 1e5f;
    absl::Status s = users.Upsert({&u, 1});
    if (dtype == scoring::DType::kFloat16) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(s.message()),
                  HasSubstr("upe[5] = 100000 (vector 0, element 5) does not "
                            "fit the users' storage type fp16"));
    } else {
      EXPECT_TRUE(s.ok()) << s;
    }
  }
  // Without the option: the artifact's type (fp32 here).
  IngestOptions o;
  o.model_dir = tmp / "model";
  o.data_dir = tmp / "data-default";
  ASSERT_TRUE(Ingest(o).ok());
  auto dir = DataDir::Open(o.data_dir, DataDirOptions{});
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ((*dir)->users().user_dtype(), scoring::DType::kFloat32);
}

}  // namespace
}  // namespace embsum::store
