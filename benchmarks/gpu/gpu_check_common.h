// What the checks of embsum-gpu-check share: flags, fatal-error macros,
// random inputs, the float64 reference with its error scales, and the
// report (check.json and the summary). Header-only, internal to the tool.
// Not thread-safe unless a function says so.
#ifndef EMBSUM_BENCHMARKS_GPU_GPU_CHECK_COMMON_H_
#define EMBSUM_BENCHMARKS_GPU_GPU_CHECK_COMMON_H_

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

namespace embsum::scoring::gpu_check {

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

inline int Die(const std::string& what, const Status& s) {
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

inline double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline void ParallelFor(size_t n,
                        const std::function<void(size_t, size_t)>& body) {
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
inline void FillRandom(std::mt19937_64& rng, double scale, size_t d,
                       std::span<float> out) {
  const float a =
      static_cast<float>(scale * std::sqrt(3.0 / std::max<size_t>(d, 1)));
  std::uniform_real_distribution<float> u(-a, a);
  for (float& x : out) x = u(rng);
}

inline std::vector<float> RandomVector(std::mt19937_64& rng, size_t count,
                                       size_t d, double scale) {
  std::vector<float> v(count);
  FillRandom(rng, scale, d, v);
  return v;
}

// Fills rows [0, rows) of `arena` with random values, in parallel.
inline void FillArena(ItemArena& arena, size_t rows, uint64_t seed,
                      double scale) {
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
inline Ref Reference(uint32_t m, uint32_t n, uint32_t d,
                     std::span<const float> a, std::span<const float> q,
                     std::span<const float> b, std::span<const float> g) {
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
inline double RelErr(double ours, const Ref& ref) {
  const double denom = std::max(std::abs(ref.score), ref.condition);
  if (!std::isfinite(ours)) return HUGE_VAL;
  return denom == 0 ? std::abs(ours) : std::abs(ours - ref.score) / denom;
}

// Error relative to max(|score|, magnitude) (scoring_test_util.h), reported
// for information.
inline double PlainRelErr(double ours, const Ref& ref) {
  const double denom = std::max(std::abs(ref.score), ref.magnitude);
  if (!std::isfinite(ours)) return HUGE_VAL;
  return denom == 0 ? std::abs(ours) : std::abs(ours - ref.score) / denom;
}

inline Ref RowReference(const ItemArena& arena, uint32_t m,
                        const UserView& user, uint32_t row) {
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

inline std::string Fmt(const char* format, ...)
    __attribute__((format(printf, 1, 2)));
inline std::string Fmt(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

}  // namespace embsum::scoring::gpu_check

#endif  // EMBSUM_BENCHMARKS_GPU_GPU_CHECK_COMMON_H_
