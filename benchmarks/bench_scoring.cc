#include "benchmarks/bench_scoring.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "scoring/cpu_scorer.h"
#include "scoring/dtype.h"
#include "scoring/item_arena.h"
#include "scoring/reference.h"
#include "scoring/scorer.h"
#include "scoring/user_view.h"

#if EMBSUM_HAVE_BLAS
#include <cblas.h>
#endif
#if EMBSUM_HAVE_FAISS
#include <faiss/IndexFlat.h>
#endif
#if EMBSUM_HAVE_CUDA
#include "scoring/cuda/cuda_bench.h"
#include "scoring/cuda/cuda_scorer.h"
#endif

namespace embsum::bench {
namespace {

using scoring::DType;
using scoring::ItemArena;
using scoring::Scorer;
using scoring::Status;

constexpr char kUsage[] =
    "usage: embsum-bench-scoring [--user_codes=32] [--item_codes=8] "
    "[--dim=512]\n"
    "    [--candidates=500] [--dtype=fp32|bf16|fp16] [--backend=cpu|cuda] "
    "[--json]\n"
    "    [--queries=true] [--keys=true] [--arena_rows=CANDIDATES] "
    "[--reps=50]\n"
    "    [--warmup=5] [--threads=0] [--parallel_threshold=N]\n"
    "    [--isa=scalar|avx2|avx512|avx512bf16] [--fp16_bf16_products=true]\n"
    "    [--faiss_k=100] [--seed=1]\n"
    "Times the scorer, the two sgemm products of the same shapes (the bound)\n"
    "and FAISS IndexFlatIP over the same CPE rows (the peer) in one run.\n";

struct Flags {
  uint32_t user_codes = 32;
  uint32_t item_codes = 8;
  uint32_t dim = 512;
  uint32_t candidates = 500;
  std::string dtype = "fp32";
  std::string backend = "cpu";
  bool json = false;
  // With per-user queries Q and per-item keys G (the trained model's
  // export); false makes Q = A or G = B.
  bool queries = true;
  bool keys = true;
  // Rows in the arena the candidates are drawn from (0: = candidates).
  uint64_t arena_rows = 0;
  int reps = 50;
  int warmup = 5;
  int threads = 0;  // scorer threads, 0 = all cores
  std::optional<uint64_t> parallel_threshold;
  // CpuScorerOptions::fp16_bf16_products (fp16 storage on AVX512_BF16).
  bool fp16_bf16_products = true;
  std::string isa;  // empty: the best the CPU supports
  uint32_t faiss_k = 100;
  uint64_t seed = 1;
};

bool ParseUint(std::string_view text, uint64_t max, uint64_t* out) {
  if (text.empty()) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    if (value > (max - static_cast<uint64_t>(c - '0')) / 10) return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = value;
  return true;
}

bool ParseBool(std::string_view text, bool* out) {
  if (text.empty() || text == "true" || text == "1") {
    *out = true;
  } else if (text == "false" || text == "0") {
    *out = false;
  } else {
    return false;
  }
  return true;
}

// Parses --name=value flags; on error writes the message to *error.
bool ParseFlags(int argc, char** argv, Flags* flags, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *error = "";
      return false;
    }
    if (arg.substr(0, 2) != "--") {
      *error = "unexpected argument '" + std::string(arg) + "'";
      return false;
    }
    arg.remove_prefix(2);
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value =
        has_value ? arg.substr(eq + 1) : std::string_view();
    uint64_t number = 0;
    auto uint_flag = [&](uint64_t max, auto* field) {
      if (!ParseUint(value, max, &number)) {
        *error = "--" + std::string(name) + ": want an integer in [0, " +
                 std::to_string(max) + "], got '" + std::string(value) + "'";
        return false;
      }
      *field = static_cast<std::remove_pointer_t<decltype(field)>>(number);
      return true;
    };
    auto bool_flag = [&](bool* field) {
      if (!ParseBool(value, field)) {
        *error = "--" + std::string(name) + ": want true or false, got '" +
                 std::string(value) + "'";
        return false;
      }
      return true;
    };
    bool ok = true;
    if (name == "user_codes") {
      ok = uint_flag(4096, &flags->user_codes);
    } else if (name == "item_codes") {
      ok = uint_flag(4096, &flags->item_codes);
    } else if (name == "dim") {
      ok = uint_flag(65536, &flags->dim);
    } else if (name == "candidates") {
      ok = uint_flag(100000000, &flags->candidates);
    } else if (name == "arena_rows") {
      ok = uint_flag(100000000, &flags->arena_rows);
    } else if (name == "reps") {
      ok = uint_flag(1000000, &flags->reps);
    } else if (name == "warmup") {
      ok = uint_flag(1000000, &flags->warmup);
    } else if (name == "threads") {
      ok = uint_flag(1024, &flags->threads);
    } else if (name == "parallel_threshold") {
      uint64_t threshold = 0;
      ok = uint_flag(UINT32_MAX, &threshold);
      flags->parallel_threshold = threshold;
    } else if (name == "faiss_k") {
      ok = uint_flag(1000000, &flags->faiss_k);
    } else if (name == "seed") {
      ok = uint_flag(UINT64_MAX, &flags->seed);
    } else if (name == "dtype") {
      flags->dtype = value;
    } else if (name == "backend") {
      flags->backend = value;
    } else if (name == "isa") {
      flags->isa = value;
    } else if (name == "json") {
      ok = bool_flag(&flags->json);
    } else if (name == "queries") {
      ok = bool_flag(&flags->queries);
    } else if (name == "keys") {
      ok = bool_flag(&flags->keys);
    } else if (name == "fp16_bf16_products") {
      ok = bool_flag(&flags->fp16_bf16_products);
    } else {
      *error = "unknown flag --" + std::string(name);
      return false;
    }
    if (!ok) return false;
  }
  if (flags->reps < 1) {
    *error = "--reps must be at least 1";
    return false;
  }
  if (flags->candidates < 1) {
    *error = "--candidates must be at least 1";
    return false;
  }
  if (flags->arena_rows == 0) flags->arena_rows = flags->candidates;
  if (flags->arena_rows < flags->candidates) {
    *error = "--arena_rows (" + std::to_string(flags->arena_rows) +
             ") must be at least --candidates (" +
             std::to_string(flags->candidates) + ")";
    return false;
  }
  if (flags->backend != "cpu" && flags->backend != "cuda") {
    *error = "--backend: want cpu or cuda, got '" + flags->backend + "'";
    return false;
  }
  return true;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

template <class F>
double TimeOnce(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return Seconds(std::chrono::steady_clock::now() - start);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t at = std::min(
      v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[at];
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return line.substr(line.find_first_not_of(' ', colon + 1));
      }
    }
  }
  return "unknown";
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", x);
  return buf;
}

// Ordered JSON object writer.
class JsonObject {
 public:
  void Add(std::string_view key, std::string raw) {
    fields_.emplace_back(std::string(key), std::move(raw));
  }
  void Number(std::string_view key, double x) { Add(key, JsonNumber(x)); }
  void Text(std::string_view key, std::string_view s) {
    Add(key, JsonString(s));
  }
  void Bool(std::string_view key, bool b) { Add(key, b ? "true" : "false"); }
  std::string Dump() const {
    std::string out = "{";
    for (size_t i = 0; i < fields_.size(); ++i) {
      if (i > 0) out += ", ";
      out += JsonString(fields_[i].first) + ": " + fields_[i].second;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

std::vector<float> RandomRows(std::mt19937_64& rng, size_t rows, size_t d) {
  // Entries N(0, 1/d): dot products about N(0, 1).
  std::normal_distribution<float> normal(
      0.0f, 1.0f / std::sqrt(static_cast<float>(std::max<size_t>(d, 1))));
  std::vector<float> out(rows * d);
  for (float& x : out) x = normal(rng);
  return out;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "embsum-bench-scoring: %s\n", message.c_str());
  return 1;
}

}  // namespace

int RunScoringBench(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    if (error.empty()) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "embsum-bench-scoring: %s\n%s", error.c_str(), kUsage);
    return 2;
  }
  const std::optional<DType> dtype = scoring::ParseDType(flags.dtype);
  if (!dtype) {
    std::fprintf(stderr,
                 "embsum-bench-scoring: --dtype: want fp32, bf16 or fp16, got "
                 "'%s'\n",
                 flags.dtype.c_str());
    return 2;
  }
  const uint32_t m = flags.user_codes, n = flags.item_codes, d = flags.dim;
  const size_t c_count = flags.candidates;
  const size_t block = size_t{n} * d;

  // Inputs.
  std::mt19937_64 rng(flags.seed);
  const std::vector<float> a = RandomRows(rng, m, d);
  const std::vector<float> q =
      flags.queries ? RandomRows(rng, m, d) : std::vector<float>();
  scoring::ArenaLayout layout{n, d, *dtype, flags.keys};
  ItemArena arena(layout, flags.arena_rows);
  {
    std::vector<float> cpe, keys;
    for (uint64_t r = 0; r < flags.arena_rows; ++r) {
      cpe = RandomRows(rng, n, d);
      if (flags.keys) keys = RandomRows(rng, n, d);
      const Status status = arena.SetRow(r, cpe, keys);
      if (!status.ok()) return Fail(status.message());
    }
    arena.Publish(flags.arena_rows);
  }
  std::vector<uint32_t> all_rows(flags.arena_rows);
  std::iota(all_rows.begin(), all_rows.end(), 0u);
  std::shuffle(all_rows.begin(), all_rows.end(), rng);
  const std::vector<uint32_t> rows(all_rows.begin(),
                                   all_rows.begin() + c_count);
  scoring::UserView user{m, d, a, q};

  // The same candidates' rows (as stored, widened to fp32), contiguous, for
  // the sgemm bound and FAISS: B_all and G_all are (C*n) x d.
  std::vector<float> b_all(c_count * block), g_all(c_count * block);
  for (size_t c = 0; c < c_count; ++c) {
    arena.ReadRow(rows[c], std::span<float>(b_all).subspan(c * block, block),
                  std::span<float>(g_all).subspan(c * block, block));
    if (!flags.keys) {
      std::copy_n(b_all.begin() + c * block, block, g_all.begin() + c * block);
    }
  }

  // Our scorer.
  std::unique_ptr<Scorer> scorer;
  std::string isa_name;
  scoring::CpuScorerOptions cpu_options;
  cpu_options.threads = flags.threads;
  cpu_options.fp16_bf16_products = flags.fp16_bf16_products;
  if (flags.parallel_threshold) {
    cpu_options.parallel_threshold = *flags.parallel_threshold;
  }
  if (flags.backend == "cpu") {
    scoring::CpuIsa isa = scoring::BestCpuIsa();
    if (!flags.isa.empty()) {
      const auto parsed = scoring::ParseCpuIsa(flags.isa);
      if (!parsed) return Fail("--isa: unknown '" + flags.isa + "'");
      isa = *parsed;
    }
    const Status status =
        scoring::MakeCpuScorerWithIsa(cpu_options, isa, &scorer);
    if (!status.ok()) return Fail(status.message());
    isa_name = scoring::CpuIsaName(isa);
  } else {
#if EMBSUM_HAVE_CUDA
    const Status status =
        scoring::MakeCudaScorer(scoring::CudaScorerOptions{}, &scorer);
    if (!status.ok()) return Fail(status.message());
    const Status sync = scorer->SyncArena(arena, {});
    if (!sync.ok()) return Fail(sync.message());
    isa_name = "cuda";
#else
    return Fail("--backend=cuda: this binary was built without CUDA");
#endif
  }

  std::vector<float> scores(c_count);
  std::vector<int32_t> codes(c_count);
  Status score_status;
  auto run_ours = [&] {
    score_status = scorer->Score(user, arena, rows, scores, codes);
  };

  std::vector<float> k_out(size_t{m} * c_count * n),
      l_out(size_t{m} * c_count * n);
  std::function<void()> run_bound;
  std::string bound_kind = "none";
  double cuda_bound = NAN;
  if (flags.backend == "cpu") {
#if EMBSUM_HAVE_BLAS
    bound_kind = "openblas_sgemm";
    const float* q_data = flags.queries ? q.data() : a.data();
    run_bound = [&, q_data] {
      const int cols = static_cast<int>(c_count * n);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  cols, static_cast<int>(d), 1.0f, a.data(),
                  static_cast<int>(d), b_all.data(), static_cast<int>(d), 0.0f,
                  k_out.data(), cols);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  cols, static_cast<int>(d), 1.0f, q_data, static_cast<int>(d),
                  g_all.data(), static_cast<int>(d), 0.0f, l_out.data(), cols);
    };
#endif
  } else {
#if EMBSUM_HAVE_CUDA
    bound_kind = "cublas_sgemm";
    const Status status = scoring::CudaSgemmBoundSeconds(
        m, n, d, static_cast<uint32_t>(c_count), flags.reps, &cuda_bound);
    if (!status.ok()) return Fail(status.message());
#endif
  }

  std::function<void()> run_faiss;
#if EMBSUM_HAVE_FAISS
  // FAISS labels: Index::idx_t up to 1.7.3, faiss::idx_t from 1.7.4 (the GPU
  // image builds 1.8.0); both are int64_t, as is Index::ntotal.
  using FaissIdx = decltype(faiss::Index::ntotal);
  const uint32_t faiss_k =
      static_cast<uint32_t>(std::min<size_t>(flags.faiss_k, c_count * n));
  faiss::IndexFlatIP faiss_index(static_cast<FaissIdx>(d));
  faiss_index.add(static_cast<FaissIdx>(c_count * n), b_all.data());
  std::vector<float> faiss_distances(size_t{m} * faiss_k);
  std::vector<FaissIdx> faiss_labels(size_t{m} * faiss_k);
  run_faiss = [&] {
    faiss_index.search(static_cast<FaissIdx>(m), a.data(), faiss_k,
                       faiss_distances.data(), faiss_labels.data());
  };
#endif

  // Each contender in its own block, warm-up first: OpenBLAS and OpenMP
  // worker threads spin for a while after each call, which would steal the
  // cores from whichever contender ran next if the reps were interleaved.
  auto time_block = [&](const std::function<void()>& run) {
    std::vector<double> times;
    if (!run) return times;
    for (int i = 0; i < flags.warmup; ++i) run();
    for (int i = 0; i < flags.reps; ++i) times.push_back(TimeOnce(run));
    return times;
  };
  const std::vector<double> ours_t = time_block(run_ours);
  if (!score_status.ok()) return Fail(score_status.message());
  const std::vector<double> bound_t = time_block(run_bound);
  const std::vector<double> faiss_t = time_block(run_faiss);

  // Parity of a sample against the float64 reference.
  double max_error = 0.0, max_score = 0.0;
  for (size_t c = 0; c < c_count; c += std::max<size_t>(1, c_count / 8)) {
    std::vector<float> b(block), g(flags.keys ? block : 0);
    arena.ReadRow(rows[c], b, g);
    const std::vector<double> a64(a.begin(), a.end()), q64(q.begin(), q.end()),
        b64(b.begin(), b.end()), g64(g.begin(), g.end());
    const double ref =
        scoring::ReferenceScore(m, n, d, a64, q64, b64, g64).score;
    max_error = std::max(max_error, std::abs(ref - scores[c]));
    max_score = std::max(max_score, std::abs(ref));
  }

  const double ours = Percentile(ours_t, 0.5);
  const double bound =
      flags.backend == "cpu" ? Percentile(bound_t, 0.5) : cuda_bound;
  const double faiss = Percentile(faiss_t, 0.5);
  const double bytes =
      static_cast<double>(c_count) * static_cast<double>(layout.row_bytes());
  const double flops = 4.0 * m * n * d * static_cast<double>(c_count);
  const int scorer_threads =
      flags.threads > 0 ? flags.threads
                        : static_cast<int>(std::thread::hardware_concurrency());

  JsonObject out;
  out.Number("ours_seconds_p50", ours);
  out.Number("sgemm_bound_seconds_p50", bound);
  out.Number("faiss_flatip_seconds_p50", faiss);
  out.Number("ratio_to_bound", ours / bound);
  out.Number("ratio_to_faiss", ours / faiss);
  // Best-of-reps ratio: less sensitive to other processes on a shared box.
  out.Number("ratio_to_bound_min",
             flags.backend == "cpu"
                 ? Percentile(ours_t, 0.0) / Percentile(bound_t, 0.0)
                 : NAN);
  out.Number("ours_seconds_p90", Percentile(ours_t, 0.9));
  out.Number("ours_seconds_min", Percentile(ours_t, 0.0));
  out.Number("sgemm_bound_seconds_min",
             flags.backend == "cpu" ? Percentile(bound_t, 0.0) : NAN);
  out.Number("ours_gbytes_per_second", bytes / ours / 1e9);
  out.Number("ours_gflops", flops / ours / 1e9);
  out.Number("sgemm_bound_gflops", flops / bound / 1e9);
  out.Number("item_bytes_per_request", bytes);
  out.Number("parity_max_abs_error", max_error);
  out.Number("parity_max_rel_error", max_score > 0 ? max_error / max_score : 0);
  out.Number("user_codes", m);
  out.Number("item_codes", n);
  out.Number("dim", d);
  out.Number("candidates", static_cast<double>(c_count));
  out.Number("arena_rows", static_cast<double>(flags.arena_rows));
  out.Text("dtype", scoring::DTypeName(*dtype));
  out.Text("backend", flags.backend);
  out.Text("kernel", isa_name);
  out.Bool("queries", flags.queries);
  out.Bool("keys", flags.keys);
  out.Bool("fp16_bf16_products", flags.fp16_bf16_products);
  out.Number("threads", scorer_threads);
  out.Number("parallel_threshold",
             static_cast<double>(cpu_options.parallel_threshold));
  out.Number("reps", flags.reps);
  out.Text("bound_kind", bound_kind);
  out.Number("faiss_k",
#if EMBSUM_HAVE_FAISS
             faiss_k
#else
             NAN
#endif
  );
  out.Text("cpu_model", CpuModel());
  out.Number("hardware_threads", std::thread::hardware_concurrency());
#if EMBSUM_HAVE_BLAS && defined(OPENBLAS_VERSION)
  out.Text("blas", openblas_get_config());
  out.Number("blas_threads", openblas_get_num_threads());
#endif
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  out.Text("openblas_coretype_env", coretype != nullptr ? coretype : "");

  if (flags.json) {
    std::printf("%s\n", out.Dump().c_str());
    return 0;
  }
  std::printf(
      "embsum-bench-scoring: m=%u n=%u d=%u candidates=%zu dtype=%s "
      "backend=%s kernel=%s threads=%d queries=%d keys=%d\n",
      m, n, d, c_count, flags.dtype.c_str(), flags.backend.c_str(),
      isa_name.c_str(), scorer_threads, flags.queries, flags.keys);
  const double ours_min = Percentile(ours_t, 0.0);
  const double bound_min =
      flags.backend == "cpu" ? Percentile(bound_t, 0.0) : bound;
  std::printf(
      "  ours                  p50 %10.4f ms  min %10.4f ms  %7.1f GB/s  "
      "%7.1f GFLOP/s\n",
      ours * 1e3, ours_min * 1e3, bytes / ours / 1e9, flops / ours / 1e9);
  std::printf("  sgemm bound           p50 %10.4f ms  min %10.4f ms  (%s)\n",
              bound * 1e3, bound_min * 1e3, bound_kind.c_str());
  std::printf("  FAISS IndexFlatIP     p50 %10.4f ms\n", faiss * 1e3);
  std::printf(
      "  ratio to bound            %10.3f     (targets: fp32 <= 1.1, "
      "16-bit <= 0.6); min/min %.3f\n",
      ours / bound, ours_min / bound_min);
  std::printf("  ratio to FAISS            %10.3f\n", ours / faiss);
  std::printf(
      "  parity vs float64         %10.2e     (max abs error / max "
      "|score|)\n",
      max_score > 0 ? max_error / max_score : 0.0);
  return 0;
}

}  // namespace embsum::bench
