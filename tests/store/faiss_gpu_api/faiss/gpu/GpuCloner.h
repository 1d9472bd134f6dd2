// Test-only stand-in (tests/store/ann_gpu_test.cc): the declaration of
// index_cpu_to_gpu from FAISS v1.8.0 faiss/gpu/GpuCloner.h, copied from
// github.com/facebookresearch/faiss (tag v1.8.0, file
// faiss/gpu/GpuCloner.h). GpuClonerOptions (faiss/gpu/GpuClonerOptions.h) is
// only forward-declared: store/ann_gpu.cc passes no options (the defaults).
// Definition in fake_faiss_gpu.cc.
#pragma once

#include <faiss/Index.h>

namespace faiss {
namespace gpu {

class GpuResourcesProvider;
struct GpuClonerOptions;

/// converts any CPU index that can be converted to GPU
faiss::Index* index_cpu_to_gpu(
        GpuResourcesProvider* provider,
        int device,
        const faiss::Index* index,
        const GpuClonerOptions* options = nullptr);

} // namespace gpu
} // namespace faiss
