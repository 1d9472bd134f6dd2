// A GPU copy of one CPU FAISS ANN index (store/ internal), made only where
// FAISS was built with GPU support: the build defines EMBSUM_HAVE_FAISS_GPU
// for embsum::store when it finds faiss/gpu/StandardGpuResources.h. Without
// it Create always returns null and nothing here touches a GPU.
//
// One faiss::gpu::StandardGpuResources per device is shared by every copy on
// that device (its temporary-memory stack, streams and cuBLAS handle are
// per device, and reserving them per index would waste up to 1.5 GiB
// each). FAISS GPU indexes and StandardGpuResources are not safe for
// concurrent use, so every call that touches the device (copy, search,
// free) holds that device's mutex: GPU searches serialise per device. They
// are short and batched (all m query vectors of a request in one call), so
// the device, not the lock, is the limit.
//
// Thread-safety: Search may be called concurrently from any thread.
#ifndef EMBSUM_STORE_INTERNAL_ANN_GPU_H_
#define EMBSUM_STORE_INTERNAL_ANN_GPU_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "store/item_catalog.h"

namespace faiss {
struct Index;
}

namespace embsum::store::internal {

struct GpuDevice;

class AnnGpuIndex {
 public:
  // AnnOptions::gpu_log: (level, message).
  using Log =
      std::function<void(std::string_view level, std::string_view message)>;

  // True when this build can put an ANN index on a GPU.
  static constexpr bool kCompiledIn =
#ifdef EMBSUM_HAVE_FAISS_GPU
      true;
#else
      false;
#endif

  // Copies `cpu` (flat or IVF, trained, nprobe set) to options.gpu_device.
  // Null when options.gpu is kOff, the build has no GPU FAISS, no such
  // device exists, or the copy failed; the last two are logged to `log`.
  // `what` names the index in messages ("IVF, 120000 items").
  static std::unique_ptr<AnnGpuIndex> Create(const faiss::Index& cpu,
                                             const AnnOptions& options,
                                             std::string_view what,
                                             const Log& log);
  ~AnnGpuIndex();
  AnnGpuIndex(const AnnGpuIndex&) = delete;
  AnnGpuIndex& operator=(const AnnGpuIndex&) = delete;

  int device() const { return device_; }
  // False once a search failed: the caller then uses the CPU index.
  bool usable() const { return usable_.load(std::memory_order_acquire); }
  // Whether a search for `k` results may run here: usable() and k within
  // the GPU k-selection limit (larger k are searched on the CPU, no error).
  bool Accepts(size_t k) const;

  // As faiss::Index::search: n queries (n*d floats), k results each into
  // distances and labels (n*k each). On error, logs it, marks this copy
  // unusable for good and returns the error; the caller searches the CPU
  // index instead.
  absl::Status Search(int64_t n, const float* queries, int64_t k,
                      float* distances, int64_t* labels) const;

  // Forgets the once-per-process log state (the "no device" line), for
  // tests that change the device count between cases.
  static void ResetLogStateForTesting();

 private:
  AnnGpuIndex() = default;
  std::shared_ptr<GpuDevice> gpu_;
  std::unique_ptr<faiss::Index> index_;  // freed under gpu_'s mutex
  int device_ = 0;
  int64_t max_k_ = 0;  // exclusive
  std::string what_;
  Log log_;
  mutable std::atomic<bool> usable_{true};
};

// Writes `message` at `level` ("info", "warning") to `log`, or to stderr
// when `log` is null.
void WriteAnnLog(const AnnGpuIndex::Log& log, std::string_view level,
                 std::string_view message);

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ANN_GPU_H_
