// Test-only stand-in (tests/store/ann_gpu_test.cc): the declarations of
// FAISS v1.8.0 faiss/gpu/StandardGpuResources.h that store/ann_gpu.cc uses
// (the class, its constructor, destructor and the GpuResourcesProvider
// override), copied from github.com/facebookresearch/faiss (tag v1.8.0,
// file faiss/gpu/StandardGpuResources.h). The private member stands in for
// the real std::shared_ptr<StandardGpuResourcesImpl> res_. Definitions are
// in fake_faiss_gpu.cc.
#pragma once

#include <faiss/gpu/GpuResources.h>

#include <memory>

namespace faiss {
namespace gpu {

/// Default implementation of GpuResources that allocates a cuBLAS
/// stream and 2 streams for use, as well as temporary memory.
/// Internally, the Faiss GPU code uses the instance managed by getResources,
/// but this is the user-facing object that is internally reference counted.
class StandardGpuResources : public GpuResourcesProvider {
   public:
    StandardGpuResources();
    ~StandardGpuResources() override;

    std::shared_ptr<GpuResources> getResources() override;

   private:
    std::shared_ptr<GpuResources> res_;
};

} // namespace gpu
} // namespace faiss
