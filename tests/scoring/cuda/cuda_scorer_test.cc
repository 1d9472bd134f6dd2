// CudaScorer against the float64 reference. Needs a CUDA device: every test
// but the first skips, saying why, where there is none (CI).
#include "scoring/cuda/cuda_scorer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "scoring/cuda/launch_plan.h"
#include "scoring/item_arena.h"
#include "scoring/scorer.h"
#include "tests/scoring/scoring_test_util.h"

namespace embsum::scoring {
namespace {

using testing::ComputeReference;
using testing::RandomRows;
using testing::ReferenceWithScale;
using testing::RelativeError;
using testing::TestSeed;

TEST(CudaScorerAvailabilityTest, MakeCudaScorerAgreesWithDeviceProbe) {
  std::string why;
  const bool available = CudaDeviceAvailable(&why);
  std::unique_ptr<Scorer> scorer;
  const Status status = MakeCudaScorer({}, &scorer);
  if (available) {
    ASSERT_TRUE(status.ok()) << status.message();
    EXPECT_EQ(scorer->backend(), "cuda");
  } else {
    EXPECT_FALSE(why.empty());
    EXPECT_EQ(status.code(), Status::Code::kUnavailable);
    EXPECT_NE(status.message().find(why), std::string::npos)
        << status.message();
    EXPECT_EQ(scorer, nullptr);
  }
}

TEST(CudaScorerAvailabilityTest, RejectsUnknownKernelModesWithOrWithoutDevice) {
  std::unique_ptr<Scorer> scorer;
  CudaScorerOptions options;
  options.prepare_mode = 3;
  Status status = MakeCudaScorer(options, &scorer);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("prepare_mode 3"), std::string::npos)
      << status.message();
  options = {};
  options.load_mode = 64;
  status = MakeCudaScorer(options, &scorer);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("load_mode 64"), std::string::npos);
  options = {};
  options.epilogue_mode = 5;
  status = MakeCudaScorer(options, &scorer);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("epilogue_mode 5"), std::string::npos);
  EXPECT_EQ(scorer, nullptr);
}

// One user and an arena of random items.
struct Problem {
  uint32_t m = 0, n = 0, d = 0;
  DType dtype = DType::kFloat32;
  bool queries = false, keys = false;
  std::vector<float> upe, q;
  std::vector<float> cpe, g;  // rows x n*d, as generated (before storage)
  std::unique_ptr<ItemArena> arena;

  UserView user() const {
    UserView view;
    view.user_codes = m;
    view.dim = d;
    view.upe = upe;
    view.queries = q;
    return view;
  }
};

Problem MakeProblem(std::mt19937_64& rng, uint32_t m, uint32_t n, uint32_t d,
                    DType dtype, bool queries, bool keys, size_t rows,
                    size_t capacity = 0) {
  Problem p;
  p.m = m;
  p.n = n;
  p.d = d;
  p.dtype = dtype;
  p.queries = queries;
  p.keys = keys;
  // Scale 2: logits of a few units, so the softmax is neither flat nor
  // one-hot and both K and L errors matter.
  p.upe = RandomRows(rng, m, d, 2.0);
  if (queries) p.q = RandomRows(rng, m, d, 2.0);
  p.cpe = RandomRows(rng, rows * n, d, 2.0);
  if (keys) p.g = RandomRows(rng, rows * n, d, 2.0);
  ArenaLayout layout{n, d, dtype, keys};
  p.arena = std::make_unique<ItemArena>(layout, std::max(capacity, rows));
  const size_t nd = size_t{n} * d;
  for (size_t r = 0; r < rows; ++r) {
    const Status s =
        p.arena->SetRow(r, std::span<const float>(p.cpe).subspan(r * nd, nd),
                        keys ? std::span<const float>(p.g).subspan(r * nd, nd)
                             : std::span<const float>());
    EXPECT_TRUE(s.ok()) << s.message();
  }
  p.arena->Publish(rows);
  return p;
}

// Reference for arena row `row` as stored (after rounding to the dtype).
ReferenceWithScale StoredReference(const Problem& p, uint32_t row) {
  const size_t nd = size_t{p.n} * p.d;
  std::vector<float> b(nd), g(p.keys ? nd : 0);
  p.arena->ReadRow(row, b, g);
  return ComputeReference(p.m, p.n, p.d, p.upe, p.q, b, g);
}

// Error of `ours` relative to max(|score|, condition), where condition =
// sum_ij w_ij (sum_k |a_ik b_jk| + |K_ij - score| sum_k |q_ik g_jk|) is the
// score's first-order sensitivity to relative errors in the products of
// both dot products. fp32 storage uses tf32 tensor-core products split in
// three (up to about 2^-19 relative error per product; fp32 FMA: 2^-24):
// when a dot product of a few terms nearly cancels, its error is small only
// relative to sum_k |a_k b_k|, which RelativeError's scale does not cover.
double ConditionedError(double ours, const Problem& p, uint32_t row) {
  const uint32_t m = p.m, n = p.n, d = p.d;
  const size_t nd = size_t{n} * d;
  std::vector<float> b(nd), g(p.keys ? nd : 0);
  p.arena->ReadRow(row, b, g);
  const std::vector<float>& q = p.q.empty() ? p.upe : p.q;
  const std::vector<float>& gg = g.empty() ? b : g;
  std::vector<double> k(size_t{m} * n), l(k.size()), ak(k.size()), al(k.size());
  for (uint32_t i = 0; i < m; ++i) {
    for (uint32_t j = 0; j < n; ++j) {
      double sk = 0, sl = 0, abs_k = 0, abs_l = 0;
      for (uint32_t x = 0; x < d; ++x) {
        const double pk =
            double{p.upe[size_t{i} * d + x]} * b[size_t{j} * d + x];
        const double pl = double{q[size_t{i} * d + x]} * gg[size_t{j} * d + x];
        sk += pk;
        sl += pl;
        abs_k += std::abs(pk);
        abs_l += std::abs(pl);
      }
      const size_t e = size_t{i} * n + j;
      k[e] = sk;
      l[e] = sl;
      ak[e] = abs_k;
      al[e] = abs_l;
    }
  }
  const double max_logit = *std::max_element(l.begin(), l.end());
  double z = 0, score = 0;
  for (size_t e = 0; e < k.size(); ++e) {
    const double w = std::exp(l[e] - max_logit);
    z += w;
    score += w * k[e];
  }
  score /= z;
  double condition = 0;
  for (size_t e = 0; e < k.size(); ++e) {
    condition += std::exp(l[e] - max_logit) / z *
                 (ak[e] + std::abs(k[e] - score) * al[e]);
  }
  if (!std::isfinite(ours)) return HUGE_VAL;
  return std::abs(ours - score) / std::max(std::abs(score), condition);
}

class CudaScorerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!CudaDeviceAvailable(&why)) {
      GTEST_SKIP() << "CUDA scorer tests skipped: " << why;
    }
    CudaScorerOptions options;
    options.poison_outputs = true;
    const Status status = MakeCudaScorer(options, &scorer_);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // A scorer with the kernel modes not yet measured on a device: early
  // row loads, parallel reduction of the d-axis split and `prepare_mode`
  // (launch_plan.h).
  std::unique_ptr<Scorer> MakeVariantScorer(uint32_t prepare_mode) {
    CudaScorerOptions options;
    options.poison_outputs = true;
    options.load_mode = static_cast<int>(cuda_internal::kLoadL2Fetch256 |
                                         cuda_internal::kLoadEarly);
    options.prepare_mode = static_cast<int>(prepare_mode);
    options.epilogue_mode = static_cast<int>(cuda_internal::kEpilogueReduce);
    std::unique_ptr<Scorer> scorer;
    const Status status = MakeCudaScorer(options, &scorer);
    EXPECT_TRUE(status.ok()) << status.message();
    return scorer;
  }

  std::unique_ptr<Scorer> scorer_;
};

struct Shape {
  uint32_t m, n, d;
  DType dtype;
  bool queries, keys;
};

TEST_F(CudaScorerTest, MatchesReferenceAcrossShapes) {
  const std::vector<Shape> shapes = {
      {32, 8, 512, DType::kFloat32, true, true},  // S1
      {32, 8, 512, DType::kBFloat16, true, true},
      {32, 8, 512, DType::kFloat16, false, true},
      {32, 8, 512, DType::kFloat32, false, false},  // L = K
      {16, 4, 128, DType::kFloat16, true, false},
      {7, 3, 40, DType::kBFloat16, true, true},  // tails everywhere
      {1, 1, 8, DType::kFloat32, false, false},
      {5, 16, 36, DType::kFloat32, true, true},    // fp32 d % 16 != 0
      {33, 8, 64, DType::kFloat32, true, true},    // m > 32: fallback
      {4, 17, 32, DType::kBFloat16, false, true},  // n > 16: fallback
      {6, 5, 37, DType::kFloat16, true, true},     // odd d: fallback
      {32, 8, 1024, DType::kFloat32, true, true},  // too big: fallback
  };
  std::mt19937_64 rng(TestSeed());
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(TestSeed()));
  const std::unique_ptr<Scorer> scatter =
      MakeVariantScorer(cuda_internal::kPrepareScatter);
  const std::unique_ptr<Scorer> overlap =
      MakeVariantScorer(cuda_internal::kPreparePassOverlap);
  ASSERT_NE(scatter, nullptr);
  ASSERT_NE(overlap, nullptr);
  for (int pass = 0; pass < 3; ++pass) {
    Scorer& scorer = pass == 0 ? *scorer_ : pass == 1 ? *scatter : *overlap;
    SCOPED_TRACE(pass == 0   ? "default kernel modes"
                 : pass == 1 ? "variant modes, scatter preparation"
                             : "variant modes, overlapped preparation pass");
    for (const Shape& s : shapes) {
      SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                   " d=" + std::to_string(s.d) + " " +
                   std::string(DTypeName(s.dtype)) +
                   " queries=" + std::to_string(s.queries) +
                   " keys=" + std::to_string(s.keys));
      Problem p =
          MakeProblem(rng, s.m, s.n, s.d, s.dtype, s.queries, s.keys, 300);
      std::vector<uint32_t> rows(257);
      std::uniform_int_distribution<uint32_t> pick(0, 299);
      for (uint32_t& r : rows) r = pick(rng);
      std::vector<float> scores(rows.size(), NAN);
      std::vector<int32_t> codes(rows.size(), -7);
      const Status status =
          scorer.Score(p.user(), *p.arena, rows, scores, codes);
      ASSERT_TRUE(status.ok()) << status.message();
      const double bound = s.dtype == DType::kFloat32 ? 1e-5 : 1e-4;
      for (size_t c = 0; c < rows.size(); ++c) {
        const ReferenceWithScale ref = StoredReference(p, rows[c]);
        ASSERT_TRUE(std::isfinite(scores[c])) << "candidate " << c;
        EXPECT_LE(ConditionedError(scores[c], p, rows[c]), bound)
            << "candidate " << c << ": " << scores[c] << " vs " << ref.score;
        ASSERT_GE(codes[c], 0) << "candidate " << c;
        ASSERT_LT(codes[c], static_cast<int32_t>(s.m));
        if (ref.top_margin > 1e-3) {
          EXPECT_EQ(codes[c], ref.top_user_code) << "candidate " << c;
        }
      }
    }
  }
}

TEST_F(CudaScorerTest, SixteenBitStorageMeetsTheContractAgainstFp32Inputs) {
  std::mt19937_64 rng(TestSeed() + 1);
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    Problem p = MakeProblem(rng, 32, 8, 512, dtype, true, true, 64);
    std::vector<uint32_t> rows(64);
    for (uint32_t i = 0; i < 64; ++i) rows[i] = i;
    std::vector<float> scores(64);
    ASSERT_TRUE(scorer_->Score(p.user(), *p.arena, rows, scores, {}).ok());
    const size_t nd = size_t{8} * 512;
    for (uint32_t r = 0; r < 64; ++r) {
      const ReferenceWithScale ref =
          ComputeReference(32, 8, 512, p.upe, p.q,
                           std::span<const float>(p.cpe).subspan(r * nd, nd),
                           std::span<const float>(p.g).subspan(r * nd, nd));
      EXPECT_LE(RelativeError(scores[r], ref), 2e-2)
          << DTypeName(dtype) << " row " << r;
    }
  }
}

TEST_F(CudaScorerTest, ScoreAllTopKMatchesReferenceOrder) {
  std::mt19937_64 rng(TestSeed() + 2);
  const std::unique_ptr<Scorer> scatter =
      MakeVariantScorer(cuda_internal::kPrepareScatter);
  const std::unique_ptr<Scorer> overlap =
      MakeVariantScorer(cuda_internal::kPreparePassOverlap);
  ASSERT_NE(scatter, nullptr);
  ASSERT_NE(overlap, nullptr);
  for (int pass = 0; pass < 3; ++pass) {
    Scorer& scorer = pass == 0 ? *scorer_ : pass == 1 ? *scatter : *overlap;
    SCOPED_TRACE(pass == 0   ? "default kernel modes"
                 : pass == 1 ? "variant modes, scatter preparation"
                             : "variant modes, overlapped preparation pass");
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      // 2500 tasks: more than one per warp of 132 x 16, so the full scan's
      // warps go on to a second task (the early-load path across tasks).
      const size_t rows = 5000;
      Problem p = MakeProblem(rng, 32, 8, 256, dtype, true, true, rows);
      std::vector<uint8_t> live(rows, 1);
      for (size_t r = 0; r < rows; r += 3) live[r] = 0;
      std::vector<ScoredRow> top;
      const Status status =
          scorer.ScoreAllTopK(p.user(), *p.arena, live, 50, &top);
      ASSERT_TRUE(status.ok()) << status.message();
      ASSERT_EQ(top.size(), 50u);
      std::vector<std::pair<double, uint32_t>> want;
      for (uint32_t r = 0; r < rows; ++r) {
        if (live[r]) want.push_back({StoredReference(p, r).score, r});
      }
      std::sort(want.begin(), want.end(), [](const auto& x, const auto& y) {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
      });
      for (size_t i = 0; i < top.size(); ++i) {
        EXPECT_EQ(live[top[i].row], 1) << "rank " << i;
        const ReferenceWithScale ref = StoredReference(p, top[i].row);
        EXPECT_LE(RelativeError(top[i].score, ref), 1e-4) << "rank " << i;
        if (i > 0) {
          EXPECT_GE(top[i - 1].score, top[i].score) << "rank " << i;
        }
        // Same row as the reference unless the two are within rounding.
        if (std::abs(want[i].first - ref.score) > 1e-4 * ref.magnitude) {
          EXPECT_EQ(top[i].row, want[i].second) << "rank " << i;
        }
      }
      // k = 0: every live row.
      ASSERT_TRUE(scorer.ScoreAllTopK(p.user(), *p.arena, live, 0, &top).ok());
      EXPECT_EQ(top.size(), want.size());
    }
  }
}

TEST_F(CudaScorerTest, TiesKeepRowOrderAndDeadRowsNeverAppear) {
  std::mt19937_64 rng(TestSeed() + 3);
  Problem p = MakeProblem(rng, 4, 2, 32, DType::kFloat32, false, false, 1);
  // Ten identical rows.
  ItemArena arena(p.arena->layout(), 10);
  for (size_t r = 0; r < 10; ++r) {
    ASSERT_TRUE(arena.SetRow(r, p.cpe, {}).ok());
  }
  arena.Publish(10);
  std::vector<uint8_t> live(10, 1);
  live[2] = 0;
  std::vector<ScoredRow> top;
  ASSERT_TRUE(scorer_->ScoreAllTopK(p.user(), arena, live, 5, &top).ok());
  const std::vector<uint32_t> want = {0, 1, 3, 4, 5};
  ASSERT_EQ(top.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(top[i].row, want[i]);
}

TEST_F(CudaScorerTest, MirrorFollowsUpdatesAppendsAndReplacement) {
  std::mt19937_64 rng(TestSeed() + 4);
  Problem p = MakeProblem(rng, 32, 8, 128, DType::kFloat32, true, true, 10, 20);
  const std::vector<uint32_t> rows = {3};
  std::vector<float> before(1), after(1);
  ASSERT_TRUE(scorer_->Score(p.user(), *p.arena, rows, before, {}).ok());
  // Rewrite row 3 in place and tell the scorer.
  const std::vector<float> cpe = RandomRows(rng, 8, 128, 2.0);
  const std::vector<float> keys = RandomRows(rng, 8, 128, 2.0);
  ASSERT_TRUE(p.arena->SetRow(3, cpe, keys).ok());
  ASSERT_TRUE(scorer_->SyncArena(*p.arena, rows).ok());
  ASSERT_TRUE(scorer_->Score(p.user(), *p.arena, rows, after, {}).ok());
  EXPECT_LE(RelativeError(after[0], StoredReference(p, 3)), 1e-5);
  EXPECT_NE(before[0], after[0]);
  // Appended rows are picked up without SyncArena.
  size_t row = 0;
  ASSERT_TRUE(p.arena->AppendRow(cpe, keys, &row).ok());
  const std::vector<uint32_t> appended = {static_cast<uint32_t>(row)};
  std::vector<float> score(1);
  ASSERT_TRUE(scorer_->Score(p.user(), *p.arena, appended, score, {}).ok());
  EXPECT_LE(RelativeError(score[0], StoredReference(p, row)), 1e-5);
  // A new arena is mirrored on first use.
  Problem q = MakeProblem(rng, 32, 8, 128, DType::kFloat32, true, true, 10);
  ASSERT_TRUE(scorer_->Score(q.user(), *q.arena, rows, score, {}).ok());
  EXPECT_LE(RelativeError(score[0], StoredReference(q, 3)), 1e-5);
}

TEST_F(CudaScorerTest, ConcurrentCallsAreBatchedCorrectly) {
  CudaScorerOptions options;
  options.batch_window_us = 5000;
  options.max_batch = 8;
  options.poison_outputs = true;
  std::unique_ptr<Scorer> batching;
  ASSERT_TRUE(MakeCudaScorer(options, &batching).ok());
  std::mt19937_64 rng(TestSeed() + 5);
  Problem p = MakeProblem(rng, 32, 8, 256, DType::kBFloat16, true, true, 500);
  constexpr int kThreads = 8;
  std::vector<std::vector<float>> upes(kThreads), queries(kThreads);
  std::vector<std::vector<uint32_t>> rows(kThreads);
  std::vector<std::vector<float>> scores(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    upes[t] = RandomRows(rng, 32, 256, 2.0);
    queries[t] = RandomRows(rng, 32, 256, 2.0);
    rows[t].resize(100 + 37 * t);
    for (size_t i = 0; i < rows[t].size(); ++i) {
      rows[t][i] = static_cast<uint32_t>((i * 7 + t) % 500);
    }
    scores[t].assign(rows[t].size(), NAN);
  }
  std::atomic<int> ready{0};
  std::vector<Status> statuses(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      UserView user{32, 256, upes[t], queries[t]};
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      statuses[t] = batching->Score(user, *p.arena, rows[t], scores[t], {});
    });
  }
  for (auto& th : threads) th.join();
  const size_t nd = size_t{8} * 256;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(statuses[t].ok()) << statuses[t].message();
    for (size_t i = 0; i < rows[t].size(); i += 13) {
      std::vector<float> b(nd), g(nd);
      p.arena->ReadRow(rows[t][i], b, g);
      const ReferenceWithScale ref =
          ComputeReference(32, 8, 256, upes[t], queries[t], b, g);
      EXPECT_LE(RelativeError(scores[t][i], ref), 1e-4)
          << "thread " << t << " candidate " << i;
    }
  }
}

TEST_F(CudaScorerTest, RejectsBadArguments) {
  std::mt19937_64 rng(TestSeed() + 6);
  Problem p = MakeProblem(rng, 4, 2, 16, DType::kFloat32, false, false, 5);
  std::vector<float> scores(1);
  const std::vector<uint32_t> out_of_range = {5};
  Status s = scorer_->Score(p.user(), *p.arena, out_of_range, scores, {});
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("row 5 out of range"), std::string::npos);
  const std::vector<uint32_t> two = {0, 1};
  s = scorer_->Score(p.user(), *p.arena, two, scores, {});
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  UserView wrong = p.user();
  wrong.dim = 8;
  s = scorer_->Score(wrong, *p.arena, out_of_range, scores, {});
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("dim"), std::string::npos);
  std::vector<uint8_t> live(3, 1);
  std::vector<ScoredRow> top;
  s = scorer_->ScoreAllTopK(p.user(), *p.arena, live, 1, &top);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  const std::vector<uint32_t> beyond = {99};
  s = scorer_->SyncArena(*p.arena, beyond);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace embsum::scoring
