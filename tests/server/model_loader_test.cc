#include "server/model_loader.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datagen/synthetic_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "scoring/cpu_scorer.h"
#include "scoring/scorer.h"
#include "store/data_dir.h"
#include "tests/server/test_support.h"

namespace embsum::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Outcome = ModelLoader::Outcome;

class ModelLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = embsum::testing::MakeTempDir("model-loader");
    data_dir_ = root_ + "/data";
    ASSERT_TRUE(Ingest(MakeModel("v1", 1, 40)).ok());
    loader_ = std::make_unique<ModelLoader>(data_dir_, store::DataDirOptions{},
                                            scorer_.get(), &registry_);
  }

  // A model artifact of `items` items; returns its directory.
  std::string MakeModel(const std::string& version, uint64_t seed,
                        uint64_t items) {
    datagen::SyntheticModelOptions o = embsum::testing::SmallModelOptions();
    o.out_dir = root_ + "/model-" + version;
    o.model_version = version;
    o.seed = seed;
    o.items = items;
    EXPECT_TRUE(datagen::GenerateSyntheticModel(o).ok());
    return o.out_dir;
  }
  absl::Status Ingest(const std::string& model_dir) {
    store::IngestOptions o;
    o.model_dir = model_dir;
    o.data_dir = data_dir_;
    o.force = true;
    return store::Ingest(o);
  }
  std::string Metrics() const { return registry_.Serialize(); }

  std::string root_;
  std::string data_dir_;
  std::unique_ptr<scoring::Scorer> scorer_ = scoring::MakeCpuScorer();
  metrics::Registry registry_;
  std::unique_ptr<ModelLoader> loader_;
};

TEST_F(ModelLoaderTest, ReloadsOnlyAReplacedDirectory) {
  auto first = loader_->Load();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->manifest().model_version, "v1");
  EXPECT_EQ((*first)->generation(), 1u);
  EXPECT_EQ(loader_->ReloadIfChanged(false).outcome, Outcome::kUnchanged);
  EXPECT_EQ(loader_->ReloadIfChanged(true).outcome, Outcome::kUnchanged);

  ASSERT_TRUE(Ingest(MakeModel("v2", 2, 60)).ok());
  ModelLoader::Reload reload = loader_->ReloadIfChanged(false);
  ASSERT_EQ(reload.outcome, Outcome::kReloaded) << reload.status;
  EXPECT_EQ(reload.model->manifest().model_version, "v2");
  EXPECT_EQ(reload.model->generation(), 2u);
  EXPECT_EQ(reload.model->items().Current()->size(), 60u);
  // Both models stay usable side by side (the old one from its open files).
  EXPECT_EQ((*first)->items().Current()->size(), 40u);
  EXPECT_EQ(loader_->ReloadIfChanged(true).outcome, Outcome::kUnchanged);

  // Writes to the reloaded model land in the directory on disk.
  store::ItemUpsert item;
  item.item_id = "fresh";
  const store::ModelManifest& m = reload.model->manifest();
  item.cpe.assign(size_t{m.item_codes} * m.dim, 0.5f);
  if (m.item_keys) item.keys = item.cpe;
  ASSERT_TRUE(reload.model->items().Upsert({&item, 1}).ok());
  reload.model.reset();
  first->reset();
  auto reopened = store::DataDir::Open(data_dir_, {});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE((*reopened)->items().Current()->FindRow("fresh").has_value());
  EXPECT_THAT(Metrics(),
              HasSubstr("embsum_model_reloads_total{result=\"ok\"} 1\n"));
}

TEST_F(ModelLoaderTest, RefusesACorruptDirectoryAndRetriesItOnlyWhenForced) {
  auto first = loader_->Load();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(Ingest(MakeModel("bad", 3, 40)).ok());
  std::string snapshot;
  {
    std::ifstream current(data_dir_ + "/items/CURRENT");
    std::getline(current, snapshot);
  }
  std::ofstream(data_dir_ + "/items/" + snapshot + "/meta.json") << "{oops";

  ModelLoader::Reload reload = loader_->ReloadIfChanged(false);
  EXPECT_EQ(reload.outcome, Outcome::kFailed);
  EXPECT_EQ(reload.model, nullptr);
  // Named by the path the operator gave, not the descriptor it was read by.
  EXPECT_THAT(reload.status.message(), HasSubstr(data_dir_ + "/items/"));
  EXPECT_THAT(reload.status.message(), HasSubstr("meta.json"));
  EXPECT_THAT(reload.status.message(), Not(HasSubstr("/proc/self/fd")));
  // A poll does not retry the same bad directory; SIGHUP does.
  EXPECT_EQ(loader_->ReloadIfChanged(false).outcome, Outcome::kUnchanged);
  EXPECT_EQ(loader_->ReloadIfChanged(true).outcome, Outcome::kFailed);
  // The model in service is untouched.
  EXPECT_EQ((*first)->manifest().model_version, "v1");
  EXPECT_EQ((*first)->items().Current()->size(), 40u);
  EXPECT_THAT(Metrics(),
              HasSubstr("embsum_model_reloads_total{result=\"failed\"} 2\n"));
  EXPECT_THAT(Metrics(), HasSubstr("embsum_model_reload_failing 1\n"));

  // Fixed by a new ingest: taken by the next poll.
  ASSERT_TRUE(Ingest(MakeModel("v3", 4, 50)).ok());
  reload = loader_->ReloadIfChanged(false);
  ASSERT_EQ(reload.outcome, Outcome::kReloaded) << reload.status;
  EXPECT_EQ(reload.model->manifest().model_version, "v3");
  EXPECT_THAT(Metrics(), HasSubstr("embsum_model_reload_failing 0\n"));
}

TEST_F(ModelLoaderTest, AMissingDirectoryIsReportedOnlyWhenForced) {
  auto first = loader_->Load();
  ASSERT_TRUE(first.ok()) << first.status();
  std::filesystem::rename(data_dir_, root_ + "/moved");
  EXPECT_EQ(loader_->ReloadIfChanged(false).outcome, Outcome::kUnchanged);
  ModelLoader::Reload reload = loader_->ReloadIfChanged(true);
  EXPECT_EQ(reload.outcome, Outcome::kFailed);
  EXPECT_THAT(reload.status.message(), HasSubstr(data_dir_));
  EXPECT_EQ((*first)->items().Current()->size(), 40u);  // still serving
}

// A CPU scorer that records each DispatchOn: the arena's identity and size
// and the served shape it was given.
class RecordingScorer : public scoring::Scorer {
 public:
  struct Call {
    uint64_t arena = 0;
    size_t rows = 0;
    uint32_t user_codes = 0;
    bool queries = false;
  };
  std::string_view backend() const override { return inner_->backend(); }
  scoring::KernelInfo kernel_info(scoring::DType dtype) const override {
    return inner_->kernel_info(dtype);
  }
  scoring::Status Score(const scoring::UserView& user,
                        const scoring::ItemArena& arena,
                        std::span<const uint32_t> rows, std::span<float> scores,
                        std::span<int32_t> top_codes) const override {
    return inner_->Score(user, arena, rows, scores, top_codes);
  }
  scoring::Status ScoreAllTopK(
      const scoring::UserView& user, const scoring::ItemArena& arena,
      std::span<const uint8_t> live, uint32_t k,
      std::vector<scoring::ScoredRow>* out) const override {
    return inner_->ScoreAllTopK(user, arena, live, k, out);
  }
  scoring::Status DispatchOn(const scoring::ItemArena& arena,
                             const scoring::DispatchOptions& options) override {
    calls.push_back(
        {arena.identity(), arena.size(), options.user_codes, options.queries});
    return inner_->DispatchOn(arena, options);
  }
  std::vector<Call> calls;

 private:
  std::unique_ptr<scoring::Scorer> inner_ = scoring::MakeCpuScorer(
      scoring::CpuScorerOptions{.threads = 1, .measure_dispatch = false});
};

// Dispatch where the server runs: the families are timed on the loaded
// model's arena and shape at start-up and again on every reload, and the
// fastest (here by an injected timer) is kept.
TEST_F(ModelLoaderTest, MeasuresTheScorerDispatchAtLoadAndOnEveryReload) {
  if (!scoring::CpuIsaSupported(scoring::CpuIsa::kAvx2) ||
      !scoring::CpuIsaSupported(scoring::CpuIsa::kAvx512)) {
    GTEST_SKIP() << "needs the avx2 and avx512 kernel families";
  }
  // Two families with their own fp32 code.
  const std::string narrow = "avx2", wide = "avx512";
  auto fastest = std::make_shared<std::string>(narrow);
  RecordingScorer scorer;
  ScorerDispatchOptions dispatch;
  dispatch.budget = absl::Milliseconds(200);
  dispatch.candidates = 16;
  dispatch.timer = [fastest](std::string_view kernel,
                             const std::function<void()>& call) {
    call();
    return kernel == *fastest ? 1e-3 : 2e-3;
  };
  ModelLoader loader(data_dir_, {}, &scorer, nullptr, dispatch);
  auto first = loader.Load();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(scorer.calls.size(), 1u);
  const scoring::ItemArena& arena1 = (*first)->items().Current()->arena();
  EXPECT_EQ(scorer.calls[0].arena, arena1.identity());
  EXPECT_EQ(scorer.calls[0].rows, 40u);
  EXPECT_EQ(scorer.calls[0].user_codes, (*first)->manifest().user_codes);
  EXPECT_EQ(scorer.calls[0].queries, (*first)->manifest().user_queries);
  scoring::KernelInfo info = scorer.kernel_info(scoring::DType::kFloat32);
  EXPECT_EQ(info.kernel, narrow);
  EXPECT_FALSE(info.families.empty());

  // An unchanged directory is not re-measured; a replaced one is.
  EXPECT_EQ(loader.ReloadIfChanged(true).outcome, Outcome::kUnchanged);
  EXPECT_EQ(scorer.calls.size(), 1u);
  *fastest = wide;
  ASSERT_TRUE(Ingest(MakeModel("v2", 2, 60)).ok());
  ModelLoader::Reload reload = loader.ReloadIfChanged(false);
  ASSERT_EQ(reload.outcome, Outcome::kReloaded) << reload.status;
  ASSERT_EQ(scorer.calls.size(), 2u);
  EXPECT_EQ(scorer.calls[1].arena,
            reload.model->items().Current()->arena().identity());
  EXPECT_EQ(scorer.calls[1].rows, 60u);
  info = scorer.kernel_info(scoring::DType::kFloat32);
  EXPECT_EQ(info.kernel, wide);
  EXPECT_EQ(info.families.front().kernel, wide);
}

TEST_F(ModelLoaderTest, ZeroDispatchBudgetMeasuresNothing) {
  RecordingScorer scorer;
  ModelLoader loader(data_dir_, {}, &scorer, nullptr);  // default: off
  auto first = loader.Load();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(scorer.calls.empty());
  EXPECT_TRUE(scorer.kernel_info(scoring::DType::kFloat32).families.empty());
}

TEST_F(ModelLoaderTest, StartUpRefusesAMissingDirectory) {
  ModelLoader loader(root_ + "/nowhere", {}, scorer_.get(), nullptr);
  auto model = loader.Load();
  EXPECT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr(root_ + "/nowhere"));
}

}  // namespace
}  // namespace embsum::server
