// Test-only stand-in (tests/store/ann_gpu_test.cc): the declarations of
// FAISS v1.8.0 faiss/gpu/GpuResources.h that store/ann_gpu.cc uses, copied
// from github.com/facebookresearch/faiss (tag v1.8.0, file
// faiss/gpu/GpuResources.h), nothing else. Definitions are in
// fake_faiss_gpu.cc.
#pragma once

#include <memory>

namespace faiss {
namespace gpu {

class GpuResources;

/// Interface for a provider of a shared resources object. This is to avoid
/// interfacing std::shared_ptr to Python
class GpuResourcesProvider {
   public:
    virtual ~GpuResourcesProvider();

    /// Returns the shared resources object
    virtual std::shared_ptr<GpuResources> getResources() = 0;
};

} // namespace gpu
} // namespace faiss
