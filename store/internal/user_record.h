// The versioned binary value of a user in RocksDB (docs/design.md section 4).
//
// Version 2 (written now), little-endian:
//   byte 0     version (2)
//   byte 1     element type: 0 = float32, 1 = float16, 2 = bfloat16
//              (scoring::DType's values)
//   byte 2     flags: bit 0 = queries present
//   byte 3     reserved (0)
//   bytes 4-7  m (uint32)
//   bytes 8-11 d (uint32)
//   A: m*d elements, then Q: m*d elements when flagged.
// Version 1 is the same with element types 0 and 1 only; it is still read.
// Thread-safe: stateless functions.
#ifndef EMBSUM_STORE_INTERNAL_USER_RECORD_H_
#define EMBSUM_STORE_INTERNAL_USER_RECORD_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "scoring/dtype.h"
#include "store/internal/npy.h"
#include "store/user_store.h"

namespace embsum::store {

inline constexpr uint8_t kUserRecordVersion = 2;
inline constexpr size_t kUserRecordHeaderBytes = 12;

// Encodes fp32 A (m*d) and Q (m*d or empty) as a record of `dtype`
// elements, rounding to nearest even. Values must fit `dtype`
// (CheckUserValuesFit); an fp16 overflow would be stored as Inf.
std::string EncodeUserRecord(uint32_t m, uint32_t d, std::span<const float> upe,
                             std::span<const float> queries,
                             scoring::DType dtype = scoring::DType::kFloat32);
// Encodes raw element bytes of `dtype` (as read from a .npy row):
// upe m*d elements, queries m*d elements or null.
std::string EncodeUserRecordRaw(uint32_t m, uint32_t d, NpyDType dtype,
                                const std::byte* upe, const std::byte* queries);

// InvalidArgument naming `field`, the vector (index / dim) and the element
// when a finite fp32 value rounds to Inf in `dtype` (|x| >= 65520 for fp16;
// near FLT_MAX for bf16). `where` prefixes the message.
absl::Status CheckUserValuesFit(std::span<const float> values, uint32_t dim,
                                scoring::DType dtype, absl::string_view field,
                                absl::string_view where);

// Decodes a record (version 1 or 2) into fp32, widening 16-bit elements once
// into out's buffers (reused: no allocation when out already has the
// size). DataLoss naming `where` (for example the user id) when the record
// is malformed, of an unknown version, or its m/d differ from `m`/`d`.
absl::Status DecodeUserRecord(absl::string_view record, uint32_t m, uint32_t d,
                              absl::string_view where, UserEmbedding* out);
// The element type of a record that DecodeUserRecord accepts (reads the
// header only; no checks beyond its size).
scoring::DType UserRecordDType(absl::string_view record);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_INTERNAL_USER_RECORD_H_
