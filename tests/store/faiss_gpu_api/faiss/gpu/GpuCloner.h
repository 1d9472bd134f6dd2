// Test-only stand-in for tests/store/ann_gpu_test.cc. Declares the one
// entry point of FAISS's faiss/gpu/GpuCloner.h that store/ann_gpu.cc calls,
// with the same name and signature, so that file compiles with
// EMBSUM_HAVE_FAISS_GPU on a machine without FAISS GPU. The options type is
// left incomplete: the code under test always passes the defaults.
// fake_faiss_gpu.cc defines it: the "GPU" copy wraps a CPU clone.
#pragma once

#include <faiss/Index.h>

namespace faiss {
namespace gpu {

class GpuResourcesProvider;
struct GpuClonerOptions;

// Returns a new index owned by the caller, a copy of `index` on `device`.
// Throws faiss::FaissException when the copy fails.
faiss::Index* index_cpu_to_gpu(GpuResourcesProvider* provider, int device,
                               const faiss::Index* index,
                               const GpuClonerOptions* options = nullptr);

}  // namespace gpu
}  // namespace faiss
