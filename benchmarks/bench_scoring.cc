#include "benchmarks/bench_scoring.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "scoring/cpu_peak.h"
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
    "    [--isa=scalar|avx2|avxvnni|avx512|avx512vnni|avx512bf16|amx]\n"
    "    [--fp16_bf16_products=true]\n"
    "    [--faiss_k=100] [--seed=1] [--dispatch_budget_ms=300]\n"
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
  // Rows in the arena the candidates are drawn from (0: enough rows for 4x
  // the last-level cache, at least `candidates`).
  uint64_t arena_rows = 0;
  // in_cache: arena_rows = candidates, one user, one row set.
  bool in_cache = false;
  // Distinct users and candidate row sets rotated through the reps.
  uint32_t users = 16;
  uint32_t row_sets = 16;
  int reps = 50;
  int warmup = 5;
  int threads = 0;  // scorer threads, 0 = all cores
  std::optional<uint64_t> parallel_threshold;
  // CpuScorerOptions::fp16_bf16_products (fp16 storage on AVX512_BF16).
  bool fp16_bf16_products = true;
  std::string isa;  // empty: the best the CPU supports
  uint32_t faiss_k = 100;
  uint64_t seed = 1;
  // The server's dispatch (Scorer::DispatchOn) on this run's arena and
  // shape, within this budget; 0 keeps the synthetic start-up pick.
  uint32_t dispatch_budget_ms = 300;
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
    } else if (name == "users") {
      ok = uint_flag(4096, &flags->users);
    } else if (name == "row_sets") {
      ok = uint_flag(4096, &flags->row_sets);
    } else if (name == "in_cache") {
      ok = bool_flag(&flags->in_cache);
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
    } else if (name == "dispatch_budget_ms") {
      ok = uint_flag(600000, &flags->dispatch_budget_ms);
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
  if (flags->users < 1 || flags->row_sets < 1) {
    *error = "--users and --row_sets must be at least 1";
    return false;
  }
  if (flags->in_cache) {
    if (flags->arena_rows == 0) flags->arena_rows = flags->candidates;
    flags->users = 1;
    flags->row_sets = 1;
  }
  if (flags->arena_rows != 0 && flags->arena_rows < flags->candidates) {
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

// Bytes of the last-level cache (sysfs), or 32 MiB when unknown.
size_t LastLevelCacheBytes() {
  size_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" +
                     std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text) || text.empty()) continue;
    size_t value = 0, i = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      value = value * 10 + static_cast<size_t>(text[i] - '0');
      ++i;
    }
    if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) value <<= 10;
    if (i < text.size() && (text[i] == 'M' || text[i] == 'm')) value <<= 20;
    best = std::max(best, value);
  }
  return best > 0 ? best : size_t{32} << 20;
}

// Runs the register-resident peak loop on `threads` threads at once (the
// calling thread and threads - 1 parked workers) and times the whole.
class PeakRunner {
 public:
  PeakRunner(int threads, scoring::CpuIsa isa, scoring::PeakOp op)
      : isa_(isa), op_(op) {
    for (int t = 1; t < threads; ++t) {
      workers_.emplace_back([this] { WorkerLoop(); });
    }
  }
  ~PeakRunner() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // Seconds for `iterations` rounds on every thread; *ops: total OPs.
  double Run(uint64_t iterations, double* ops) {
    const auto start = std::chrono::steady_clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      iterations_ = iterations;
      pending_ = workers_.size();
      ++generation_;
    }
    wake_.notify_all();
    const double mine =
        scoring::RunPeakLoop(isa_, op_, iterations).value_or(0.0);
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [this] { return pending_ == 0; });
    }
    const double seconds = Seconds(std::chrono::steady_clock::now() - start);
    *ops = mine * static_cast<double>(workers_.size() + 1);
    return seconds;
  }

 private:
  void WorkerLoop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t iterations = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        iterations = iterations_;
      }
      scoring::RunPeakLoop(isa_, op_, iterations);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  scoring::CpuIsa isa_;
  scoring::PeakOp op_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  uint64_t generation_ = 0;
  uint64_t iterations_ = 0;
  size_t pending_ = 0;
  bool stop_ = false;
};

// ---- The AMX family's bounds (issue 24), in a block of their own: the
// tile peaks of this run (register-resident tdpbf16ps / tdpbssd loops) and
// the read bandwidth of the run's own access pattern (every line of the
// candidate rows, the row sets rotated as for the scorer), which bounds a
// request whose arithmetic the tiles finish first.
struct AmxBounds {
  double bf16_tflops = NAN;  // tile peak, all `threads` threads
  double int8_tops = NAN;
  double read_gbytes_per_second = NAN;  // median over reps
  double read_gbytes_per_second_min = NAN;
  double read_gbytes_per_second_max = NAN;
};

// Sums one 8-byte word of every 64-byte line of the rows: the line is read
// from memory whole, the arithmetic is negligible. Like the kernels, it
// prefetches the row two candidates ahead, one line per line read.
uint64_t TouchRows(const ItemArena& arena, const uint32_t* rows, size_t count) {
  const size_t row_bytes = arena.layout().row_bytes();
  uint64_t sum = 0;
  for (size_t c = 0; c < count; ++c) {
    const std::byte* row = arena.row_data(rows[c]);
    const std::byte* ahead =
        c + 2 < count ? arena.row_data(rows[c + 2]) : nullptr;
    for (size_t at = 0; at < row_bytes; at += 64) {
      if (ahead != nullptr) __builtin_prefetch(ahead + at, 0, 3);
      uint64_t word;
      std::memcpy(&word, row + at, sizeof(word));
      sum += word;
    }
  }
  return sum;
}

std::atomic<uint64_t> g_touch_sink{0};

AmxBounds MeasureAmxBounds(const ItemArena& arena,
                           const std::vector<std::vector<uint32_t>>& row_sets,
                           int threads, double request_flops, int reps) {
  AmxBounds out;
  const auto tile_peak = [&](scoring::PeakOp op) -> double {
    if (!scoring::PeakSupported(scoring::CpuIsa::kAmx, op)) return NAN;
    PeakRunner runner(threads, scoring::CpuIsa::kAmx, op);
    double per_iteration = 0;
    runner.Run(1, &per_iteration);  // warm-up; OPs of one round
    // About 20 requests' worth of tile operations per rep (a millisecond).
    const uint64_t iterations = std::max<uint64_t>(
        1, static_cast<uint64_t>(20 * request_flops /
                                 std::max(per_iteration, 1.0)));
    std::vector<double> rates;
    double ops = 0;
    for (int i = 0; i < std::max(3, std::min(reps, 9)); ++i) {
      const double seconds = runner.Run(iterations, &ops);
      rates.push_back(ops / seconds / 1e12);
    }
    return Percentile(rates, 0.5);
  };
  out.bf16_tflops = tile_peak(scoring::PeakOp::kAmxBf16);
  out.int8_tops = tile_peak(scoring::PeakOp::kAmxInt8);

  // Read bandwidth: 8 row sets per rep (long enough that starting the
  // threads is noise), split across `threads` threads.
  constexpr size_t kSetsPerRep = 8;
  std::vector<double> rates;
  size_t next_set = 0;
  for (int rep = 0; rep < std::max(3, std::min(reps, 15)); ++rep) {
    std::vector<uint32_t> rows;
    for (size_t s = 0; s < kSetsPerRep; ++s) {
      const auto& set = row_sets[next_set++ % row_sets.size()];
      rows.insert(rows.end(), set.begin(), set.end());
    }
    const size_t per_thread = (rows.size() + static_cast<size_t>(threads) - 1) /
                              static_cast<size_t>(threads);
    const double seconds = TimeOnce([&] {
      std::vector<std::thread> workers;
      for (int t = 1; t < threads; ++t) {
        const size_t begin = std::min(rows.size(), t * per_thread);
        const size_t count = std::min(per_thread, rows.size() - begin);
        workers.emplace_back([&, begin, count] {
          g_touch_sink.fetch_add(TouchRows(arena, rows.data() + begin, count),
                                 std::memory_order_relaxed);
        });
      }
      g_touch_sink.fetch_add(
          TouchRows(arena, rows.data(), std::min(per_thread, rows.size())),
          std::memory_order_relaxed);
      for (auto& w : workers) w.join();
    });
    rates.push_back(static_cast<double>(rows.size()) *
                    static_cast<double>(arena.layout().row_bytes()) / seconds /
                    1e9);
  }
  out.read_gbytes_per_second = Percentile(rates, 0.5);
  out.read_gbytes_per_second_min = Percentile(rates, 0.0);
  out.read_gbytes_per_second_max = Percentile(rates, 1.0);
  return out;
}

// The block's JSON fields (amx_*): the tile peaks, the request's time at
// the tile peak of its dtype (the arithmetic bound of --isa=amx), the read
// bandwidth and the request's time at it (the memory bound), and ours
// against each.
void AddAmxFields(const AmxBounds& bounds, DType dtype, double flops,
                  double bytes, double ours, nlohmann::ordered_json* out) {
  nlohmann::ordered_json& j = *out;
  j["amx_peak_bf16_tflops"] = bounds.bf16_tflops;
  j["amx_peak_int8_tops"] = bounds.int8_tops;
  double tile_rate = NAN;
  if (dtype == DType::kInt8) {
    tile_rate = bounds.int8_tops;
  } else if (dtype != DType::kFloat32) {
    tile_rate = bounds.bf16_tflops;
  }
  const double tile_seconds = flops / (tile_rate * 1e12);
  j["amx_peak_seconds"] = tile_seconds;
  j["ratio_to_amx_peak"] = tile_seconds / ours;
  j["read_gbytes_per_second"] = bounds.read_gbytes_per_second;
  j["read_gbytes_per_second_min"] = bounds.read_gbytes_per_second_min;
  j["read_gbytes_per_second_max"] = bounds.read_gbytes_per_second_max;
  const double memory_seconds = bytes / (bounds.read_gbytes_per_second * 1e9);
  j["memory_bound_seconds"] = memory_seconds;
  j["ratio_to_memory_bound"] = memory_seconds / ours;
}
// ---- end of the AMX block

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

// The machine's fp32 bound: the fp32 FMA loop of every family with one
// (distinct vector widths), a few reps each on `threads` threads, and the
// family with the highest median rate. by_isa: each one's median GFLOP/s.
// NaN-free only where some family has an fp32 FMA loop.
scoring::CpuIsa FastestFp32Peak(int threads, double flops, int reps,
                                nlohmann::ordered_json* by_isa) {
  scoring::CpuIsa best = scoring::CpuIsa::kScalar;
  double best_rate = 0;
  std::vector<int> widths;
  for (scoring::CpuIsa isa : scoring::SupportedCpuIsas()) {
    if (!scoring::PeakSupported(isa, scoring::PeakOp::kFp32Fma)) continue;
    const int bits = scoring::CpuIsaVectorBits(isa);
    if (std::find(widths.begin(), widths.end(), bits) != widths.end()) continue;
    widths.push_back(bits);
    PeakRunner runner(threads, isa, scoring::PeakOp::kFp32Fma);
    double ops = 0;
    runner.Run(1, &ops);
    const uint64_t iterations = std::max<uint64_t>(
        1, static_cast<uint64_t>(flops / std::max(ops, 1.0)));
    runner.Run(iterations, &ops);  // warm-up: wide units powered on
    std::vector<double> rates;
    for (int i = 0; i < std::max(3, reps); ++i) {
      const double seconds = runner.Run(iterations, &ops);
      rates.push_back(ops / seconds / 1e9);
    }
    const double rate = Percentile(rates, 0.5);
    (*by_isa)[std::string(scoring::CpuIsaName(isa))] = rate;
    if (rate > best_rate) {
      best_rate = rate;
      best = isa;
    }
  }
  return best;
}

// Each timed kernel family's times in one run, and the chosen one's regret.
struct FamilyTimes {
  std::string kernel;
  std::unique_ptr<Scorer> scorer;
  std::vector<double> seconds;
};

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
                 "embsum-bench-scoring: --dtype: want fp32, bf16, fp16 or "
                 "int8, got '%s'\n",
                 flags.dtype.c_str());
    return 2;
  }
  const uint32_t m = flags.user_codes, n = flags.item_codes, d = flags.dim;
  const size_t c_count = flags.candidates;
  const size_t block = size_t{n} * d;
  scoring::ArenaLayout layout{n, d, *dtype, flags.keys};
  const size_t llc_bytes = LastLevelCacheBytes();
  if (flags.arena_rows == 0) {
    const size_t row_bytes = std::max<size_t>(1, layout.row_bytes());
    flags.arena_rows = std::max<uint64_t>(
        c_count, (4 * llc_bytes + row_bytes - 1) / row_bytes);
  }

  // Inputs: `users` users, the arena, `row_sets` random candidate sets.
  std::mt19937_64 rng(flags.seed);
  std::vector<std::vector<float>> user_a, user_q;
  for (uint32_t u = 0; u < flags.users; ++u) {
    user_a.push_back(RandomRows(rng, m, d));
    user_q.push_back(flags.queries ? RandomRows(rng, m, d)
                                   : std::vector<float>());
  }
  const std::vector<float>& a = user_a[0];
  const std::vector<float>& q = user_q[0];
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
  std::vector<std::vector<uint32_t>> row_sets;
  for (uint32_t set = 0; set < flags.row_sets; ++set) {
    // Partial Fisher-Yates: the first c_count entries become a fresh
    // uniform sample without replacement.
    for (size_t i = 0; i < c_count; ++i) {
      std::uniform_int_distribution<size_t> pick(i, all_rows.size() - 1);
      std::swap(all_rows[i], all_rows[pick(rng)]);
    }
    row_sets.emplace_back(all_rows.begin(), all_rows.begin() + c_count);
  }
  const std::vector<uint32_t>& rows = row_sets[0];
  std::vector<scoring::UserView> users;
  for (uint32_t u = 0; u < flags.users; ++u) {
    users.push_back(scoring::UserView{m, d, user_a[u], user_q[u]});
  }

  // The first set's rows (as stored, widened to fp32), contiguous, for the
  // sgemm and FAISS peers: B_all and G_all are (C*n) x d.
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
  scoring::KernelInfo dispatch_info;
  std::string isa_name;
  double kernel_rate = NAN;
  scoring::CpuIsa isa = scoring::BestCpuIsa();
  scoring::CpuScorerOptions cpu_options;
  cpu_options.threads = flags.threads;
  cpu_options.fp16_bf16_products = flags.fp16_bf16_products;
  cpu_options.dispatch_shape = {m, n, d, flags.queries, flags.keys};
  if (flags.parallel_threshold) {
    cpu_options.parallel_threshold = *flags.parallel_threshold;
  }
  if (flags.backend == "cpu") {
    if (!flags.isa.empty()) {
      const auto parsed = scoring::ParseCpuIsa(flags.isa);
      if (!parsed) return Fail("--isa: unknown '" + flags.isa + "'");
      isa = *parsed;
      const Status status =
          scoring::MakeCpuScorerWithIsa(cpu_options, isa, &scorer);
      if (!status.ok()) return Fail(status.message());
    } else {
      scorer = scoring::MakeCpuScorer(cpu_options);
    }
    if (flags.dispatch_budget_ms > 0) {
      // What the server does once its model is loaded: time every family
      // on this arena and shape, keep the fastest (a forced one stays).
      scoring::DispatchOptions dispatch;
      dispatch.user_codes = m;
      dispatch.queries = flags.queries;
      dispatch.candidates = static_cast<uint32_t>(c_count);
      dispatch.budget_seconds = flags.dispatch_budget_ms / 1e3;
      dispatch.seed = flags.seed + 1;
      const Status status = scorer->DispatchOn(arena, dispatch);
      if (!status.ok()) return Fail(status.message());
    }
    const scoring::KernelInfo info = scorer->kernel_info(*dtype);
    dispatch_info = info;
    isa_name = info.kernel;
    isa = scoring::ParseCpuIsa(info.kernel).value_or(isa);
    kernel_rate = info.measured_gflops;
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
  const int scorer_threads =
      flags.threads > 0 ? flags.threads
                        : static_cast<int>(std::thread::hardware_concurrency());

  const double flops = 4.0 * m * n * d * static_cast<double>(c_count);
  // The peak loops: fp32 FMA of whichever family runs it fastest on this
  // CPU (the bound docs/design.md section 8 names: the machine's, never the
  // chosen family's), and the dot-product rates.
  nlohmann::ordered_json fp32_peak_by_isa = nlohmann::ordered_json::object();
  scoring::CpuIsa peak_isa =
      flags.backend == "cpu"
          ? FastestFp32Peak(scorer_threads, flops, 5, &fp32_peak_by_isa)
          : scoring::CpuIsa::kScalar;
  const bool have_peak =
      flags.backend == "cpu" &&
      scoring::PeakSupported(peak_isa, scoring::PeakOp::kFp32Fma);
  std::unique_ptr<PeakRunner> peak;
  uint64_t peak_iterations = 0;
  if (have_peak) {
    peak = std::make_unique<PeakRunner>(scorer_threads, peak_isa,
                                        scoring::PeakOp::kFp32Fma);
    double per_iteration = 0;
    peak->Run(1, &per_iteration);  // OPs of one round on every thread
    peak_iterations = std::max<uint64_t>(
        1, static_cast<uint64_t>(flops / std::max(per_iteration, 1.0)));
  }

  std::vector<float> scores(c_count);
  std::vector<int32_t> codes(c_count);
  Status score_status;
  size_t call = 0;
  auto run_ours = [&] {
    const size_t u = call % users.size(), set = call % row_sets.size();
    ++call;
    const Status status =
        scorer->Score(users[u], arena, row_sets[set], scores, codes);
    if (!status.ok()) score_status = status;
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

  // Ours and the peak loop interleaved rep by rep (both see the same
  // neighbours on a shared machine); the BLAS and FAISS peers each in their
  // own block afterwards: OpenBLAS and OpenMP worker threads spin for a
  // while after each call and would steal the cores from the next contender.
  // Every family the dispatch timed, forced, in the same loop: their
  // times give dispatch_regret.
  std::vector<FamilyTimes> families;
  for (const scoring::KernelFamilyTime& f : dispatch_info.families) {
    FamilyTimes entry;
    entry.kernel = f.kernel;
    const Status status = scoring::MakeCpuScorerWithIsa(
        cpu_options, *scoring::ParseCpuIsa(f.kernel), &entry.scorer);
    if (!status.ok()) return Fail(status.message());
    families.push_back(std::move(entry));
  }
  auto run_family = [&](FamilyTimes& family) {
    const size_t u = call % users.size(), set = call % row_sets.size();
    ++call;
    return TimeOnce([&] {
      const Status status =
          family.scorer->Score(users[u], arena, row_sets[set], scores, codes);
      if (!status.ok()) score_status = status;
    });
  };
  std::vector<double> ours_t, peak_t;
  double peak_ops = 0;
  for (int i = 0; i < flags.warmup; ++i) {
    run_ours();
    if (peak) peak->Run(peak_iterations, &peak_ops);
    for (FamilyTimes& family : families) run_family(family);
  }
  for (int i = 0; i < flags.reps; ++i) {
    if (peak) peak_t.push_back(peak->Run(peak_iterations, &peak_ops));
    ours_t.push_back(TimeOnce(run_ours));
    for (FamilyTimes& family : families) {
      family.seconds.push_back(run_family(family));
    }
  }
  if (!score_status.ok()) return Fail(score_status.message());
  // The dot-product peaks (bf16, int8) of this CPU, a few reps each,
  // before the BLAS and FAISS peers, whose threads spin for a while after
  // each call and would take the other cores.
  auto dot_peak = [&](scoring::PeakOp op) -> double {
    scoring::CpuIsa best_isa = scoring::CpuIsa::kScalar;
    bool found = false;
    for (scoring::CpuIsa candidate : scoring::SupportedCpuIsas()) {
      if (scoring::PeakSupported(candidate, op) &&
          (!found || scoring::CpuIsaVectorBits(candidate) >=
                         scoring::CpuIsaVectorBits(best_isa))) {
        best_isa = candidate;
        found = true;
      }
    }
    if (flags.backend != "cpu" || !found) return NAN;
    PeakRunner runner(scorer_threads, best_isa, op);
    std::vector<double> rates;
    double ops = 0;
    runner.Run(peak_iterations, &ops);  // warm-up: wakes the workers
    for (int i = 0; i < std::max(3, std::min(flags.reps, 9)); ++i) {
      const double seconds = runner.Run(peak_iterations, &ops);
      rates.push_back(ops / seconds / 1e9);
    }
    return Percentile(rates, 0.5);
  };
  const double bf16_peak = dot_peak(scoring::PeakOp::kBf16Dot);
  const double int8_peak = dot_peak(scoring::PeakOp::kInt8Dot);
  // The AMX block (tile peaks, read bandwidth): CPU runs only.
  const AmxBounds amx_bounds =
      flags.backend == "cpu"
          ? MeasureAmxBounds(arena, row_sets, scorer_threads, flops, flags.reps)
          : AmxBounds{};

  auto time_block = [&](const std::function<void()>& run) {
    std::vector<double> times;
    if (!run) return times;
    for (int i = 0; i < flags.warmup; ++i) run();
    for (int i = 0; i < flags.reps; ++i) times.push_back(TimeOnce(run));
    return times;
  };
  const std::vector<double> bound_t = time_block(run_bound);
  const std::vector<double> faiss_t = time_block(run_faiss);

  // Parity of a sample against the float64 reference: user 0, row set 0.
  const Status parity_status =
      scorer->Score(users[0], arena, rows, scores, codes);
  if (!parity_status.ok()) return Fail(parity_status.message());
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
  // The peak rate of each rep; the request's FLOPs at the median rate.
  std::vector<double> peak_rates;
  for (double t : peak_t) peak_rates.push_back(peak_ops / t / 1e9);
  const double peak_gflops = peak ? Percentile(peak_rates, 0.5) : NAN;
  const double peak_seconds = flops / (peak_gflops * 1e9);
  // Per-rep ratios (each rep's kernel time against the peak rep just
  // before it): their spread is the noise of the machine.
  std::vector<double> rep_ratios;
  for (size_t i = 0; i < peak_t.size() && i < ours_t.size(); ++i) {
    rep_ratios.push_back(flops / (peak_rates[i] * 1e9) / ours_t[i]);
  }

  nlohmann::ordered_json out;
  out["ours_seconds_p50"] = ours;
  out["sgemm_bound_seconds_p50"] = bound;
  out["faiss_flatip_seconds_p50"] = faiss;
  out["ratio_to_bound"] = ours / bound;
  out["ratio_to_faiss"] = ours / faiss;
  out["peak_gflops"] = peak_gflops;
  out["peak_seconds_p50"] = peak_seconds;
  out["ratio_to_peak"] = peak_seconds / ours;
  // The upper quartile of both (our first-quartile time against the peak
  // loop's third-quartile rate): on a shared machine preemption by other
  // processes only slows either down, so this follows the unhindered ratio
  // while fewer than a quarter of the reps are hit.
  out["ratio_to_peak_upper_quartile"] =
      flops / (Percentile(peak_rates, 0.75) * 1e9) / Percentile(ours_t, 0.25);
  out["ours_seconds_p25"] = Percentile(ours_t, 0.25);
  out["ratio_to_peak_p10"] = Percentile(rep_ratios, 0.1);
  out["ratio_to_peak_p90"] = Percentile(rep_ratios, 0.9);
  out["peak_gflops_min"] = Percentile(peak_rates, 0.0);
  out["peak_gflops_max"] = Percentile(peak_rates, 1.0);
  out["peak_isa"] = std::string(scoring::CpuIsaName(peak_isa));
  out["peak_fp32_gflops_by_isa"] = fp32_peak_by_isa;
  out["peak_threads"] = scorer_threads;
  out["peak_bf16_dot_gflops"] = bf16_peak;
  out["peak_int8_dot_gops"] = int8_peak;
  // The 16-bit and int8 kernels against their own instruction's peak too.
  out["ratio_to_bf16_dot_peak"] = flops / (bf16_peak * 1e9) / ours;
  out["ratio_to_int8_dot_peak"] = flops / (int8_peak * 1e9) / ours;
  // The machine's bound for this storage dtype: the fastest instruction
  // that can do its products (16-bit: fp32 FMA after widening, or bf16 dot;
  // int8: fp32 FMA after widening, or int8 dot). On CPUs where a dot
  // product is slower than widening plus FMA, the FMA peak is the bound.
  {
    double own = peak_gflops;
    std::string own_kind = "fp32_fma";
    const bool sixteen =
        *dtype == DType::kBFloat16 ||
        (*dtype == DType::kFloat16 && flags.fp16_bf16_products);
    if (sixteen && bf16_peak > own) {
      own = bf16_peak;
      own_kind = "bf16_dot";
    }
    if (*dtype == DType::kInt8 && int8_peak > own) {
      own = int8_peak;
      own_kind = "int8_dot";
    }
    out["dtype_peak_gflops"] = own;
    out["dtype_peak_kind"] = own_kind;
    out["ratio_to_dtype_peak"] = flops / (own * 1e9) / ours;
  }
  {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    double fastest = NAN, chosen = NAN, fastest_q25 = NAN, chosen_q25 = NAN;
    for (const FamilyTimes& family : families) {
      const double p50 = Percentile(family.seconds, 0.5);
      const double q25 = Percentile(family.seconds, 0.25);
      double dispatch_p50 = NAN, dispatch_q25 = NAN;
      for (const auto& f : dispatch_info.families) {
        if (f.kernel == family.kernel) {
          dispatch_p50 = f.seconds_p50;
          dispatch_q25 = f.seconds_q25;
        }
      }
      list.push_back({{"kernel", family.kernel},
                      {"seconds_p50", p50},
                      {"seconds_p10", Percentile(family.seconds, 0.1)},
                      {"seconds_p25", q25},
                      {"seconds_p90", Percentile(family.seconds, 0.9)},
                      {"gflops", flops / p50 / 1e9},
                      {"ratio_to_peak", peak_seconds / p50},
                      {"dispatch_seconds_p50", dispatch_p50},
                      {"dispatch_seconds_p25", dispatch_q25}});
      if (!(fastest <= p50)) fastest = p50;
      if (!(fastest_q25 <= q25)) fastest_q25 = q25;
      if (family.kernel == isa_name) {
        chosen = p50;
        chosen_q25 = q25;
      }
    }
    // A family that runs a timed family's code (e.g. avx512bf16 for fp32)
    // is not timed again: ours stands in for it.
    if (std::isnan(chosen) && !families.empty()) {
      chosen = ours;
      chosen_q25 = Percentile(ours_t, 0.25);
    }
    out["families"] = list;
    out["dispatch_regret"] = chosen / fastest;
    // The same on first quartiles: robust to other processes' preemption,
    // which only adds time (the statistic the dispatch ranks by).
    out["dispatch_regret_p25"] = chosen_q25 / fastest_q25;
    out["dispatch_stop"] = dispatch_info.dispatch_stop;
    out["dispatch_rounds"] = dispatch_info.dispatch_rounds;
    out["dispatch_took_seconds"] = dispatch_info.dispatch_seconds;
    out["dispatch_sample"] = dispatch_info.dispatch_sample;
  }
  // Best-of-reps ratio: less sensitive to other processes on a shared box.
  out["ratio_to_bound_min"] =
      flags.backend == "cpu"
          ? Percentile(ours_t, 0.0) / Percentile(bound_t, 0.0)
          : NAN;
  out["ours_seconds_p10"] = Percentile(ours_t, 0.1);
  out["ours_seconds_p90"] = Percentile(ours_t, 0.9);
  out["ours_seconds_min"] = Percentile(ours_t, 0.0);
  out["sgemm_bound_seconds_min"] =
      flags.backend == "cpu" ? Percentile(bound_t, 0.0) : NAN;
  out["ours_gbytes_per_second"] = bytes / ours / 1e9;
  out["ours_gflops"] = flops / ours / 1e9;
  out["sgemm_bound_gflops"] = flops / bound / 1e9;
  out["item_bytes_per_request"] = bytes;
  out["parity_max_abs_error"] = max_error;
  out["parity_max_rel_error"] = max_score > 0 ? max_error / max_score : 0;
  out["user_codes"] = m;
  out["item_codes"] = n;
  out["dim"] = d;
  out["candidates"] = c_count;
  out["arena_rows"] = flags.arena_rows;
  out["arena_bytes"] =
      static_cast<double>(flags.arena_rows) * layout.row_bytes();
  out["llc_bytes"] = llc_bytes;
  out["users"] = flags.users;
  out["row_sets"] = flags.row_sets;
  out["in_cache"] = flags.in_cache;
  out["dtype"] = std::string(scoring::DTypeName(*dtype));
  out["backend"] = flags.backend;
  out["kernel"] = isa_name;
  out["kernel_dispatch_gflops"] = kernel_rate;
  out["kernel_forced"] = dispatch_info.forced;
  out["queries"] = flags.queries;
  out["keys"] = flags.keys;
  out["fp16_bf16_products"] = flags.fp16_bf16_products;
  out["threads"] = scorer_threads;
  out["parallel_threshold"] = cpu_options.parallel_threshold;
  out["reps"] = flags.reps;
  out["bound_kind"] = bound_kind;
#if EMBSUM_HAVE_FAISS
  out["faiss_k"] = faiss_k;
#else
  out["faiss_k"] = nullptr;
#endif
  out["cpu_model"] = CpuModel();
  out["hardware_threads"] = std::thread::hardware_concurrency();
#if EMBSUM_HAVE_BLAS && defined(OPENBLAS_VERSION)
  out["blas"] = std::string(openblas_get_config());
  out["blas_threads"] = openblas_get_num_threads();
#endif
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  out["openblas_coretype_env"] = coretype != nullptr ? coretype : "";
  AddAmxFields(amx_bounds, *dtype, flops, bytes, ours, &out);

  if (flags.json) {
    // NaN and infinities are written as null.
    std::printf("%s\n", out.dump(-1, ' ', false,
                                 nlohmann::json::error_handler_t::replace)
                            .c_str());
    return 0;
  }
  std::printf(
      "embsum-bench-scoring: m=%u n=%u d=%u candidates=%zu dtype=%s "
      "backend=%s kernel=%s threads=%d queries=%d keys=%d arena=%.1f MiB "
      "(LLC %.1f MiB)\n",
      m, n, d, c_count, flags.dtype.c_str(), flags.backend.c_str(),
      isa_name.c_str(), scorer_threads, flags.queries, flags.keys,
      static_cast<double>(flags.arena_rows) * layout.row_bytes() / 1048576.0,
      static_cast<double>(llc_bytes) / 1048576.0);
  const double ours_min = Percentile(ours_t, 0.0);
  const double bound_min =
      flags.backend == "cpu" ? Percentile(bound_t, 0.0) : bound;
  std::printf(
      "  ours                  p50 %10.4f ms  min %10.4f ms  %7.1f GB/s  "
      "%7.1f GFLOP/s\n",
      ours * 1e3, ours_min * 1e3, bytes / ours / 1e9, flops / ours / 1e9);
  std::printf(
      "  FMA peak (%s, %d thr) p50 %10.4f ms  %7.1f GFLOP/s  (bf16 dot %.1f, "
      "int8 dot %.1f GOP/s)\n",
      std::string(scoring::CpuIsaName(peak_isa)).c_str(), scorer_threads,
      peak_seconds * 1e3, peak_gflops, bf16_peak, int8_peak);
  std::printf(
      "  ratio to peak             %10.3f     (p10 %.3f, p90 %.3f; target "
      ">= 0.7 for fp32)\n",
      peak_seconds / ours, Percentile(rep_ratios, 0.1),
      Percentile(rep_ratios, 0.9));
  std::printf(
      "  AMX tile peak             %10.1f TFLOP/s bf16  %7.1f TOP/s int8\n"
      "  read bandwidth        p50 %10.2f GB/s  -> memory bound %.4f ms "
      "(ratio %.3f)\n",
      amx_bounds.bf16_tflops, amx_bounds.int8_tops,
      amx_bounds.read_gbytes_per_second,
      bytes / (amx_bounds.read_gbytes_per_second * 1e9) * 1e3,
      bytes / (amx_bounds.read_gbytes_per_second * 1e9) / ours);
  for (const auto& f : out["families"]) {
    std::printf(
        "  family %-14s p50 %10.4f ms  %7.1f GFLOP/s  ratio to peak %.3f\n",
        f["kernel"].get<std::string>().c_str(),
        f["seconds_p50"].get<double>() * 1e3, f["gflops"].get<double>(),
        f["ratio_to_peak"].get<double>());
  }
  std::printf("  dispatch regret           %10.3f     (chosen %s; stop %s)\n",
              out["dispatch_regret"].is_number()
                  ? out["dispatch_regret"].get<double>()
                  : NAN,
              isa_name.c_str(), dispatch_info.dispatch_stop.c_str());
  std::printf("  sgemm bound           p50 %10.4f ms  min %10.4f ms  (%s)\n",
              bound * 1e3, bound_min * 1e3, bound_kind.c_str());
  std::printf("  FAISS IndexFlatIP     p50 %10.4f ms\n", faiss * 1e3);
  std::printf("  ratio to sgemm            %10.3f     min/min %.3f\n",
              ours / bound, ours_min / bound_min);
  std::printf("  ratio to FAISS            %10.3f\n", ours / faiss);
  std::printf(
      "  parity vs float64         %10.2e     (max abs error / max "
      "|score|)\n",
      max_score > 0 ? max_error / max_score : 0.0);
  return 0;
}

}  // namespace embsum::bench
