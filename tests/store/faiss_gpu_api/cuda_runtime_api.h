// Test-only stand-in for tests/store/ann_gpu_test.cc: the two CUDA runtime
// functions store/ann_gpu.cc calls, with C linkage and the signatures of
// CUDA 12. The error enum lists only the codes the test uses, with CUDA's
// numeric values. Defined in fake_faiss_gpu.cc.
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
