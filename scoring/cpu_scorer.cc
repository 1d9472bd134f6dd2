// The production CPU scorer: validates requests, prepares the user panels
// once per request, and runs the kernel family picked at run time
// (scoring/internal/kernels_*.cc) on the calling thread or, for large
// candidate sets, on a pool owned by the scorer.
#include "scoring/cpu_scorer.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "scoring/internal/cpu_kernels.h"
#include "scoring/internal/family_race.h"
#include "scoring/internal/thread_pool.h"
#include "scoring/scorer.h"
#include "scoring/scorer_args.h"

namespace embsum::scoring {
namespace {

using internal::KernelArgs;
using internal::KernelTable;

constexpr CpuIsa kAllIsas[] = {
    CpuIsa::kScalar,     CpuIsa::kAvx2,       CpuIsa::kAvxVnni, CpuIsa::kAvx512,
    CpuIsa::kAvx512Vnni, CpuIsa::kAvx512Bf16, CpuIsa::kAmx};

// Rows per task of the full-catalogue scan.
constexpr size_t kScanBlockRows = 4096;
// Fewest candidates per task of a parallel Score call.
constexpr size_t kMinRowsPerTask = 16;

// A grow-only, 64-byte aligned buffer of floats.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { Release(); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  float* Get(size_t floats) {
    if (floats > capacity_) {
      Release();
      capacity_ = std::max<size_t>(floats, 64);
      data_ = static_cast<float*>(
          ::operator new (capacity_ * sizeof(float), std::align_val_t{64}));
    }
    return data_;
  }

 private:
  void Release() {
    if (data_ != nullptr) ::operator delete (data_, std::align_val_t{64});
    data_ = nullptr;
    capacity_ = 0;
  }

  float* data_ = nullptr;
  size_t capacity_ = 0;
};

// Per-thread buffers, reused across requests: no allocation per request in
// steady state.
struct ThreadBuffers {
  AlignedBuffer a_panels;
  AlignedBuffer q_panels;
  AlignedBuffer scratch;
  std::vector<uint32_t> rows;
  std::vector<float> scores;
  std::vector<int32_t> codes;
};

ThreadBuffers& LocalBuffers() {
  thread_local ThreadBuffers buffers;
  return buffers;
}

// Score descending (NaN last), then row ascending: a strict total order.
bool RanksBefore(const ScoredRow& x, const ScoredRow& y) {
  const bool nan_x = std::isnan(x.score);
  const bool nan_y = std::isnan(y.score);
  if (nan_x != nan_y) return nan_y;
  if (!nan_x && x.score != y.score) return x.score > y.score;
  return x.row < y.row;
}

// Keeps the `k` first of `rows` under RanksBefore (k = 0 keeps all), in any
// order.
void KeepBest(std::vector<ScoredRow>* rows, size_t k) {
  if (k == 0 || rows->size() <= k) return;
  std::nth_element(rows->begin(), rows->begin() + static_cast<ptrdiff_t>(k),
                   rows->end(), RanksBefore);
  rows->resize(k);
}

#if defined(__x86_64__) && defined(__GNUC__)
// F16C (CPUID 1: ECX bit 29) and AVX512_BF16 (CPUID 7.1: EAX bit 5), read
// directly: not every compiler's __builtin_cpu_supports knows them. The OS's
// ymm/zmm state support is checked through __builtin_cpu_supports("avx2") /
// ("avx512f").
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & (1u << 29)) != 0;
}

bool CpuHasAvx512Bf16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & (1u << 5)) != 0;
}

// AVX-VNNI: CPUID 7.1 EAX bit 4. AVX512_VNNI: CPUID 7.0 ECX bit 11.
bool CpuHasAvxVnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & (1u << 4)) != 0;
}

bool CpuHasAvx512Vnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & (1u << 11)) != 0;
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
// AMX-BF16, AMX-TILE, AMX-INT8: CPUID 7.0 EDX bits 22, 24, 25; the OS
// enables the tile state in XCR0 (bits 17 and 18) and, on Linux, hands the
// tile data to a process only on request: arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), asked once per process (the grant covers every
// thread). Anything else (other OSes, a refusal) leaves AMX off.
bool CpuHasAmx() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  constexpr unsigned kAmxBits = (1u << 22) | (1u << 24) | (1u << 25);
  if ((edx & kAmxBits) != kAmxBits) return false;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((ecx & (1u << 27)) == 0) return false;  // OSXSAVE: xgetbv allowed
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  constexpr unsigned kTileState = (1u << 17) | (1u << 18);
  return (xcr0_lo & kTileState) == kTileState;
}

bool AmxPermitted() {
#if defined(__linux__)
  static const bool permitted = [] {
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return permitted;
#else
  return false;
#endif
}
#endif

bool IsaSupportedByCpu(CpuIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx2 = __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma") && CpuHasF16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return avx2;
    case CpuIsa::kAvx512:
      return avx512;
    case CpuIsa::kAvx512Bf16:
      return avx512 && CpuHasAvx512Bf16();
    case CpuIsa::kAvxVnni:
      return avx2 && CpuHasAvxVnni();
    case CpuIsa::kAvx512Vnni:
      return avx512 && CpuHasAvx512Vnni();
    case CpuIsa::kAmx:
      return avx512 && CpuHasAvx512Bf16() && CpuHasAvx512Vnni() &&
             CpuHasAmx() && AmxPermitted();
  }
  return false;
#else
  return isa == CpuIsa::kScalar;
#endif
}

const KernelTable* KernelTableFor(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return internal::ScalarKernelTable();
    case CpuIsa::kAvx2:
      return internal::Avx2KernelTable();
    case CpuIsa::kAvx512:
      return internal::Avx512KernelTable();
    case CpuIsa::kAvx512Bf16:
      return internal::Avx512Bf16KernelTable();
    case CpuIsa::kAvxVnni:
      return internal::AvxVnniKernelTable();
    case CpuIsa::kAvx512Vnni:
      return internal::Avx512VnniKernelTable();
    case CpuIsa::kAmx:
      return internal::AmxKernelTable();
  }
  return nullptr;
}

// Storage dtypes, indexed by their enum value.
constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                             DType::kInt8};
constexpr size_t kDTypeCount = std::size(kDTypes);

// The kernel family picked for one storage dtype.
struct Choice {
  const KernelTable* table = nullptr;
  double measured_gflops = NAN;
  bool forced = false;
};

// The family whose code actually runs for `dtype` when `isa` is asked
// for: families that add only a dot-product path run their base family's
// code for the other dtypes. A family not named here runs its own code, so
// a new family is always timed by DispatchOn.
CpuIsa SameCodeAs(CpuIsa isa, DType dtype, bool fp16_bf16_products) {
  switch (isa) {
    case CpuIsa::kAvxVnni:
      return dtype == DType::kInt8 ? isa : CpuIsa::kAvx2;
    case CpuIsa::kAvx512Vnni:
      return dtype == DType::kInt8 ? isa : CpuIsa::kAvx512;
    case CpuIsa::kAvx512Bf16:
      return dtype == DType::kBFloat16 ||
                     (dtype == DType::kFloat16 && fp16_bf16_products)
                 ? isa
                 : CpuIsa::kAvx512;
    default:
      return isa;
  }
}

// Bytes of the largest CPU cache (sysfs), or 32 MiB when unknown.
size_t LargestCacheBytes() {
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

#if defined(__x86_64__) && defined(__GNUC__)
// CLFLUSHOPT: CPUID 7.0 EBX bit 23. Weakly ordered, so a run of them
// pipelines (about 10x faster than CLFLUSH for a request's rows).
bool CpuHasClflushopt() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ebx & (1u << 23)) != 0;
}

__attribute__((target("clflushopt"))) void FlushLinesOpt(const char* p,
                                                         size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64)
    _mm_clflushopt(const_cast<char*>(p + off));
  _mm_clflushopt(const_cast<char*>(p + bytes - 1));
}

void FlushLines(const char* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64) _mm_clflush(p + off);
  _mm_clflush(p + bytes - 1);
}
#endif

// Evicts the bytes of `rows` from every cache level (x86: clflushopt or
// clflush), so the next call reads them from memory as a large served
// arena would.
void FlushRows(const ItemArena& arena, std::span<const uint32_t> rows) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool opt = CpuHasClflushopt();
  const size_t bytes = arena.layout().row_bytes();
  if (bytes == 0) return;
  for (uint32_t row : rows) {
    const char* p = reinterpret_cast<const char*>(arena.row_data(row));
    if (opt) {
      FlushLinesOpt(p, bytes);
    } else {
      FlushLines(p, bytes);
    }
  }
  _mm_mfence();
#else
  (void)arena;
  (void)rows;
#endif
}

class CpuScorer final : public Scorer {
 public:
  // choices[dtype]: the family for arenas of that storage dtype.
  CpuScorer(const CpuScorerOptions& options,
            const std::array<Choice, kDTypeCount>& choices)
      : options_(options) {
    for (size_t i = 0; i < kDTypeCount; ++i) {
      tables_[i].store(choices[i].table, std::memory_order_relaxed);
      info_[i].kernel = std::string(CpuIsaName(choices[i].table->isa));
      info_[i].measured_gflops = choices[i].measured_gflops;
      info_[i].forced = choices[i].forced;
    }
    int threads = options.threads;
    if (threads <= 0) {
      threads = static_cast<int>(std::thread::hardware_concurrency());
    }
    if (threads > 1) {
      pool_ = std::make_unique<internal::ThreadPool>(threads - 1);
    }
  }

  KernelInfo kernel_info(DType dtype) const override {
    std::lock_guard<std::mutex> lock(info_mu_);
    return info_[static_cast<size_t>(dtype)];
  }

  Status DispatchOn(const ItemArena& arena,
                    const DispatchOptions& options) override;

  std::string_view backend() const override { return "cpu"; }

  Status Score(const UserView& user, const ItemArena& arena,
               std::span<const uint32_t> rows, std::span<float> scores,
               std::span<int32_t> top_codes) const override {
    return ScoreWith(TableFor(arena.layout().dtype), user, arena, rows, scores,
                     top_codes);
  }

  // Score with the family `table` (DispatchOn times each this way).
  Status ScoreWith(const KernelTable* table, const UserView& user,
                   const ItemArena& arena, std::span<const uint32_t> rows,
                   std::span<float> scores,
                   std::span<int32_t> top_codes) const {
    Status status =
        CheckScoreArgs("cpu scorer", user, arena, rows, scores, top_codes);
    if (!status.ok()) return status;
    if (rows.empty()) return Status::Ok();
    int32_t* codes = top_codes.empty() ? nullptr : top_codes.data();
    if (user.user_codes == 0 || arena.layout().item_codes == 0) {
      std::fill(scores.begin(), scores.end(), 0.0f);
      if (codes != nullptr) std::fill(top_codes.begin(), top_codes.end(), -1);
      return Status::Ok();
    }

    const Request request = PrepareUser(user, arena, table);
    if (!GoesParallel(rows.size(), request.args)) {
      RunKernel(request, rows.data(), rows.size(), scores.data(), codes);
      return Status::Ok();
    }
    const size_t threads = static_cast<size_t>(pool_->workers()) + 1;
    const size_t per_task = std::max(
        kMinRowsPerTask, (rows.size() + 4 * threads - 1) / (4 * threads));
    const size_t tasks = (rows.size() + per_task - 1) / per_task;
    pool_->ParallelFor(tasks, [&](size_t task) {
      const size_t begin = task * per_task;
      const size_t count = std::min(per_task, rows.size() - begin);
      RunKernel(request, rows.data() + begin, count, scores.data() + begin,
                codes == nullptr ? nullptr : codes + begin);
    });
    return Status::Ok();
  }

  Status ScoreAllTopK(const UserView& user, const ItemArena& arena,
                      std::span<const uint8_t> live, uint32_t k,
                      std::vector<ScoredRow>* out) const override {
    size_t size = 0;  // the rows to scan: live.size() (a snapshot's rows)
    Status status = CheckScanArgs("cpu scorer", user, arena, live, out, &size);
    if (!status.ok()) return status;
    out->clear();
    if (size == 0) return Status::Ok();
    const bool degenerate =
        user.user_codes == 0 || arena.layout().item_codes == 0;
    const Request request =
        degenerate ? Request{}
                   : PrepareUser(user, arena, TableFor(arena.layout().dtype));

    const size_t tasks = (size + kScanBlockRows - 1) / kScanBlockRows;
    std::vector<std::vector<ScoredRow>> best(tasks);
    auto scan = [&](size_t task) {
      const size_t begin = task * kScanBlockRows;
      const size_t end = std::min(size, begin + kScanBlockRows);
      ThreadBuffers& local = LocalBuffers();
      local.rows.clear();
      for (size_t r = begin; r < end; ++r) {
        if (live.empty() || live[r] != 0) {
          local.rows.push_back(static_cast<uint32_t>(r));
        }
      }
      const size_t count = local.rows.size();
      local.scores.resize(count);
      local.codes.resize(count);
      if (degenerate) {
        std::fill(local.scores.begin(), local.scores.end(), 0.0f);
        std::fill(local.codes.begin(), local.codes.end(), -1);
      } else {
        RunKernel(request, local.rows.data(), count, local.scores.data(),
                  local.codes.data());
      }
      std::vector<ScoredRow>& mine = best[task];
      mine.resize(count);
      for (size_t c = 0; c < count; ++c) {
        mine[c] = {local.rows[c], local.scores[c], local.codes[c]};
      }
      KeepBest(&mine, k);
    };
    if (!degenerate && GoesParallel(size, request.args)) {
      pool_->ParallelFor(tasks, scan);
    } else {
      for (size_t task = 0; task < tasks; ++task) scan(task);
    }
    size_t total = 0;
    for (const auto& part : best) total += part.size();
    out->reserve(total);
    for (const auto& part : best) {
      out->insert(out->end(), part.begin(), part.end());
    }
    KeepBest(out, k);
    std::sort(out->begin(), out->end(), RanksBefore);
    return Status::Ok();
  }

 private:
  // A request ready for the kernels: arguments and the kernel family.
  struct Request {
    KernelArgs args;
    const KernelTable* table = nullptr;
  };

  // How `table` multiplies `dtype` storage.
  internal::Products ProductsFor(const KernelTable* table, DType dtype) const {
    if (dtype == DType::kInt8) {
      return table->int8_products ? internal::Products::kInt8
                                  : internal::Products::kFp32;
    }
    const bool bf16 =
        table->bf16_products &&
        (dtype == DType::kBFloat16 ||
         (dtype == DType::kFloat16 && options_.fp16_bf16_products));
    return bf16 ? internal::Products::kBf16 : internal::Products::kFp32;
  }

  const KernelTable* TableFor(DType dtype) const {
    return tables_[static_cast<size_t>(dtype)].load(std::memory_order_acquire);
  }

  // Builds the user panels in this thread's buffers; the returned request
  // points into them and stays valid until this thread's next request.
  Request PrepareUser(const UserView& user, const ItemArena& arena,
                      const KernelTable* table) const {
    const ArenaLayout& layout = arena.layout();
    ThreadBuffers& local = LocalBuffers();
    Request request;
    KernelArgs& args = request.args;
    args.m = user.user_codes;
    args.n = layout.item_codes;
    args.d = layout.dim;
    args.dtype = layout.dtype;
    args.has_keys = layout.has_keys;
    args.row_bytes = layout.row_bytes();
    args.block_bytes = layout.block_bytes();
    args.arena = arena.data();
    request.table = table;
    args.products = ProductsFor(table, args.dtype);
    const size_t panel_floats =
        (table->panel_bytes(args.m, args.d, args.products) + 3) / 4;
    float* a_panels = local.a_panels.Get(panel_floats);
    table->build_panels(user.upe.data(), args.m, args.d, args.products,
                        a_panels);
    args.a_panels = a_panels;
    args.q_panels = a_panels;
    if (!user.queries.empty()) {
      float* q_panels = local.q_panels.Get(panel_floats);
      table->build_panels(user.queries.data(), args.m, args.d, args.products,
                          q_panels);
      args.q_panels = q_panels;
    }
    args.logits_equal_matches = user.queries.empty() && !layout.has_keys;
    return request;
  }

  // Whether `count` candidates are worth handing to the pool.
  bool GoesParallel(size_t count, const KernelArgs& args) const {
    const double work = 2.0 * static_cast<double>(count) * args.m * args.n *
                        (args.d == 0 ? 1 : args.d);
    return pool_ != nullptr && count >= options_.parallel_threshold &&
           work >= static_cast<double>(options_.parallel_min_work);
  }

  void RunKernel(const Request& request, const uint32_t* rows, size_t count,
                 float* scores, int32_t* codes) const {
    const KernelArgs& args = request.args;
    float* scratch = LocalBuffers().scratch.Get(request.table->scratch_floats(
        args.m, args.n, args.d, args.dtype, args.products));
    request.table->score_rows(args, rows, count, scores, codes, scratch);
  }

  // The family each dtype runs (DispatchOn may replace it while requests
  // run: a request loads it once).
  std::array<std::atomic<const KernelTable*>, kDTypeCount> tables_;
  mutable std::mutex info_mu_;
  std::array<KernelInfo, kDTypeCount> info_;  // guarded by info_mu_
  CpuScorerOptions options_;
  std::unique_ptr<internal::ThreadPool> pool_;
};

Status CpuScorer::DispatchOn(const ItemArena& arena,
                             const DispatchOptions& options) {
  if (options.user_codes == 0 || options.candidates == 0) {
    return Status::InvalidArgument(
        "cpu scorer: dispatch needs user_codes and candidates of at least 1 "
        "(got " +
        std::to_string(options.user_codes) + ", " +
        std::to_string(options.candidates) + ")");
  }
  const ArenaLayout& layout = arena.layout();
  const DType dtype = layout.dtype;
  const size_t slot = static_cast<size_t>(dtype);
  const size_t size = arena.size();
  if (size == 0 || layout.item_codes == 0 || layout.dim == 0) {
    return Status::Ok();  // nothing to time: the current pick stays
  }
  const uint32_t m = options.user_codes, n = layout.item_codes, d = layout.dim;
  const size_t candidates = options.candidates;

  // The entrants: every supported family (scalar only when alone), one per
  // distinct code for this dtype (the narrowest that runs it).
  const std::vector<CpuIsa> supported = SupportedCpuIsas();
  std::vector<CpuIsa> entrants;
  for (CpuIsa isa : supported) {
    if (isa == CpuIsa::kScalar && supported.size() > 1) continue;
    const CpuIsa code = SameCodeAs(isa, dtype, options_.fp16_bf16_products);
    if (code != isa && CpuIsaSupported(code)) continue;
    entrants.push_back(isa);
  }

  // The sample: row sets drawn at random from the arena's published rows
  // (without replacement when it has enough), synthetic users of the
  // served shape with entries uniform in [-1, 1) / sqrt(d).
  constexpr size_t kSets = 8;
  std::mt19937_64 rng(options.seed);
  std::vector<std::vector<uint32_t>> row_sets(kSets);
  {
    std::vector<uint32_t> all;
    if (size >= candidates) {
      all.resize(size);
      for (size_t r = 0; r < size; ++r) all[r] = static_cast<uint32_t>(r);
    }
    for (auto& set : row_sets) {
      set.resize(candidates);
      if (size >= candidates) {
        for (size_t i = 0; i < candidates; ++i) {  // partial Fisher-Yates
          std::uniform_int_distribution<size_t> pick(i, size - 1);
          std::swap(all[i], all[pick(rng)]);
          set[i] = all[i];
        }
      } else {
        std::uniform_int_distribution<size_t> pick(0, size - 1);
        for (uint32_t& r : set) r = static_cast<uint32_t>(pick(rng));
      }
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<std::vector<float>> upe(kSets), queries(kSets);
  for (size_t u = 0; u < kSets; ++u) {
    upe[u].resize(size_t{m} * d);
    for (float& x : upe[u]) x = uniform(rng);
    if (options.queries) {
      queries[u].resize(size_t{m} * d);
      for (float& x : queries[u]) x = uniform(rng);
    }
  }
  const size_t cold_below = options.cold_below_bytes > 0
                                ? options.cold_below_bytes
                                : LargestCacheBytes();
  const bool flush =
      static_cast<double>(size) * static_cast<double>(layout.row_bytes()) <
      static_cast<double>(cold_below);

  std::vector<float> scores(candidates);
  std::vector<int32_t> codes(candidates);
  Status failed;
  size_t call = 0;
  auto time_one = [&](size_t entrant, bool timed) -> double {
    (void)timed;
    const size_t k = call++ % kSets;
    const UserView user{m, d, upe[k], queries[k]};
    const std::vector<uint32_t>& rows = row_sets[k];
    if (flush) FlushRows(arena, rows);
    const KernelTable* table = KernelTableFor(entrants[entrant]);
    auto run = [&] {
      const Status s = ScoreWith(table, user, arena, rows, scores, codes);
      if (!s.ok()) failed = s;
    };
    if (options.timer) return options.timer(CpuIsaName(entrants[entrant]), run);
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };
  auto now = [] {
    return std::chrono::duration<double>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  internal::RaceOptions race_options;
  race_options.min_rounds = options.min_rounds;
  race_options.max_rounds = options.max_rounds;
  race_options.budget_seconds = options.budget_seconds;
  const internal::RaceResult race =
      internal::RunFamilyRace(entrants.size(), time_one, now, race_options);
  if (!failed.ok()) return failed;

  const double flops = 4.0 * m * n * d * static_cast<double>(candidates);
  std::vector<KernelFamilyTime> families;
  for (size_t i = 0; i < entrants.size(); ++i) {
    const internal::RaceEntrantResult& e = race.entrants[i];
    families.push_back({std::string(CpuIsaName(entrants[i])), e.median, e.q25,
                        e.q75, static_cast<int>(e.samples.size()),
                        e.q25 > 0 ? flops / e.q25 / 1e9 : NAN});
  }
  const KernelFamilyTime winner = families[race.winner];
  // In the race's order: the first quartile (see family_race.h).
  std::stable_sort(families.begin(), families.end(),
                   [](const KernelFamilyTime& x, const KernelFamilyTime& y) {
                     return x.seconds_q25 < y.seconds_q25;
                   });
  char sample[160];
  std::snprintf(sample, sizeof(sample),
                "m=%u n=%u d=%u candidates=%zu queries=%d keys=%d threads=%d "
                "rows=%zu%s",
                m, n, d, candidates, options.queries ? 1 : 0,
                layout.has_keys ? 1 : 0,
                pool_ == nullptr ? 1 : pool_->workers() + 1, size,
                flush ? " flushed" : "");

  std::lock_guard<std::mutex> lock(info_mu_);
  KernelInfo& info = info_[slot];
  if (!info.forced) {
    tables_[slot].store(KernelTableFor(entrants[race.winner]),
                        std::memory_order_release);
    info.kernel = winner.kernel;
    info.measured_gflops = winner.gflops;
  }
  info.families = std::move(families);
  info.dispatch_sample = sample;
  info.dispatch_stop = race.stop;
  info.dispatch_seconds = race.seconds;
  info.dispatch_rounds = race.rounds;
  return Status::Ok();
}

}  // namespace

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512bf16";
    case CpuIsa::kAvxVnni:
      return "avxvnni";
    case CpuIsa::kAvx512Vnni:
      return "avx512vnni";
    case CpuIsa::kAmx:
      return "amx";
  }
  return "unknown";
}

int CpuIsaVectorBits(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return 0;
    case CpuIsa::kAvx2:
    case CpuIsa::kAvxVnni:
      return 256;
    case CpuIsa::kAvx512:
    case CpuIsa::kAvx512Bf16:
    case CpuIsa::kAvx512Vnni:
    case CpuIsa::kAmx:
      return 512;
  }
  return 0;
}

bool CpuIsaHasBf16Dot(CpuIsa isa) {
  return isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAmx;
}

bool CpuIsaHasInt8Dot(CpuIsa isa) {
  return isa == CpuIsa::kAvxVnni || isa == CpuIsa::kAvx512Vnni ||
         isa == CpuIsa::kAmx;
}

bool CpuIsaHasTiles(CpuIsa isa) { return isa == CpuIsa::kAmx; }

std::optional<CpuIsa> ParseCpuIsa(std::string_view name) {
  for (CpuIsa isa : kAllIsas) {
    if (name == CpuIsaName(isa)) return isa;
  }
  return std::nullopt;
}

bool CpuIsaSupported(CpuIsa isa) {
  return KernelTableFor(isa) != nullptr && IsaSupportedByCpu(isa);
}

std::vector<CpuIsa> SupportedCpuIsas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : kAllIsas) {
    if (CpuIsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

CpuIsa BestCpuIsa() { return SupportedCpuIsas().back(); }

Status MakeCpuScorerWithIsa(const CpuScorerOptions& options, CpuIsa isa,
                            std::unique_ptr<Scorer>* out) {
  if (!CpuIsaSupported(isa)) {
    return Status::FailedPrecondition("cpu scorer: instruction set " +
                                      std::string(CpuIsaName(isa)) +
                                      " is not supported by this CPU or build");
  }
  std::array<Choice, kDTypeCount> choices;
  for (Choice& choice : choices) {
    choice = Choice{KernelTableFor(isa), NAN, true};
  }
  *out = std::make_unique<CpuScorer>(options, choices);
  return Status::Ok();
}

std::vector<CpuKernelTiming> TimeCpuKernels(const CpuScorerOptions& options,
                                            DType dtype) {
  std::vector<CpuKernelTiming> out;
  const DispatchShape& shape = options.dispatch_shape;
  const uint32_t m = std::max<uint32_t>(shape.user_codes, 1);
  const uint32_t n = std::max<uint32_t>(shape.item_codes, 1);
  const uint32_t d = std::max<uint32_t>(shape.dim, 1);
  // A few candidates of the served shape: enough for the steady state of
  // the inner loops, small enough that every family takes well under a
  // millisecond (the scalar family is timed only when it is the only one).
  constexpr size_t kRows = 8;
  constexpr int kReps = 3;
  ArenaLayout layout{n, d, dtype, shape.keys};
  ItemArena arena(layout, kRows);
  // Uniform in [-1, 1) / sqrt(d) from a 32-bit LCG: cheap and fixed.
  uint32_t state = 12345;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto random_rows = [&](size_t count) {
    std::vector<float> v(count);
    for (float& x : v) {
      state = state * 1664525u + 1013904223u;
      x = (static_cast<float>(state >> 8) * 0x1p-23f - 1.0f) * scale;
    }
    return v;
  };
  for (size_t r = 0; r < kRows; ++r) {
    const std::vector<float> cpe = random_rows(size_t{n} * d);
    const std::vector<float> keys =
        shape.keys ? random_rows(size_t{n} * d) : std::vector<float>();
    if (!arena.SetRow(r, cpe, keys).ok()) return out;
  }
  arena.Publish(kRows);
  const std::vector<float> a = random_rows(size_t{m} * d);
  const std::vector<float> q =
      shape.queries ? random_rows(size_t{m} * d) : std::vector<float>();
  const UserView user{m, d, a, q};
  std::vector<uint32_t> rows(kRows);
  for (size_t r = 0; r < kRows; ++r) rows[r] = static_cast<uint32_t>(r);
  std::vector<float> scores(kRows);
  std::vector<int32_t> codes(kRows);

  CpuScorerOptions one_thread = options;
  one_thread.threads = 1;
  const std::vector<CpuIsa> supported = SupportedCpuIsas();
  const double flops = 4.0 * m * n * d * kRows;
  std::vector<std::unique_ptr<CpuScorer>> scorers;
  std::vector<int> timed_keys;
  for (CpuIsa isa : supported) {
    if (isa == CpuIsa::kScalar && supported.size() > 1) continue;
    // Families that run the same code for this dtype are timed once (the
    // narrowest of them): same vector width, same kind of products.
    const bool bf16_dot =
        CpuIsaHasBf16Dot(isa) &&
        (dtype == DType::kBFloat16 ||
         (dtype == DType::kFloat16 && options.fp16_bf16_products));
    const bool int8_dot = CpuIsaHasInt8Dot(isa) && dtype == DType::kInt8;
    const bool tiles = CpuIsaHasTiles(isa) && (bf16_dot || int8_dot);
    const int key = CpuIsaVectorBits(isa) * 8 + (bf16_dot ? 1 : 0) +
                    (int8_dot ? 2 : 0) + (tiles ? 4 : 0);
    if (std::find(timed_keys.begin(), timed_keys.end(), key) !=
        timed_keys.end()) {
      continue;
    }
    timed_keys.push_back(key);
    std::array<Choice, kDTypeCount> choices;
    for (Choice& choice : choices) choice = Choice{KernelTableFor(isa)};
    scorers.push_back(std::make_unique<CpuScorer>(one_thread, choices));
    out.push_back({isa, 0.0});
  }
  // Round robin over the families, best of kReps each: a burst of noise
  // from other processes hits one rep of every family, not one family.
  std::vector<double> best(scorers.size(), INFINITY);
  for (int rep = 0; rep <= kReps; ++rep) {  // rep 0 warms up
    for (size_t f = 0; f < scorers.size(); ++f) {
      const auto start = std::chrono::steady_clock::now();
      if (!scorers[f]->Score(user, arena, rows, scores, codes).ok()) continue;
      const double seconds = std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
      if (rep > 0) best[f] = std::min(best[f], seconds);
    }
  }
  for (size_t f = 0; f < scorers.size(); ++f) {
    out[f].gflops = std::isfinite(best[f]) ? flops / best[f] / 1e9 : 0.0;
  }
  return out;
}

std::unique_ptr<Scorer> MakeCpuScorer(const CpuScorerOptions& options) {
  // The widest supported family always exists (scalar at worst).
  const CpuIsa widest = BestCpuIsa();
  std::array<Choice, kDTypeCount> choices;
  for (DType dtype : kDTypes) {
    Choice& choice = choices[static_cast<size_t>(dtype)];
    choice = Choice{KernelTableFor(widest), NAN, false};
    if (!options.measure_dispatch) continue;
    // The fastest measured family; ties keep the earlier (narrower) one.
    double best = 0;
    for (const CpuKernelTiming& timing : TimeCpuKernels(options, dtype)) {
      if (timing.gflops > best) {
        best = timing.gflops;
        choice = Choice{KernelTableFor(timing.isa), timing.gflops, false};
      }
    }
  }
  return std::make_unique<CpuScorer>(options, choices);
}

}  // namespace embsum::scoring
