// Test-only stand-in for tests/store/ann_gpu_test.cc. Declares
// getMaxKSelection as FAISS 1.8.0's faiss/gpu/impl/IndexUtils.h names it
// (later FAISS versions add a defaulted bool parameter, which the call
// getMaxKSelection() in store/ann_gpu.cc also matches). Defined in
// fake_faiss_gpu.cc, where the test sets the value.
#pragma once

namespace faiss {
namespace gpu {

// Largest k a GPU search accepts, exclusive.
int getMaxKSelection();

}  // namespace gpu
}  // namespace faiss
