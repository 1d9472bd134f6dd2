// Google Benchmark grid of the CPU scorer (m = 32, with queries and keys):
// candidates C = 100, 500, 5000; item codes n = 4, 8; dim d = 256, 512;
// storage fp32, bf16, fp16 (dtype 0, 1, 2). With BLAS, the same grid for
// the sgemm bound (the two products A B^T and Q G^T) to compare against.
// Plus a full-catalogue ScoreAllTopK scan. Run with
//   embsum_scoring_benchmark --benchmark_filter=... --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "scoring/dtype.h"
#include "scoring/item_arena.h"
#include "scoring/scorer.h"
#include "scoring/user_view.h"

#if EMBSUM_HAVE_BLAS
#include <cblas.h>
#endif

namespace embsum::scoring {
namespace {

constexpr uint32_t kUserCodes = 32;

std::vector<float> RandomRows(std::mt19937_64& rng, size_t rows, size_t d) {
  std::normal_distribution<float> normal(
      0.0f, 1.0f / std::sqrt(static_cast<float>(d)));
  std::vector<float> out(rows * d);
  for (float& x : out) x = normal(rng);
  return out;
}

DType DTypeArg(int64_t arg) {
  return arg == 0 ? DType::kFloat32
                  : (arg == 1 ? DType::kBFloat16 : DType::kFloat16);
}

void BM_CpuScore(benchmark::State& state) {
  const size_t candidates = static_cast<size_t>(state.range(0));
  const uint32_t n = static_cast<uint32_t>(state.range(1));
  const uint32_t d = static_cast<uint32_t>(state.range(2));
  const DType dtype = DTypeArg(state.range(3));
  std::mt19937_64 rng(1);
  const std::vector<float> a = RandomRows(rng, kUserCodes, d);
  const std::vector<float> q = RandomRows(rng, kUserCodes, d);
  ItemArena arena({n, d, dtype, true}, candidates);
  for (size_t r = 0; r < candidates; ++r) {
    if (!arena.AppendRow(RandomRows(rng, n, d), RandomRows(rng, n, d), nullptr)
             .ok()) {
      state.SkipWithError("arena append failed");
      return;
    }
  }
  std::vector<uint32_t> rows(candidates);
  std::iota(rows.begin(), rows.end(), 0u);
  std::shuffle(rows.begin(), rows.end(), rng);
  std::vector<float> scores(candidates);
  std::vector<int32_t> codes(candidates);
  const auto scorer = MakeCpuScorer();
  const UserView user{kUserCodes, d, a, q};
  for (auto _ : state) {
    const Status status = scorer->Score(user, arena, rows, scores, codes);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    benchmark::DoNotOptimize(scores.data());
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(candidates));
  state.SetBytesProcessed(
      state.iterations() *
      static_cast<int64_t>(candidates * arena.layout().row_bytes()));
  state.counters["flops"] = benchmark::Counter(
      4.0 * kUserCodes * n * d * static_cast<double>(candidates) *
          static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel(std::string(DTypeName(dtype)));
}

BENCHMARK(BM_CpuScore)
    ->ArgsProduct({{100, 500, 5000}, {4, 8}, {256, 512}, {0, 1, 2}})
    ->ArgNames({"C", "n", "d", "dtype"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Full-catalogue scan (Retrieve with exact = true): every live row of a
// 20000-item arena, top 100. Arguments: dtype.
void BM_CpuScoreAllTopK(benchmark::State& state) {
  constexpr size_t kItems = 20000;
  constexpr uint32_t kN = 8, kD = 256;
  const DType dtype = DTypeArg(state.range(0));
  std::mt19937_64 rng(1);
  const std::vector<float> a = RandomRows(rng, kUserCodes, kD);
  const std::vector<float> q = RandomRows(rng, kUserCodes, kD);
  ItemArena arena({kN, kD, dtype, true}, kItems);
  for (size_t r = 0; r < kItems; ++r) {
    if (!arena
             .AppendRow(RandomRows(rng, kN, kD), RandomRows(rng, kN, kD),
                        nullptr)
             .ok()) {
      state.SkipWithError("arena append failed");
      return;
    }
  }
  std::vector<uint8_t> live(kItems, 1);
  for (size_t r = 0; r < kItems; r += 10) live[r] = 0;
  std::vector<ScoredRow> out;
  const auto scorer = MakeCpuScorer();
  const UserView user{kUserCodes, kD, a, q};
  for (auto _ : state) {
    const Status status = scorer->ScoreAllTopK(user, arena, live, 100, &out);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kItems));
  state.SetBytesProcessed(
      state.iterations() *
      static_cast<int64_t>(kItems * arena.layout().row_bytes()));
  state.SetLabel(std::string(DTypeName(dtype)));
}

BENCHMARK(BM_CpuScoreAllTopK)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("dtype")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

#if EMBSUM_HAVE_BLAS
void BM_SgemmBound(benchmark::State& state) {
  const size_t candidates = static_cast<size_t>(state.range(0));
  const int n = static_cast<int>(state.range(1));
  const int d = static_cast<int>(state.range(2));
  const int cols = static_cast<int>(candidates) * n;
  std::mt19937_64 rng(1);
  const std::vector<float> a = RandomRows(rng, kUserCodes, d);
  const std::vector<float> q = RandomRows(rng, kUserCodes, d);
  const std::vector<float> b = RandomRows(rng, static_cast<size_t>(cols), d);
  const std::vector<float> g = RandomRows(rng, static_cast<size_t>(cols), d);
  std::vector<float> k_out(size_t{kUserCodes} * cols), l_out(k_out.size());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kUserCodes, cols, d,
                1.0f, a.data(), d, b.data(), d, 0.0f, k_out.data(), cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kUserCodes, cols, d,
                1.0f, q.data(), d, g.data(), d, 0.0f, l_out.data(), cols);
    benchmark::DoNotOptimize(l_out.data());
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(candidates));
  state.counters["flops"] = benchmark::Counter(
      4.0 * kUserCodes * n * d * static_cast<double>(candidates) *
          static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

BENCHMARK(BM_SgemmBound)
    ->ArgsProduct({{100, 500, 5000}, {4, 8}, {256, 512}})
    ->ArgNames({"C", "n", "d"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
#endif

}  // namespace
}  // namespace embsum::scoring

BENCHMARK_MAIN();
