// Retrieve through RankerCore on small synthetic catalogues: exact = true
// against an independent full scan (ties, deletes, upserts in the ANN side
// index), the bound the threshold argument rests on, the recall tuner, the
// scan fallback, --max_retrieve_k and the full-scan concurrency limit.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/ranker_core.h"
#include "server/server_metrics.h"
#include "server/serving_model.h"
#include "store/data_dir.h"
#include "test_support.h"

namespace embsum::server {
namespace {

using ::testing::HasSubstr;

class RetrieveTest : public ::testing::Test {
 protected:
  void Build(const datagen::SyntheticModelOptions& shape,
             const store::DataDirOptions& data_options) {
    const std::string root = embsum::testing::MakeTempDir("retrieve-test");
    ASSERT_TRUE(embsum::testing::BuildTestModel(root, shape, &model_).ok());
    auto data = store::DataDir::Open(model_.data_dir, data_options);
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = std::make_shared<const ServingModel>(*std::move(data), 1);
    slot_ = std::make_unique<ModelSlot>(data_);
  }
  void SetUp() override {
    store::DataDirOptions data_options;
    data_options.items.ann.gpu = store::AnnOptions::Gpu::kOff;
    Build(embsum::testing::SmallModelOptions(), data_options);
  }
  std::unique_ptr<RankerCore> Core(const RankerCoreOptions& options) {
    return std::make_unique<RankerCore>(options, slot_.get(), scorer_.get(),
                                        nullptr);
  }

  // Independent full scan: Score() on every live row, sorted by score
  // descending, ties by row; `excluded` rows left out.
  std::vector<std::string> FullScan(const std::string& user_id, uint32_t k,
                                    const std::vector<std::string>& excluded,
                                    std::vector<float>* top_scores) {
    store::UserEmbedding user;
    EXPECT_TRUE(data_->users().Get(user_id, &user).ok());
    auto snap = data_->items().Current();
    std::vector<uint32_t> rows;
    for (uint32_t r = 0; r < snap->arena().size(); ++r) {
      if (!snap->live()[r]) continue;
      const std::string& id = snap->ItemId(r);
      if (std::find(excluded.begin(), excluded.end(), id) != excluded.end()) {
        continue;
      }
      rows.push_back(r);
    }
    std::vector<float> scores(rows.size());
    EXPECT_TRUE(
        scorer_->Score(user.view(), snap->arena(), rows, scores, {}).ok());
    std::vector<size_t> order(rows.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : rows[a] < rows[b];
    });
    std::vector<std::string> ids;
    for (size_t i = 0; i < order.size() && ids.size() < k; ++i) {
      ids.push_back(snap->ItemId(rows[order[i]]));
      if (top_scores != nullptr) top_scores->push_back(scores[order[i]]);
    }
    return ids;
  }

  static std::vector<std::string> Ids(const v1::RetrieveResponse& r) {
    std::vector<std::string> ids;
    for (const v1::ScoredItem& item : r.items()) ids.push_back(item.item_id());
    return ids;
  }

  absl::StatusOr<v1::RetrieveResponse> Retrieve(
      const RankerCore& core, const std::string& user, uint32_t k, bool exact,
      const std::vector<std::string>& exclude = {}) {
    v1::RetrieveRequest request;
    request.set_user_id(user);
    request.set_k(k);
    request.set_exact(exact);
    for (const std::string& id : exclude) request.add_exclude_item_ids(id);
    v1::RetrieveResponse response;
    absl::Status s = core.Retrieve(request, &response);
    if (!s.ok()) return s;
    return response;
  }

  // Mean recall@k of the default path against exact = true over all users.
  double MeanRecall(const RankerCore& core, uint32_t k) {
    double sum = 0;
    for (const std::string& user : model_.user_ids) {
      auto exact = Retrieve(core, user, k, true);
      auto approx = Retrieve(core, user, k, false);
      EXPECT_TRUE(exact.ok() && approx.ok());
      if (!exact.ok() || !approx.ok()) return 0;
      std::vector<std::string> truth = Ids(*exact);
      size_t hit = 0;
      for (const std::string& id : Ids(*approx)) {
        hit += std::count(truth.begin(), truth.end(), id);
      }
      sum += static_cast<double>(hit) / truth.size();
    }
    return sum / model_.user_ids.size();
  }

  embsum::testing::TestModel model_;
  std::shared_ptr<const ServingModel> data_;
  std::unique_ptr<ModelSlot> slot_;
  std::unique_ptr<scoring::Scorer> scorer_ =
      scoring::MakeCpuScorer({.threads = 1});
};

TEST_F(RetrieveTest, ExactEqualsAnIndependentFullScanForEveryUserAndK) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  auto core = Core(options);
  const uint64_t items = data_->items().Current()->size();
  for (const std::string& user : model_.user_ids) {
    for (uint32_t k : {1u, 2u, 7u, 50u, 299u, 300u}) {
      auto r = Retrieve(*core, user, k, true);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(Ids(*r), FullScan(user, k, {}, nullptr))
          << "user " << user << " k " << k;
      EXPECT_TRUE(r->certified_exact());
      EXPECT_EQ(r->scored_items(), items);
    }
  }
}

TEST_F(RetrieveTest, ExactScoresMatchTheFloat64Reference) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  auto core = Core(options);
  auto r = Retrieve(*core, model_.user_ids[3], 20, true);
  ASSERT_TRUE(r.ok());
  for (const v1::ScoredItem& item : r->items()) {
    const size_t i = std::find(model_.item_ids.begin(), model_.item_ids.end(),
                               item.item_id()) -
                     model_.item_ids.begin();
    const double want = model_.Reference(3, i).score;
    EXPECT_NEAR(item.score(), want, 1e-5 * std::max(1.0, std::abs(want)));
  }
}

TEST_F(RetrieveTest, TiesDeletesAndUpsertsInTheSideIndex) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  auto core = Core(options);
  const std::string user = model_.user_ids[5];
  const std::vector<std::string> before = FullScan(user, 10, {}, nullptr);
  // Three copies of the best item (equal scores: ties go by row, i.e.
  // upsert order after the original) land in the ANN side index.
  const size_t best =
      std::find(model_.item_ids.begin(), model_.item_ids.end(), before[0]) -
      model_.item_ids.begin();
  std::vector<store::ItemUpsert> copies;
  for (const char* id : {"copy-b", "copy-a", "copy-c"}) {
    store::ItemUpsert u;
    u.item_id = id;
    auto cpe = model_.cpe.row(best);
    u.cpe.assign(cpe.begin(), cpe.end());
    auto keys = model_.keys.row(best);
    u.keys.assign(keys.begin(), keys.end());
    copies.push_back(std::move(u));
  }
  ASSERT_TRUE(data_->items().Upsert(copies).ok());
  // Delete the second and third best.
  std::vector<std::string> gone = {before[1], before[2]};
  ASSERT_EQ(*data_->items().Delete(gone), 2u);
  std::vector<float> scores;
  const std::vector<std::string> want = FullScan(user, 8, {}, &scores);
  ASSERT_EQ(want[0], before[0]);
  EXPECT_EQ(want[1], "copy-b");
  EXPECT_EQ(want[2], "copy-a");
  EXPECT_EQ(want[3], "copy-c");
  EXPECT_EQ(scores[0], scores[3]);
  auto r = Retrieve(*core, user, 8, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Ids(*r), want);
  // Excluding ids (some unknown) drops them and still returns k items.
  std::vector<std::string> exclude = {before[0], "copy-a", "no-such-item"};
  r = Retrieve(*core, user, 8, true, exclude);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Ids(*r), FullScan(user, 8, exclude, nullptr));
  // Every user still matches the scan after the changes.
  for (const std::string& u : model_.user_ids) {
    auto all = Retrieve(*core, u, 25, true);
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(Ids(*all), FullScan(u, 25, {}, nullptr)) << u;
  }
  // The default path sees the side index: the copies are found and ranked
  // with the same tie order.
  auto approx = Retrieve(*core, user, 4, false);
  ASSERT_TRUE(approx.ok());
  EXPECT_FALSE(approx->certified_exact());
  EXPECT_EQ(Ids(*approx), FullScan(user, 4, {}, nullptr));
}

TEST_F(RetrieveTest, ScoreNeverExceedsTheBestSingleInnerProduct) {
  // score = sum w_ij K_ij <= max_ij K_ij (w is a distribution): the bound
  // behind the threshold argument, checked for every user and item.
  auto snap = data_->items().Current();
  const uint32_t m = model_.options.user_codes, n = model_.options.item_codes,
                 d = model_.options.dim;
  std::vector<uint32_t> rows;
  for (uint32_t r = 0; r < snap->arena().size(); ++r) {
    if (snap->live()[r]) rows.push_back(r);
  }
  std::vector<float> cpe(size_t{n} * d), keys(size_t{n} * d);
  for (size_t u = 0; u < model_.user_ids.size(); ++u) {
    store::UserEmbedding user;
    ASSERT_TRUE(data_->users().Get(model_.user_ids[u], &user).ok());
    std::vector<float> scores(rows.size());
    ASSERT_TRUE(
        scorer_->Score(user.view(), snap->arena(), rows, scores, {}).ok());
    for (size_t c = 0; c < rows.size(); ++c) {
      snap->arena().ReadRow(rows[c], cpe, keys);
      double bound = -1e300;
      for (uint32_t i = 0; i < m; ++i) {
        for (uint32_t j = 0; j < n; ++j) {
          double dot = 0;
          for (uint32_t x = 0; x < d; ++x) {
            dot += double{user.upe[size_t{i} * d + x]} * cpe[size_t{j} * d + x];
          }
          bound = std::max(bound, dot);
        }
      }
      EXPECT_LE(scores[c], bound + 1e-5 * std::max(1.0, std::abs(bound)))
          << "user " << u << " row " << rows[c];
    }
  }
}

TEST_F(RetrieveTest, DefaultPathFallsBackToACertifiedScan) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.ann_oversample = 4;
  options.retrieve_scan_fraction = 0.2;  // 300 items: fetch >= 60 scans
  auto core = Core(options);
  const std::string user = model_.user_ids[0];
  auto ann = Retrieve(*core, user, 10, false);  // fetch 40: ANN
  ASSERT_TRUE(ann.ok());
  EXPECT_FALSE(ann->certified_exact());
  EXPECT_EQ(ann->scored_items(), 40u);
  auto scan = Retrieve(*core, user, 15, false);  // fetch 60: scan
  ASSERT_TRUE(scan.ok());
  EXPECT_TRUE(scan->certified_exact());
  EXPECT_EQ(scan->scored_items(), 300u);
  EXPECT_EQ(Ids(*scan), FullScan(user, 15, {}, nullptr));
}

TEST_F(RetrieveTest, MaxRetrieveKIsSeparateFromMaxCandidates) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.max_candidates = 5;
  options.max_retrieve_k = 40;
  auto core = Core(options);
  const std::string user = model_.user_ids[0];
  EXPECT_TRUE(Retrieve(*core, user, 40, false).ok());
  EXPECT_TRUE(Retrieve(*core, user, 40, true).ok());
  auto too_big = Retrieve(*core, user, 41, false);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("--max_retrieve_k"));
  EXPECT_EQ(Retrieve(*core, user, 0, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::string> exclude(41, "x");
  auto excl = Retrieve(*core, user, 3, false, exclude);
  EXPECT_EQ(excl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(excl.status().message(), HasSubstr("exclude_item_ids"));
  EXPECT_EQ(Retrieve(*core, "nobody", 3, false).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RetrieveTest, FullScansBeyondTheLimitAreRefusedAndRankStillRuns) {
  absl::Notification in_scan, release;
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.max_concurrent_scans = 1;
  options.max_candidates = 10;  // the catalogue is larger: scans are counted
  bool first = true;
  auto core = Core(options);
  core->SetScanHookForTesting([&] {
    if (!first) return;
    first = false;
    in_scan.Notify();
    release.WaitForNotification();
  });
  const std::string user = model_.user_ids[1];
  absl::StatusOr<v1::RetrieveResponse> held;
  std::thread scan([&] { held = Retrieve(*core, user, 5, true); });
  in_scan.WaitForNotification();
  auto refused = Retrieve(*core, user, 5, true);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("--max_concurrent_retrieve_scans"));
  // ANN Retrieve and Rank are not limited.
  EXPECT_TRUE(Retrieve(*core, user, 5, false).ok());
  v1::RankRequest rank;
  rank.set_user_id(user);
  rank.add_candidate_ids(model_.item_ids[0]);
  v1::RankResponse ranked;
  EXPECT_TRUE(core->Rank(rank, &ranked).ok());
  release.Notify();
  scan.join();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(Retrieve(*core, user, 5, true).ok());
}

TEST_F(RetrieveTest, ScansOfACatalogueNoLargerThanARankAreNotLimited) {
  absl::Notification in_scan, release;
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.max_concurrent_scans = 1;
  ASSERT_LE(model_.item_ids.size(), options.max_candidates);
  bool first = true;
  auto core = Core(options);
  core->SetScanHookForTesting([&] {
    if (!first) return;
    first = false;
    in_scan.Notify();
    release.WaitForNotification();
  });
  const std::string user = model_.user_ids[1];
  absl::StatusOr<v1::RetrieveResponse> held;
  std::thread scan([&] { held = Retrieve(*core, user, 5, true); });
  in_scan.WaitForNotification();
  // A second scan while the first holds its place: admitted.
  auto second = Retrieve(*core, user, 5, true);
  EXPECT_TRUE(second.ok()) << second.status() << " (snapshot rows "
                           << data_->items().Current()->rows() << ")";
  release.Notify();
  scan.join();
  ASSERT_TRUE(held.ok()) << held.status();
}

class RetrieveTunerTest : public RetrieveTest {
 protected:
  void SetUp() override {
    datagen::SyntheticModelOptions shape = embsum::testing::SmallModelOptions();
    shape.items = 3000;
    shape.users = 40;
    shape.topics = 8;
    store::DataDirOptions data_options;
    data_options.items.ann.gpu = store::AnnOptions::Gpu::kOff;
    data_options.items.ann.flat_max_items = 1000;  // IVF
    data_options.items.ann.ivf_probes = 1;
    Build(shape, data_options);
  }
};

TEST_F(RetrieveTunerTest, ChosenParametersMeetTheTargetThroughRetrieve) {
  ASSERT_TRUE(data_->items().Current()->ann_shape().ivf);
  RankerCoreOptions options;
  options.retrieve_recall_target = 0.95;
  options.retrieve_tune_users = 40;  // every user: the sample is the test set
  options.retrieve_scan_fraction = 1.0;  // never fall back to a scan
  options.max_concurrent_scans = 0;
  std::vector<std::string> lines;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  auto core = Core(options);
  auto tuned = core->TuneRetrieve(nullptr);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_TRUE(tuned->met_target);
  EXPECT_EQ(tuned->users, 40u);
  EXPECT_GE(tuned->nprobe, 1u);
  EXPECT_GE(tuned->recall_at_10, 0.95);
  EXPECT_GE(tuned->recall_at_100, 0.95);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("retrieve tuner"));
  EXPECT_THAT(lines[0], HasSubstr("nprobe"));
  // Measured through the live path, independently of the tuner's own count.
  EXPECT_GE(MeanRecall(*core, 10), 0.95);
  EXPECT_GE(MeanRecall(*core, 100), 0.95);
  // It does not fetch the whole catalogue to get there.
  auto r = Retrieve(*core, model_.user_ids[0], 10, false);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->certified_exact());
  EXPECT_LT(r->scored_items(), 3000u);
}

TEST_F(RetrieveTunerTest, UntunedSingleProbeMissesWhatTheTunerFinds) {
  // The control: one IVF probe and no over-fetch is far from the target on
  // the same data, so the tuner's choice is what meets it.
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.ann_oversample = 1;
  options.retrieve_widen_factor = 1;  // no adaptive depth either
  options.retrieve_scan_fraction = 1.0;
  options.max_concurrent_scans = 0;
  auto core = Core(options);
  EXPECT_LT(MeanRecall(*core, 100), 0.95);
}

TEST_F(RetrieveTunerTest, AdaptiveDepthWidensWeakCallsAndCountsThem) {
  // The same weak setting with adaptive depth: calls whose top k came from
  // the far end of the single probe's list are widened, counted, and
  // recall rises.
  metrics::Registry registry;
  ServerMetrics metrics(&registry, "cpu");
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.ann_oversample = 1;
  options.retrieve_scan_fraction = 1.0;
  options.max_concurrent_scans = 0;
  options.retrieve_widen_factor = 1;
  RankerCore narrow(options, slot_.get(), scorer_.get(), &metrics);
  const double before = MeanRecall(narrow, 100);
  EXPECT_EQ(metrics.retrieve_widened().value(), 0.0);
  options.retrieve_widen_factor = 8;
  options.retrieve_widen_share = 0.3;
  RankerCore wide(options, slot_.get(), scorer_.get(), &metrics);
  const double after = MeanRecall(wide, 100);
  EXPECT_GT(metrics.retrieve_widened().value(), 0.0);
  EXPECT_GT(after, before);
}

// Every user code's list is its best item rows: with an fp32 per-interest
// index searched at every probe, each list is the items ordered by their
// best row's inner product with that code.
class PerInterestTest : public RetrieveTest {
 protected:
  void SetUp() override {
    datagen::SyntheticModelOptions shape = embsum::testing::SmallModelOptions();
    shape.items = 1500;
    store::DataDirOptions data_options;
    data_options.items.ann.gpu = store::AnnOptions::Gpu::kOff;
    data_options.items.ann.flat_max_items = 500;  // IVF
    data_options.items.ann.code_index = store::AnnOptions::CodeIndex::kFp32;
    Build(shape, data_options);
  }
};

TEST_F(PerInterestTest, ListsAreEachCodesBestRows) {
  auto snap = data_->items().Current();
  const store::ItemSnapshot::AnnShape shape = snap->ann_shape();
  ASSERT_TRUE(shape.code_index);
  ASSERT_TRUE(shape.code_ivf);
  EXPECT_EQ(shape.code_rows, 1500u * 3);
  EXPECT_EQ(shape.code_bytes, 1500u * 3 * (16 * 4 + 8));
  const uint32_t m = 4, n = 3, d = 16;
  for (size_t u = 0; u < 5; ++u) {
    store::UserEmbedding user;
    ASSERT_TRUE(data_->users().Get(model_.user_ids[u], &user).ok());
    store::ItemSnapshot::AnnLists lists;
    ASSERT_TRUE(
        snap->AnnCandidateLists(
                user.view(),
                store::ItemSnapshot::AnnQuery{
                    .k = 0,
                    .codes = 2,
                    .per_code = 5,
                    .code_nprobe = static_cast<uint32_t>(shape.code_lists)},
                &lists)
            .ok());
    ASSERT_EQ(lists.codes.size(), 2u);
    EXPECT_TRUE(lists.mean.empty());
    // The two longest codes, in order.
    std::vector<std::pair<float, uint32_t>> norms;
    for (uint32_t i = 0; i < m; ++i) {
      float sq = 0;
      for (uint32_t x = 0; x < d; ++x) {
        sq += user.upe[i * d + x] * user.upe[i * d + x];
      }
      norms.push_back({sq, i});
    }
    std::stable_sort(norms.begin(), norms.end(),
                     [](auto a, auto b) { return a.first > b.first; });
    for (size_t q = 0; q < 2; ++q) {
      const float* a = user.upe.data() + norms[q].second * d;
      std::vector<std::pair<float, uint32_t>> best;  // (max_j a.b_j, row)
      for (uint32_t row = 0; row < snap->rows(); ++row) {
        const size_t item =
            std::find(model_.item_ids.begin(), model_.item_ids.end(),
                      snap->ItemId(row)) -
            model_.item_ids.begin();
        ASSERT_LT(item, model_.item_ids.size());
        const float* b = model_.cpe.row(item).data();
        float top = -1e30f;
        for (uint32_t j = 0; j < n; ++j) {
          float dot = 0;
          for (uint32_t x = 0; x < d; ++x) dot += a[x] * b[j * d + x];
          top = std::max(top, dot);
        }
        best.push_back({top, row});
      }
      std::sort(best.begin(), best.end(),
                [](auto x, auto y) { return x.first > y.first; });
      ASSERT_EQ(lists.codes[q].size(), 5u);
      for (size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(lists.codes[q][i], best[i].second)
            << "user " << u << " code " << q << " position " << i;
      }
    }
  }
}

TEST_F(PerInterestTest, CodesLiftRecallOverTheMeanAloneAtTheSameDepth) {
  RankerCoreOptions options;
  options.retrieve_recall_target = 0;
  options.ann_oversample = 1;
  options.retrieve_widen_factor = 1;
  options.retrieve_scan_fraction = 1.0;
  options.max_concurrent_scans = 0;
  auto mean_only = Core(options);
  const double before = MeanRecall(*mean_only, 10);
  // The tuner's choice on all users, per-interest lists allowed.
  options.retrieve_recall_target = 0.99;
  options.retrieve_tail_target = 0.99;
  options.retrieve_tune_users = 24;
  options.retrieve_tune_seed = 9;
  auto tuned_core = Core(options);
  auto tuned = tuned_core->TuneRetrieve(nullptr);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_TRUE(tuned->met_target);
  EXPECT_EQ(tuned->seed, 9u);
  EXPECT_EQ(tuned->users, 24u);
  EXPECT_GE(tuned->at_10.p1, 0.99);
  EXPECT_GE(MeanRecall(*tuned_core, 10), before);
  EXPECT_GE(MeanRecall(*tuned_core, 10), 0.99);
}

// Shadow scans: sampled default answers are checked against an exact scan
// off the request path and their recall lands in
// embsum_retrieve_shadow_recall.
TEST_F(RetrieveTunerTest, ShadowRecallFallsInMetricsWithAWeakenedSetting) {
  auto shadow_mean = [&](const RankerCoreOptions& options, double* count) {
    metrics::Registry registry;
    ServerMetrics metrics(&registry, "cpu");
    RankerCore core(options, slot_.get(), scorer_.get(), &metrics);
    if (options.retrieve_recall_target > 0) {
      EXPECT_TRUE(core.TuneRetrieve(nullptr).ok());
    }
    for (const std::string& user : model_.user_ids) {
      EXPECT_TRUE(Retrieve(core, user, 20, false).ok());
      // One at a time: a full shadow queue would skip (and count) calls.
      core.WaitForShadowScans();
    }
    // Read back from the exposition, as Prometheus would.
    const std::string text = registry.Serialize();
    auto value = [&](const std::string& name) {
      const size_t at = text.find("\n" + name + " ");
      EXPECT_NE(at, std::string::npos) << name << " in\n" << text;
      if (at == std::string::npos) return -1.0;
      return std::stod(text.substr(at + name.size() + 2));
    };
    *count = value("embsum_retrieve_shadow_recall_count");
    return value("embsum_retrieve_shadow_recall_sum") / *count;
  };
  RankerCoreOptions weak;
  weak.retrieve_recall_target = 0;  // the deliberately weak setting
  weak.ann_oversample = 1;
  weak.retrieve_widen_factor = 1;
  weak.retrieve_scan_fraction = 1.0;
  weak.max_concurrent_scans = 0;
  weak.retrieve_shadow_rate = 1.0;
  double count = 0;
  const double weak_recall = shadow_mean(weak, &count);
  EXPECT_EQ(count, static_cast<double>(model_.user_ids.size()));
  EXPECT_LT(weak_recall, 0.9);
  RankerCoreOptions tuned = weak;
  tuned.retrieve_recall_target = 0.99;
  tuned.retrieve_tail_target = 0.99;
  tuned.retrieve_tune_users = 40;
  const double tuned_recall = shadow_mean(tuned, &count);
  EXPECT_EQ(count, static_cast<double>(model_.user_ids.size()));
  EXPECT_GE(tuned_recall, 0.95);
  // Rate 0: nothing recorded.
  weak.retrieve_shadow_rate = 0;
  metrics::Registry registry;
  ServerMetrics metrics(&registry, "cpu");
  RankerCore quiet(weak, slot_.get(), scorer_.get(), &metrics);
  EXPECT_TRUE(Retrieve(quiet, model_.user_ids[0], 20, false).ok());
  quiet.WaitForShadowScans();
  EXPECT_NE(registry.Serialize().find("embsum_retrieve_shadow_recall_count 0"),
            std::string::npos);
}

}  // namespace
}  // namespace embsum::server
