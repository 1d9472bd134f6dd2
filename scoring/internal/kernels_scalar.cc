// Portable kernel family (CpuIsa::kScalar): plain C++, any CPU. Also the
// fallback when the binary is built for a non-x86 target.
#include <cmath>
#include <cstring>
#include <limits>
#include <span>

#include "scoring/dtype.h"
#include "scoring/internal/cpu_kernels.h"

namespace embsum::scoring::internal {
namespace {

// Panel form of the scalar family: the row-major matrix itself.
size_t PanelBytes(uint32_t m, uint32_t d, Products /*products*/) {
  return size_t{m} * d * sizeof(float);
}

void BuildPanels(const float* x, uint32_t m, uint32_t d, Products /*products*/,
                 void* out) {
  if (size_t{m} * d > 0) std::memcpy(out, x, size_t{m} * d * sizeof(float));
}

// Scratch: K and L (m*n each), row sums (m), one converted n*d block.
size_t ScratchFloats(uint32_t m, uint32_t n, uint32_t d, DType /*dtype*/,
                     Products /*products*/) {
  return 2 * size_t{m} * n + m + size_t{n} * d;
}

// out[i*n + j] = dot(x_i, y_j) over d, with 8 partial sums.
void MultiplyTransposed(const float* x, const float* y, uint32_t m, uint32_t n,
                        uint32_t d, float* out) {
  for (uint32_t i = 0; i < m; ++i) {
    const float* xi = x + size_t{i} * d;
    for (uint32_t j = 0; j < n; ++j) {
      const float* yj = y + size_t{j} * d;
      float partial[8] = {};
      uint32_t k = 0;
      for (; k + 8 <= d; k += 8) {
        for (int u = 0; u < 8; ++u) partial[u] += xi[k + u] * yj[k + u];
      }
      for (; k < d; ++k) partial[0] += xi[k] * yj[k];
      out[size_t{i} * n + j] =
          ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
          ((partial[4] + partial[5]) + (partial[6] + partial[7]));
    }
  }
}

// The n*d block at `data` as fp32: in place for fp32 storage, else
// converted into `scratch`.
const float* BlockAsFloat(const std::byte* data, DType dtype, uint32_t n,
                          uint32_t d, float* scratch) {
  if (dtype == DType::kFloat32) return reinterpret_cast<const float*>(data);
  if (dtype == DType::kInt8) {
    DequantizeInt8Block(data, n, d, scratch);
  } else {
    ConvertToFloat(data, dtype, std::span<float>(scratch, size_t{n} * d));
  }
  return scratch;
}

void ScoreRows(const KernelArgs& args, const uint32_t* rows, size_t count,
               float* scores, int32_t* codes, float* scratch) {
  const uint32_t m = args.m, n = args.n, d = args.d;
  const size_t mn = size_t{m} * n;
  float* k_tile = scratch;
  float* l_tile = scratch + mn;
  float* row_sums = l_tile + mn;
  float* converted = row_sums + m;
  const auto* a = static_cast<const float*>(args.a_panels);
  const auto* q = static_cast<const float*>(args.q_panels);
  const size_t block_bytes = args.block_bytes;
  for (size_t c = 0; c < count; ++c) {
    const std::byte* row = args.arena + size_t{rows[c]} * args.row_bytes;
    const float* b = BlockAsFloat(row, args.dtype, n, d, converted);
    MultiplyTransposed(a, b, m, n, d, k_tile);
    const float* logits = k_tile;
    if (!args.logits_equal_matches) {
      const float* g = args.has_keys ? BlockAsFloat(row + block_bytes,
                                                    args.dtype, n, d, converted)
                                     : b;
      MultiplyTransposed(q, g, m, n, d, l_tile);
      logits = l_tile;
    }
    float max_logit = -std::numeric_limits<float>::infinity();
    for (size_t e = 0; e < mn; ++e) {
      max_logit = std::fmax(max_logit, logits[e]);
    }
    float total_weight = 0.0f;
    float total = 0.0f;
    for (uint32_t i = 0; i < m; ++i) {
      float row_sum = 0.0f;
      for (uint32_t j = 0; j < n; ++j) {
        const size_t e = size_t{i} * n + j;
        const float weight = std::exp(logits[e] - max_logit);
        total_weight += weight;
        row_sum += weight * k_tile[e];
      }
      row_sums[i] = row_sum;
      total += row_sum;
    }
    scores[c] = mn == 0 ? 0.0f : total / total_weight;
    if (codes != nullptr) {
      int32_t best = m == 0 || n == 0 ? -1 : 0;
      for (uint32_t i = 1; i < m && n > 0; ++i) {
        if (row_sums[i] > row_sums[best]) best = static_cast<int32_t>(i);
      }
      codes[c] = best;
    }
  }
}

constexpr KernelTable kScalarTable = {
    CpuIsa::kScalar, false,         false,     PanelBytes,
    BuildPanels,     ScratchFloats, ScoreRows,
};

}  // namespace

const KernelTable* ScalarKernelTable() { return &kScalarTable; }

}  // namespace embsum::scoring::internal
