#include "store/internal/user_record.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "scoring/dtype.h"

namespace embsum::store {
namespace {

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

std::string Header(uint32_t m, uint32_t d, uint8_t dtype, bool has_queries) {
  std::string out;
  out.push_back(static_cast<char>(kUserRecordVersion));
  out.push_back(static_cast<char>(dtype));
  out.push_back(static_cast<char>(has_queries ? 1 : 0));
  out.push_back(0);
  PutU32(&out, m);
  PutU32(&out, d);
  return out;
}

}  // namespace

std::string EncodeUserRecord(uint32_t m, uint32_t d, std::span<const float> upe,
                             std::span<const float> queries) {
  std::string out = Header(m, d, 0, !queries.empty());
  out.reserve(out.size() + (upe.size() + queries.size()) * sizeof(float));
  out.append(reinterpret_cast<const char*>(upe.data()),
             upe.size() * sizeof(float));
  out.append(reinterpret_cast<const char*>(queries.data()),
             queries.size() * sizeof(float));
  return out;
}

std::string EncodeUserRecordRaw(uint32_t m, uint32_t d, NpyDType dtype,
                                const std::byte* upe,
                                const std::byte* queries) {
  size_t bytes = size_t{m} * d * NpyDTypeSize(dtype);
  std::string out =
      Header(m, d, dtype == NpyDType::kFloat16 ? 1 : 0, queries != nullptr);
  out.reserve(out.size() + bytes * (queries != nullptr ? 2 : 1));
  out.append(reinterpret_cast<const char*>(upe), bytes);
  if (queries != nullptr) {
    out.append(reinterpret_cast<const char*>(queries), bytes);
  }
  return out;
}

absl::Status DecodeUserRecord(absl::string_view record, uint32_t m, uint32_t d,
                              absl::string_view where, UserEmbedding* out) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("user record ", where, ": ", what));
  };
  if (record.size() < kUserRecordHeaderBytes)
    return corrupt("truncated header");
  uint8_t version = static_cast<uint8_t>(record[0]);
  if (version != kUserRecordVersion) {
    return corrupt(absl::StrCat("unknown record version ", version));
  }
  uint8_t dtype = static_cast<uint8_t>(record[1]);
  if (dtype > 1) return corrupt(absl::StrCat("unknown element type ", dtype));
  uint8_t flags = static_cast<uint8_t>(record[2]);
  if ((flags & ~1u) != 0) return corrupt("unknown flags");
  uint32_t rm = GetU32(record.data() + 4);
  uint32_t rd = GetU32(record.data() + 8);
  if (rm != m || rd != d) {
    return corrupt(
        absl::StrCat("shape ", rm, "x", rd, " but the model is ", m, "x", d));
  }
  bool has_queries = (flags & 1) != 0;
  size_t elements = size_t{m} * d;
  size_t element_bytes = dtype == 1 ? 2 : 4;
  size_t expected =
      kUserRecordHeaderBytes + elements * element_bytes * (has_queries ? 2 : 1);
  if (record.size() != expected) {
    return corrupt(absl::StrCat(record.size(), " bytes, expected ", expected));
  }
  out->user_codes = m;
  out->dim = d;
  out->upe.resize(elements);
  out->queries.resize(has_queries ? elements : 0);
  const char* p = record.data() + kUserRecordHeaderBytes;
  if (dtype == 0) {
    std::memcpy(out->upe.data(), p, elements * sizeof(float));
    if (has_queries) {
      std::memcpy(out->queries.data(), p + elements * sizeof(float),
                  elements * sizeof(float));
    }
  } else {
    scoring::ConvertToFloat(p, scoring::DType::kFloat16, out->upe);
    if (has_queries) {
      scoring::ConvertToFloat(p + elements * 2, scoring::DType::kFloat16,
                              out->queries);
    }
  }
  return absl::OkStatus();
}

}  // namespace embsum::store
