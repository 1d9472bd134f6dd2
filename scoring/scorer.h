// The EmbSum relevance function of docs/design.md section 2, batch-first:
//
//   K = A B^T, L = Q G^T (m x n), w = softmax over all m*n entries of L,
//   score = sum_ij w_ij K_ij, top_user_code = argmax_i sum_j w_ij K_ij.
//
// Implementations: the CPU scorer (MakeCpuScorer, this folder) and the CUDA
// scorer (scoring/cuda/cuda_scorer.h). Both accumulate in fp32 whatever the
// arena's storage dtype.
#ifndef EMBSUM_SCORING_SCORER_H_
#define EMBSUM_SCORING_SCORER_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/item_arena.h"
#include "scoring/status.h"
#include "scoring/user_view.h"

namespace embsum::scoring {

// One scored arena row.
struct ScoredRow {
  uint32_t row = 0;
  float score = 0.0f;
  int32_t top_user_code = -1;
};

// One kernel family's time in the last dispatch measurement (DispatchOn).
struct KernelFamilyTime {
  std::string kernel;        // e.g. "avx512"
  double seconds_p50 = NAN;  // median seconds of one call of the sample
  // First and third quartiles; families are ranked by the first (other
  // processes' preemption only adds time; scoring/internal/family_race.h).
  double seconds_q25 = NAN;
  double seconds_q75 = NAN;
  int samples = 0;
  double gflops = NAN;  // 4*m*n*d*candidates FLOP / seconds_q25
};

// Which kernel a scorer runs for one storage dtype, for logs and the
// embsum_scorer_info metric.
struct KernelInfo {
  std::string kernel;  // e.g. "avx512bf16" (CPU family) or "cuda"
  // The kernel's rate on the scorer's dispatch sample (GFLOP/s of the two
  // products), measured when the scorer was made; NaN when not measured
  // (a forced kernel, or a backend that does not measure).
  double measured_gflops = NAN;
  // True when the kernel was forced (--isa) rather than picked by timing.
  bool forced = false;
  // Filled by DispatchOn for this dtype: every family it timed, fastest
  // (lowest first quartile) first; the sample it timed and why the timing
  // stopped ("clear", "tie", "budget", "rounds", "single"). Empty before any
  // DispatchOn.
  std::vector<KernelFamilyTime> families;
  std::string dispatch_sample;  // e.g. "m=32 n=8 d=512 candidates=500 ..."
  std::string dispatch_stop;
  double dispatch_seconds = 0;  // wall time of the measurement
  int dispatch_rounds = 0;
};

// Dispatch where the server runs (Scorer::DispatchOn): the served shape
// and the measurement's limits.
struct DispatchOptions {
  uint32_t user_codes = 32;   // m of the served users
  bool queries = true;        // the served users carry Q
  uint32_t candidates = 500;  // rows per timed call: a Rank-sized request
  // Wall-clock budget of the measurement for the dtype, warm-up included.
  double budget_seconds = 0.3;
  int min_rounds = 5;
  int max_rounds = 200;
  // Rows are flushed from the caches before each timed call when the arena
  // is smaller than this many bytes (0: the last-level cache's size, from
  // sysfs): its rows would otherwise be cache-resident, unlike a served
  // arena larger than the cache.
  size_t cold_below_bytes = 0;
  uint64_t seed = 1;
  // Test seam, not an operator option: when set, times one call of
  // `kernel` (a family name) instead of the steady clock; `call` runs the
  // call and may be skipped. The race's budget still uses the steady clock.
  std::function<double(std::string_view kernel,
                       const std::function<void()>& call)>
      timer;
};

// Thread-safety: every method of a Scorer is safe to call concurrently.
class Scorer {
 public:
  virtual ~Scorer() = default;

  // "cpu" or "cuda": the `backend` label of embsum_scoring_seconds.
  virtual std::string_view backend() const = 0;

  // The kernel used for arenas stored as `dtype`. The default names the
  // backend, unmeasured.
  virtual KernelInfo kernel_info(DType dtype) const {
    (void)dtype;
    KernelInfo info;
    info.kernel = std::string(backend());
    return info;
  }

  // Scores `rows` (each < arena.size()) for `user`.
  // scores: size rows.size(). top_codes: size rows.size(), or empty to skip
  // computing top_user_code. user.dim must equal arena.layout().dim.
  // Errors: InvalidArgument on size mismatches (CheckScoreArgs in
  // scorer_args.h); Internal/Unavailable on device failures (CUDA).
  virtual Status Score(const UserView& user, const ItemArena& arena,
                       std::span<const uint32_t> rows, std::span<float> scores,
                       std::span<int32_t> top_codes) const = 0;

  // Full-catalogue scan: the k best rows among [0, n) whose `live` flag is
  // non-zero, sorted by score descending, ties by row ascending. Fills
  // top_user_code. n = live.size() (an item snapshot's rows(); at most
  // arena.size(), which may grow while the call runs), or arena.size() when
  // live is empty (all live). Arguments are checked by CheckScanArgs
  // (scorer_args.h), the same for every implementation.
  virtual Status ScoreAllTopK(const UserView& user, const ItemArena& arena,
                              std::span<const uint8_t> live, uint32_t k,
                              std::vector<ScoredRow>* out) const = 0;

  // Dispatch by measurement on the served data: times every kernel family
  // that this scorer could run for arena.layout().dtype on rows drawn at
  // random from `arena` (its published rows), options.candidates per call,
  // a different synthetic user of the served shape per call, on the
  // scorer's own threads, round robin until the fastest is clear or the
  // budget is spent, then runs the fastest for that dtype (unless the
  // kernel was forced, which stays: the timings are still reported).
  // kernel_info(dtype) then lists every family's time. Safe to call while
  // other threads score: a request uses the family it started with.
  // Backends with one kernel do nothing. Errors: InvalidArgument for a
  // user_codes of 0 or a candidates of 0.
  virtual Status DispatchOn(const ItemArena& arena,
                            const DispatchOptions& options) {
    (void)arena;
    (void)options;
    return Status::Ok();
  }

  // Tells a scorer that keeps its own copy of the arena (CUDA) that `rows`
  // of `arena` changed, or that the arena was replaced when `rows` is empty
  // and arena is not the one it mirrors. The CPU scorer does nothing.
  virtual Status SyncArena(const ItemArena& arena,
                           std::span<const uint32_t> rows) {
    (void)arena;
    (void)rows;
    return Status::Ok();
  }
};

// The request shape a CPU scorer is tuned for (dispatch by measurement).
struct DispatchShape {
  uint32_t user_codes = 32;  // m
  uint32_t item_codes = 8;   // n
  uint32_t dim = 512;        // d
  bool queries = true;       // requests carry Q
  bool keys = true;          // the arena carries G
};

// Trade-offs of the CPU scorer.
struct CpuScorerOptions {
  // Worker threads for large candidate sets (0 = hardware concurrency).
  // The pool lives as long as the scorer.
  int threads = 0;
  // A request goes to the pool only when it has at least this many
  // candidates AND at least parallel_min_work multiply-adds
  // (2 * candidates * m * n * d); smaller requests are scored on the calling
  // thread, where handing work to the pool would cost more than it saves.
  // At shape S1 (m=32, n=8, d=512) one candidate is 262144 multiply-adds
  // (about 3 us on one Zen4 core), so the defaults go parallel from 16
  // candidates. Under heavy concurrent load, raising both trades latency for
  // a little throughput.
  size_t parallel_threshold = 16;
  size_t parallel_min_work = size_t{1} << 22;
  // fp16 item storage on CPUs with AVX512_BF16: true lets the avx512bf16
  // family multiply it as bf16 dot products (items and user vectors rounded
  // to bf16, ~4e-3 relative per element, within docs/design.md's 2e-2 for
  // 16-bit storage), and dispatch keeps that family for fp16 only where it
  // measures faster than the fp32-product ones; false: fp16 is always
  // widened to fp32 (products exact for the stored values, still half the
  // memory). bf16 storage on avx512bf16 always uses bf16 dot products.
  bool fp16_bf16_products = true;
  // Dispatch by measurement: MakeCpuScorer times every kernel family this
  // CPU supports on a few synthetic candidates of `dispatch_shape` (about a
  // millisecond per storage dtype) and keeps the fastest for each dtype.
  // false: the widest family is used without timing.
  bool measure_dispatch = true;
  DispatchShape dispatch_shape = {};
};

std::unique_ptr<Scorer> MakeCpuScorer(const CpuScorerOptions& options = {});

// Stable top-k by score descending; ties keep input order (index ascending).
// Writes min(k, scores.size()) indices into `out` (k = 0 means all).
void SelectTopK(std::span<const float> scores, uint32_t k,
                std::vector<uint32_t>* out);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_SCORER_H_
