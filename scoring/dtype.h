// Storage element types of the item arena and conversions to and from fp32.
// All arithmetic accumulates in fp32 (or wider) whatever the storage type.
// Thread-safe: stateless functions.
#ifndef EMBSUM_SCORING_DTYPE_H_
#define EMBSUM_SCORING_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace embsum::scoring {

enum class DType : uint8_t {
  kFloat32 = 0,   // exact; 4 bytes per element
  kFloat16 = 1,   // IEEE binary16; 2 bytes; rel. error ~5e-4 per element
  kBFloat16 = 2,  // bfloat16; 2 bytes; rel. error ~4e-3 per element
  // Signed 8-bit integers. In an ItemArena each item code row (d values of
  // B or G) has its own symmetric fp32 scale, max|x| / 127, and the values
  // are stored in the packed int8 block layout below; the error is up to
  // half a step, max|x| / 254, per element. Element-wise conversions
  // (ConvertFromFloat/ConvertToFloat) use a unit scale: round to the
  // nearest integer in [-127, 127].
  kInt8 = 3,
};

// "fp32", "fp16", "bf16", "int8".
std::string_view DTypeName(DType dtype);
// Accepts the names above; nullopt otherwise.
std::optional<DType> ParseDType(std::string_view name);
// Bytes per element.
size_t DTypeSize(DType dtype);

// Converts src (fp32) into dst, which holds src.size() elements of `dtype`
// (dst_bytes = src.size() * DTypeSize(dtype)). Rounds to nearest even.
void ConvertFromFloat(std::span<const float> src, DType dtype, void* dst);
// Converts `count` elements of `dtype` at src into dst (size count).
void ConvertToFloat(const void* src, DType dtype, std::span<float> dst);

// The int8 block: n rows of d values (an item's B or G) quantized with one
// symmetric scale per row, laid out for 4-wide integer dot products
// (vpdpbusd), with d4 = d rounded up to a multiple of 4:
//   bytes [0, n*d4):             values, value(j, k) at
//                                ((k / 4) * n + j) * 4 + k % 4, int8, zero
//                                for k >= d;
//   bytes [n*d4, n*d4 + 4n):     scales, fp32, scale(j) = max_k |x_jk| / 127;
//   bytes [n*d4 + 4n, n*d4 + 8n): sums, int32, sum_k value(j, k).
// x_jk is represented as scale(j) * value(j, k). Any alignment.
size_t Int8BlockBytes(uint32_t n, uint32_t d);
// Quantizes src (n*d fp32, row-major) into dst (Int8BlockBytes(n, d)
// bytes). Round to nearest; non-finite values are stored as 0.
void QuantizeInt8Block(const float* src, uint32_t n, uint32_t d, void* dst);
// Dequantizes a block into dst (n*d fp32, row-major).
void DequantizeInt8Block(const void* src, uint32_t n, uint32_t d, float* dst);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_DTYPE_H_
