// Device top-k for full-catalogue scans: map each score to an order-
// preserving 32-bit key (non-live rows lowest, NaN just above them), one
// stable descending radix sort of (key, row), gather the scores and codes of
// the first k. Sorting the whole scan costs a small fraction of the scan
// (4 bytes of key per row against 2*n*d stored elements read per row) and
// keeps ties in row order, as the Scorer contract asks.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "scoring/cuda/cuda_util.h"
#include "scoring/cuda/fused_score.h"

namespace embsum::scoring::cuda_internal {
namespace {

constexpr uint32_t kDeadKey = 0;  // non-live rows
constexpr uint32_t kNanKey = 1;   // live rows whose score is NaN

__global__ void MakeKeysKernel(const float* scores, const uint8_t* live,
                               uint32_t n, uint32_t* keys, uint32_t* iota) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    float s = scores[i];
    uint32_t key;
    if (live != nullptr && live[i] == 0) {
      key = kDeadKey;
    } else if (isnan(s)) {
      key = kNanKey;
    } else {
      if (s == 0.0f) s = 0.0f;  // -0 ranks equal to +0
      const uint32_t bits = __float_as_uint(s);
      // Order-preserving map: negative floats reversed, positives above.
      // The smallest result (-inf) is 0x007fffff, above both sentinels.
      key = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }
    keys[i] = key;
    iota[i] = i;
  }
}

__global__ void GatherKernel(const uint32_t* rows, const float* scores,
                             const int32_t* codes, uint32_t k,
                             float* out_scores, int32_t* out_codes) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < k;
       i += gridDim.x * blockDim.x) {
    out_scores[i] = scores[rows[i]];
    out_codes[i] = codes[rows[i]];
  }
}

uint32_t Blocks(uint32_t n) {
  const uint32_t blocks = (n + 255) / 256;
  return blocks < 4096 ? blocks : 4096;
}

}  // namespace

Status TopKTempBytes(uint32_t n, size_t* bytes) {
  *bytes = 0;
  EMBSUM_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, *bytes, static_cast<const uint32_t*>(nullptr),
      static_cast<uint32_t*>(nullptr), static_cast<const uint32_t*>(nullptr),
      static_cast<uint32_t*>(nullptr), n));
  return Status::Ok();
}

Status LaunchTopK(const TopKBatch& batch, cudaStream_t stream) {
  if (batch.n == 0) return Status::Ok();
  MakeKeysKernel<<<Blocks(batch.n), 256, 0, stream>>>(
      batch.scores, batch.live, batch.n, batch.keys, batch.iota);
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  size_t temp_bytes = batch.temp_bytes;
  EMBSUM_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairsDescending(
      batch.temp, temp_bytes, batch.keys, batch.sorted_keys, batch.iota,
      batch.out_rows, batch.n, 0, 32, stream));
  if (batch.k > 0) {
    GatherKernel<<<Blocks(batch.k), 256, 0, stream>>>(
        batch.out_rows, batch.scores, batch.codes, batch.k, batch.out_scores,
        batch.out_codes);
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return Status::Ok();
}

}  // namespace embsum::scoring::cuda_internal
