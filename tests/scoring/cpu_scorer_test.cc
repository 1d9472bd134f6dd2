#include "scoring/cpu_scorer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "scoring/item_arena.h"
#include "scoring/scorer.h"
#include "scoring/user_view.h"
#include "tests/scoring/scoring_test_util.h"

namespace embsum::scoring {
namespace {

using ::embsum::scoring::testing::ComputeReference;
using ::embsum::scoring::testing::RandomRows;
using ::embsum::scoring::testing::ReferenceWithScale;
using ::embsum::scoring::testing::RelativeError;
using ::embsum::scoring::testing::Rounded;
using ::embsum::scoring::testing::RoundedInt8Rows;
using ::embsum::scoring::testing::TestSeed;

constexpr double kFp32Tolerance = 1e-5;
constexpr double k16BitTolerance = 2e-2;
// docs/design.md section 2: int8 item storage (per-row symmetric scales).
constexpr double kInt8Tolerance = 5e-2;
// Against the reference on exactly the values the kernel multiplies (the
// storage-rounded items, and for bf16 dot products the bf16 user): only
// fp32 accumulation error remains.
constexpr double kRoundedTolerance = 1e-5;

struct Shape {
  uint32_t m, n, d;
};

// Sizes of 1, odd sizes, sizes off the vector widths (8 and 16 lanes; 6 and
// 8 item rows per register tile), more user rows than one panel, and S1.
constexpr Shape kShapes[] = {
    {1, 1, 1},
    {1, 1, 7},
    {2, 3, 5},
    {3, 5, 17},
    {16, 8, 64},
    {17, 3, 33},
    {31, 7, 100},
    {32, 8, 512},
    {33, 9, 129},
    {5, 13, 1},
    {48, 16, 40},
    {2, 1, 1024},
    {7, 4, 255},
    {3, 2, 0},
    // More than 16 item codes: the AMX family's item groups of 16 plus a
    // partial one, with d off its 32 (bf16) and 64 (int8) k per tile.
    {20, 21, 70},
    {40, 33, 64},
};

// One random model: a user and `rows` items of the given shape. Entries are
// N(0, scale^2 / d), so matching scores and logits are about N(0, 1) (unit
// vectors; logits of a well-trained attention head). 16-bit storage perturbs
// a logit by about 2^-9 of its size, and the softmax turns that into a
// relative score error of about 2^-9 times the spread of the logits, so the
// 2e-2 bound of docs/design.md holds for logit spreads up to a few units.
struct Model {
  Shape shape;
  bool queries = false;
  bool keys = false;
  std::vector<float> a, q;
  std::vector<std::vector<float>> b, g;
};

Model RandomModel(std::mt19937_64& rng, Shape shape, bool queries, bool keys,
                  size_t rows, double logit_scale = 1.0) {
  Model model{shape, queries, keys, {}, {}, {}, {}};
  model.a = RandomRows(rng, shape.m, shape.d, 1.0);
  if (queries) model.q = RandomRows(rng, shape.m, shape.d, logit_scale);
  for (size_t r = 0; r < rows; ++r) {
    model.b.push_back(RandomRows(rng, shape.n, shape.d, 1.0));
    if (keys) model.g.push_back(RandomRows(rng, shape.n, shape.d, 1.0));
  }
  return model;
}

std::unique_ptr<ItemArena> MakeArena(const Model& model, DType dtype) {
  ArenaLayout layout;
  layout.item_codes = model.shape.n;
  layout.dim = model.shape.d;
  layout.dtype = dtype;
  layout.has_keys = model.keys;
  auto arena = std::make_unique<ItemArena>(layout, model.b.size());
  for (size_t r = 0; r < model.b.size(); ++r) {
    size_t row = 0;
    const Status status =
        arena->AppendRow(model.b[r],
                         model.keys ? std::span<const float>(model.g[r])
                                    : std::span<const float>(),
                         &row);
    EXPECT_TRUE(status.ok()) << status.message();
  }
  return arena;
}

UserView ViewOf(const Model& model) {
  UserView user;
  user.user_codes = model.shape.m;
  user.dim = model.shape.d;
  user.upe = model.a;
  user.queries = model.q;
  return user;
}

// The reference for row r, on the original values or on the values the
// kernel actually multiplies: items rounded to the storage dtype and, with
// bf16 products, items and user rounded to bf16.
// With int8 storage the items are quantized per row and, for int8 dot
// products (int8_products), the user rows too.
ReferenceWithScale Reference(const Model& model, size_t r, DType dtype,
                             bool rounded, bool bf16_products,
                             bool int8_products = false) {
  std::vector<float> a = model.a, q = model.q, b = model.b[r];
  std::vector<float> g = model.keys ? model.g[r] : std::vector<float>();
  if (rounded && dtype == DType::kInt8) {
    const uint32_t d = model.shape.d;
    b = RoundedInt8Rows(b, d);
    g = RoundedInt8Rows(g, d);
    if (int8_products) {
      a = RoundedInt8Rows(a, d);
      q = RoundedInt8Rows(q, d);
    }
  } else if (rounded) {
    b = Rounded(b, dtype);
    g = Rounded(g, dtype);
    if (bf16_products) {
      b = Rounded(b, DType::kBFloat16);
      g = Rounded(g, DType::kBFloat16);
      a = Rounded(a, DType::kBFloat16);
      q = Rounded(q, DType::kBFloat16);
    }
  }
  return ComputeReference(model.shape.m, model.shape.n, model.shape.d, a, q, b,
                          g);
}

std::unique_ptr<Scorer> ScorerFor(CpuIsa isa, CpuScorerOptions options = {}) {
  std::unique_ptr<Scorer> scorer;
  const Status status = MakeCpuScorerWithIsa(options, isa, &scorer);
  EXPECT_TRUE(status.ok()) << status.message();
  return scorer;
}

std::string ShapeName(const Shape& s) {
  return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
         " d=" + std::to_string(s.d);
}

class CpuScorerIsaTest
    : public ::testing::TestWithParam<std::tuple<CpuIsa, DType>> {
 protected:
  void SetUp() override {
    if (!CpuIsaSupported(isa())) {
      GTEST_SKIP() << "this CPU or build lacks the " << CpuIsaName(isa())
                   << " kernels"
                   << (CpuIsaHasTiles(isa())
                           ? " (AMX-TILE/BF16/INT8 missing, or the OS "
                             "refused the tile data permission)"
                           : "");
    }
  }
  CpuIsa isa() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }
  // Whether the family multiplies this storage as bf16 (default options).
  bool bf16_products() const {
    return CpuIsaHasBf16Dot(isa()) && dtype() != DType::kFloat32 &&
           dtype() != DType::kInt8;
  }
  // Whether the family multiplies int8 storage with integer dot products.
  bool int8_products() const {
    return CpuIsaHasInt8Dot(isa()) && dtype() == DType::kInt8;
  }
  ReferenceWithScale RoundedReference(const Model& model, size_t r) const {
    return Reference(model, r, dtype(), true, bf16_products(), int8_products());
  }
  double StorageTolerance() const {
    return dtype() == DType::kInt8 ? kInt8Tolerance : k16BitTolerance;
  }
};

TEST_P(CpuScorerIsaTest, MatchesReferenceOverShapes) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto scorer = ScorerFor(isa());
  for (const Shape& shape : kShapes) {
    for (bool queries : {false, true}) {
      for (bool keys : {false, true}) {
        SCOPED_TRACE(ShapeName(shape) + " queries=" + std::to_string(queries) +
                     " keys=" + std::to_string(keys));
        const Model model = RandomModel(rng, shape, queries, keys, 6);
        const auto arena = MakeArena(model, dtype());
        const std::vector<uint32_t> rows = {4, 0, 5, 2, 2, 1, 3};
        std::vector<float> scores(rows.size());
        std::vector<int32_t> codes(rows.size(), -7);
        const Status status =
            scorer->Score(ViewOf(model), *arena, rows, scores, codes);
        ASSERT_TRUE(status.ok()) << status.message();
        for (size_t c = 0; c < rows.size(); ++c) {
          SCOPED_TRACE("candidate " + std::to_string(c));
          ASSERT_TRUE(std::isfinite(scores[c]));
          const ReferenceWithScale exact =
              Reference(model, rows[c], dtype(), false, false);
          const ReferenceWithScale rounded = RoundedReference(model, rows[c]);
          if (dtype() == DType::kFloat32) {
            EXPECT_LE(RelativeError(scores[c], exact), kFp32Tolerance)
                << scores[c] << " vs " << exact.score;
          } else {
            EXPECT_LE(RelativeError(scores[c], exact), StorageTolerance())
                << scores[c] << " vs " << exact.score;
            EXPECT_LE(RelativeError(scores[c], rounded), kRoundedTolerance)
                << scores[c] << " vs " << rounded.score;
          }
          if (rounded.top_margin > 1e-4) {
            EXPECT_EQ(codes[c], rounded.top_user_code);
          } else {
            EXPECT_GE(codes[c], 0);
            EXPECT_LT(codes[c], static_cast<int32_t>(shape.m));
          }
        }
      }
    }
  }
}

TEST_P(CpuScorerIsaTest, HugeLogitsStayFinite) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto scorer = ScorerFor(isa());
  // Logits with a standard deviation of 1e4: exp() without the max
  // subtraction overflows at 89.
  const Shape shape{32, 8, 64};
  const Model model = RandomModel(rng, shape, true, true, 5, 1e4);
  const auto arena = MakeArena(model, dtype());
  const std::vector<uint32_t> rows = {0, 1, 2, 3, 4};
  std::vector<float> scores(rows.size());
  std::vector<int32_t> codes(rows.size());
  ASSERT_TRUE(scorer->Score(ViewOf(model), *arena, rows, scores, codes).ok());
  for (size_t c = 0; c < rows.size(); ++c) {
    ASSERT_TRUE(std::isfinite(scores[c])) << scores[c];
    const ReferenceWithScale rounded = RoundedReference(model, rows[c]);
    // The softmax is nearly one-hot. fp32 logits of size 1e4 carry absolute
    // errors of ~1e-3, which move the weights of near-tied logits a little.
    EXPECT_LE(RelativeError(scores[c], rounded), 1e-2)
        << scores[c] << " vs " << rounded.score;
  }

  // Exact case: L = [1e4, -1e4, 0] puts all the weight on K_00 = 0.5 (all
  // values exact in every dtype); e^(1e4) would overflow without the max
  // subtraction, giving inf / inf = NaN.
  Model exact{{1, 3, 1},
              true,
              true,
              {1.0f},
              {1e4f},
              {{0.5f, 0.25f, 2.0f}},
              {{1.0f, -1.0f, 0.0f}}};
  const auto exact_arena = MakeArena(exact, dtype());
  const std::vector<uint32_t> row0 = {0};
  std::vector<float> score(1);
  std::vector<int32_t> code(1);
  ASSERT_TRUE(
      scorer->Score(ViewOf(exact), *exact_arena, row0, score, code).ok());
  if (dtype() == DType::kInt8) {
    // 0.5 = scale * 127 with an fp32 scale: exact up to the scale's rounding.
    EXPECT_NEAR(score[0], 0.5f, 1e-6f);
  } else {
    EXPECT_EQ(score[0], 0.5f);
  }
  EXPECT_EQ(code[0], 0);
}

TEST_P(CpuScorerIsaTest, ThreadedMatchesSingleThreaded) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Model model = RandomModel(rng, {9, 5, 40}, true, true, 50);
  const auto arena = MakeArena(model, dtype());
  std::vector<uint32_t> rows(1000);
  for (uint32_t& r : rows) r = static_cast<uint32_t>(rng() % 50);

  CpuScorerOptions serial_options;
  serial_options.threads = 1;
  CpuScorerOptions threaded_options;
  threaded_options.threads = 3;
  threaded_options.parallel_threshold = 1;
  threaded_options.parallel_min_work = 0;
  auto serial = ScorerFor(isa(), serial_options);
  auto threaded = ScorerFor(isa(), threaded_options);

  std::vector<float> want(rows.size()), got(rows.size());
  std::vector<int32_t> want_codes(rows.size()), got_codes(rows.size());
  ASSERT_TRUE(
      serial->Score(ViewOf(model), *arena, rows, want, want_codes).ok());
  // Several callers at once share the pool.
  std::vector<std::thread> callers;
  std::vector<std::vector<float>> results(4, std::vector<float>(rows.size()));
  for (auto& result : results) {
    callers.emplace_back([&, out = &result] {
      std::vector<int32_t> codes(rows.size());
      EXPECT_TRUE(
          threaded->Score(ViewOf(model), *arena, rows, *out, codes).ok());
      EXPECT_EQ(codes, want_codes);
    });
  }
  for (auto& caller : callers) caller.join();
  ASSERT_TRUE(
      threaded->Score(ViewOf(model), *arena, rows, got, got_codes).ok());
  // Same kernel per candidate: bitwise equal.
  EXPECT_EQ(got, want);
  EXPECT_EQ(got_codes, want_codes);
  for (const auto& result : results) EXPECT_EQ(result, want);
  for (size_t c = 0; c < rows.size(); c += 97) {
    const ReferenceWithScale rounded = RoundedReference(model, rows[c]);
    EXPECT_LE(RelativeError(got[c], rounded), kRoundedTolerance);
  }
}

TEST_P(CpuScorerIsaTest, ScoreAllTopKMatchesBruteForce) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // More rows than one scan block (4096), so the scan has several tasks.
  const size_t size = 5000;
  Model model = RandomModel(rng, {3, 2, 8}, false, true, size);
  // Rows 10, 20 and 30 are identical: equal scores, ordered by row.
  model.b[20] = model.b[30] = model.b[10];
  model.g[20] = model.g[30] = model.g[10];
  const auto arena = MakeArena(model, dtype());
  std::vector<uint8_t> live(size, 1);
  for (size_t r = 0; r < size; r += 3) live[r] = 0;  // row 30 is dead
  live[10] = live[20] = 1;

  std::vector<uint32_t> all(size);
  std::iota(all.begin(), all.end(), 0u);
  std::vector<float> scores(size);
  std::vector<int32_t> codes(size);
  auto serial = ScorerFor(isa());
  ASSERT_TRUE(serial->Score(ViewOf(model), *arena, all, scores, codes).ok());
  std::vector<ScoredRow> want;
  for (uint32_t r = 0; r < size; ++r) {
    if (live[r]) want.push_back({r, scores[r], codes[r]});
  }
  std::stable_sort(
      want.begin(), want.end(),
      [](const ScoredRow& x, const ScoredRow& y) { return x.score > y.score; });

  CpuScorerOptions threaded_options;
  threaded_options.threads = 2;
  threaded_options.parallel_threshold = 1;
  threaded_options.parallel_min_work = 0;
  auto threaded = ScorerFor(isa(), threaded_options);
  for (Scorer* scorer : {serial.get(), threaded.get()}) {
    for (uint32_t k : {1u, 17u, 5000u, 0u}) {
      SCOPED_TRACE("k=" + std::to_string(k));
      std::vector<ScoredRow> got;
      ASSERT_TRUE(
          scorer->ScoreAllTopK(ViewOf(model), *arena, live, k, &got).ok());
      const size_t expected =
          k == 0 ? want.size() : std::min<size_t>(k, want.size());
      ASSERT_EQ(got.size(), expected);
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].row, want[i].row) << "rank " << i;
        EXPECT_EQ(got[i].score, want[i].score) << "rank " << i;
        EXPECT_EQ(got[i].top_user_code, want[i].top_user_code) << "rank " << i;
      }
    }
  }
  // The tied rows appear in row order, the dead one not at all.
  std::vector<ScoredRow> got;
  ASSERT_TRUE(serial->ScoreAllTopK(ViewOf(model), *arena, live, 0, &got).ok());
  std::vector<uint32_t> tied;
  for (const ScoredRow& s : got) {
    if (s.row == 10 || s.row == 20 || s.row == 30) tied.push_back(s.row);
  }
  EXPECT_EQ(tied, (std::vector<uint32_t>{10, 20}));
  // Empty live mask: every row.
  ASSERT_TRUE(serial->ScoreAllTopK(ViewOf(model), *arena, {}, 0, &got).ok());
  EXPECT_EQ(got.size(), size);
}

INSTANTIATE_TEST_SUITE_P(
    AllIsasAndDtypes, CpuScorerIsaTest,
    ::testing::Combine(::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2,
                                         CpuIsa::kAvxVnni, CpuIsa::kAvx512,
                                         CpuIsa::kAvx512Vnni,
                                         CpuIsa::kAvx512Bf16, CpuIsa::kAmx),
                       ::testing::Values(DType::kFloat32, DType::kFloat16,
                                         DType::kBFloat16, DType::kInt8)),
    [](const auto& info) {
      return std::string(CpuIsaName(std::get<0>(info.param))) + "_" +
             std::string(DTypeName(std::get<1>(info.param)));
    });

// MakeCpuScorer may pick a narrower kernel family for small m; every
// choice must still match the reference.
TEST(CpuScorerTest, DefaultScorerMatchesReference) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto scorer = MakeCpuScorer();
  for (DType dtype :
       {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8}) {
    for (uint32_t m : {1u, 5u, 8u, 9u, 16u, 32u}) {
      const Shape shape{m, 6, 70};
      SCOPED_TRACE(ShapeName(shape) + " " + std::string(DTypeName(dtype)));
      const Model model = RandomModel(rng, shape, true, true, 4);
      const auto arena = MakeArena(model, dtype);
      const std::vector<uint32_t> rows = {3, 1, 0, 2};
      std::vector<float> scores(rows.size());
      std::vector<int32_t> codes(rows.size());
      ASSERT_TRUE(
          scorer->Score(ViewOf(model), *arena, rows, scores, codes).ok());
      // The family dispatch picked for this dtype decides the rounding.
      const std::optional<CpuIsa> isa =
          ParseCpuIsa(scorer->kernel_info(dtype).kernel);
      ASSERT_TRUE(isa.has_value()) << scorer->kernel_info(dtype).kernel;
      const bool bf16_products = CpuIsaHasBf16Dot(*isa) &&
                                 dtype != DType::kFloat32 &&
                                 dtype != DType::kInt8;
      const bool int8_products =
          CpuIsaHasInt8Dot(*isa) && dtype == DType::kInt8;
      for (size_t c = 0; c < rows.size(); ++c) {
        const ReferenceWithScale rounded = Reference(
            model, rows[c], dtype, true, bf16_products, int8_products);
        EXPECT_LE(RelativeError(scores[c], rounded), kRoundedTolerance)
            << scores[c] << " vs " << rounded.score;
      }
    }
  }
}

// Dispatch by measurement: every dtype gets a supported family with a
// measured (finite, positive) rate, one that TimeCpuKernels timed; without
// measurement the widest family runs, unmeasured.
TEST(CpuScorerTest, DispatchPicksAMeasuredKernelPerDtype) {
  CpuScorerOptions options;
  options.threads = 1;
  options.dispatch_shape = {8, 4, 64, true, true};
  const auto scorer = MakeCpuScorer(options);
  for (DType dtype :
       {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8}) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    const KernelInfo info = scorer->kernel_info(dtype);
    const std::optional<CpuIsa> isa = ParseCpuIsa(info.kernel);
    ASSERT_TRUE(isa.has_value()) << info.kernel;
    EXPECT_TRUE(CpuIsaSupported(*isa));
    EXPECT_FALSE(info.forced);
    EXPECT_TRUE(std::isfinite(info.measured_gflops));
    EXPECT_GT(info.measured_gflops, 0.0);
    const std::vector<CpuKernelTiming> timings = TimeCpuKernels(options, dtype);
    ASSERT_FALSE(timings.empty());
    bool timed = false;
    for (const CpuKernelTiming& t : timings) {
      EXPECT_TRUE(CpuIsaSupported(t.isa));
      EXPECT_GT(t.gflops, 0.0);
      // Families with the same code for this dtype are timed once.
      const bool same_code = CpuIsaVectorBits(t.isa) == CpuIsaVectorBits(*isa);
      timed = timed || t.isa == *isa || same_code;
    }
    EXPECT_TRUE(timed) << info.kernel;
  }
  options.measure_dispatch = false;
  const auto unmeasured = MakeCpuScorer(options);
  const KernelInfo info = unmeasured->kernel_info(DType::kFloat32);
  EXPECT_EQ(info.kernel, CpuIsaName(BestCpuIsa()));
  EXPECT_TRUE(std::isnan(info.measured_gflops));
}

// --isa: a forced family runs for every dtype, reported as forced.
TEST(CpuScorerTest, ForcedIsaRunsForEveryDtype) {
  for (CpuIsa isa : SupportedCpuIsas()) {
    SCOPED_TRACE(std::string(CpuIsaName(isa)));
    auto scorer = ScorerFor(isa);
    for (DType dtype :
         {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8}) {
      const KernelInfo info = scorer->kernel_info(dtype);
      EXPECT_EQ(info.kernel, CpuIsaName(isa));
      EXPECT_TRUE(info.forced);
      EXPECT_TRUE(std::isnan(info.measured_gflops));
    }
  }
}

// int8 storage meets docs/design.md's contract on realistic data: planted
// topics (each item and user code is a topic direction plus noise, so logits
// spread over several units as in datagen S1), S1 shape, 500 candidates: score
// relative error <= 5e-2 and the top-10 agrees with fp32's on >= 95% of
// entries, averaged over users. Every family with int8 support.
TEST(CpuScorerTest, Int8MeetsTheAccuracyContract) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Shape shape{32, 8, 512};
  const size_t items = 500, topics = 20, users = 4;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(shape.d));
  std::vector<std::vector<float>> topic(topics, std::vector<float>(shape.d));
  for (auto& t : topic) {
    for (float& x : t) x = normal(rng) * inv_sqrt_d;
  }
  // A code of `topic t` scaled by `gain`, plus 50% noise.
  auto code = [&](size_t t, float gain, float* out) {
    for (uint32_t k = 0; k < shape.d; ++k) {
      out[k] = gain * (topic[t][k] + 0.5f * normal(rng) * inv_sqrt_d);
    }
  };
  Model model{shape, true, true, {}, {}, {}, {}};
  for (size_t r = 0; r < items; ++r) {
    std::vector<float> b(size_t{shape.n} * shape.d), g(b.size());
    for (uint32_t j = 0; j < shape.n; ++j) {
      const size_t t = rng() % topics;
      code(t, 1.0f, b.data() + size_t{j} * shape.d);
      code(t, 1.0f, g.data() + size_t{j} * shape.d);
    }
    model.b.push_back(std::move(b));
    model.g.push_back(std::move(g));
  }
  const auto fp32_arena = MakeArena(model, DType::kFloat32);
  const auto int8_arena = MakeArena(model, DType::kInt8);
  std::vector<uint32_t> rows(items);
  std::iota(rows.begin(), rows.end(), 0u);
  auto fp32_scorer = ScorerFor(CpuIsa::kScalar);
  std::vector<CpuIsa> families = {CpuIsa::kScalar};
  for (CpuIsa isa :
       {CpuIsa::kAvx2, CpuIsa::kAvxVnni, CpuIsa::kAvx512Vnni, CpuIsa::kAmx}) {
    if (CpuIsaSupported(isa)) families.push_back(isa);
  }
  for (CpuIsa isa : families) {
    SCOPED_TRACE(std::string(CpuIsaName(isa)));
    auto int8_scorer = ScorerFor(isa);
    double agreement = 0.0, worst = 0.0;
    for (size_t u = 0; u < users; ++u) {
      model.a.assign(size_t{shape.m} * shape.d, 0.0f);
      model.q.assign(model.a.size(), 0.0f);
      for (uint32_t i = 0; i < shape.m; ++i) {
        const size_t t = rng() % topics;
        // Queries 4x the codes: logits of a few units, a peaked softmax.
        code(t, 1.0f, model.a.data() + size_t{i} * shape.d);
        code(t, 4.0f, model.q.data() + size_t{i} * shape.d);
      }
      std::vector<float> want(items), got(items);
      ASSERT_TRUE(
          fp32_scorer->Score(ViewOf(model), *fp32_arena, rows, want, {}).ok());
      ASSERT_TRUE(
          int8_scorer->Score(ViewOf(model), *int8_arena, rows, got, {}).ok());
      for (size_t c = 0; c < items; c += 25) {
        worst = std::max(
            worst, RelativeError(got[c], Reference(model, c, DType::kFloat32,
                                                   false, false)));
      }
      std::vector<uint32_t> top_want, top_got;
      SelectTopK(want, 10, &top_want);
      SelectTopK(got, 10, &top_got);
      size_t common = 0;
      for (uint32_t r : top_got) {
        common += std::count(top_want.begin(), top_want.end(), r);
      }
      agreement += static_cast<double>(common) / 10.0 / users;
    }
    EXPECT_LE(worst, kInt8Tolerance);
    EXPECT_GE(agreement, 0.95);
  }
}

// fp16 storage on an AVX512_BF16 CPU: bf16 products by default, exact fp32
// products with fp16_bf16_products = false. Each must match its own
// reference to 1e-5; the two differ by bf16 rounding (~1e-4 on average over
// candidates), which tells which one ran.
TEST(CpuScorerTest, Fp16ProductsOption) {
  if (!CpuIsaSupported(CpuIsa::kAvx512Bf16)) {
    GTEST_SKIP() << "this CPU or build lacks the avx512bf16 kernels";
  }
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("EMBSUM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const size_t count = 24;
  const Model model = RandomModel(rng, {32, 8, 512}, true, true, count);
  const auto arena = MakeArena(model, DType::kFloat16);
  std::vector<uint32_t> rows(count);
  std::iota(rows.begin(), rows.end(), 0u);
  for (bool bf16 : {true, false}) {
    SCOPED_TRACE("fp16_bf16_products=" + std::to_string(bf16));
    CpuScorerOptions options;
    options.fp16_bf16_products = bf16;
    std::vector<std::unique_ptr<Scorer>> scorers;
    scorers.push_back(ScorerFor(CpuIsa::kAvx512Bf16, options));
    if (CpuIsaSupported(CpuIsa::kAmx)) {
      scorers.push_back(ScorerFor(CpuIsa::kAmx, options));
    }
    scorers.push_back(MakeCpuScorer(options));
    for (const auto& scorer : scorers) {
      // The dispatched scorer may have measured fp32 products faster.
      const std::optional<CpuIsa> isa =
          ParseCpuIsa(scorer->kernel_info(DType::kFloat16).kernel);
      ASSERT_TRUE(isa.has_value());
      const bool used = bf16 && CpuIsaHasBf16Dot(*isa);
      std::vector<float> scores(count);
      ASSERT_TRUE(scorer->Score(ViewOf(model), *arena, rows, scores, {}).ok());
      double other_error = 0.0;
      for (size_t c = 0; c < count; ++c) {
        const ReferenceWithScale own =
            Reference(model, rows[c], DType::kFloat16, true, used);
        const ReferenceWithScale other =
            Reference(model, rows[c], DType::kFloat16, true, !used);
        EXPECT_LE(RelativeError(scores[c], own), kRoundedTolerance);
        other_error += RelativeError(scores[c], other) / count;
      }
      EXPECT_GT(other_error, 2e-5);
    }
  }
}

TEST(CpuScorerTest, IsaNamesRoundTrip) {
  for (CpuIsa isa :
       {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16,
        CpuIsa::kAvxVnni, CpuIsa::kAvx512Vnni, CpuIsa::kAmx}) {
    EXPECT_EQ(ParseCpuIsa(CpuIsaName(isa)), isa);
  }
  EXPECT_EQ(ParseCpuIsa("sse2"), std::nullopt);
}

TEST(CpuScorerTest, DefaultUsesBestSupportedIsa) {
  const std::vector<CpuIsa> supported = SupportedCpuIsas();
  ASSERT_FALSE(supported.empty());
  EXPECT_EQ(supported.front(), CpuIsa::kScalar);
  EXPECT_EQ(BestCpuIsa(), supported.back());
  EXPECT_TRUE(CpuIsaSupported(BestCpuIsa()));
  EXPECT_EQ(MakeCpuScorer()->backend(), "cpu");
  // Report what this machine runs, for the test log.
  std::string names;
  for (CpuIsa isa : supported) names += std::string(CpuIsaName(isa)) + " ";
  std::cout << "supported CPU kernels: " << names << "\n";
}

TEST(CpuScorerTest, UnsupportedIsaIsRefused) {
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (CpuIsaSupported(isa)) continue;
    std::unique_ptr<Scorer> scorer;
    const Status status = MakeCpuScorerWithIsa({}, isa, &scorer);
    EXPECT_EQ(status.code(), Status::Code::kFailedPrecondition);
    EXPECT_EQ(scorer, nullptr);
  }
}

class CpuScorerErrorsTest : public ::testing::Test {
 protected:
  CpuScorerErrorsTest() {
    std::mt19937_64 rng(7);
    model_ = RandomModel(rng, {4, 3, 8}, true, true, 3);
    arena_ = MakeArena(model_, DType::kFloat32);
  }
  Model model_;
  std::unique_ptr<ItemArena> arena_;
  std::unique_ptr<Scorer> scorer_ = MakeCpuScorer();
};

TEST_F(CpuScorerErrorsTest, RejectsBadSizesWithMessages) {
  const std::vector<uint32_t> rows = {0, 1};
  std::vector<float> scores(2);
  std::vector<int32_t> codes(2);

  UserView user = ViewOf(model_);
  user.dim = 9;
  Status status = scorer_->Score(user, *arena_, rows, scores, codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("dim 9"), std::string::npos)
      << status.message();

  user = ViewOf(model_);
  user.upe = std::span<const float>(model_.a).first(5);
  status = scorer_->Score(user, *arena_, rows, scores, codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("upe has 5"), std::string::npos)
      << status.message();

  user = ViewOf(model_);
  user.queries = std::span<const float>(model_.q).first(31);
  status = scorer_->Score(user, *arena_, rows, scores, codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("queries has 31"), std::string::npos)
      << status.message();

  user = ViewOf(model_);
  std::vector<float> short_scores(1);
  status = scorer_->Score(user, *arena_, rows, short_scores, codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("scores has 1"), std::string::npos);

  std::vector<int32_t> long_codes(3);
  status = scorer_->Score(user, *arena_, rows, scores, long_codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("top_codes has 3"), std::string::npos);

  const std::vector<uint32_t> bad_rows = {0, 3};
  status = scorer_->Score(user, *arena_, bad_rows, scores, codes);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("candidate 1: row 3 out of range"),
            std::string::npos)
      << status.message();

  // More flags than the arena has rows (fewer is a snapshot's prefix).
  std::vector<ScoredRow> out;
  const std::vector<uint8_t> live(4, 1);
  status = scorer_->ScoreAllTopK(user, *arena_, live, 5, &out);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("live has 4"), std::string::npos);
}

TEST_F(CpuScorerErrorsTest, ZeroCandidatesAndOptionalCodes) {
  std::vector<float> none;
  std::vector<int32_t> no_codes;
  EXPECT_TRUE(scorer_->Score(ViewOf(model_), *arena_, {}, none, no_codes).ok());
  // Codes are optional.
  const std::vector<uint32_t> rows = {2};
  std::vector<float> scores(1, -1.0f);
  ASSERT_TRUE(scorer_->Score(ViewOf(model_), *arena_, rows, scores, {}).ok());
  const ReferenceWithScale ref =
      Reference(model_, 2, DType::kFloat32, false, false);
  EXPECT_LE(RelativeError(scores[0], ref), kFp32Tolerance);
}

TEST(CpuScorerDegenerateTest, NoUserOrItemCodesScoreZero) {
  // Matches ReferenceScore: score 0 and top_user_code -1.
  ArenaLayout layout{0, 4, DType::kFloat32, false};
  ItemArena no_codes(layout, 2);
  no_codes.Publish(2);
  std::vector<float> a(8, 1.0f);
  UserView user{2, 4, a, {}};
  const std::vector<uint32_t> rows = {1, 0};
  std::vector<float> scores(2, 5.0f);
  std::vector<int32_t> codes(2, 5);
  auto scorer = MakeCpuScorer();
  ASSERT_TRUE(scorer->Score(user, no_codes, rows, scores, codes).ok());
  EXPECT_EQ(scores, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(codes, (std::vector<int32_t>{-1, -1}));

  ArenaLayout items{3, 4, DType::kFloat32, false};
  ItemArena arena(items, 1);
  std::vector<float> b(12, 1.0f);
  ASSERT_TRUE(arena.AppendRow(b, {}, nullptr).ok());
  UserView nobody{0, 4, {}, {}};
  std::vector<float> one(1, 5.0f);
  std::vector<int32_t> one_code(1, 5);
  const std::vector<uint32_t> row0 = {0};
  ASSERT_TRUE(scorer->Score(nobody, arena, row0, one, one_code).ok());
  EXPECT_EQ(one[0], 0.0f);
  EXPECT_EQ(one_code[0], -1);
  EXPECT_EQ(ReferenceScore(0, 3, 4, {}, {}, {}, {}).top_user_code, -1);
}

}  // namespace
}  // namespace embsum::scoring
