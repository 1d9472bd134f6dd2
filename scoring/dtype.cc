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
  }
}

}  // namespace embsum::scoring
