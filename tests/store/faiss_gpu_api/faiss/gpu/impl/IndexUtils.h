// Test-only stand-in (tests/store/ann_gpu_test.cc): the declaration of
// getMaxKSelection from FAISS v1.8.0 faiss/gpu/impl/IndexUtils.h, copied
// from github.com/facebookresearch/faiss (tag v1.8.0, file
// faiss/gpu/impl/IndexUtils.h; from v1.9 it takes `bool use_cuvs = false`,
// which the call getMaxKSelection() also matches). Definition in
// fake_faiss_gpu.cc.
#pragma once

namespace faiss {
namespace gpu {

/// Returns the maximum k-selection value supported based on the CUDA SDK that
/// we were compiled with. .cu files can use DeviceDefs.cuh, but this is for
/// non-CUDA files
int getMaxKSelection();

} // namespace gpu
} // namespace faiss
