// The fused EmbSum kernel (docs/design.md section 2) and its user-preparation
// pass. See fragment_layout.h for the data layout and launch_plan.h for how
// a launch is shaped.
//
// Fast kernel, per block: stage the prepared user (A, Q in MMA fragment
// order) in shared memory, then loop over tasks of 16 item-row slots
// (floor(16/n) candidates). A warp (or `ksplit` warps splitting the d axis)
// streams the 16 gathered rows of CPE and keys through registers with 16-byte
// loads one chunk ahead, forms K = A·Bᵀ and L = Q·Gᵀ on the tensor cores
// with fp32 accumulation, parks the 32x16 K and L tiles in shared memory, and
// finishes each candidate with a warp-wide softmax (max subtracted) over its
// m*n logits, the weighted sum and the arg-max user code.
//
// Generic kernel: any shape and alignment; one warp per candidate, fp32
// FMAs, online softmax. Used when the fast kernel's limits are not met.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "scoring/cuda/cuda_util.h"
#include "scoring/cuda/fragment_layout.h"
#include "scoring/cuda/fused_score.h"

namespace embsum::scoring::cuda_internal {
namespace {

constexpr uint32_t kTileStride = 33;  // padded user rows per slot column
constexpr uint32_t kTileFloats = kSlotsPerTask * kTileStride;  // K or L
constexpr uint32_t kTf32Mask = 0xffffe000u;
// How many of its own chunk iterations ahead a warp prefetches into L2
// (the register double buffer covers one).
constexpr uint32_t kPrefetchIterations = 4;

// Kernel arguments (by value).
struct Args {
  const unsigned char* arena;
  uint64_t row_bytes;
  uint32_t m, n, d;
  uint32_t has_queries, has_keys;
  const float* users;
  uint64_t user_stride;
  unsigned char* prepared;
  uint64_t prepared_bytes;
  uint32_t matrix_bytes;  // one prepared matrix (A or Q)
  const uint32_t* rows;
  const uint32_t* offsets;
  uint32_t count;
  float* scores;
  int32_t* codes;
  uint32_t chunks, cpt, ksplit;
  uint32_t load_mode;      // LaunchPlan::load_mode bits
  uint32_t prepare_mode;   // LaunchPlan::prepare_mode
  uint32_t epilogue_mode;  // LaunchPlan::epilogue_mode
};

template <typename T>
struct Storage;
template <>
struct Storage<float> {
  static constexpr uint32_t kBytes = 4;
  __device__ static float ToFloat(float v) { return v; }
};
template <>
struct Storage<__half> {
  static constexpr uint32_t kBytes = 2;
  __device__ static float ToFloat(__half v) { return __half2float(v); }
  __device__ static __half FromFloat(float v) { return __float2half_rn(v); }
  __device__ static uint16_t Bits(__half v) { return __half_as_ushort(v); }
};
template <>
struct Storage<__nv_bfloat16> {
  static constexpr uint32_t kBytes = 2;
  __device__ static float ToFloat(__nv_bfloat16 v) {
    return __bfloat162float(v);
  }
  __device__ static __nv_bfloat16 FromFloat(float v) {
    return __float2bfloat16_rn(v);
  }
  __device__ static uint16_t Bits(__nv_bfloat16 v) {
    return __bfloat16_as_ushort(v);
  }
};

__device__ __forceinline__ uint32_t Word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4],
                                        uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T>
__device__ __forceinline__ void Mma16(float (&c)[4], const uint4& a,
                                      uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma16<__half>(float (&c)[4], const uint4& a,
                                              uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma16<__nv_bfloat16>(float (&c)[4],
                                                     const uint4& a,
                                                     uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

// Splits an fp32 word into tf32 hi and lo words by truncation (the tensor
// cores read 10 mantissa bits): |x - hi - lo| < 2^-20 |x|, so
// hi*hi' + hi*lo' + lo*hi' carries a relative error of at most about 2^-19
// per product (fp32 FMA: 2^-24); measured on an H200 with fp32 storage:
// 2e-7 relative to the score at S1 (docs/gpu.md). Rounding both parts to
// nearest (cvt.rna.tf32.f32) would gain about 4x; not yet measured.
__device__ __forceinline__ void SplitTf32(uint32_t x, uint32_t& hi,
                                          uint32_t& lo) {
  hi = x & kTf32Mask;
  lo = __float_as_uint(__uint_as_float(x) - __uint_as_float(hi)) & kTf32Mask;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(~0u, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(~0u, v, o);
  return v;
}

// Arg-max over lanes; ties pick the lowest index.
__device__ __forceinline__ void WarpArgMax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(~0u, v, o);
    const int oi = __shfl_xor_sync(~0u, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

__device__ __forceinline__ void UserRange(const Args& a, uint32_t u,
                                          uint32_t& begin, uint32_t& count) {
  if (a.offsets != nullptr) {
    begin = a.offsets[u];
    count = a.offsets[u + 1] - begin;
  } else {
    begin = 0;
    count = a.count;
  }
}

// ---------------------------------------------------------------------------
// User preparation: fp32 A and Q -> fragment order (fp32, or 16-bit hi/lo).

// Word `w` of one user's prepared fragments (A, then Q when present).
template <typename T>
__device__ __forceinline__ uint32_t PreparedWord(const Args& a,
                                                 const float* user,
                                                 uint32_t w) {
  constexpr uint32_t kBytes = Storage<T>::kBytes;
  const uint32_t mat = w / (a.matrix_bytes / 4);
  const uint32_t byte = (w % (a.matrix_bytes / 4)) * 4;
  const float* src = user + size_t{mat} * a.m * a.d;
  const uint32_t frag_bytes = FragmentBytes(kBytes);
  const uint32_t frag = byte / frag_bytes;
  const uint32_t mtile = frag % kMTiles;
  const uint32_t step = (frag / kMTiles) % kStepsPerChunk;
  const uint32_t chunk = frag / (kMTiles * kStepsPerChunk);
  const uint32_t part = (byte % frag_bytes) / 512;
  const uint32_t lane = (byte % 512) / 16;
  const uint32_t reg = (byte % 16) / 4;
  const uint32_t row = FragmentRow(mtile, lane, reg);
  auto value = [&](uint32_t half) {
    const uint32_t col = FragmentColumn(kBytes, chunk, step, lane, reg, half);
    return row < a.m && col < a.d ? src[size_t{row} * a.d + col] : 0.0f;
  };
  if constexpr (kBytes == 4) {
    return __float_as_uint(value(0));
  } else {
    uint32_t halves[2];
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) {
      const float v = value(h);
      const T hi = Storage<T>::FromFloat(v);
      const T lo = Storage<T>::FromFloat(v - Storage<T>::ToFloat(hi));
      halves[h] = Storage<T>::Bits(part == 0 ? hi : lo);
    }
    return halves[0] | (halves[1] << 16);
  }
}

// Programmatic dependent launch (sm_90+; no-ops where the kernels were
// launched without it): the pass lets the fused kernel launch at once, and
// the fused kernel waits for the pass's completion and memory before it
// reads the fragments.
__device__ __forceinline__ void AllowDependentLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void WaitForPrerequisiteGrid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

template <typename T>
__global__ void PrepareUsersKernel(Args a) {
  if (a.prepare_mode == kPreparePassOverlap) AllowDependentLaunch();
  const uint32_t u = blockIdx.y;
  const uint32_t words = a.matrix_bytes / 4 * (a.has_queries ? 2 : 1);
  const float* user = a.users + u * a.user_stride;
  uint32_t* out =
      reinterpret_cast<uint32_t*>(a.prepared + u * a.prepared_bytes);
  for (uint32_t w = blockIdx.x * blockDim.x + threadIdx.x; w < words;
       w += gridDim.x * blockDim.x) {
    out[w] = PreparedWord<T>(a, user, w);
  }
}

// ---------------------------------------------------------------------------
// Fast kernel.

// 16 bytes of an item row. With kLoadL2Fetch256, L2 fills 256 bytes around
// the address from device memory, so the row's next chunks (read by the
// following iterations) hit L2 and DRAM sees full bursts.
__device__ __forceinline__ uint4 LoadRow(const unsigned char* p,
                                         uint32_t mode) {
  uint4 v;
  if ((mode & (kLoadL2Fetch256 | kLoadNoL1)) == (kLoadL2Fetch256 | kLoadNoL1)) {
    asm volatile(
        "ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, "
        "[%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
  } else if (mode & kLoadL2Fetch256) {
    asm volatile("ld.global.nc.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
  } else {
    v = __ldg(reinterpret_cast<const uint4*>(p));
  }
  return v;
}

template <typename T>
__device__ __forceinline__ void LoadChunk(const unsigned char* const (&pb)[2],
                                          const unsigned char* const (&pg)[2],
                                          const bool (&valid)[2],
                                          uint32_t chunk, uint32_t lane_col,
                                          const Args& a, uint4 (&b)[2],
                                          uint4 (&g)[2]) {
  constexpr uint32_t kChunkElems = ChunkElements(Storage<T>::kBytes);
  const bool in_range =
      chunk < a.chunks && chunk * kChunkElems + lane_col < a.d;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    b[nt] = make_uint4(0, 0, 0, 0);
    g[nt] = make_uint4(0, 0, 0, 0);
    if (in_range && valid[nt]) {
      b[nt] = LoadRow(pb[nt] + chunk * kChunkBytes, a.load_mode);
      g[nt] = a.has_keys ? LoadRow(pg[nt] + chunk * kChunkBytes, a.load_mode)
                         : b[nt];
    }
  }
}

// Asks L2 for chunk `chunk` of the lane's rows, so that the register load
// issued `kPrefetchIterations` later hits L2 instead of device memory: more
// bytes in flight per warp than registers allow.
template <typename T>
__device__ __forceinline__ void PrefetchChunk(
    const unsigned char* const (&pb)[2], const unsigned char* const (&pg)[2],
    const bool (&valid)[2], uint32_t chunk, uint32_t lane_col, const Args& a) {
  constexpr uint32_t kChunkElems = ChunkElements(Storage<T>::kBytes);
  if ((a.load_mode & kLoadPrefetchL2) == 0 || chunk >= a.chunks ||
      chunk * kChunkElems + lane_col >= a.d) {
    return;
  }
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    if (!valid[nt]) continue;
    asm volatile(
        "prefetch.global.L2 [%0];" ::"l"(pb[nt] + chunk * kChunkBytes));
    if (a.has_keys) {
      asm volatile(
          "prefetch.global.L2 [%0];" ::"l"(pg[nt] + chunk * kChunkBytes));
    }
  }
}

// K += A·Bᵀ and L += Q·Gᵀ for one chunk.
template <typename T>
__device__ __forceinline__ void ChunkMma(
    const unsigned char* s_a, const unsigned char* s_q, uint32_t chunk,
    uint32_t lane, const uint4 (&b)[2], const uint4 (&g)[2], bool l_is_k,
    float (&acc_k)[2][2][4], float (&acc_l)[2][2][4]) {
  constexpr uint32_t kBytes = Storage<T>::kBytes;
#pragma unroll
  for (uint32_t s = 0; s < kStepsPerChunk; ++s) {
    if constexpr (kBytes == 4) {
      uint32_t bh[2][2], bl[2][2], gh[2][2], gl[2][2];
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          SplitTf32(Word(b[nt], 2 * s + q), bh[nt][q], bl[nt][q]);
          SplitTf32(Word(g[nt], 2 * s + q), gh[nt][q], gl[nt][q]);
        }
      }
#pragma unroll
      for (uint32_t mt = 0; mt < kMTiles; ++mt) {
        const uint32_t off = FragmentOffset(4, chunk, s, mt, 0) + lane * 16;
        {
          const uint4 av = *reinterpret_cast<const uint4*>(s_a + off);
          uint32_t ah[4], al[4];
          SplitTf32(av.x, ah[0], al[0]);
          SplitTf32(av.y, ah[1], al[1]);
          SplitTf32(av.z, ah[2], al[2]);
          SplitTf32(av.w, ah[3], al[3]);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            MmaTf32(acc_k[mt][nt], al, bh[nt][0], bh[nt][1]);
            MmaTf32(acc_k[mt][nt], ah, bl[nt][0], bl[nt][1]);
            MmaTf32(acc_k[mt][nt], ah, bh[nt][0], bh[nt][1]);
          }
        }
        if (!l_is_k) {
          const uint4 qv = *reinterpret_cast<const uint4*>(s_q + off);
          uint32_t qh[4], ql[4];
          SplitTf32(qv.x, qh[0], ql[0]);
          SplitTf32(qv.y, qh[1], ql[1]);
          SplitTf32(qv.z, qh[2], ql[2]);
          SplitTf32(qv.w, qh[3], ql[3]);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            MmaTf32(acc_l[mt][nt], ql, gh[nt][0], gh[nt][1]);
            MmaTf32(acc_l[mt][nt], qh, gl[nt][0], gl[nt][1]);
            MmaTf32(acc_l[mt][nt], qh, gh[nt][0], gh[nt][1]);
          }
        }
      }
    } else {
#pragma unroll
      for (uint32_t mt = 0; mt < kMTiles; ++mt) {
        const uint32_t off = FragmentOffset(2, chunk, s, mt, 0) + lane * 16;
        {
          const uint4 ah = *reinterpret_cast<const uint4*>(s_a + off);
          const uint4 al = *reinterpret_cast<const uint4*>(s_a + off + 512);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            Mma16<T>(acc_k[mt][nt], al, Word(b[nt], 2 * s),
                     Word(b[nt], 2 * s + 1));
            Mma16<T>(acc_k[mt][nt], ah, Word(b[nt], 2 * s),
                     Word(b[nt], 2 * s + 1));
          }
        }
        if (!l_is_k) {
          const uint4 qh = *reinterpret_cast<const uint4*>(s_q + off);
          const uint4 ql = *reinterpret_cast<const uint4*>(s_q + off + 512);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            Mma16<T>(acc_l[mt][nt], ql, Word(g[nt], 2 * s),
                     Word(g[nt], 2 * s + 1));
            Mma16<T>(acc_l[mt][nt], qh, Word(g[nt], 2 * s),
                     Word(g[nt], 2 * s + 1));
          }
        }
      }
    }
  }
}

// Writes four consecutive fp32 user elements (flat index e, a multiple of
// 4, within one row since d is a multiple of 4 on the fast path) to their
// fragment slots: for 16-bit storage, elements (c, c+1) and (c+2, c+3)
// each fill one 32-bit word of hi halves and one of lo halves.
template <typename T>
__device__ __forceinline__ void ScatterQuad(const Args& a, unsigned char* smem,
                                            uint32_t e, const float4& v) {
  constexpr uint32_t kBytes = Storage<T>::kBytes;
  // A then Q: a comparison instead of a division picks the matrix.
  const uint32_t per_matrix = a.m * a.d;
  const uint32_t mat = e >= per_matrix ? 1 : 0;
  const uint32_t rem = e - mat * per_matrix;
  const uint32_t row = rem / a.d;
  const uint32_t col = rem - row * a.d;
  unsigned char* base = smem + mat * a.matrix_bytes;
  if constexpr (kBytes == 4) {
    *reinterpret_cast<float*>(base + FragmentSlot(4, row, col)) = v.x;
    *reinterpret_cast<float*>(base + FragmentSlot(4, row, col + 1)) = v.y;
    *reinterpret_cast<float*>(base + FragmentSlot(4, row, col + 2)) = v.z;
    *reinterpret_cast<float*>(base + FragmentSlot(4, row, col + 3)) = v.w;
  } else {
    const float f[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      uint32_t hi = 0, lo = 0;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float x = f[2 * p + h];
        const T xh = Storage<T>::FromFloat(x);
        const T xl = Storage<T>::FromFloat(x - Storage<T>::ToFloat(xh));
        hi |= uint32_t{Storage<T>::Bits(xh)} << (16 * h);
        lo |= uint32_t{Storage<T>::Bits(xl)} << (16 * h);
      }
      unsigned char* slot = base + FragmentSlot(2, row, col + 2 * p);
      *reinterpret_cast<uint32_t*>(slot) = hi;
      *reinterpret_cast<uint32_t*>(slot + 512) = lo;
    }
  }
}

// kPrepareScatter: the block writes user u's fragments into shared memory
// itself (no preparation pass, one launch). The fp32 user is read with
// 16-byte loads, kScatterBatch per thread in flight before any is used, so
// the staging costs about one memory latency; padding (rows m..31, columns
// past d in the last chunk) is zeroed first, only where there is any.
template <typename T>
__device__ __forceinline__ void ScatterUser(const Args& a, uint32_t u,
                                            unsigned char* smem) {
  constexpr uint32_t kScatterBatch = 8;
  constexpr uint32_t kChunkElems = ChunkElements(Storage<T>::kBytes);
  if (a.m < kUserRowsPerPass || a.d % kChunkElems != 0) {
    uint4* words = reinterpret_cast<uint4*>(smem);
    const uint32_t zero_words = static_cast<uint32_t>(a.prepared_bytes / 16);
    for (uint32_t i = threadIdx.x; i < zero_words; i += blockDim.x) {
      words[i] = make_uint4(0, 0, 0, 0);
    }
    __syncthreads();
  }
  const float* user = a.users + u * a.user_stride;
  const uint32_t total = a.m * a.d * (a.has_queries ? 2 : 1);
  // On the fast path d is a multiple of 4 and the user stride too; the
  // base is checked so that a misaligned caller stays correct.
  const bool vector = reinterpret_cast<uintptr_t>(user) % 16 == 0;
  const uint32_t quads = vector ? total / 4 : 0;
  const float4* user4 = reinterpret_cast<const float4*>(user);
  for (uint32_t first = 0; first < quads; first += kScatterBatch * blockDim.x) {
    float4 v[kScatterBatch];
#pragma unroll
    for (uint32_t k = 0; k < kScatterBatch; ++k) {
      const uint32_t q = first + k * blockDim.x + threadIdx.x;
      if (q < quads) v[k] = __ldg(user4 + q);
    }
#pragma unroll
    for (uint32_t k = 0; k < kScatterBatch; ++k) {
      const uint32_t q = first + k * blockDim.x + threadIdx.x;
      if (q < quads) ScatterQuad<T>(a, smem, q * 4, v[k]);
    }
  }
  for (uint32_t e = quads * 4 + threadIdx.x; e < total; e += blockDim.x) {
    // Scalar path (misaligned user): one element at a time.
    const uint32_t per_matrix = a.m * a.d;
    const uint32_t mat = e / per_matrix;
    const uint32_t rem = e - mat * per_matrix;
    const uint32_t row = rem / a.d;
    const uint32_t col = rem - row * a.d;
    unsigned char* slot = smem + mat * a.matrix_bytes +
                          FragmentSlot(Storage<T>::kBytes, row, col);
    const float x = user[e];
    if constexpr (Storage<T>::kBytes == 4) {
      *reinterpret_cast<float*>(slot) = x;
    } else {
      const T xh = Storage<T>::FromFloat(x);
      const T xl = Storage<T>::FromFloat(x - Storage<T>::ToFloat(xh));
      *reinterpret_cast<uint16_t*>(slot) = Storage<T>::Bits(xh);
      *reinterpret_cast<uint16_t*>(slot + 512) = Storage<T>::Bits(xl);
    }
  }
}

// The lane's two item rows of task `task` (slots quad_row and 8 + quad_row):
// CPE and key pointers at the lane's 16 bytes, or invalid past the end.
__device__ __forceinline__ void TaskRows(const Args& a, uint32_t task,
                                         uint32_t ntasks, uint32_t begin,
                                         uint32_t count, uint32_t lane,
                                         uint64_t code_bytes,
                                         const unsigned char* (&pb)[2],
                                         const unsigned char* (&pg)[2],
                                         bool (&valid)[2]) {
  const uint32_t quad_row = lane >> 2;
  const uint32_t quad_col = lane & 3;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const uint32_t slot = nt * 8 + quad_row;
    const uint32_t cl = slot / a.n;
    const uint32_t j = slot - cl * a.n;
    const uint32_t cand = task * a.cpt + cl;
    valid[nt] = task < ntasks && cl < a.cpt && cand < count;
    pb[nt] = a.arena;
    pg[nt] = a.arena;
    if (valid[nt]) {
      const uint64_t row =
          a.rows != nullptr ? a.rows[begin + cand] : begin + cand;
      pb[nt] =
          a.arena + row * a.row_bytes + j * code_bytes + quad_col * kLaneBytes;
      pg[nt] = pb[nt] + (a.has_keys ? a.n * code_bytes : 0);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxWarpsPerBlock * 32, 1)
    FusedScoreKernel(Args a) {
  constexpr uint32_t kBytes = Storage<T>::kBytes;
  extern __shared__ uint4 smem_words[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_words);
  const uint32_t u = blockIdx.y;
  uint32_t begin, count;
  UserRange(a, u, begin, count);
  const uint32_t ntasks = (count + a.cpt - 1) / a.cpt;
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t groups = blockDim.x / 32 / a.ksplit;
  const uint32_t group = warp / a.ksplit;
  const uint32_t kidx = warp % a.ksplit;
  const uint32_t lane_col = (lane & 3) * (kLaneBytes / kBytes);
  const uint64_t code_bytes = uint64_t{a.d} * kBytes;
  const bool early = (a.load_mode & kLoadEarly) != 0;
  // The lane's rows of the current task and its first chunk, in registers.
  const unsigned char* pb[2];
  const unsigned char* pg[2];
  bool valid[2];
  uint4 cur_b[2], cur_g[2];
  if (early) {
    // The first task's rows are on their way while the user is staged.
    TaskRows(a, blockIdx.x * groups + group, ntasks, begin, count, lane,
             code_bytes, pb, pg, valid);
    LoadChunk<T>(pb, pg, valid, kidx, lane_col, a, cur_b, cur_g);
  }
  if (a.prepare_mode == kPrepareScatter) {
    ScatterUser<T>(a, u, smem);
  } else {
    if (a.prepare_mode == kPreparePassOverlap) WaitForPrerequisiteGrid();
    // Asynchronous 16-byte copies: every thread's loads are in flight at
    // once instead of one round trip per loop iteration.
    const unsigned char* src = a.prepared + u * a.prepared_bytes;
    const uint32_t words = static_cast<uint32_t>(a.prepared_bytes / 16);
    const uint32_t base =
        static_cast<uint32_t>(__cvta_generic_to_shared(smem_words));
    for (uint32_t i = threadIdx.x; i < words; i += blockDim.x) {
      asm volatile(
          "cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(base + i * 16),
          "l"(src + size_t{i} * 16));
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
  }
  const unsigned char* s_a = smem;
  const unsigned char* s_q = smem + (a.has_queries ? a.matrix_bytes : 0);
  float* tiles = reinterpret_cast<float*>(smem + a.prepared_bytes);
  __syncthreads();

  const uint32_t quad_row = lane >> 2;
  const uint32_t quad_col = lane & 3;
  const bool l_is_k = !a.has_queries && !a.has_keys;
  float* my_k = tiles + warp * 2 * kTileFloats;
  float* my_l = my_k + kTileFloats;
  float* group_tiles = tiles + group * a.ksplit * 2 * kTileFloats;
  const bool reduce = a.epilogue_mode == kEpilogueReduce && a.ksplit > 1;
  // Partial tiles the softmax sums per logit.
  const uint32_t parts = reduce ? 1 : a.ksplit;

  for (uint32_t tile = blockIdx.x; tile * groups < ntasks; tile += gridDim.x) {
    const uint32_t task = tile * groups + group;
    if (!early) {
      TaskRows(a, task, ntasks, begin, count, lane, code_bytes, pb, pg, valid);
    }
    float acc_k[2][2][4] = {};
    float acc_l[2][2][4] = {};
    for (uint32_t i = 1; i < kPrefetchIterations; ++i) {
      PrefetchChunk<T>(pb, pg, valid, kidx + i * a.ksplit, lane_col, a);
    }
    if (!early) LoadChunk<T>(pb, pg, valid, kidx, lane_col, a, cur_b, cur_g);
    for (uint32_t chunk = kidx; chunk < a.chunks; chunk += a.ksplit) {
      PrefetchChunk<T>(pb, pg, valid, chunk + kPrefetchIterations * a.ksplit,
                       lane_col, a);
      uint4 next_b[2], next_g[2];
      LoadChunk<T>(pb, pg, valid, chunk + a.ksplit, lane_col, a, next_b,
                   next_g);
      ChunkMma<T>(s_a, s_q, chunk, lane, cur_b, cur_g, l_is_k, acc_k, acc_l);
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        cur_b[nt] = next_b[nt];
        cur_g[nt] = next_g[nt];
      }
    }
    // Park this warp's partial tiles: column = slot, row = user code.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const uint32_t r0 = mt * 16 + quad_row;
        const uint32_t c0 = nt * 8 + 2 * quad_col;
        float lk[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          lk[e] = l_is_k ? acc_k[mt][nt][e] : acc_l[mt][nt][e];
        }
        my_k[c0 * kTileStride + r0] = acc_k[mt][nt][0];
        my_k[(c0 + 1) * kTileStride + r0] = acc_k[mt][nt][1];
        my_k[c0 * kTileStride + r0 + 8] = acc_k[mt][nt][2];
        my_k[(c0 + 1) * kTileStride + r0 + 8] = acc_k[mt][nt][3];
        my_l[c0 * kTileStride + r0] = lk[0];
        my_l[(c0 + 1) * kTileStride + r0] = lk[1];
        my_l[c0 * kTileStride + r0 + 8] = lk[2];
        my_l[(c0 + 1) * kTileStride + r0 + 8] = lk[3];
      }
    }
    if (early) {
      // The next task's first chunk loads during this task's epilogue.
      TaskRows(a, (tile + gridDim.x) * groups + group, ntasks, begin, count,
               lane, code_bytes, pb, pg, valid);
      LoadChunk<T>(pb, pg, valid, kidx, lane_col, a, cur_b, cur_g);
    }
    // With ksplit 1 a warp reads only its own tiles: no block barrier, so
    // warps drift apart and keep the memory pipeline full.
    if (a.ksplit == 1) {
      __syncwarp();
    } else {
      __syncthreads();
    }
    if (reduce) {
      // Sum the group's partial tiles into its first warp's, each warp a
      // slice, adding in the order the serial epilogue would.
      for (uint32_t i = kidx * 32 + lane; i < 2 * kTileFloats;
           i += a.ksplit * 32) {
        float v = group_tiles[i];
        for (uint32_t w = 1; w < a.ksplit; ++w) {
          v += group_tiles[w * 2 * kTileFloats + i];
        }
        group_tiles[i] = v;
      }
      __syncthreads();
    }
    // Softmax epilogue: lane i owns user code i; candidates of the task are
    // shared round-robin among the warps of the group.
    if (task < ntasks) {
      for (uint32_t cl = kidx; cl < a.cpt; cl += a.ksplit) {
        const uint32_t cand = task * a.cpt + cl;
        if (cand >= count) break;
        const bool live = lane < a.m;
        float lmax = -INFINITY;
        for (uint32_t j = 0; j < a.n; ++j) {
          const uint32_t idx = (cl * a.n + j) * kTileStride + lane;
          float l = 0.0f;
          for (uint32_t w = 0; w < parts; ++w) {
            l += group_tiles[w * 2 * kTileFloats + kTileFloats + idx];
          }
          lmax = fmaxf(lmax, l);
        }
        const float max_logit = WarpMax(live ? lmax : -INFINITY);
        float z = 0.0f, r = 0.0f;
        if (live) {
          for (uint32_t j = 0; j < a.n; ++j) {
            const uint32_t idx = (cl * a.n + j) * kTileStride + lane;
            float k = 0.0f, l = 0.0f;
            for (uint32_t w = 0; w < parts; ++w) {
              k += group_tiles[w * 2 * kTileFloats + idx];
              l += group_tiles[w * 2 * kTileFloats + kTileFloats + idx];
            }
            const float e = expf(l - max_logit);
            z += e;
            r += e * k;
          }
        }
        const float total_z = WarpSum(z);
        const float total_r = WarpSum(r);
        float best = live ? r : -INFINITY;
        int best_code = static_cast<int>(lane);
        WarpArgMax(best, best_code);
        if (lane == 0) {
          a.scores[begin + cand] = total_r / total_z;
          if (a.codes != nullptr) a.codes[begin + cand] = best_code;
        }
      }
    }
    if (a.ksplit == 1) {
      __syncwarp();
    } else {
      __syncthreads();
    }
  }
}

// ---------------------------------------------------------------------------
// Generic kernel: any shape; one warp per candidate.

template <typename T>
__global__ void GenericScoreKernel(Args a) {
  const uint32_t u = blockIdx.y;
  uint32_t begin, count;
  UserRange(a, u, begin, count);
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t warps = blockDim.x / 32;
  const float* upe = a.users + u * a.user_stride;
  const float* queries = a.has_queries ? upe + size_t{a.m} * a.d : upe;
  for (uint32_t cand = blockIdx.x * warps + threadIdx.x / 32; cand < count;
       cand += gridDim.x * warps) {
    const uint64_t row =
        a.rows != nullptr ? a.rows[begin + cand] : begin + cand;
    const T* cpe = reinterpret_cast<const T*>(a.arena + row * a.row_bytes);
    const T* keys = a.has_keys ? cpe + size_t{a.n} * a.d : cpe;
    // Online softmax; every lane holds the same running values.
    float max_logit = -INFINITY, z = 0.0f, s = 0.0f, best = 0.0f;
    int best_code = 0;
    for (uint32_t i = 0; i < a.m; ++i) {
      float row_sum = 0.0f;
      for (uint32_t j = 0; j < a.n; ++j) {
        float k = 0.0f, l = 0.0f;
        for (uint32_t x = lane; x < a.d; x += 32) {
          k = fmaf(upe[size_t{i} * a.d + x],
                   Storage<T>::ToFloat(cpe[size_t{j} * a.d + x]), k);
          l = fmaf(queries[size_t{i} * a.d + x],
                   Storage<T>::ToFloat(keys[size_t{j} * a.d + x]), l);
        }
        k = WarpSum(k);
        l = WarpSum(l);
        if (l > max_logit) {
          const float scale = expf(max_logit - l);
          z *= scale;
          s *= scale;
          row_sum *= scale;
          if (i > 0) best *= scale;
          max_logit = l;
        }
        const float e = expf(l - max_logit);
        z += e;
        s = fmaf(e, k, s);
        row_sum = fmaf(e, k, row_sum);
      }
      if (i == 0 || row_sum > best) {
        best = row_sum;
        best_code = static_cast<int>(i);
      }
    }
    if (lane == 0) {
      a.scores[begin + cand] = s / z;
      if (a.codes != nullptr) a.codes[begin + cand] = best_code;
    }
  }
}

template <typename T>
Status Launch(const Args& args, const LaunchPlan& plan, uint32_t users,
              cudaStream_t stream) {
  const dim3 grid(plan.blocks_x, users);
  if (!plan.fast) {
    GenericScoreKernel<T><<<grid, plan.warps * 32, 0, stream>>>(args);
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    return Status::Ok();
  }
  const bool overlap = args.prepare_mode == kPreparePassOverlap;
  if (args.prepare_mode != kPrepareScatter) {
    const uint32_t words = args.matrix_bytes / 4 * (args.has_queries ? 2 : 1);
    // Overlapped: 128-thread blocks, small enough (with ~20 registers per
    // thread) to share a multiprocessor with a 16-warp fused block.
    const uint32_t prep_threads = overlap ? 128 : 256;
    const dim3 prep_grid((words + prep_threads - 1) / prep_threads, users);
    PrepareUsersKernel<T><<<prep_grid, prep_threads, 0, stream>>>(args);
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  if (!overlap) {
    FusedScoreKernel<T>
        <<<grid, plan.warps * 32, plan.smem_bytes, stream>>>(args);
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    return Status::Ok();
  }
  // The fused kernel may start while the pass runs (sm_90 and newer).
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(plan.warps * 32);
  config.dynamicSmemBytes = plan.smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  int device = 0, major = 0;
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
      &major, cudaDevAttrComputeCapabilityMajor, device));
  if (major >= 9) {
    config.attrs = attribute;
    config.numAttrs = 1;
  }
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaLaunchKernelEx(&config, FusedScoreKernel<T>, args));
  return Status::Ok();
}

__global__ void DelayKernel(uint64_t nanoseconds) {
  uint64_t start;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  for (;;) {
    uint64_t now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start >= nanoseconds) break;
    __nanosleep(1000);
  }
}

}  // namespace

Status LaunchDelay(uint32_t microseconds, cudaStream_t stream) {
  DelayKernel<<<1, 1, 0, stream>>>(uint64_t{microseconds} * 1000);
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status ConfigureKernels(const DeviceLimits& limits) {
  const int smem = static_cast<int>(limits.max_smem_per_block);
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(FusedScoreKernel<float>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(FusedScoreKernel<__half>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  EMBSUM_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(FusedScoreKernel<__nv_bfloat16>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  return Status::Ok();
}

Status LaunchFusedScore(const FusedBatch& batch, const LaunchPlan& plan,
                        cudaStream_t stream) {
  if (batch.num_users == 0) return Status::Ok();
  if (batch.num_users > 65535) {
    return Status::InvalidArgument(
        "fused score: " + std::to_string(batch.num_users) +
        " users in one launch (at most 65535)");
  }
  Args args{};
  args.arena = reinterpret_cast<const unsigned char*>(batch.arena);
  args.row_bytes = batch.row_bytes;
  args.m = batch.shape.user_codes;
  args.n = batch.shape.item_codes;
  args.d = batch.shape.dim;
  args.has_queries = batch.shape.has_queries ? 1 : 0;
  args.has_keys = batch.shape.has_keys ? 1 : 0;
  args.users = batch.users;
  args.user_stride = batch.user_stride;
  args.prepared = reinterpret_cast<unsigned char*>(batch.prepared);
  args.prepared_bytes = plan.prepared_bytes;
  args.matrix_bytes =
      plan.fast ? PreparedMatrixBytes(plan.elem_bytes, batch.shape.dim) : 0;
  args.rows = batch.rows;
  args.offsets = batch.offsets;
  args.count = batch.count;
  args.scores = batch.scores;
  args.codes = batch.codes;
  args.chunks = plan.chunks;
  args.cpt = plan.candidates_per_task;
  args.ksplit = plan.ksplit;
  args.load_mode = plan.load_mode;
  args.prepare_mode = plan.prepare_mode;
  args.epilogue_mode = plan.epilogue_mode;
  switch (batch.shape.dtype) {
    case DType::kFloat32:
      return Launch<float>(args, plan, batch.num_users, stream);
    case DType::kFloat16:
      return Launch<__half>(args, plan, batch.num_users, stream);
    case DType::kBFloat16:
      return Launch<__nv_bfloat16>(args, plan, batch.num_users, stream);
    case DType::kInt8:
      return Status::InvalidArgument(
          "fused score: int8 items are scored on the CPU only (the CUDA "
          "scorer refuses them at start-up)");
  }
  return Status::InvalidArgument("fused score: unknown dtype");
}

}  // namespace embsum::scoring::cuda_internal
