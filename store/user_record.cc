#include "store/internal/user_record.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace embsum::store {
namespace {

using scoring::DType;

void PutU32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
               static_cast<char>((v >> 16) & 0xff),
               static_cast<char>((v >> 24) & 0xff)};
  out->append(b, 4);
}

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | (uint32_t{u[1]} << 8) | (uint32_t{u[2]} << 16) |
         (uint32_t{u[3]} << 24);
}

std::string Header(uint32_t m, uint32_t d, DType dtype, bool has_queries) {
  std::string out;
  out.push_back(static_cast<char>(kUserRecordVersion));
  out.push_back(static_cast<char>(dtype));
  out.push_back(static_cast<char>(has_queries ? 1 : 0));
  out.push_back(0);
  PutU32(&out, m);
  PutU32(&out, d);
  return out;
}

#if defined(__x86_64__) && defined(__GNUC__)
// 8 elements per step with AVX2 and F16C; the tail through the scalar
// conversion. `src` may be unaligned (it follows the 12-byte header).
__attribute__((target("avx2,f16c"))) void WidenFp16Avx2(const char* src,
                                                        float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  scoring::ConvertToFloat(src + 2 * i, DType::kFloat16,
                          std::span<float>(dst + i, n - i));
}

__attribute__((target("avx2"))) void WidenBf16Avx2(const char* src, float* dst,
                                                   size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(wide));
  }
  scoring::ConvertToFloat(src + 2 * i, DType::kBFloat16,
                          std::span<float>(dst + i, n - i));
}

bool HaveAvx2F16c() {
  static const bool have = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    return __builtin_cpu_supports("avx2") && (ecx & (1u << 29)) != 0;
  }();
  return have;
}
#endif

// Widens n elements of `dtype` at src into dst.
void Widen(const char* src, DType dtype, float* dst, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (dtype != DType::kFloat32 && HaveAvx2F16c()) {
    if (dtype == DType::kFloat16) {
      WidenFp16Avx2(src, dst, n);
    } else {
      WidenBf16Avx2(src, dst, n);
    }
    return;
  }
#endif
  scoring::ConvertToFloat(src, dtype, std::span<float>(dst, n));
}

// Whether finite `x` becomes Inf when rounded to `dtype`.
bool Overflows(float x, DType dtype) {
  const uint32_t magnitude = std::bit_cast<uint32_t>(x) & 0x7fffffffu;
  switch (dtype) {
    case DType::kFloat32:
      return false;
    case DType::kFloat16:
      return std::fabs(x) >= 65520.0f;  // rounds past 65504, the fp16 max
    case DType::kBFloat16:
      // Round to nearest even carries into the exponent from here on.
      return magnitude >= 0x7f7f8000u;
    case DType::kInt8:  // never a user type (user stores refuse it)
      return false;
  }
  return false;
}

}  // namespace

std::string EncodeUserRecord(uint32_t m, uint32_t d, std::span<const float> upe,
                             std::span<const float> queries, DType dtype) {
  std::string out = Header(m, d, dtype, !queries.empty());
  const size_t size = scoring::DTypeSize(dtype);
  const size_t header = out.size();
  out.resize(header + (upe.size() + queries.size()) * size);
  scoring::ConvertFromFloat(upe, dtype, out.data() + header);
  scoring::ConvertFromFloat(queries, dtype,
                            out.data() + header + upe.size() * size);
  return out;
}

std::string EncodeUserRecordRaw(uint32_t m, uint32_t d, NpyDType dtype,
                                const std::byte* upe,
                                const std::byte* queries) {
  size_t bytes = size_t{m} * d * NpyDTypeSize(dtype);
  std::string out = Header(
      m, d, dtype == NpyDType::kFloat16 ? DType::kFloat16 : DType::kFloat32,
      queries != nullptr);
  out.reserve(out.size() + bytes * (queries != nullptr ? 2 : 1));
  out.append(reinterpret_cast<const char*>(upe), bytes);
  if (queries != nullptr) {
    out.append(reinterpret_cast<const char*>(queries), bytes);
  }
  return out;
}

absl::Status CheckUserValuesFit(std::span<const float> values, uint32_t dim,
                                DType dtype, absl::string_view field,
                                absl::string_view where) {
  if (dtype == DType::kFloat32) return absl::OkStatus();
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i]) && Overflows(values[i], dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", field, "[", i, "] = ", values[i], " (vector ",
          dim == 0 ? 0 : i / dim, ", element ", dim == 0 ? i : i % dim,
          ") does not fit the users' storage type ",
          std::string(scoring::DTypeName(dtype)), " (it would become Inf)"));
    }
  }
  return absl::OkStatus();
}

DType UserRecordDType(absl::string_view record) {
  if (record.size() < 2) return DType::kFloat32;
  return static_cast<DType>(static_cast<uint8_t>(record[1]));
}

absl::Status DecodeUserRecord(absl::string_view record, uint32_t m, uint32_t d,
                              absl::string_view where, UserEmbedding* out) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("user record ", where, ": ", what));
  };
  if (record.size() < kUserRecordHeaderBytes)
    return corrupt("truncated header");
  const uint8_t version = static_cast<uint8_t>(record[0]);
  if (version != 1 && version != 2) {
    return corrupt(absl::StrCat("unknown record version ", version));
  }
  const uint8_t dtype_byte = static_cast<uint8_t>(record[1]);
  // Version 1 knew float32 and float16; version 2 adds bfloat16.
  if (dtype_byte > (version == 1 ? 1 : 2)) {
    return corrupt(absl::StrCat("unknown element type ", dtype_byte,
                                " for record version ", version));
  }
  const DType dtype = static_cast<DType>(dtype_byte);
  const uint8_t flags = static_cast<uint8_t>(record[2]);
  if ((flags & ~1u) != 0) return corrupt("unknown flags");
  const uint32_t rm = GetU32(record.data() + 4);
  const uint32_t rd = GetU32(record.data() + 8);
  if (rm != m || rd != d) {
    return corrupt(
        absl::StrCat("shape ", rm, "x", rd, " but the model is ", m, "x", d));
  }
  const bool has_queries = (flags & 1) != 0;
  const size_t elements = size_t{m} * d;
  const size_t element_bytes = scoring::DTypeSize(dtype);
  const size_t expected =
      kUserRecordHeaderBytes + elements * element_bytes * (has_queries ? 2 : 1);
  if (record.size() != expected) {
    return corrupt(absl::StrCat(record.size(), " bytes, expected ", expected));
  }
  out->user_codes = m;
  out->dim = d;
  out->upe.resize(elements);
  out->queries.resize(has_queries ? elements : 0);
  const char* p = record.data() + kUserRecordHeaderBytes;
  Widen(p, dtype, out->upe.data(), elements);
  if (has_queries) {
    Widen(p + elements * element_bytes, dtype, out->queries.data(), elements);
  }
  return absl::OkStatus();
}

}  // namespace embsum::store
