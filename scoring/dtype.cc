#include "scoring/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "scoring/internal/half.h"

namespace embsum::scoring {

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kInt8:
      return "int8";
  }
  return "unknown";
}

std::optional<DType> ParseDType(std::string_view name) {
  if (name == "fp32") return DType::kFloat32;
  if (name == "fp16") return DType::kFloat16;
  if (name == "bf16") return DType::kBFloat16;
  if (name == "int8") return DType::kInt8;
  return std::nullopt;
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kInt8:
      return 1;
  }
  return 4;
}

namespace {

// Nearest integer of x in [-127, 127]; 0 for NaN.
int8_t RoundToInt8(float x) {
  if (!(x == x)) return 0;
  const float clamped = std::fmin(127.0f, std::fmax(-127.0f, x));
  return static_cast<int8_t>(std::lrint(clamped));
}

}  // namespace

void ConvertFromFloat(std::span<const float> src, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kFloat32:
      if (!src.empty()) std::memcpy(dst, src.data(), src.size_bytes());
      return;
    case DType::kFloat16: {
      auto* out = static_cast<unsigned char*>(dst);  // any alignment
      for (size_t i = 0; i < src.size(); ++i) {
        const uint16_t h = internal::FloatToHalf(src[i]);
        std::memcpy(out + i * sizeof(h), &h, sizeof(h));
      }
      return;
    }
    case DType::kBFloat16: {
      auto* out = static_cast<unsigned char*>(dst);  // any alignment
      for (size_t i = 0; i < src.size(); ++i) {
        const uint16_t h = internal::FloatToBFloat16(src[i]);
        std::memcpy(out + i * sizeof(h), &h, sizeof(h));
      }
      return;
    }
    case DType::kInt8: {
      auto* out = static_cast<int8_t*>(dst);
      for (size_t i = 0; i < src.size(); ++i) out[i] = RoundToInt8(src[i]);
      return;
    }
  }
}

void ConvertToFloat(const void* src, DType dtype, std::span<float> dst) {
  switch (dtype) {
    case DType::kFloat32:
      if (!dst.empty()) std::memcpy(dst.data(), src, dst.size_bytes());
      return;
    // `src` may sit at any alignment (a RocksDB value after its 12-byte
    // header, .npy data): load each element with memcpy, which compiles to
    // a plain load.
    case DType::kFloat16: {
      const auto* in = static_cast<const unsigned char*>(src);
      for (size_t i = 0; i < dst.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, in + i * sizeof(h), sizeof(h));
        dst[i] = internal::HalfToFloat(h);
      }
      return;
    }
    case DType::kBFloat16: {
      const auto* in = static_cast<const unsigned char*>(src);
      for (size_t i = 0; i < dst.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, in + i * sizeof(h), sizeof(h));
        dst[i] = internal::BFloat16ToFloat(h);
      }
      return;
    }
    case DType::kInt8: {
      const auto* in = static_cast<const int8_t*>(src);
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = in[i];
      return;
    }
  }
}

size_t Int8BlockBytes(uint32_t n, uint32_t d) {
  const size_t d4 = (size_t{d} + 3) / 4 * 4;
  return size_t{n} * d4 + 8 * size_t{n};
}

void QuantizeInt8Block(const float* src, uint32_t n, uint32_t d, void* dst) {
  const size_t d4 = (size_t{d} + 3) / 4 * 4;
  auto* out = static_cast<unsigned char*>(dst);
  std::memset(out, 0, size_t{n} * d4);
  for (uint32_t j = 0; j < n; ++j) {
    const float* row = src + size_t{j} * d;
    float max_abs = 0.0f;
    for (uint32_t k = 0; k < d; ++k) {
      if (std::isfinite(row[k]))
        max_abs = std::fmax(max_abs, std::fabs(row[k]));
    }
    const float scale = max_abs / 127.0f;
    const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    int32_t sum = 0;
    for (uint32_t k = 0; k < d; ++k) {
      const int8_t v =
          std::isfinite(row[k]) ? RoundToInt8(row[k] * inverse) : 0;
      out[((k / 4) * size_t{n} + j) * 4 + k % 4] =
          static_cast<unsigned char>(v);
      sum += v;
    }
    std::memcpy(out + size_t{n} * d4 + 4 * size_t{j}, &scale, sizeof(scale));
    std::memcpy(out + size_t{n} * d4 + 4 * size_t{n} + 4 * size_t{j}, &sum,
                sizeof(sum));
  }
}

void DequantizeInt8Block(const void* src, uint32_t n, uint32_t d, float* dst) {
  const size_t d4 = (size_t{d} + 3) / 4 * 4;
  const auto* in = static_cast<const unsigned char*>(src);
  for (uint32_t j = 0; j < n; ++j) {
    float scale;
    std::memcpy(&scale, in + size_t{n} * d4 + 4 * size_t{j}, sizeof(scale));
    for (uint32_t k = 0; k < d; ++k) {
      const auto v =
          static_cast<int8_t>(in[((k / 4) * size_t{n} + j) * 4 + k % 4]);
      dst[size_t{j} * d + k] = scale * static_cast<float>(v);
    }
  }
}

}  // namespace embsum::scoring
