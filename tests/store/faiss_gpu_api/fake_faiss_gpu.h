// Test-only: controls and counters of the fake FAISS GPU and CUDA runtime
// definitions in fake_faiss_gpu.cc, which stand behind the declarations in
// this directory. A "GPU index" here wraps a CPU clone of its source
// index, so its results equal the CPU index's exactly;
// it counts calls, can be told to fail, and records any two calls that
// overlapped in time (FAISS GPU objects are not thread-safe, so the code
// under test must never let that happen).
#ifndef EMBSUM_TESTS_STORE_FAISS_GPU_API_FAKE_FAISS_GPU_H_
#define EMBSUM_TESTS_STORE_FAISS_GPU_API_FAKE_FAISS_GPU_H_

#include <atomic>

namespace embsum::fake_faiss_gpu {

struct State {
  // cudaGetDeviceCount and faiss::gpu::getNumDevices report this many.
  std::atomic<int> num_devices{0};
  // Non-zero: cudaGetDeviceCount returns this cudaError_t instead.
  std::atomic<int> cuda_error{0};
  // index_cpu_to_gpu / GPU search throw faiss::FaissException.
  std::atomic<bool> clone_throws{false};
  std::atomic<bool> search_throws{false};
  // getMaxKSelection(); GPU searches with k >= this throw, as FAISS does.
  std::atomic<int> max_k{2048};
  // Microseconds each GPU search sleeps (widens the window for overlaps).
  std::atomic<int> search_sleep_us{0};

  std::atomic<int> cuda_device_count_calls{0};
  std::atomic<int> faiss_num_devices_calls{0};
  std::atomic<int> resources_alive{0};
  std::atomic<int> gpu_indexes_alive{0};
  std::atomic<int> clones{0};
  std::atomic<int> last_clone_device{-1};
  std::atomic<int> gpu_searches{0};
  // GPU calls (copy, search, free) in flight now / that found another
  // already in flight.
  std::atomic<int> in_flight{0};
  std::atomic<int> overlapping_calls{0};
};

State& state();
// Back to the defaults above (no device, nothing failing, counters 0).
void Reset();

}  // namespace embsum::fake_faiss_gpu

#endif  // EMBSUM_TESTS_STORE_FAISS_GPU_API_FAKE_FAISS_GPU_H_
