#include "store/internal/ann_gpu.h"

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "faiss/Index.h"

#ifdef EMBSUM_HAVE_FAISS_GPU
#include <cuda_runtime_api.h>

#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "faiss/gpu/GpuCloner.h"
#include "faiss/gpu/StandardGpuResources.h"
#include "faiss/gpu/impl/IndexUtils.h"
#include "faiss/gpu/utils/DeviceUtils.h"
#endif

namespace embsum::store::internal {
namespace {

// This Abseil's string_view is its own type, not std::string_view.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

void WriteAnnLog(const AnnGpuIndex::Log& log, std::string_view level,
                 std::string_view message) {
  if (log) {
    log(level, message);
    return;
  }
  const std::string line =
      absl::StrCat("embsum store: ", Sv(level), ": ", Sv(message), "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

#ifdef EMBSUM_HAVE_FAISS_GPU

static_assert(std::is_same_v<decltype(faiss::Index::ntotal), int64_t>,
              "FAISS labels are int64_t");

// The resources every GPU copy on one device shares. FAISS GPU objects are
// not thread-safe: whoever copies to, searches on or frees an index made
// with `resources` holds `mu`.
struct GpuDevice {
  absl::Mutex mu;
  faiss::gpu::StandardGpuResources resources ABSL_GUARDED_BY(mu);
};

namespace {

std::atomic<bool> logged_no_device{false};
std::atomic<uint64_t> create_failures{0};

// The GpuDevice of `device` while any copy lives there (made on first use,
// freed with the last copy, so an idle process holds no GPU memory).
std::shared_ptr<GpuDevice> AcquireDevice(int device, bool* created) {
  static absl::Mutex* const mu = new absl::Mutex;
  static auto* const devices =
      new absl::flat_hash_map<int, std::weak_ptr<GpuDevice>>();
  absl::MutexLock lock(mu);
  std::weak_ptr<GpuDevice>& slot = (*devices)[device];
  std::shared_ptr<GpuDevice> gpu = slot.lock();
  *created = gpu == nullptr;
  if (gpu == nullptr) {
    gpu = std::make_shared<GpuDevice>();
    slot = gpu;
  }
  return gpu;
}

// Logs the 1st, 2nd, 4th, 8th... failure to copy an index to a GPU, so a
// persistent cause (device memory full) does not log once per upsert.
void LogCreateFailure(const AnnGpuIndex::Log& log, std::string_view message) {
  const uint64_t count = create_failures.fetch_add(1) + 1;
  if ((count & (count - 1)) != 0) return;
  WriteAnnLog(log, "warning",
              absl::StrCat(Sv(message), "; the ANN index stays on the CPU",
                           count > 1 ? absl::StrCat(" (failure #", count,
                                                    " since start)")
                                     : ""));
}

}  // namespace

std::unique_ptr<AnnGpuIndex> AnnGpuIndex::Create(const faiss::Index& cpu,
                                                 const AnnOptions& options,
                                                 std::string_view what,
                                                 const Log& log) {
  if (options.gpu == AnnOptions::Gpu::kOff) return nullptr;
  // Ask the CUDA runtime first: FAISS 1.8's getNumDevices() aborts the
  // process on any error other than "no device" (no driver, say).
  int cuda_devices = 0;
  const cudaError_t error = cudaGetDeviceCount(&cuda_devices);
  if (error != cudaSuccess || cuda_devices <= 0) {
    if (!logged_no_device.exchange(true)) {
      WriteAnnLog(log,
                  error == cudaSuccess || error == cudaErrorNoDevice
                      ? "info"
                      : "warning",
                  absl::StrCat("ANN on GPU: no usable CUDA device (",
                               error != cudaSuccess ? cudaGetErrorString(error)
                                                    : "none found",
                               "); ANN indexes stay on the CPU"));
    }
    return nullptr;
  }
  const int device = options.gpu_device;
  int devices = 0;
  try {
    devices = faiss::gpu::getNumDevices();
  } catch (const std::exception& e) {
    LogCreateFailure(log,
                     absl::StrCat("ANN on GPU: counting devices: ", e.what()));
    return nullptr;
  }
  if (devices <= 0 || device < 0 || device >= devices) {
    if (devices <= 0) {
      if (!logged_no_device.exchange(true)) {
        WriteAnnLog(log, "warning",
                    "ANN on GPU: FAISS sees no GPU; ANN indexes stay on the "
                    "CPU");
      }
    } else {
      LogCreateFailure(
          log, absl::StrCat("ANN on GPU: gpu_device ", device,
                            " does not exist (", devices, " device(s))"));
    }
    return nullptr;
  }

  bool created = false;
  std::shared_ptr<GpuDevice> gpu = AcquireDevice(device, &created);
  std::unique_ptr<AnnGpuIndex> out(new AnnGpuIndex());
  out->gpu_ = gpu;
  out->device_ = device;
  out->what_ = std::string(what);
  out->log_ = log;
  try {
    out->max_k_ = faiss::gpu::getMaxKSelection();
    absl::MutexLock lock(&gpu->mu);
    out->index_.reset(
        faiss::gpu::index_cpu_to_gpu(&gpu->resources, device, &cpu));
  } catch (const std::exception& e) {
    LogCreateFailure(log, absl::StrCat("ANN on GPU ", device, ": copying the ",
                                       Sv(what), " index: ", e.what()));
    return nullptr;
  }
  if (out->index_ == nullptr) {
    LogCreateFailure(log, absl::StrCat("ANN on GPU ", device, ": copying the ",
                                       Sv(what), " index returned no index"));
    return nullptr;
  }
  if (created) {
    WriteAnnLog(
        log, "info",
        absl::StrCat("ANN on GPU: ANN indexes are searched on GPU ", device,
                     " of ", devices, " (first: ", Sv(what), ")"));
  }
  return out;
}

AnnGpuIndex::~AnnGpuIndex() {
  if (index_ == nullptr) return;
  absl::MutexLock lock(&gpu_->mu);
  index_.reset();
}

bool AnnGpuIndex::Accepts(size_t k) const {
  return usable() && k > 0 && static_cast<int64_t>(k) < max_k_;
}

absl::Status AnnGpuIndex::Search(int64_t n, const float* queries, int64_t k,
                                 float* distances, int64_t* labels) const {
  try {
    absl::MutexLock lock(&gpu_->mu);
    index_->search(n, queries, k, distances, labels);
  } catch (const std::exception& e) {
    const std::string message =
        absl::StrCat("ANN on GPU ", device_, ": search of the ", what_,
                     " index failed: ", e.what());
    if (usable_.exchange(false, std::memory_order_acq_rel)) {
      WriteAnnLog(log_, "warning",
                  absl::StrCat(message,
                               "; this index is searched on the CPU "
                               "from now on"));
    }
    return absl::InternalError(message);
  }
  return absl::OkStatus();
}

void AnnGpuIndex::ResetLogStateForTesting() {
  logged_no_device.store(false);
  create_failures.store(0);
}

#else  // !EMBSUM_HAVE_FAISS_GPU

// Never instantiated: Create returns null without GPU FAISS.
struct GpuDevice {};

std::unique_ptr<AnnGpuIndex> AnnGpuIndex::Create(const faiss::Index&,
                                                 const AnnOptions&,
                                                 std::string_view, const Log&) {
  return nullptr;
}

AnnGpuIndex::~AnnGpuIndex() = default;

bool AnnGpuIndex::Accepts(size_t) const { return false; }

absl::Status AnnGpuIndex::Search(int64_t, const float*, int64_t, float*,
                                 int64_t*) const {
  return absl::FailedPreconditionError(
      "ANN on GPU: this build has no GPU FAISS");
}

void AnnGpuIndex::ResetLogStateForTesting() {}

#endif  // EMBSUM_HAVE_FAISS_GPU

}  // namespace embsum::store::internal
