// Test-only definitions behind the FAISS GPU and CUDA runtime declarations
// in this directory (see fake_faiss_gpu.h). Links against the CPU FAISS.
#include "fake_faiss_gpu.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "cuda_runtime_api.h"
#include "faiss/clone_index.h"
#include "faiss/gpu/GpuCloner.h"
#include "faiss/gpu/StandardGpuResources.h"
#include "faiss/gpu/impl/IndexUtils.h"
#include "faiss/gpu/utils/DeviceUtils.h"
#include "faiss/impl/FaissAssert.h"
#include "faiss/impl/FaissException.h"

namespace embsum::fake_faiss_gpu {

State& state() {
  static State* const s = new State();
  return *s;
}

void Reset() {
  State& s = state();
  s.num_devices = 0;
  s.cuda_error = 0;
  s.clone_throws = false;
  s.search_throws = false;
  s.max_k = 2048;
  s.search_sleep_us = 0;
  s.cuda_device_count_calls = 0;
  s.faiss_num_devices_calls = 0;
  s.clones = 0;
  s.last_clone_device = -1;
  s.gpu_searches = 0;
  s.overlapping_calls = 0;
  // resources_alive, gpu_indexes_alive and in_flight track live objects
  // and calls; they are not reset.
}

namespace {

// Marks one GPU call in flight for its scope.
class GpuCall {
 public:
  GpuCall() {
    if (state().in_flight.fetch_add(1) != 0) state().overlapping_calls++;
  }
  ~GpuCall() { state().in_flight.fetch_sub(1); }
};

class FakeGpuIndex : public faiss::Index {
 public:
  using idx_t = decltype(faiss::Index::ntotal);

  explicit FakeGpuIndex(faiss::Index* cpu)
      : faiss::Index(cpu->d, cpu->metric_type), cpu_(cpu) {
    ntotal = cpu->ntotal;
    is_trained = cpu->is_trained;
    state().gpu_indexes_alive++;
  }
  ~FakeGpuIndex() override {
    GpuCall call;
    state().gpu_indexes_alive--;
  }

  void add(idx_t, const float*) override {
    FAISS_THROW_MSG("fake GPU index: add not supported");
  }
  void reset() override { FAISS_THROW_MSG("fake GPU index: read-only"); }
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    GpuCall call;
    state().gpu_searches++;
    if (state().search_sleep_us > 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(state().search_sleep_us.load()));
    }
    // FAISS GPU rejects k outside (0, getMaxKSelection()) the same way.
    FAISS_THROW_IF_NOT_FMT(k > 0 && k < idx_t{state().max_k.load()},
                           "fake GPU index: k=%d is outside (0, %d)", int(k),
                           state().max_k.load());
    if (state().search_throws) {
      FAISS_THROW_MSG("fake GPU index: search failed (device fault 700)");
    }
    cpu_->search(n, x, k, distances, labels, params);
  }

 private:
  std::unique_ptr<faiss::Index> cpu_;
};

}  // namespace
}  // namespace embsum::fake_faiss_gpu

namespace faiss {
namespace gpu {

using embsum::fake_faiss_gpu::state;

GpuResourcesProvider::~GpuResourcesProvider() = default;

StandardGpuResources::StandardGpuResources() { state().resources_alive++; }
StandardGpuResources::~StandardGpuResources() { state().resources_alive--; }
std::shared_ptr<GpuResources> StandardGpuResources::getResources() {
  return res_;
}

faiss::Index* index_cpu_to_gpu(GpuResourcesProvider* provider, int device,
                               const faiss::Index* index,
                               const GpuClonerOptions* /*options*/) {
  embsum::fake_faiss_gpu::GpuCall call;
  FAISS_THROW_IF_NOT_MSG(
      dynamic_cast<StandardGpuResources*>(provider) != nullptr,
      "fake index_cpu_to_gpu: provider is not a StandardGpuResources");
  FAISS_THROW_IF_NOT_FMT(device >= 0 && device < state().num_devices.load(),
                         "fake: invalid device %d", device);
  if (state().clone_throws) {
    FAISS_THROW_MSG("fake GPU copy: device allocation failed (no memory left)");
  }
  state().clones++;
  state().last_clone_device = device;
  return new embsum::fake_faiss_gpu::FakeGpuIndex(faiss::clone_index(index));
}

int getNumDevices() {
  state().faiss_num_devices_calls++;
  return state().num_devices;
}

int getMaxKSelection() { return state().max_k; }

}  // namespace gpu
}  // namespace faiss

extern "C" cudaError_t cudaGetDeviceCount(int* count) {
  using embsum::fake_faiss_gpu::state;
  state().cuda_device_count_calls++;
  if (state().cuda_error != 0) {
    return static_cast<cudaError_t>(state().cuda_error.load());
  }
  *count = state().num_devices;
  return *count > 0 ? cudaSuccess : cudaErrorNoDevice;
}

extern "C" const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInsufficientDriver:
      return "fake CUDA: the driver is older than this runtime";
    case cudaErrorNoDevice:
      return "fake CUDA: found no device";
  }
  return "fake CUDA: unknown error code";
}
