#include "scoring/dtype.h"

#include <bit>
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
  }
  return "unknown";
}

std::optional<DType> ParseDType(std::string_view name) {
  if (name == "fp32") return DType::kFloat32;
  if (name == "fp16") return DType::kFloat16;
  if (name == "bf16") return DType::kBFloat16;
  return std::nullopt;
}

size_t DTypeSize(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

void ConvertFromFloat(std::span<const float> src, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kFloat32:
      if (!src.empty()) std::memcpy(dst, src.data(), src.size_bytes());
      return;
    case DType::kFloat16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < src.size(); ++i) {
        out[i] = internal::FloatToHalf(src[i]);
      }
      return;
    }
    case DType::kBFloat16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < src.size(); ++i) {
        out[i] = internal::FloatToBFloat16(src[i]);
      }
      return;
    }
  }
}

void ConvertToFloat(const void* src, DType dtype, std::span<float> dst) {
  switch (dtype) {
    case DType::kFloat32:
      if (!dst.empty()) std::memcpy(dst.data(), src, dst.size_bytes());
      return;
    case DType::kFloat16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < dst.size(); ++i) {
        dst[i] = internal::HalfToFloat(in[i]);
      }
      return;
    }
    case DType::kBFloat16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < dst.size(); ++i) {
        dst[i] = internal::BFloat16ToFloat(in[i]);
      }
      return;
    }
  }
}

}  // namespace embsum::scoring
