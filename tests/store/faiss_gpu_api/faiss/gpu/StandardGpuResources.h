// Test-only stand-in for tests/store/ann_gpu_test.cc. Declares the class of
// FAISS's faiss/gpu/StandardGpuResources.h that store/ann_gpu.cc
// constructs, with the members it uses (names and signatures as in FAISS).
// fake_faiss_gpu.cc defines them and counts live instances.
#pragma once

#include <faiss/gpu/GpuResources.h>

#include <memory>

namespace faiss {
namespace gpu {

// The concrete provider the code under test creates, one per device.
// Not thread-safe (neither is the real one).
class StandardGpuResources : public GpuResourcesProvider {
 public:
  StandardGpuResources();
  ~StandardGpuResources() override;

  std::shared_ptr<GpuResources> getResources() override;

 private:
  // Always empty in the fake.
  std::shared_ptr<GpuResources> res_;
};

}  // namespace gpu
}  // namespace faiss
