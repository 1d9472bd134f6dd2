// Crash safety with real child processes killed by SIGKILL: in the middle of
// an ingest (the data directory is then either the old or the new one) and
// in the middle of upserts (every acknowledged upsert survives).
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/data_dir.h"
#include "store_test_util.h"

namespace embsum::store {
namespace {

namespace fs = std::filesystem;
using testing::Child;
using testing::SmallModel;
using testing::TempDir;

void IngestOrDie(const std::string& model, const std::string& data) {
  IngestOptions o;
  o.model_dir = model;
  o.data_dir = data;
  o.force = true;
  absl::Status s = Ingest(o);
  ASSERT_TRUE(s.ok()) << s;
}

float FirstValue(const DataDir& dir) {
  UserEmbedding e;
  EXPECT_TRUE(dir.users().Get("U1", &e).ok());
  return e.upe.empty() ? 0.0f : e.upe[0];
}

// Reads lines until one starts with `prefix` (false at end of output).
bool SkipTo(Child& child, const std::string& prefix) {
  std::string line;
  while (child.ReadLine(&line)) {
    if (line.find(prefix) != std::string::npos) return true;
  }
  return false;
}

TEST(CrashTest, KilledIngestLeavesOldOrNewDirectory) {
  TempDir tmp;
  datagen::SyntheticModelOptions old_model = SmallModel(tmp / "old", 1);
  datagen::SyntheticModelOptions new_model = SmallModel(tmp / "new", 2);
  new_model.users = 1500;
  new_model.items = 1500;
  new_model.impressions = 0;
  ASSERT_TRUE(GenerateSyntheticModel(old_model).ok());
  ASSERT_TRUE(GenerateSyntheticModel(new_model).ok());
  float old_value, new_value;
  {
    IngestOrDie(tmp / "new", tmp / "probe");
    auto d = DataDir::Open(tmp / "probe", DataDirOptions{});
    ASSERT_TRUE(d.ok());
    new_value = FirstValue(**d);
  }
  IngestOrDie(tmp / "old", tmp / "data");
  {
    auto d = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(d.ok());
    old_value = FirstValue(**d);
  }
  ASSERT_NE(old_value, new_value);

  // Kill points: during users, during items, after the last progress line
  // (swap and fsync), and at exit.
  const char* kill_after[] = {"users: 10/", "users: 1400/", "items: 300/",
                              "items: 1500 rows done", nullptr};
  int saw_old = 0, saw_new = 0;
  for (const char* point : kill_after) {
    SCOPED_TRACE(point == nullptr ? "completion" : point);
    Child child(
        {EMBSUM_INGEST_BIN, "--model_dir=" + (tmp / "new"),
         "--data_dir=" + (tmp / "data"), "--force", "--progress_interval_s=0"},
        /*merge_stderr=*/true);
    if (point != nullptr) {
      ASSERT_TRUE(SkipTo(child, point));
      child.Kill();
    } else {
      child.ReadRest();
    }
    int status = child.Wait();
    auto d = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(d.ok()) << d.status();
    float v = FirstValue(**d);
    EXPECT_TRUE(v == old_value || v == new_value) << v;
    uint64_t users = (*d)->users().size();
    uint64_t items = (*d)->items().Current()->size();
    if (v == old_value) {
      ++saw_old;
      EXPECT_EQ(users, 40u);
      EXPECT_EQ(items, 120u);
    } else {
      ++saw_new;
      EXPECT_EQ(users, 1500u);
      EXPECT_EQ(items, 1500u);
    }
    if (point == nullptr) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      EXPECT_EQ(v, new_value);
    }
    d->reset();
    // Put the old state back for the next kill point.
    IngestOrDie(tmp / "old", tmp / "data");
  }
  EXPECT_GE(saw_old, 3) << "kills during the build keep the old directory";
  EXPECT_GE(saw_new, 1);
  // Build directories of killed ingests are cleaned by the next ingest.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"data", "new", "old", "probe"}));
}

// Starts the helper, waits for `acks` acknowledgements, kills it; returns
// the last acknowledged index.
int RunAndKill(const std::string& mode, const std::string& data, int acks) {
  Child child({EMBSUM_CRASH_HELPER, mode, data, "100000"});
  std::string line;
  int last = -1;
  while (last + 1 < acks && child.ReadLine(&line)) {
    EXPECT_EQ(line, "ack " + std::to_string(last + 1));
    ++last;
  }
  child.Kill();
  child.Wait();
  return last;
}

TEST(CrashTest, AcknowledgedUserUpsertsSurviveSigkill) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  IngestOrDie(tmp / "model", tmp / "data");
  for (int acks : {1, 17, 40}) {
    SCOPED_TRACE(acks);
    int last = RunAndKill("users", tmp / "data", acks);
    ASSERT_EQ(last, acks - 1);
    auto d = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(d.ok()) << d.status();
    uint64_t present = 0;
    for (int i = 0;; ++i) {
      UserEmbedding e;
      absl::Status s = (*d)->users().Get("crash-" + std::to_string(i), &e);
      if (absl::IsNotFound(s)) {
        EXPECT_GT(i, last) << "acknowledged user " << i << " lost";
        break;
      }
      ASSERT_TRUE(s.ok()) << s;
      ++present;
      EXPECT_EQ(e.upe[0], static_cast<float>(i));
      EXPECT_EQ(e.upe[5], i + 5 / 1000.0f);
      EXPECT_EQ(*(*d)->users().GetSummary("crash-" + std::to_string(i)),
                "s" + std::to_string(i));
    }
    EXPECT_GE(present, static_cast<uint64_t>(last + 1));
    EXPECT_EQ((*d)->users().size(), 40u + present) << "count is exact";
  }
}

TEST(CrashTest, AcknowledgedItemUpsertsAndDeletesSurviveSigkill) {
  TempDir tmp;
  ASSERT_TRUE(GenerateSyntheticModel(SmallModel(tmp / "model")).ok());
  IngestOrDie(tmp / "model", tmp / "data");
  for (int acks : {2, 13, 31}) {
    SCOPED_TRACE(acks);
    int last = RunAndKill("items", tmp / "data", acks);
    ASSERT_EQ(last, acks - 1);
    auto d = DataDir::Open(tmp / "data", DataDirOptions{});
    ASSERT_TRUE(d.ok()) << d.status();
    auto snap = (*d)->items().Current();
    const size_t nd = 2 * 16;
    std::vector<float> cpe(nd), keys(nd);
    uint64_t present = 0;
    for (int i = 0;; ++i) {
      auto row = snap->FindRow("crash-" + std::to_string(i));
      if (!row) {
        EXPECT_GT(i, last) << "acknowledged item " << i << " lost";
        break;
      }
      ++present;
      snap->arena().ReadRow(*row, cpe, keys);
      EXPECT_EQ(cpe[0], static_cast<float>(i));
      EXPECT_EQ(keys[7], -(i + 7 / 1000.0f));
    }
    uint64_t deleted = 0;
    for (int i = 0; i < 120; ++i) {
      if (!snap->FindRow("N" + std::to_string(i + 1))) {
        ++deleted;
        EXPECT_EQ(i % 3, 2) << "only the helper's victims are gone";
      } else if (i % 3 == 2 && i <= last) {
        ADD_FAILURE() << "acknowledged delete of N" << i + 1 << " lost";
      }
    }
    EXPECT_EQ(snap->size(), 120u + present - deleted);
    // Exactly one snapshot directory remains after recovery.
    int snapshots = 0;
    for (const auto& e : fs::directory_iterator(tmp / "data/items")) {
      snapshots += e.path().filename().string().rfind("snapshot-", 0) == 0;
    }
    EXPECT_EQ(snapshots, 1);
  }
}

}  // namespace
}  // namespace embsum::store
