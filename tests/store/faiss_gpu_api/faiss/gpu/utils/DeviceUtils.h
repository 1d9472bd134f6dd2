// Test-only stand-in for tests/store/ann_gpu_test.cc. Declares
// getNumDevices as FAISS's faiss/gpu/utils/DeviceUtils.h names it. Defined
// in fake_faiss_gpu.cc, where the test sets the count.
#pragma once

namespace faiss {
namespace gpu {

// How many GPUs FAISS can use (0 when none).
int getNumDevices();

}  // namespace gpu
}  // namespace faiss
