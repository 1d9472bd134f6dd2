// embsum-gpu-check: the device check of the CUDA scorer (docs/gpu.md).
//
// 1. Correctness on fresh random inputs (seed printed; --seed to repeat):
//    CudaScorer::Score over many shapes, odd ones included, against the
//    float64 ReferenceScore; outputs poisoned (host NaN/-7, device NaN/-1)
//    before every call. Dumps each shape's inputs and outputs for the
//    PyTorch float64 comparison (torch_compare.py). Batched concurrent
//    calls and full-scan top-k are checked the same way.
// 2. Timings with CUDA events after warm-up, median of many runs:
//    device-to-device copy bandwidth; Rank(500) at S1 (m=32, n=8, d=512,
//    queries and keys) per dtype; one launch for 1..256 users; full scans of
//    --scan_items items with bandwidth against the copy; ScoreAllTopK and
//    Score end to end; concurrent Score throughput with and without dynamic
//    batching.
// Writes check.json under --out and prints a summary.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "scoring/cuda/cuda_bench.h"
#include "scoring/cuda/cuda_scorer.h"
#include "scoring/cuda/cuda_util.h"
#include "scoring/cuda/fused_score.h"
#include "scoring/cuda/launch_plan.h"
#include "scoring/dtype.h"
#include "scoring/item_arena.h"
#include "scoring/reference.h"
#include "scoring/scorer.h"

namespace embsum::scoring {
namespace {

using cuda_internal::DeviceBuffer;
using cuda_internal::DeviceLimits;
using cuda_internal::Event;
using cuda_internal::FusedBatch;
using cuda_internal::LaunchPlan;
using cuda_internal::ScoreShape;
using cuda_internal::Stream;

struct Flags {
  std::string out = ".";
  std::string dump_dir = "/tmp/embsum-gpu-dumps";
  uint64_t seed = 0;
  size_t scan_items = 1000000;
  int rank_reps = 300;
  bool quick = false;
};

int Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "FATAL: %s: %s\n", what.c_str(), s.message().c_str());
  std::exit(1);
}

#define CHECK_OK(expr)                                  \
  do {                                                  \
    const Status check_status_ = (expr);                \
    if (!check_status_.ok()) Die(#expr, check_status_); \
  } while (false)

#define CHECK_CUDA(expr)                              \
  do {                                                \
    const cudaError_t check_error_ = (expr);          \
    if (check_error_ != cudaSuccess) {                \
      std::fprintf(stderr, "FATAL: %s: %s\n", #expr,  \
                   cudaGetErrorString(check_error_)); \
      std::exit(1);                                   \
    }                                                 \
  } while (false)

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void ParallelFor(size_t n, const std::function<void(size_t, size_t)>& body) {
  const size_t threads = std::max<size_t>(
      1, std::min<size_t>(std::thread::hardware_concurrency(), 64));
  std::vector<std::thread> pool;
  const size_t per = (n + threads - 1) / threads;
  for (size_t t = 0; t < threads; ++t) {
    const size_t begin = t * per, end = std::min(n, begin + per);
    if (begin >= end) break;
    pool.emplace_back([&body, begin, end] { body(begin, end); });
  }
  for (auto& th : pool) th.join();
}

// Uniform values with standard deviation scale/sqrt(d): dot products of
// two rows have a standard deviation of about scale^2.
void FillRandom(std::mt19937_64& rng, double scale, size_t d,
                std::span<float> out) {
  const float a =
      static_cast<float>(scale * std::sqrt(3.0 / std::max<size_t>(d, 1)));
  std::uniform_real_distribution<float> u(-a, a);
  for (float& x : out) x = u(rng);
}

std::vector<float> RandomVector(std::mt19937_64& rng, size_t count, size_t d,
                                double scale) {
  std::vector<float> v(count);
  FillRandom(rng, scale, d, v);
  return v;
}

// Fills rows [0, rows) of `arena` with random values, in parallel.
void FillArena(ItemArena& arena, size_t rows, uint64_t seed, double scale) {
  const ArenaLayout& layout = arena.layout();
  const size_t nd = size_t{layout.item_codes} * layout.dim;
  ParallelFor(rows, [&](size_t begin, size_t end) {
    std::mt19937_64 rng(seed ^ (begin * 0x9e3779b97f4a7c15ull));
    std::vector<float> cpe(nd), keys(layout.has_keys ? nd : 0);
    for (size_t r = begin; r < end; ++r) {
      FillRandom(rng, scale, layout.dim, cpe);
      if (layout.has_keys) FillRandom(rng, scale, layout.dim, keys);
      const Status s = arena.SetRow(r, cpe, keys);
      if (!s.ok()) Die("SetRow", s);
    }
  });
  arena.Publish(rows);
}

// Float64 reference plus two error scales:
//  magnitude = sum_ij w_ij |K_ij| (the scale of the weighted sum; the
//              measure of tests/scoring/scoring_test_util.h), and
//  condition = sum_ij w_ij (sum_k |a_ik b_jk| + |K_ij - s| sum_k |q_ik g_jk|),
//              the first-order sensitivity of the score to relative errors
//              in the products of both dot products: the standard bound
//              |fl(x.y) - x.y| <= eps sum|x_k y_k| carried through the
//              softmax. Any fp32 implementation's error is a small multiple
//              of 6e-8 * condition; near-cancelling dot products (tiny d)
//              make `magnitude` meaningless for them.
struct Ref {
  double score = 0, magnitude = 0, condition = 0, margin = 0;
  int32_t code = -1;
};

// Float64 reference (ReferenceScore) plus the error scales above.
Ref Reference(uint32_t m, uint32_t n, uint32_t d, std::span<const float> a,
              std::span<const float> q, std::span<const float> b,
              std::span<const float> g) {
  std::vector<double> a64(a.begin(), a.end()), q64(q.begin(), q.end()),
      b64(b.begin(), b.end()), g64(g.begin(), g.end());
  const ReferenceResult r = ReferenceScore(m, n, d, a64, q64, b64, g64);
  Ref out;
  out.score = r.score;
  out.code = r.top_user_code;
  const std::vector<double>& qq = q64.empty() ? a64 : q64;
  const std::vector<double>& gg = g64.empty() ? b64 : g64;
  std::vector<double> k(size_t{m} * n), l(size_t{m} * n), abs_k(size_t{m} * n),
      abs_l(size_t{m} * n);
  for (uint32_t i = 0; i < m; ++i) {
    for (uint32_t j = 0; j < n; ++j) {
      double sk = 0, sl = 0, ak = 0, al = 0;
      for (uint32_t x = 0; x < d; ++x) {
        const double pk = a64[size_t{i} * d + x] * b64[size_t{j} * d + x];
        const double pl = qq[size_t{i} * d + x] * gg[size_t{j} * d + x];
        sk += pk;
        sl += pl;
        ak += std::abs(pk);
        al += std::abs(pl);
      }
      k[size_t{i} * n + j] = sk;
      l[size_t{i} * n + j] = sl;
      abs_k[size_t{i} * n + j] = ak;
      abs_l[size_t{i} * n + j] = al;
    }
  }
  const double mx = *std::max_element(l.begin(), l.end());
  double z = 0, mag = 0, cond = 0;
  std::vector<double> rows(m, 0.0);
  for (size_t e = 0; e < l.size(); ++e) {
    const double w = std::exp(l[e] - mx);
    z += w;
    mag += w * std::abs(k[e]);
    cond += w * (abs_k[e] + std::abs(k[e] - r.score) * abs_l[e]);
    rows[e / n] += w * k[e];
  }
  out.magnitude = mag / z;
  out.condition = cond / z;
  std::sort(rows.begin(), rows.end(), std::greater<double>());
  out.margin = m == 1
                   ? HUGE_VAL
                   : (rows[0] - rows[1]) / z / std::max(out.magnitude, 1e-300);
  return out;
}

// Error relative to max(|score|, condition): what the bounds check.
double RelErr(double ours, const Ref& ref) {
  const double denom = std::max(std::abs(ref.score), ref.condition);
  if (!std::isfinite(ours)) return HUGE_VAL;
  return denom == 0 ? std::abs(ours) : std::abs(ours - ref.score) / denom;
}

// Error relative to max(|score|, magnitude) (scoring_test_util.h), reported
// for information.
double PlainRelErr(double ours, const Ref& ref) {
  const double denom = std::max(std::abs(ref.score), ref.magnitude);
  if (!std::isfinite(ours)) return HUGE_VAL;
  return denom == 0 ? std::abs(ours) : std::abs(ours - ref.score) / denom;
}

Ref RowReference(const ItemArena& arena, uint32_t m, const UserView& user,
                 uint32_t row) {
  const ArenaLayout& layout = arena.layout();
  const size_t nd = size_t{layout.item_codes} * layout.dim;
  std::vector<float> b(nd), g(layout.has_keys ? nd : 0);
  arena.ReadRow(row, b, g);
  return Reference(m, layout.item_codes, layout.dim, user.upe, user.queries, b,
                   g);
}

// ---------------------------------------------------------------------------
// JSON and summary.

// Collects check.json's fields in order (torch_compare.py reads them by
// name) and the summary lines. Non-finite numbers are written as null.
// Not thread-safe.
class Report {
 public:
  void Add(const std::string& key, double value) {
    if (std::isfinite(value)) {
      json_[key] = value;
    } else {
      json_[key] = nullptr;
    }
  }
  void AddString(const std::string& key, const std::string& value) {
    json_[key] = value;
  }
  void Line(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    summary_.push_back(line);
  }
  // False (and a message on stderr) when the file cannot be written.
  bool Write(const std::string& path) const {
    std::ofstream f(path);
    f << json_.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
      << "\n";
    f.close();
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return false;
    }
    return true;
  }
  const std::vector<std::string>& summary() const { return summary_; }

 private:
  nlohmann::ordered_json json_ = nlohmann::ordered_json::object();
  std::vector<std::string> summary_;
};

std::string Fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

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

// ---------------------------------------------------------------------------
// 2. Timings.

struct DeviceUsers {
  DeviceBuffer users, prepared, rows, offsets, scores, codes;
};

// Times LaunchFusedScore (user preparation + fused kernel) between events.
// Seconds: the stream is idle when the start event fires, so the time
// includes the host's launch latency (the measure of runs 1 and 2).
// DeviceSeconds: a delay kernel holds the stream until the launches are
// queued behind the start event, so the time is the device's alone
// (kernels and the gaps between them).
class KernelTimer {
 public:
  static constexpr uint32_t kDelayUs = 100;

  KernelTimer() {
    CHECK_OK(stream_.Create());
    CHECK_OK(start_.Create());
    CHECK_OK(stop_.Create());
  }
  double Seconds(const FusedBatch& batch, const LaunchPlan& plan,
                 bool device_only = false) {
    if (device_only) {
      CHECK_OK(cuda_internal::LaunchDelay(kDelayUs, stream_.get()));
    }
    CHECK_CUDA(cudaEventRecord(start_.get(), stream_.get()));
    CHECK_OK(cuda_internal::LaunchFusedScore(batch, plan, stream_.get()));
    CHECK_CUDA(cudaEventRecord(stop_.get(), stream_.get()));
    float ms = 0;
    CHECK_OK(cuda_internal::ElapsedMs(start_, stop_, &ms));
    return ms * 1e-3;
  }
  cudaStream_t stream() const { return stream_.get(); }

 private:
  Stream stream_;
  Event start_, stop_;
};

void TimeDtype(const Flags& flags, DType dtype, double copy_bw,
               const DeviceLimits& limits, std::mt19937_64& rng, Report& report,
               bool* ok) {
  const std::string name(DTypeName(dtype));
  const uint32_t m = 32, n = 8, d = 512;
  const size_t items = flags.scan_items;
  const ArenaLayout layout{n, d, dtype, true};
  const size_t row_bytes = layout.row_bytes();
  auto t0 = std::chrono::steady_clock::now();
  ItemArena arena(layout, items);
  FillArena(arena, items, rng(), 2.0);
  const double fill_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  DeviceBuffer dev_arena;
  CHECK_OK(dev_arena.Reserve(items * row_bytes));
  t0 = std::chrono::steady_clock::now();
  CHECK_CUDA(cudaMemcpy(dev_arena.get(), arena.data(), items * row_bytes,
                        cudaMemcpyHostToDevice));
  const double upload_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf(
      "  %s: arena of %zu items (%.1f GB) filled in %.1f s, uploaded "
      "in %.1f s\n",
      name.c_str(), items, items * row_bytes / 1e9, fill_s, upload_s);

  const size_t user_floats = size_t{m} * d;
  const uint32_t max_users = 256;
  const uint32_t per_user = 500;
  std::vector<float> host_users(max_users * 2 * user_floats);
  FillRandom(rng, 2.0, d, host_users);
  DeviceUsers dev;
  CHECK_OK(dev.users.Reserve(host_users.size() * 4));
  CHECK_CUDA(cudaMemcpy(dev.users.get(), host_users.data(),
                        host_users.size() * 4, cudaMemcpyHostToDevice));
  // 16 row sets for the single-user runs (rotated so that repeated runs do
  // not read a cached working set), then 256 x 500 rows for the batches.
  constexpr int kRowSets = 16;
  const size_t total_rows = size_t{kRowSets} * per_user + max_users * per_user;
  std::vector<uint32_t> host_rows(total_rows);
  for (uint32_t& r : host_rows) r = static_cast<uint32_t>(rng() % items);
  CHECK_OK(dev.rows.Reserve(total_rows * 4));
  CHECK_CUDA(cudaMemcpy(dev.rows.get(), host_rows.data(), total_rows * 4,
                        cudaMemcpyHostToDevice));
  std::vector<uint32_t> offsets(max_users + 1);
  for (uint32_t u = 0; u <= max_users; ++u) offsets[u] = u * per_user;
  CHECK_OK(dev.offsets.Reserve(offsets.size() * 4));
  CHECK_CUDA(cudaMemcpy(dev.offsets.get(), offsets.data(), offsets.size() * 4,
                        cudaMemcpyHostToDevice));
  CHECK_OK(dev.scores.Reserve(std::max(items, total_rows) * 4));
  CHECK_OK(dev.codes.Reserve(std::max(items, total_rows) * 4));

  ScoreShape shape{m, n, d, dtype, true, true};
  KernelTimer timer;
  auto batch_for = [&](uint32_t users, const uint32_t* rows, uint32_t count) {
    FusedBatch b;
    b.arena = dev_arena.as<std::byte>();
    b.row_bytes = row_bytes;
    b.shape = shape;
    b.num_users = users;
    b.users = dev.users.as<float>();
    b.user_stride = 2 * user_floats;
    b.prepared = dev.prepared.as<std::byte>();
    b.rows = rows;
    b.offsets = users > 1 ? dev.offsets.as<uint32_t>() : nullptr;
    b.count = count;
    b.scores = dev.scores.as<float>();
    b.codes = dev.codes.as<int32_t>();
    return b;
  };

  // Rank(500) at S1: the default plan, then a sweep of the kernel's knobs
  // (d-axis split, row-load mode, user preparation in a separate pass or in
  // every block), each variant checked against the reference.
  {
    const LaunchPlan plan =
        cuda_internal::PlanLaunch(shape, 1, per_user, per_user, limits);
    CHECK_OK(dev.prepared.Reserve(max_users * plan.prepared_bytes));
    const UserView user0{
        m, d, std::span<const float>(host_users).subspan(0, user_floats),
        std::span<const float>(host_users).subspan(user_floats, user_floats)};
    std::vector<Ref> refs(per_user);
    ParallelFor(per_user, [&](size_t b, size_t e) {
      for (size_t c = b; c < e; ++c) {
        refs[c] = RowReference(arena, m, user0, host_rows[c]);
      }
    });
    // Median host-launched time; *device_t: median device-only time.
    auto time_rank = [&](const LaunchPlan& p, int reps, double* err,
                         double* device_t) {
      std::vector<double> times, device_times;
      for (int i = 0; i < 10 + reps; ++i) {
        const uint32_t* rows =
            dev.rows.as<uint32_t>() + (i % kRowSets) * per_user;
        const double t = timer.Seconds(batch_for(1, rows, per_user), p);
        const double dt = timer.Seconds(batch_for(1, rows, per_user), p, true);
        if (i >= 10) {
          times.push_back(t);
          device_times.push_back(dt);
        }
      }
      *device_t = Median(device_times);
      CHECK_CUDA(cudaMemset(dev.scores.get(), 0xff, per_user * 4));
      timer.Seconds(batch_for(1, dev.rows.as<uint32_t>(), per_user), p);
      std::vector<float> scores(per_user);
      CHECK_CUDA(cudaMemcpy(scores.data(), dev.scores.get(), per_user * 4,
                            cudaMemcpyDeviceToHost));
      *err = 0;
      for (size_t c = 0; c < per_user; ++c) {
        *err = std::max(*err, RelErr(scores[c], refs[c]));
      }
      return Median(times);
    };
    double err = 0, device_t = 0;
    const double t = time_rank(plan, flags.rank_reps, &err, &device_t);
    const double bound = dtype == DType::kFloat32 ? 1e-5 : 1e-4;
    *ok = *ok && err <= bound;
    const double bytes = per_user * double(row_bytes);
    report.Add("rank500_" + name + "_kernel_us", t * 1e6);
    report.Add("rank500_" + name + "_device_us", device_t * 1e6);
    report.Add("rank500_" + name + "_plan_ksplit", plan.ksplit);
    report.Line(Fmt(
        "Rank(500) S1 %s: kernel %.2f us host-launched, %.2f us device "
        "only, medians of %d (default plan: ksplit %u, %u blocks x %u "
        "warps, load_mode %u, prepare_mode %u, epilogue_mode %u); %.0f GB/s "
        "of item rows; max rel err %.1e; target <= 20 us",
        name.c_str(), t * 1e6, device_t * 1e6, flags.rank_reps, plan.ksplit,
        plan.blocks_x, plan.warps, plan.load_mode, plan.prepare_mode,
        plan.epilogue_mode, bytes / t / 1e9, err));
    // The sweep: k<ksplit>_l<load_mode>_p<prepare_mode>_e<epilogue_mode>,
    // host-launched / device-only us; the old default is k8_l1_p0_e0.
    double best = HUGE_VAL, best_device = HUGE_VAL;
    std::string best_name, best_device_name;
    std::string sweep = "  Rank(500) sweep " + name +
                        " (variant: host-launched/device-only us):";
    for (uint32_t ksplit : {4u, 8u, 16u}) {
      for (uint32_t prepare :
           {cuda_internal::kPreparePass, cuda_internal::kPreparePassOverlap,
            cuda_internal::kPrepareScatter}) {
        for (uint32_t load :
             {cuda_internal::kLoadL2Fetch256,
              cuda_internal::kLoadL2Fetch256 | cuda_internal::kLoadEarly}) {
          for (uint32_t epilogue : {cuda_internal::kEpilogueSerial,
                                    cuda_internal::kEpilogueReduce}) {
            LaunchPlan v = plan;
            v.ksplit = ksplit;
            v.warps = plan.warps / ksplit * ksplit;
            const uint32_t groups = v.warps / ksplit;
            const uint32_t tasks =
                (per_user + v.candidates_per_task - 1) / v.candidates_per_task;
            v.blocks_x = std::min<uint32_t>((tasks + groups - 1) / groups,
                                            limits.sm_count);
            v.load_mode = load;
            v.prepare_mode = prepare;
            v.epilogue_mode = epilogue;
            double verr = 0, vdt = 0;
            const double vt = time_rank(v, 100, &verr, &vdt);
            const std::string vname =
                Fmt("k%u_l%u_p%u_e%u", ksplit, load, prepare, epilogue);
            report.Add("rank500_" + name + "_variant_" + vname + "_us",
                       vt * 1e6);
            report.Add("rank500_" + name + "_variant_" + vname + "_device_us",
                       vdt * 1e6);
            sweep += Fmt(" %s:%.1f/%.1f", vname.c_str(), vt * 1e6, vdt * 1e6);
            if (verr > bound) {
              *ok = false;
              std::printf("  VARIANT %s WRONG: max rel err %.2e\n",
                          vname.c_str(), verr);
              continue;  // never the best
            }
            if (vt < best) {
              best = vt;
              best_name = vname;
            }
            if (vdt < best_device) {
              best_device = vdt;
              best_device_name = vname;
            }
          }
        }
      }
    }
    std::printf("%s\n", sweep.c_str());
    report.Add("rank500_" + name + "_best_us", best * 1e6);
    report.AddString("rank500_" + name + "_best_variant", best_name);
    report.Add("rank500_" + name + "_best_device_us", best_device * 1e6);
    report.AddString("rank500_" + name + "_best_device_variant",
                     best_device_name);
    report.Line(
        Fmt("Rank(500) S1 %s best correct variant: %s %.2f us "
            "host-launched; %s %.2f us device only",
            name.c_str(), best_name.c_str(), best * 1e6,
            best_device_name.c_str(), best_device * 1e6));
  }

  // One launch for 1..256 users of 500 candidates each: the default plan,
  // then the variant with the new modes (early loads, scatter preparation,
  // parallel reduction); host-launched times, as in runs 1 and 2.
  for (const bool new_modes : {false, true}) {
    double t1 = 0;
    std::string line = "batched launch " + name +
                       (new_modes ? " variant l9_p2_e1" : "") +
                       " (per-user us, gain vs 1):";
    for (uint32_t users = 1; users <= max_users; users *= 2) {
      const uint32_t total = users * per_user;
      LaunchPlan plan =
          cuda_internal::PlanLaunch(shape, users, per_user, total, limits);
      if (new_modes) {
        plan.load_mode =
            cuda_internal::kLoadL2Fetch256 | cuda_internal::kLoadEarly;
        plan.prepare_mode = cuda_internal::kPrepareScatter;
        plan.epilogue_mode = cuda_internal::kEpilogueReduce;
      }
      const uint32_t* rows = dev.rows.as<uint32_t>() + kRowSets * per_user;
      FusedBatch b = batch_for(users, rows, total);
      b.offsets = dev.offsets.as<uint32_t>();
      std::vector<double> times;
      for (int i = 0; i < 5 + 30; ++i) {
        const double t = timer.Seconds(b, plan);
        if (i >= 5) times.push_back(t);
      }
      const double t = Median(times);
      if (users == 1) t1 = t;
      const double gain = users * t1 / t;
      const std::string key = Fmt("batch_%s%s_users%u", name.c_str(),
                                  new_modes ? "_variant" : "", users);
      report.Add(key + "_us", t * 1e6);
      report.Add(key + "_gain", gain);
      line += Fmt(" %u:%.2f/x%.1f", users, t * 1e6 / users, gain);
    }
    report.Line(line);
  }

  // Full scan: the default plan, then a sweep of d-axis split and load
  // mode, each checked on a sample of rows against the reference.
  {
    const uint32_t count = static_cast<uint32_t>(items);
    const UserView user{
        m, d, std::span<const float>(host_users).subspan(0, user_floats),
        std::span<const float>(host_users).subspan(user_floats, user_floats)};
    std::vector<uint32_t> sample(256);
    for (uint32_t& r : sample) r = static_cast<uint32_t>(rng() % items);
    std::vector<Ref> refs(sample.size());
    ParallelFor(sample.size(), [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        refs[i] = RowReference(arena, m, user, sample[i]);
      }
    });
    const double bound = dtype == DType::kFloat32 ? 1e-5 : 1e-4;
    std::vector<float> scores(items);
    auto time_scan = [&](const LaunchPlan& p, int reps, double* err) {
      CHECK_CUDA(cudaMemset(dev.scores.get(), 0xff, items * 4));
      std::vector<double> times;
      for (int i = 0; i < 2 + reps; ++i) {
        const double t = timer.Seconds(batch_for(1, nullptr, count), p);
        if (i >= 2) times.push_back(t);
      }
      CHECK_CUDA(cudaMemcpy(scores.data(), dev.scores.get(), items * 4,
                            cudaMemcpyDeviceToHost));
      *err = 0;
      for (size_t i = 0; i < sample.size(); ++i) {
        *err = std::max(*err, RelErr(scores[sample[i]], refs[i]));
      }
      return Median(times);
    };
    const LaunchPlan plan =
        cuda_internal::PlanLaunch(shape, 1, count, count, limits);
    double err = 0;
    const double t = time_scan(plan, 15, &err);
    *ok = *ok && err <= bound;
    const double bw = items * double(row_bytes) / t;
    report.Add("scan_" + name + "_ms", t * 1e3);
    report.Add("scan_" + name + "_GBps", bw / 1e9);
    report.Add("scan_" + name + "_frac_of_copy", bw / copy_bw);
    report.Add("scan_" + name + "_sample_max_rel_err", err);
    report.Line(
        Fmt("full scan %zu items %s: %.3f ms, %.0f GB/s = %.0f%% of "
            "the copy bandwidth (target >= 70%%; default plan ksplit "
            "%u load_mode %u); sample max rel err %.1e",
            items, name.c_str(), t * 1e3, bw / 1e9, 100.0 * bw / copy_bw,
            plan.ksplit, plan.load_mode, err));
    double best = HUGE_VAL;
    std::string best_name;
    // k<ksplit>_l<load_mode>_p<prepare_mode>; the old default is k1_l1_p0.
    std::string sweep = "  scan sweep " + name + " (variant: % of copy):";
    for (uint32_t ksplit : {1u}) {
      for (uint32_t load : {1u, 9u, 3u, 11u, 13u}) {
        for (uint32_t prepare :
             {cuda_internal::kPreparePass, cuda_internal::kPrepareScatter}) {
          LaunchPlan v = plan;
          v.ksplit = ksplit;
          v.warps = plan.warps / ksplit * ksplit;
          v.load_mode = load;
          v.prepare_mode = prepare;
          double verr = 0;
          const double vt = time_scan(v, 8, &verr);
          const std::string vname = Fmt("k%u_l%u_p%u", ksplit, load, prepare);
          const double frac = items * double(row_bytes) / vt / copy_bw;
          report.Add("scan_" + name + "_variant_" + vname + "_frac", frac);
          sweep += Fmt(" %s:%.0f", vname.c_str(), 100 * frac);
          if (verr > bound) {
            *ok = false;
            std::printf("  VARIANT %s WRONG: max rel err %.2e\n", vname.c_str(),
                        verr);
            continue;  // never the best
          }
          if (vt < best) {
            best = vt;
            best_name = vname;
          }
        }
      }
    }
    std::printf("%s\n", sweep.c_str());
    const double best_bw = items * double(row_bytes) / best;
    report.Add("scan_" + name + "_best_frac_of_copy", best_bw / copy_bw);
    report.AddString("scan_" + name + "_best_variant", best_name);
    report.Line(Fmt("full scan %s best variant %s: %.0f GB/s = %.0f%% of copy",
                    name.c_str(), best_name.c_str(), best_bw / 1e9,
                    100.0 * best_bw / copy_bw));
  }
  dev_arena.Reset();

  // The public scorer on the same arena: ScoreAllTopK and Score end to end,
  // and concurrent throughput with and without dynamic batching (bf16 only:
  // each scorer mirrors the arena).
  const UserView user{
      m, d, std::span<const float>(host_users).subspan(0, user_floats),
      std::span<const float>(host_users).subspan(user_floats, user_floats)};
  {
    CudaScorerOptions options;
    options.batch_window_us = 0;
    std::unique_ptr<Scorer> scorer;
    CHECK_OK(MakeCudaScorer(options, &scorer));
    std::vector<ScoredRow> top;
    t0 = std::chrono::steady_clock::now();
    CHECK_OK(scorer->ScoreAllTopK(user, arena, {}, 100, &top));  // mirrors
    const double mirror_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    std::vector<double> times;
    for (int i = 0; i < 7; ++i) {
      t0 = std::chrono::steady_clock::now();
      CHECK_OK(scorer->ScoreAllTopK(user, arena, {}, 100, &top));
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count());
    }
    double worst = 0;
    for (const ScoredRow& r : top) {
      worst =
          std::max(worst, RelErr(r.score, RowReference(arena, m, user, r.row)));
    }
    bool sorted = true;
    for (size_t i = 1; i < top.size(); ++i)
      sorted = sorted && top[i - 1].score >= top[i].score;
    *ok = *ok && sorted && top.size() == 100 &&
          worst <= (dtype == DType::kFloat32 ? 1e-5 : 1e-4);
    report.Add("topk_" + name + "_ms", Median(times) * 1e3);
    report.Line(
        Fmt("ScoreAllTopK(k=100) %s over %zu items end to end: %.2f "
            "ms median (first call, with the arena upload: %.1f s); "
            "top-100 max rel err %.2e, sorted %s",
            name.c_str(), items, Median(times) * 1e3, mirror_s, worst,
            sorted ? "yes" : "NO"));
    // Score(500) end to end (host to host), no batching window.
    std::vector<float> scores(per_user);
    std::vector<int32_t> codes(per_user);
    times.clear();
    for (int i = 0; i < 20 + 200; ++i) {
      const std::span<const uint32_t> rs(
          host_rows.data() + (i % kRowSets) * per_user, per_user);
      t0 = std::chrono::steady_clock::now();
      CHECK_OK(scorer->Score(user, arena, rs, scores, codes));
      if (i >= 20) {
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                .count());
      }
    }
    report.Add("score500_" + name + "_end_to_end_us", Median(times) * 1e6);
    report.Line(
        Fmt("Score(500) %s end to end (host in, host out, no "
            "batching window): %.1f us median",
            name.c_str(), Median(times) * 1e6));
  }
  if (dtype == DType::kBFloat16 && !flags.quick) {
    for (uint32_t window : {0u, 100u}) {
      CudaScorerOptions options;
      options.batch_window_us = window;
      std::unique_ptr<Scorer> scorer;
      CHECK_OK(MakeCudaScorer(options, &scorer));
      std::vector<float> warm(per_user);
      CHECK_OK(scorer->Score(
          user, arena, std::span<const uint32_t>(host_rows.data(), per_user),
          warm, {}));
      std::string line =
          Fmt("concurrent Score(500) bf16, window %u us "
              "(threads: calls/s, p50 us):",
              window);
      for (int threads : {1, 8, 32, 128}) {
        std::atomic<bool> stop{false};
        std::atomic<uint64_t> calls{0};
        std::vector<std::vector<double>> lat(threads);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            std::vector<float> out(per_user);
            const UserView u{
                m, d,
                std::span<const float>(host_users)
                    .subspan((t % max_users) * 2 * user_floats, user_floats),
                std::span<const float>(host_users)
                    .subspan((t % max_users) * 2 * user_floats + user_floats,
                             user_floats)};
            size_t i = t;
            while (!stop.load(std::memory_order_relaxed)) {
              const std::span<const uint32_t> rs(
                  host_rows.data() + (i++ % kRowSets) * per_user, per_user);
              const auto s = std::chrono::steady_clock::now();
              CHECK_OK(scorer->Score(u, arena, rs, out, {}));
              lat[t].push_back(std::chrono::duration<double>(
                                   std::chrono::steady_clock::now() - s)
                                   .count());
              calls.fetch_add(1, std::memory_order_relaxed);
            }
          });
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        stop.store(true);
        for (auto& th : pool) th.join();
        std::vector<double> all;
        for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
        const double qps = calls.load() / 0.6;
        report.Add(
            Fmt("concurrent_bf16_window%u_threads%d_qps", window, threads),
            qps);
        report.Add(
            Fmt("concurrent_bf16_window%u_threads%d_p50_us", window, threads),
            Median(all) * 1e6);
        line += Fmt(" %d:%.0f/%.0f", threads, qps, Median(all) * 1e6);
      }
      report.Line(line);
    }
  }
}

int Main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress survives a timeout
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t len = std::strlen(name);
      return arg.compare(0, len, name) == 0 ? argv[i] + len : nullptr;
    };
    if (const char* v = value("--out=")) {
      flags.out = v;
    } else if (const char* v = value("--dump_dir=")) {
      flags.dump_dir = v;
    } else if (const char* v = value("--seed=")) {
      flags.seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--scan_items=")) {
      flags.scan_items = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--rank_reps=")) {
      flags.rank_reps = std::atoi(v);
    } else if (arg == "--quick") {
      flags.quick = true;
    } else {
      std::fprintf(stderr,
                   "usage: embsum-gpu-check [--out=DIR] [--dump_dir=DIR] "
                   "[--seed=N] [--scan_items=N] [--rank_reps=N] [--quick]\n");
      return 2;
    }
  }
  std::string why;
  if (!CudaDeviceAvailable(&why)) {
    std::fprintf(stderr, "no CUDA device: %s\n", why.c_str());
    return 1;
  }
  if (flags.seed == 0) flags.seed = std::random_device{}();
  std::mt19937_64 rng(flags.seed);
  Report report;
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  DeviceLimits limits;
  CHECK_OK(cuda_internal::QueryDeviceLimits(0, &limits));
  std::printf(
      "device: %s, %d SMs, %.1f GiB, L2 %.0f MiB, cc %d.%d; seed %llu\n",
      prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0,
      prop.l2CacheSize / 1048576.0, prop.major, prop.minor,
      static_cast<unsigned long long>(flags.seed));
  report.AddString("device", prop.name);
  report.Add("seed", static_cast<double>(flags.seed));
  bool ok = true;
  std::printf("== correctness\n");
  CheckCorrectness(flags, rng, report, &ok);

  std::printf("== timings\n");
  double copy_bw = 0;
  CHECK_OK(CudaCopyBandwidth(size_t{4} << 30, 20, &copy_bw));
  report.Add("copy_GBps", copy_bw / 1e9);
  report.Line(
      Fmt("device-to-device copy: %.0f GB/s (read + written, 4 GiB, "
          "median of 20)",
          copy_bw / 1e9));
  double bound = NAN;
  const Status bound_status =
      CudaSgemmBoundSeconds(32, 8, 512, 500, 50, &bound);
  report.Add("sgemm_bound_rank500_us", bound * 1e6);
  report.Line(bound_status.ok()
                  ? Fmt("cuBLAS sgemm bound, two products at S1 x 500: "
                        "%.2f us",
                        bound * 1e6)
                  : "cuBLAS sgemm bound: " + bound_status.message());
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    TimeDtype(flags, dtype, copy_bw, limits, rng, report, &ok);
  }
  report.Add("ok", ok ? 1 : 0);
  if (!report.Write(flags.out + "/check.json")) ok = false;
  std::printf("== summary (%s)\n", prop.name);
  for (const std::string& line : report.summary()) {
    std::printf("  %s\n", line.c_str());
  }
  std::printf("check: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace embsum::scoring

int main(int argc, char** argv) { return embsum::scoring::Main(argc, argv); }
