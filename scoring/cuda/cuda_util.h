// CUDA runtime helpers of scoring/cuda: error -> Status conversion and RAII
// owners of device memory, pinned host memory, streams and events. Internal
// (includes the CUDA runtime API header); callers outside scoring/cuda use
// cuda_scorer.h. Thread-safety: owners are not thread-safe; the functions
// are.
#ifndef EMBSUM_SCORING_CUDA_CUDA_UTIL_H_
#define EMBSUM_SCORING_CUDA_CUDA_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string_view>
#include <utility>

#include "scoring/cuda/launch_plan.h"
#include "scoring/status.h"

namespace embsum::scoring::cuda_internal {

// Status for a failed CUDA call: ResourceExhausted for out-of-memory,
// Unavailable for missing devices or drivers, Internal otherwise. The
// message names the call, the source location and the CUDA error.
Status CudaStatus(cudaError_t error, std::string_view what,
                  std::string_view file, int line);

// Returns the Status of a CUDA runtime call when it failed.
#define EMBSUM_CUDA_RETURN_IF_ERROR(expr)                  \
  do {                                                     \
    const cudaError_t embsum_cuda_error_ = (expr);         \
    if (embsum_cuda_error_ != cudaSuccess) {               \
      return ::embsum::scoring::cuda_internal::CudaStatus( \
          embsum_cuda_error_, #expr, __FILE__, __LINE__);  \
    }                                                      \
  } while (false)

// Returns when a Status-returning expression failed.
#define EMBSUM_SCORING_RETURN_IF_ERROR(expr)           \
  do {                                                 \
    ::embsum::scoring::Status embsum_status_ = (expr); \
    if (!embsum_status_.ok()) return embsum_status_;   \
  } while (false)

// How a CudaBuffer gets and returns its memory.
struct DeviceMemory {  // device global memory
  static cudaError_t Allocate(void** ptr, size_t bytes) {
    return cudaMalloc(ptr, bytes);
  }
  static void Free(void* ptr) { cudaFree(ptr); }
};
struct PinnedHostMemory {  // page-locked host memory, for asynchronous copies
  static cudaError_t Allocate(void** ptr, size_t bytes) {
    return cudaMallocHost(ptr, bytes);
  }
  static void Free(void* ptr) { cudaFreeHost(ptr); }
};

// An owned allocation of `Memory` (DeviceMemory or PinnedHostMemory).
// Move-only; frees on destruction.
template <typename Memory>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  ~CudaBuffer() { Reset(); }
  CudaBuffer(CudaBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)),
        bytes_(std::exchange(other.bytes_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  // Makes the buffer hold at least `bytes` (contents are not kept when it
  // grows).
  Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return Status::Ok();
    Reset();
    void* ptr = nullptr;
    EMBSUM_CUDA_RETURN_IF_ERROR(Memory::Allocate(&ptr, bytes));
    ptr_ = ptr;
    bytes_ = bytes;
    return Status::Ok();
  }
  void Reset() {
    if (ptr_ != nullptr) Memory::Free(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaBuffer<DeviceMemory>;
using PinnedBuffer = CudaBuffer<PinnedHostMemory>;

// A non-blocking stream. Move-only.
class Stream {
 public:
  Stream() = default;
  ~Stream();
  Stream(Stream&& other) noexcept
      : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Status Create();
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// A timing event. Move-only.
class Event {
 public:
  Event() = default;
  ~Event();
  Event(Event&& other) noexcept
      : event_(std::exchange(other.event_, nullptr)) {}
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  Status Create();
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Milliseconds between two recorded events (synchronizes on `stop`).
Status ElapsedMs(const Event& start, const Event& stop, float* ms);

// Multiprocessor count and opt-in shared memory of `device`.
Status QueryDeviceLimits(int device, DeviceLimits* limits);

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_CUDA_UTIL_H_
