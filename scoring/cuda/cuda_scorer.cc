// CudaScorer: the Scorer interface on a CUDA device; launch and batching.
//
// - Item arenas are mirrored on the device by DeviceMirrors
//   (device_mirror.h): keyed by arena identity, several kept at once, rows
//   appended since the last call uploaded before scoring. Requests in
//   flight keep their mirror alive (shared_ptr) until they finish.
// - Arguments are checked by scoring/scorer_args.h, as in the CPU scorer.
// - `streams` workers, each a stream with pinned host and device buffers
//   that grow on demand and are reused: no allocation per request in steady
//   state.
// - Score calls go through a RequestBatcher: calls that arrive within
//   batch_window_us of each other (same arena and user shape) are scored in
//   one launch (grid.y = user).
#include "scoring/cuda/cuda_scorer.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "scoring/cuda/cuda_util.h"
#include "scoring/cuda/device_mirror.h"
#include "scoring/cuda/fused_score.h"
#include "scoring/cuda/launch_plan.h"
#include "scoring/cuda/request_batcher.h"
#include "scoring/scorer_args.h"

namespace embsum::scoring {
namespace {

using cuda_internal::DeviceArena;
using cuda_internal::DeviceBuffer;
using cuda_internal::DeviceLimits;
using cuda_internal::DeviceMirrors;
using cuda_internal::FusedBatch;
using cuda_internal::LaunchPlan;
using cuda_internal::PinnedBuffer;
using cuda_internal::RequestBatcher;
using cuda_internal::ScoreShape;
using cuda_internal::Stream;
using cuda_internal::TopKBatch;

std::string Count(size_t n) { return std::to_string(n); }

size_t AlignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }

// One stream and its reusable buffers. Used by one batch at a time.
struct Worker {
  Stream stream;
  PinnedBuffer host_in;
  PinnedBuffer host_out;
  DeviceBuffer dev_in;
  DeviceBuffer dev_prepared;
  DeviceBuffer dev_out;
  // Full scans.
  DeviceBuffer scan_scores;
  DeviceBuffer scan_codes;
  DeviceBuffer sort_temp;
  DeviceBuffer sort_keys;
  DeviceBuffer sort_rows;
  DeviceBuffer live;
};

// One Score call waiting in the batcher.
struct PendingScore {
  const UserView* user = nullptr;
  std::span<const uint32_t> rows;
  std::span<float> scores;
  std::span<int32_t> codes;
  std::shared_ptr<DeviceArena> mirror;
};

class CudaScorer final : public Scorer {
 public:
  CudaScorer(const CudaScorerOptions& options, const DeviceLimits& limits)
      : options_(options),
        limits_(limits),
        mirrors_(options.device,
                 static_cast<size_t>(std::max(options.max_mirrors, 1))) {
    batcher_ = std::make_unique<RequestBatcher>(
        options.batch_window_us, options.max_batch,
        static_cast<uint32_t>(std::max(options.streams, 1)),
        [this](uint64_t, std::span<void* const> requests) {
          return RunBatch(requests);
        });
  }

  Status Init() {
    const int streams = std::max(options_.streams, 1);
    for (int i = 0; i < streams; ++i) {
      auto worker = std::make_unique<Worker>();
      EMBSUM_SCORING_RETURN_IF_ERROR(worker->stream.Create());
      free_.push_back(worker.get());
      workers_.push_back(std::move(worker));
    }
    return mirrors_.Init();
  }

  ~CudaScorer() override {
    cudaSetDevice(options_.device);
    for (auto& worker : workers_) cudaStreamSynchronize(worker->stream.get());
  }

  std::string_view backend() const override { return "cuda"; }

  Status Score(const UserView& user, const ItemArena& arena,
               std::span<const uint32_t> rows, std::span<float> scores,
               std::span<int32_t> top_codes) const override {
    EMBSUM_SCORING_RETURN_IF_ERROR(
        CheckScoreArgs("cuda scorer", user, arena, rows, scores, top_codes));
    if (rows.empty()) return Status::Ok();
    if (user.user_codes == 0 || arena.layout().item_codes == 0) {
      std::fill(scores.begin(), scores.end(), 0.0f);
      std::fill(top_codes.begin(), top_codes.end(), -1);
      return Status::Ok();
    }
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    PendingScore pending;
    EMBSUM_SCORING_RETURN_IF_ERROR(mirrors_.Get(arena, &pending.mirror));
    pending.user = &user;
    pending.rows = rows;
    pending.scores = scores;
    pending.codes = top_codes;
    // Requests fuse only with the same mirror and user shape.
    const uint64_t key = std::hash<const void*>{}(pending.mirror.get()) ^
                         (uint64_t{user.user_codes} << 1) ^
                         (user.queries.empty() ? 0 : 1);
    return batcher_->Submit(key, &pending);
  }

  Status ScoreAllTopK(const UserView& user, const ItemArena& arena,
                      std::span<const uint8_t> live, uint32_t k,
                      std::vector<ScoredRow>* out) const override {
    size_t size = 0;  // the rows to scan: live.size() (a snapshot's rows)
    EMBSUM_SCORING_RETURN_IF_ERROR(
        CheckScanArgs("cuda scorer", user, arena, live, out, &size));
    if (size > UINT32_MAX) {
      return Status::InvalidArgument("cuda scorer: arena has " + Count(size) +
                                     " rows (at most 2^32-1)");
    }
    out->clear();
    if (size == 0) return Status::Ok();
    size_t live_count = size;
    if (!live.empty()) {
      live_count = static_cast<size_t>(std::count_if(
          live.begin(), live.end(), [](uint8_t f) { return f != 0; }));
    }
    const size_t keep = k == 0 ? live_count : std::min<size_t>(k, live_count);
    if (keep == 0) return Status::Ok();
    if (user.user_codes == 0 || arena.layout().item_codes == 0) {
      for (size_t r = 0; r < size && out->size() < keep; ++r) {
        if (live.empty() || live[r] != 0) {
          out->push_back({static_cast<uint32_t>(r), 0.0f, -1});
        }
      }
      return Status::Ok();
    }
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    std::shared_ptr<DeviceArena> mirror;
    EMBSUM_SCORING_RETURN_IF_ERROR(mirrors_.Get(arena, &mirror));
    WorkerLease lease(this);
    return RunScan(*lease.worker(), *mirror, user, live, size, keep, out);
  }

  Status SyncArena(const ItemArena& arena,
                   std::span<const uint32_t> rows) override {
    // The CUDA kernels multiply fp32/fp16/bf16 rows; int8 is CPU-only.
    if (arena.layout().dtype == DType::kInt8) {
      return Status::FailedPrecondition(
          "cuda scorer: int8 item storage is not supported on CUDA (use "
          "--backend=cpu, or --item_dtype=fp32, fp16 or bf16)");
    }
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    return mirrors_.Sync(arena, rows);
  }

 private:
  // Exclusive use of one worker for the lease's lifetime.
  class WorkerLease {
   public:
    explicit WorkerLease(const CudaScorer* scorer) : scorer_(scorer) {
      std::unique_lock<std::mutex> lock(scorer_->workers_mu_);
      scorer_->workers_cv_.wait(lock, [&] { return !scorer_->free_.empty(); });
      worker_ = scorer_->free_.back();
      scorer_->free_.pop_back();
    }
    ~WorkerLease() {
      {
        std::lock_guard<std::mutex> lock(scorer_->workers_mu_);
        scorer_->free_.push_back(worker_);
      }
      scorer_->workers_cv_.notify_one();
    }
    WorkerLease(const WorkerLease&) = delete;
    WorkerLease& operator=(const WorkerLease&) = delete;
    Worker* worker() const { return worker_; }

   private:
    const CudaScorer* scorer_;
    Worker* worker_;
  };

  static ScoreShape ShapeOf(const DeviceArena& mirror, const UserView& user) {
    ScoreShape shape;
    shape.user_codes = user.user_codes;
    shape.item_codes = mirror.layout.item_codes;
    shape.dim = mirror.layout.dim;
    shape.dtype = mirror.layout.dtype;
    shape.has_queries = !user.queries.empty();
    shape.has_keys = mirror.layout.has_keys;
    return shape;
  }

  // `plan` with the kernel modes of the options that are set.
  LaunchPlan WithModeOverrides(LaunchPlan plan) const {
    if (options_.load_mode >= 0) {
      plan.load_mode = static_cast<uint32_t>(options_.load_mode);
    }
    if (options_.prepare_mode >= 0) {
      plan.prepare_mode = static_cast<uint32_t>(options_.prepare_mode);
    }
    if (options_.epilogue_mode >= 0) {
      plan.epilogue_mode = static_cast<uint32_t>(options_.epilogue_mode);
    }
    return plan;
  }

  // Scores one batch of PendingScore (same mirror and user shape) in one
  // launch on one worker.
  Status RunBatch(std::span<void* const> requests) const {
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    const auto* first = static_cast<const PendingScore*>(requests[0]);
    const DeviceArena& mirror = *first->mirror;
    const ScoreShape shape = ShapeOf(mirror, *first->user);
    const uint32_t users = static_cast<uint32_t>(requests.size());
    size_t total = 0, max_count = 0;
    for (void* r : requests) {
      const size_t c = static_cast<const PendingScore*>(r)->rows.size();
      total += c;
      max_count = std::max(max_count, c);
    }
    const LaunchPlan plan = WithModeOverrides(
        cuda_internal::PlanLaunch(shape, users, max_count, total, limits_));
    const size_t user_floats = size_t{shape.user_codes} * shape.dim;
    const size_t stride = user_floats * (shape.has_queries ? 2 : 1);
    // Input block, same layout on host and device: offsets | rows | users.
    const size_t offsets_at = 0;
    const size_t rows_at = offsets_at + (users + 1) * sizeof(uint32_t);
    const size_t users_at = AlignUp(rows_at + total * sizeof(uint32_t), 16);
    const size_t in_bytes = users_at + users * stride * sizeof(float);
    const size_t out_bytes = total * (sizeof(float) + sizeof(int32_t));

    WorkerLease lease(this);
    Worker& w = *lease.worker();
    EMBSUM_SCORING_RETURN_IF_ERROR(w.host_in.Reserve(in_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.dev_in.Reserve(in_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.host_out.Reserve(out_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.dev_out.Reserve(out_bytes));
    if (plan.fast) {
      EMBSUM_SCORING_RETURN_IF_ERROR(
          w.dev_prepared.Reserve(users * plan.prepared_bytes));
    }
    auto* host = w.host_in.as<std::byte>();
    auto* offsets = reinterpret_cast<uint32_t*>(host + offsets_at);
    auto* rows = reinterpret_cast<uint32_t*>(host + rows_at);
    auto* user_data = reinterpret_cast<float*>(host + users_at);
    uint32_t at = 0;
    for (uint32_t u = 0; u < users; ++u) {
      const auto* p = static_cast<const PendingScore*>(requests[u]);
      offsets[u] = at;
      std::memcpy(rows + at, p->rows.data(), p->rows.size_bytes());
      at += static_cast<uint32_t>(p->rows.size());
      std::memcpy(user_data + u * stride, p->user->upe.data(),
                  user_floats * sizeof(float));
      if (shape.has_queries) {
        std::memcpy(user_data + u * stride + user_floats,
                    p->user->queries.data(), user_floats * sizeof(float));
      }
    }
    offsets[users] = at;
    const cudaStream_t stream = w.stream.get();
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        w.dev_in.get(), host, in_bytes, cudaMemcpyHostToDevice, stream));
    auto* dev = w.dev_in.as<std::byte>();
    float* dev_scores = w.dev_out.as<float>();
    auto* dev_codes = reinterpret_cast<int32_t*>(dev_scores + total);
    if (options_.poison_outputs) {
      EMBSUM_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(w.dev_out.get(), 0xff, out_bytes, stream));
    }
    FusedBatch batch;
    batch.arena = mirror.data.as<std::byte>();
    batch.row_bytes = mirror.row_bytes;
    batch.shape = shape;
    batch.num_users = users;
    batch.users = reinterpret_cast<const float*>(dev + users_at);
    batch.user_stride = stride;
    batch.prepared = w.dev_prepared.as<std::byte>();
    batch.rows = reinterpret_cast<const uint32_t*>(dev + rows_at);
    batch.offsets = reinterpret_cast<const uint32_t*>(dev + offsets_at);
    batch.count = static_cast<uint32_t>(total);
    batch.scores = dev_scores;
    batch.codes = dev_codes;
    EMBSUM_SCORING_RETURN_IF_ERROR(
        cuda_internal::LaunchFusedScore(batch, plan, stream));
    EMBSUM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(w.host_out.get(), dev_scores, out_bytes,
                        cudaMemcpyDeviceToHost, stream));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    const float* out_scores = w.host_out.as<float>();
    const auto* out_codes =
        reinterpret_cast<const int32_t*>(out_scores + total);
    for (uint32_t u = 0; u < users; ++u) {
      const auto* p = static_cast<const PendingScore*>(requests[u]);
      std::memcpy(p->scores.data(), out_scores + offsets[u],
                  p->scores.size_bytes());
      if (!p->codes.empty()) {
        std::memcpy(p->codes.data(), out_codes + offsets[u],
                    p->codes.size_bytes());
      }
    }
    return Status::Ok();
  }

  // Full scan of rows [0, size) and device top-`keep`.
  Status RunScan(Worker& w, const DeviceArena& mirror, const UserView& user,
                 std::span<const uint8_t> live, size_t size, size_t keep,
                 std::vector<ScoredRow>* out) const {
    const ScoreShape shape = ShapeOf(mirror, user);
    const uint32_t n = static_cast<uint32_t>(size);
    const LaunchPlan plan =
        WithModeOverrides(cuda_internal::PlanLaunch(shape, 1, n, n, limits_));
    const size_t user_floats = size_t{shape.user_codes} * shape.dim;
    const size_t stride = user_floats * (shape.has_queries ? 2 : 1);
    const size_t live_at = AlignUp(stride * sizeof(float), 16);
    const size_t in_bytes = live_at + (live.empty() ? 0 : size);
    size_t temp_bytes = 0;
    EMBSUM_SCORING_RETURN_IF_ERROR(
        cuda_internal::TopKTempBytes(n, &temp_bytes));
    const size_t out_bytes = keep * (sizeof(float) + 2 * sizeof(int32_t));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.host_in.Reserve(in_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.dev_in.Reserve(in_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.host_out.Reserve(out_bytes));
    EMBSUM_SCORING_RETURN_IF_ERROR(w.dev_out.Reserve(out_bytes));
    if (plan.fast) {
      EMBSUM_SCORING_RETURN_IF_ERROR(
          w.dev_prepared.Reserve(plan.prepared_bytes));
    }
    EMBSUM_SCORING_RETURN_IF_ERROR(w.scan_scores.Reserve(size * sizeof(float)));
    EMBSUM_SCORING_RETURN_IF_ERROR(
        w.scan_codes.Reserve(size * sizeof(int32_t)));
    EMBSUM_SCORING_RETURN_IF_ERROR(
        w.sort_temp.Reserve(std::max<size_t>(temp_bytes, 1)));
    // keys | sorted keys | iota | sorted rows.
    EMBSUM_SCORING_RETURN_IF_ERROR(
        w.sort_keys.Reserve(4 * size * sizeof(uint32_t)));

    auto* host = w.host_in.as<std::byte>();
    std::memcpy(host, user.upe.data(), user_floats * sizeof(float));
    if (shape.has_queries) {
      std::memcpy(host + user_floats * sizeof(float), user.queries.data(),
                  user_floats * sizeof(float));
    }
    if (!live.empty()) std::memcpy(host + live_at, live.data(), size);
    const cudaStream_t stream = w.stream.get();
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        w.dev_in.get(), host, in_bytes, cudaMemcpyHostToDevice, stream));
    if (options_.poison_outputs) {
      EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(
          w.scan_scores.get(), 0xff, size * sizeof(float), stream));
      EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(
          w.scan_codes.get(), 0xff, size * sizeof(int32_t), stream));
    }
    auto* dev = w.dev_in.as<std::byte>();
    FusedBatch batch;
    batch.arena = mirror.data.as<std::byte>();
    batch.row_bytes = mirror.row_bytes;
    batch.shape = shape;
    batch.num_users = 1;
    batch.users = reinterpret_cast<const float*>(dev);
    batch.user_stride = stride;
    batch.prepared = w.dev_prepared.as<std::byte>();
    batch.count = n;
    batch.scores = w.scan_scores.as<float>();
    batch.codes = w.scan_codes.as<int32_t>();
    EMBSUM_SCORING_RETURN_IF_ERROR(
        cuda_internal::LaunchFusedScore(batch, plan, stream));

    uint32_t* keys = w.sort_keys.as<uint32_t>();
    TopKBatch top;
    top.scores = batch.scores;
    top.codes = batch.codes;
    top.live = live.empty() ? nullptr
                            : reinterpret_cast<const uint8_t*>(dev + live_at);
    top.n = n;
    top.k = static_cast<uint32_t>(keep);
    top.temp = w.sort_temp.get();
    top.temp_bytes = temp_bytes;
    top.keys = keys;
    top.sorted_keys = keys + size;
    top.iota = keys + 2 * size;
    top.out_rows = keys + 3 * size;
    float* dev_scores = w.dev_out.as<float>();
    top.out_scores = dev_scores;
    top.out_codes = reinterpret_cast<int32_t*>(dev_scores + keep);
    EMBSUM_SCORING_RETURN_IF_ERROR(cuda_internal::LaunchTopK(top, stream));
    // Gathered scores and codes, then the first `keep` sorted rows.
    auto* host_out = w.host_out.as<std::byte>();
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        host_out, dev_scores, keep * (sizeof(float) + sizeof(int32_t)),
        cudaMemcpyDeviceToHost, stream));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        host_out + keep * (sizeof(float) + sizeof(int32_t)), top.out_rows,
        keep * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    const auto* s = reinterpret_cast<const float*>(host_out);
    const auto* c = reinterpret_cast<const int32_t*>(s + keep);
    const auto* r = reinterpret_cast<const uint32_t*>(c + keep);
    out->resize(keep);
    for (size_t i = 0; i < keep; ++i) (*out)[i] = {r[i], s[i], c[i]};
    return Status::Ok();
  }

  const CudaScorerOptions options_;
  const DeviceLimits limits_;
  std::unique_ptr<RequestBatcher> batcher_;

  mutable std::mutex workers_mu_;
  mutable std::condition_variable workers_cv_;
  std::vector<std::unique_ptr<Worker>> workers_;
  mutable std::vector<Worker*> free_;  // guarded by workers_mu_

  mutable DeviceMirrors mirrors_;
};

}  // namespace

bool CudaDeviceAvailable(std::string* why) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    if (why != nullptr) {
      *why = std::string("CUDA unavailable: ") + cudaGetErrorString(error) +
             " (" + cudaGetErrorName(error) + ")";
    }
    cudaGetLastError();  // clear the sticky-free error state
    return false;
  }
  if (count == 0) {
    if (why != nullptr) *why = "no CUDA device";
    return false;
  }
  if (why != nullptr) why->clear();
  return true;
}

Status MakeCudaScorer(const CudaScorerOptions& options,
                      std::unique_ptr<Scorer>* out) {
  {
    const LaunchPlan defaults;
    const std::string bad = cuda_internal::KernelModeRejection(
        options.load_mode >= 0 ? static_cast<uint32_t>(options.load_mode)
                               : defaults.load_mode,
        options.prepare_mode >= 0 ? static_cast<uint32_t>(options.prepare_mode)
                                  : defaults.prepare_mode,
        options.epilogue_mode >= 0
            ? static_cast<uint32_t>(options.epilogue_mode)
            : defaults.epilogue_mode);
    if (!bad.empty()) {
      return Status::InvalidArgument("cuda scorer: options: " + bad);
    }
  }
  std::string why;
  if (!CudaDeviceAvailable(&why)) {
    return Status::Unavailable("cuda scorer: " + why);
  }
  int count = 0;
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (options.device < 0 || options.device >= count) {
    return Status::InvalidArgument(
        "cuda scorer: device " + std::to_string(options.device) +
        " out of range (" + std::to_string(count) + " devices)");
  }
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  DeviceLimits limits;
  EMBSUM_SCORING_RETURN_IF_ERROR(
      cuda_internal::QueryDeviceLimits(options.device, &limits));
  EMBSUM_SCORING_RETURN_IF_ERROR(cuda_internal::ConfigureKernels(limits));
  auto scorer = std::make_unique<CudaScorer>(options, limits);
  EMBSUM_SCORING_RETURN_IF_ERROR(scorer->Init());
  *out = std::move(scorer);
  return Status::Ok();
}

}  // namespace embsum::scoring
