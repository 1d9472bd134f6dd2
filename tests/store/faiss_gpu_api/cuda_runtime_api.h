// Test-only stand-in (tests/store/ann_gpu_test.cc): the CUDA runtime
// declarations store/ann_gpu.cc uses, as CUDA 12's cuda_runtime_api.h and
// driver_types.h declare them (C linkage; enum cudaError trimmed to the
// values used here, with their CUDA 12 numbers). Definitions are in
// fake_faiss_gpu.cc.
#pragma once

extern "C" {

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
};
typedef enum cudaError cudaError_t;

cudaError_t cudaGetDeviceCount(int* count);
const char* cudaGetErrorString(cudaError_t error);

}  // extern "C"
