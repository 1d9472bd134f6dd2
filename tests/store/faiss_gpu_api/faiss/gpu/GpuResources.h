// Test-only stand-in for tests/store/ann_gpu_test.cc. Declares the abstract
// provider type of FAISS's faiss/gpu/GpuResources.h (name and virtual
// members as in FAISS); GpuResources itself stays incomplete because the
// code under test never touches it. Definitions in fake_faiss_gpu.cc.
#pragma once

#include <memory>

namespace faiss {
namespace gpu {

class GpuResources;

// Base of StandardGpuResources; index_cpu_to_gpu takes a pointer to it.
class GpuResourcesProvider {
 public:
  virtual ~GpuResourcesProvider();

  virtual std::shared_ptr<GpuResources> getResources() = 0;
};

}  // namespace gpu
}  // namespace faiss
