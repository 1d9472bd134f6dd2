// Test-only stand-in (tests/store/ann_gpu_test.cc): the declaration of
// getNumDevices from FAISS v1.8.0 faiss/gpu/utils/DeviceUtils.h, copied from
// github.com/facebookresearch/faiss (tag v1.8.0, file
// faiss/gpu/utils/DeviceUtils.h). Definition in fake_faiss_gpu.cc.
#pragma once

namespace faiss {
namespace gpu {

/// Returns the number of available GPU devices
int getNumDevices();

} // namespace gpu
} // namespace faiss
