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
};

// "fp32", "fp16", "bf16".
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

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_DTYPE_H_
