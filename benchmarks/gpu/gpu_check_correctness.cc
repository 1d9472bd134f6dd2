#include "benchmarks/gpu/gpu_check_correctness.h"

#include "benchmarks/gpu/gpu_check_common.h"

namespace embsum::scoring::gpu_check {
namespace {

// ---------------------------------------------------------------------------
// 1. Correctness.

struct CaseShape {
  uint32_t m, n, d;
  DType dtype;
  bool queries, keys;
};

std::string ShapeName(const CaseShape& s) {
  return Fmt("m%u_n%u_d%u_%s%s%s", s.m, s.n, s.d,
             std::string(DTypeName(s.dtype)).c_str(), s.queries ? "_q" : "",
             s.keys ? "_k" : "");
}

struct CaseResult {
  double max_err = 0, max_plain_err = 0;
  size_t unwritten = 0, code_mismatch = 0, candidates = 0;
  // The variant scorer (new kernel modes) on the same inputs.
  double variant_err = 0;
  size_t variant_unwritten = 0, variant_mismatch = 0;
};

// Writes one shape's inputs (stored values) and outputs for torch_compare.py.
void Dump(const std::string& path, const CaseShape& s, const ItemArena& arena,
          const UserView& user, std::span<const uint32_t> rows,
          std::span<const float> scores, std::span<const int32_t> codes,
          size_t count) {
  std::ofstream f(path, std::ios::binary);
  const int32_t header[8] = {static_cast<int32_t>(s.m),
                             static_cast<int32_t>(s.n),
                             static_cast<int32_t>(s.d),
                             static_cast<int32_t>(count),
                             s.queries ? 1 : 0,
                             s.keys ? 1 : 0,
                             static_cast<int32_t>(s.dtype),
                             0};
  f.write(reinterpret_cast<const char*>(header), sizeof(header));
  f.write(reinterpret_cast<const char*>(user.upe.data()),
          user.upe.size_bytes());
  if (s.queries) {
    f.write(reinterpret_cast<const char*>(user.queries.data()),
            user.queries.size_bytes());
  }
  const size_t nd = size_t{s.n} * s.d;
  std::vector<float> b(nd), g(s.keys ? nd : 0), all_b, all_g;
  for (size_t c = 0; c < count; ++c) {
    arena.ReadRow(rows[c], b, g);
    all_b.insert(all_b.end(), b.begin(), b.end());
    all_g.insert(all_g.end(), g.begin(), g.end());
  }
  f.write(reinterpret_cast<const char*>(all_b.data()), all_b.size() * 4);
  f.write(reinterpret_cast<const char*>(all_g.data()), all_g.size() * 4);
  f.write(reinterpret_cast<const char*>(scores.data()), count * 4);
  f.write(reinterpret_cast<const char*>(codes.data()), count * 4);
}

CaseResult RunCase(Scorer& scorer, Scorer& variant, const CaseShape& s,
                   std::mt19937_64& rng, const Flags& flags, int index) {
  const size_t arena_rows = 400;
  ItemArena arena(ArenaLayout{s.n, s.d, s.dtype, s.keys}, arena_rows);
  FillArena(arena, arena_rows, rng(), 2.0);
  const std::vector<float> upe = RandomVector(rng, size_t{s.m} * s.d, s.d, 2.0);
  const std::vector<float> q =
      s.queries ? RandomVector(rng, size_t{s.m} * s.d, s.d, 2.0)
                : std::vector<float>();
  const UserView user{s.m, s.d, upe, q};
  std::uniform_int_distribution<size_t> count_dist(1, 700);
  std::uniform_int_distribution<uint32_t> row_dist(0, arena_rows - 1);
  const size_t count = index == 0 ? 500 : count_dist(rng);
  std::vector<uint32_t> rows(count);
  for (uint32_t& r : rows) r = row_dist(rng);
  std::vector<float> scores(count, NAN);
  std::vector<int32_t> codes(count, -7);
  CHECK_OK(scorer.Score(user, arena, rows, scores, codes));
  CaseResult result;
  result.candidates = count;
  std::vector<Ref> refs(count);
  ParallelFor(count, [&](size_t begin, size_t end) {
    for (size_t c = begin; c < end; ++c) {
      refs[c] = RowReference(arena, s.m, user, rows[c]);
    }
  });
  for (size_t c = 0; c < count; ++c) {
    if (!std::isfinite(scores[c]) || codes[c] < 0 ||
        codes[c] >= static_cast<int32_t>(s.m)) {
      ++result.unwritten;
      continue;
    }
    result.max_err = std::max(result.max_err, RelErr(scores[c], refs[c]));
    result.max_plain_err =
        std::max(result.max_plain_err, PlainRelErr(scores[c], refs[c]));
    if (refs[c].margin > 1e-3 && codes[c] != refs[c].code) {
      ++result.code_mismatch;
    }
  }
  Dump(flags.dump_dir + Fmt("/case_%03d.bin", index), s, arena, user, rows,
       scores, codes, std::min<size_t>(count, 64));
  std::fill(scores.begin(), scores.end(), NAN);
  std::fill(codes.begin(), codes.end(), -7);
  CHECK_OK(variant.Score(user, arena, rows, scores, codes));
  for (size_t c = 0; c < count; ++c) {
    if (!std::isfinite(scores[c]) || codes[c] < 0 ||
        codes[c] >= static_cast<int32_t>(s.m)) {
      ++result.variant_unwritten;
      continue;
    }
    result.variant_err =
        std::max(result.variant_err, RelErr(scores[c], refs[c]));
    if (refs[c].margin > 1e-3 && codes[c] != refs[c].code) {
      ++result.variant_mismatch;
    }
  }
  return result;
}

}  // namespace

void CheckCorrectness(const Flags& flags, std::mt19937_64& rng, Report& report,
                      bool* ok) {
  CudaScorerOptions options;
  options.poison_outputs = true;
  std::unique_ptr<Scorer> scorer;
  CHECK_OK(MakeCudaScorer(options, &scorer));
  // Every case is scored a second time by the new kernel modes together
  // (early loads, scatter preparation, parallel ksplit reduction).
  CudaScorerOptions variant_options = options;
  variant_options.load_mode = static_cast<int>(cuda_internal::kLoadL2Fetch256 |
                                               cuda_internal::kLoadEarly);
  variant_options.prepare_mode =
      static_cast<int>(cuda_internal::kPrepareScatter);
  variant_options.epilogue_mode =
      static_cast<int>(cuda_internal::kEpilogueReduce);
  std::unique_ptr<Scorer> variant;
  CHECK_OK(MakeCudaScorer(variant_options, &variant));
  std::vector<CaseShape> shapes = {
      {32, 8, 512, DType::kFloat32, true, true},
      {32, 8, 512, DType::kFloat16, true, true},
      {32, 8, 512, DType::kBFloat16, true, true},
      {32, 8, 512, DType::kFloat32, false, false},
      {32, 8, 512, DType::kBFloat16, false, true},
      {16, 16, 256, DType::kFloat16, true, false},
      {1, 1, 8, DType::kFloat32, false, false},
      {7, 3, 40, DType::kBFloat16, true, true},
      {5, 16, 36, DType::kFloat32, true, true},
      {31, 9, 520, DType::kFloat16, true, true},
      {33, 8, 64, DType::kFloat32, true, true},
      {4, 17, 32, DType::kBFloat16, false, true},
      {6, 5, 37, DType::kFloat16, true, true},
      {3, 2, 1, DType::kFloat32, true, false},
      {32, 8, 1024, DType::kFloat32, true, true},
      {64, 4, 768, DType::kBFloat16, true, true},
  };
  // Fresh random shapes each run.
  std::uniform_int_distribution<uint32_t> m_dist(1, 40), n_dist(1, 20),
      d_dist(1, 700), t_dist(0, 2), b_dist(0, 1);
  for (int i = 0; i < 8; ++i) {
    CaseShape s{m_dist(rng),      n_dist(rng),
                d_dist(rng),      static_cast<DType>(t_dist(rng)),
                b_dist(rng) == 1, b_dist(rng) == 1};
    if (i % 2 == 0) s.d = (s.d + 7) / 8 * 8;  // aligned: fast path
    shapes.push_back(s);
  }
  double worst32 = 0, worst16 = 0, plain_all = 0, plain_s1 = 0;
  double variant_worst32 = 0, variant_worst16 = 0;
  size_t unwritten = 0, mismatches = 0, total = 0;
  size_t variant_unwritten = 0, variant_mismatches = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const CaseShape& s = shapes[i];
    const CaseResult r =
        RunCase(*scorer, *variant, s, rng, flags, static_cast<int>(i));
    const double bound = s.dtype == DType::kFloat32 ? 1e-5 : 1e-4;
    const bool variant_pass =
        r.variant_err <= bound && r.variant_unwritten == 0;
    const bool pass = r.max_err <= bound && r.unwritten == 0 && variant_pass;
    *ok = *ok && pass;
    (s.dtype == DType::kFloat32 ? variant_worst32 : variant_worst16) =
        std::max(s.dtype == DType::kFloat32 ? variant_worst32 : variant_worst16,
                 r.variant_err);
    variant_unwritten += r.variant_unwritten;
    variant_mismatches += r.variant_mismatch;
    (s.dtype == DType::kFloat32 ? worst32 : worst16) =
        std::max(s.dtype == DType::kFloat32 ? worst32 : worst16, r.max_err);
    unwritten += r.unwritten;
    mismatches += r.code_mismatch;
    total += r.candidates;
    plain_all = std::max(plain_all, r.max_plain_err);
    if (s.m == 32 && s.n == 8 && s.d == 512) {
      plain_s1 = std::max(plain_s1, r.max_plain_err);
    }
    std::printf(
        "  case %2zu %-24s C=%3zu rel_err=%.3g (plain %.3g) unwritten=%zu "
        "code_mismatch=%zu; variant rel_err=%.3g unwritten=%zu "
        "code_mismatch=%zu %s\n",
        i, ShapeName(s).c_str(), r.candidates, r.max_err, r.max_plain_err,
        r.unwritten, r.code_mismatch, r.variant_err, r.variant_unwritten,
        r.variant_mismatch, pass ? "ok" : "FAIL");
  }
  report.Add("correct_cases", static_cast<double>(shapes.size()));
  report.Add("correct_candidates", static_cast<double>(total));
  report.Add("correct_max_rel_err_fp32", worst32);
  report.Add("correct_max_rel_err_16bit", worst16);
  report.Add("correct_unwritten", static_cast<double>(unwritten));
  report.Add("correct_code_mismatch", static_cast<double>(mismatches));
  report.Add("correct_plain_rel_err_all", plain_all);
  report.Add("correct_plain_rel_err_s1", plain_s1);
  report.Line(
      Fmt("correctness vs float64 ReferenceScore: %zu shapes, %zu "
          "candidates; max rel err (to max(|s|, condition)) fp32 %.2e "
          "(bound 1e-5), 16-bit %.2e (vs stored values, bound 1e-4); "
          "plain rel err (to max(|s|, sum w|K|)) S1 shapes %.2e, all "
          "shapes %.2e; unwritten %zu; top_user_code mismatches %zu",
          shapes.size(), total, worst32, worst16, plain_s1, plain_all,
          unwritten, mismatches));
  *ok = *ok && mismatches == 0;
  report.Add("correct_variant_max_rel_err_fp32", variant_worst32);
  report.Add("correct_variant_max_rel_err_16bit", variant_worst16);
  report.Add("correct_variant_unwritten",
             static_cast<double>(variant_unwritten));
  report.Add("correct_variant_code_mismatch",
             static_cast<double>(variant_mismatches));
  report.Line(
      Fmt("correctness of the variant (load_mode %d, prepare_mode %d, "
          "epilogue_mode %d) on the same inputs: max rel err fp32 %.2e, "
          "16-bit %.2e; unwritten %zu; top_user_code mismatches %zu",
          variant_options.load_mode, variant_options.prepare_mode,
          variant_options.epilogue_mode, variant_worst32, variant_worst16,
          variant_unwritten, variant_mismatches));
  *ok = *ok && variant_mismatches == 0;

  // 16-bit storage against the fp32 inputs (the docs/design.md contract).
  {
    double worst = 0;
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      const uint32_t m = 32, n = 8, d = 512;
      const size_t rows_n = 128, nd = size_t{n} * d;
      std::vector<float> cpe = RandomVector(rng, rows_n * nd, d, 2.0);
      std::vector<float> keys = RandomVector(rng, rows_n * nd, d, 2.0);
      ItemArena arena(ArenaLayout{n, d, dtype, true}, rows_n);
      for (size_t r = 0; r < rows_n; ++r) {
        CHECK_OK(
            arena.SetRow(r, std::span<const float>(cpe).subspan(r * nd, nd),
                         std::span<const float>(keys).subspan(r * nd, nd)));
      }
      arena.Publish(rows_n);
      const auto upe = RandomVector(rng, size_t{m} * d, d, 2.0);
      const auto q = RandomVector(rng, size_t{m} * d, d, 2.0);
      std::vector<uint32_t> rows(rows_n);
      for (uint32_t r = 0; r < rows_n; ++r) rows[r] = r;
      std::vector<float> scores(rows_n, NAN);
      CHECK_OK(scorer->Score(UserView{m, d, upe, q}, arena, rows, scores, {}));
      for (size_t r = 0; r < rows_n; ++r) {
        const Ref ref = Reference(
            m, n, d, upe, q, std::span<const float>(cpe).subspan(r * nd, nd),
            std::span<const float>(keys).subspan(r * nd, nd));
        worst = std::max(worst, PlainRelErr(scores[r], ref));
      }
    }
    report.Add("contract_16bit_vs_fp32_inputs_max_rel_err", worst);
    report.Line(
        Fmt("16-bit storage vs float64 on the fp32 inputs (S1): max "
            "rel err %.2e (contract 2e-2)",
            worst));
    *ok = *ok && worst <= 2e-2;
  }

  // Concurrent calls fused by the batcher.
  {
    CudaScorerOptions bopt;
    bopt.batch_window_us = 2000;
    bopt.max_batch = 16;
    bopt.poison_outputs = true;
    std::unique_ptr<Scorer> batching;
    CHECK_OK(MakeCudaScorer(bopt, &batching));
    const uint32_t m = 32, n = 8, d = 512;
    ItemArena arena(ArenaLayout{n, d, DType::kBFloat16, true}, 1000);
    FillArena(arena, 1000, rng(), 2.0);
    constexpr int kThreads = 16;
    std::vector<std::vector<float>> upes(kThreads), qs(kThreads);
    std::vector<std::vector<uint32_t>> rows(kThreads);
    std::vector<std::vector<float>> scores(kThreads);
    std::vector<std::vector<int32_t>> codes(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      upes[t] = RandomVector(rng, size_t{m} * d, d, 2.0);
      qs[t] = RandomVector(rng, size_t{m} * d, d, 2.0);
      rows[t].resize(50 + 29 * t);
      for (uint32_t& r : rows[t]) r = static_cast<uint32_t>(rng() % 1000);
      scores[t].assign(rows[t].size(), NAN);
      codes[t].assign(rows[t].size(), -7);
    }
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    std::vector<Status> statuses(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        statuses[t] = batching->Score(UserView{m, d, upes[t], qs[t]}, arena,
                                      rows[t], scores[t], codes[t]);
      });
    }
    for (auto& th : threads) th.join();
    double worst = 0;
    size_t bad = 0;
    for (int t = 0; t < kThreads; ++t) {
      CHECK_OK(statuses[t]);
      const UserView user{m, d, upes[t], qs[t]};
      std::vector<Ref> refs(rows[t].size());
      ParallelFor(rows[t].size(), [&](size_t b, size_t e) {
        for (size_t c = b; c < e; ++c)
          refs[c] = RowReference(arena, m, user, rows[t][c]);
      });
      for (size_t c = 0; c < rows[t].size(); ++c) {
        worst = std::max(worst, RelErr(scores[t][c], refs[c]));
        if (codes[t][c] < 0 || codes[t][c] >= 32) ++bad;
      }
    }
    report.Add("batched_max_rel_err", worst);
    report.Line(
        Fmt("batched concurrent Score (16 threads, one window): max "
            "rel err %.2e, unwritten %zu",
            worst, bad));
    *ok = *ok && worst <= 1e-4 && bad == 0;
  }

  // Full-scan top-k against the reference order.
  {
    const uint32_t m = 32, n = 8, d = 512;
    const size_t rows_n = flags.quick ? 2000 : 20000;
    ItemArena arena(ArenaLayout{n, d, DType::kFloat32, true}, rows_n);
    FillArena(arena, rows_n, rng(), 2.0);
    const auto upe = RandomVector(rng, size_t{m} * d, d, 2.0);
    const auto q = RandomVector(rng, size_t{m} * d, d, 2.0);
    const UserView user{m, d, upe, q};
    std::vector<uint8_t> live(rows_n, 1);
    for (size_t r = 0; r < rows_n; r += 5) live[r] = 0;
    std::vector<ScoredRow> top;
    const uint32_t k = 100;
    CHECK_OK(scorer->ScoreAllTopK(user, arena, live, k, &top));
    std::vector<Ref> refs(rows_n);
    ParallelFor(rows_n, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r)
        refs[r] = RowReference(arena, m, user, static_cast<uint32_t>(r));
    });
    std::vector<uint32_t> order;
    for (uint32_t r = 0; r < rows_n; ++r) {
      if (live[r]) order.push_back(r);
    }
    std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
      return refs[x].score > refs[y].score;
    });
    size_t wrong = 0;
    double worst = 0;
    bool size_ok = top.size() == k;
    for (size_t i = 0; i < top.size() && i < order.size(); ++i) {
      if (!live[top[i].row]) ++wrong;
      worst = std::max(worst, RelErr(top[i].score, refs[top[i].row]));
      const double gap =
          std::abs(refs[order[i]].score - refs[top[i].row].score);
      if (top[i].row != order[i] && gap > 1e-5 * refs[order[i]].magnitude)
        ++wrong;
    }
    report.Add("topk_wrong_rows", static_cast<double>(wrong));
    report.Add("topk_max_rel_err", worst);
    report.Line(
        Fmt("ScoreAllTopK(k=100) over %zu fp32 items (1 in 5 dead): "
            "%zu rows out of reference order, max rel err %.2e",
            rows_n, wrong, worst));
    *ok = *ok && wrong == 0 && size_ok && worst <= 1e-5;
  }
}

}  // namespace embsum::scoring::gpu_check
