// The versioned binary value of a user in RocksDB (DESIGN.md section 4).
//
// Version 1, little-endian:
//   byte 0     version (1)
//   byte 1     element type: 0 = float32, 1 = float16
//   byte 2     flags: bit 0 = queries present
//   byte 3     reserved (0)
//   bytes 4-7  m (uint32)
//   bytes 8-11 d (uint32)
//   A: m*d elements, then Q: m*d elements when flagged.
// Thread-safe: stateless functions.
#ifndef EMBSUM_STORE_INTERNAL_USER_RECORD_H_
#define EMBSUM_STORE_INTERNAL_USER_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "store/internal/npy.h"
#include "store/user_store.h"

namespace embsum::store {

inline constexpr uint8_t kUserRecordVersion = 1;
inline constexpr size_t kUserRecordHeaderBytes = 12;

// Encodes fp32 A (m*d) and Q (m*d or empty) as a float32 record.
std::string EncodeUserRecord(uint32_t m, uint32_t d, std::span<const float> upe,
                             std::span<const float> queries);
// Encodes raw element bytes of `dtype` (as read from a .npy row):
// upe m*d elements, queries m*d elements or null.
std::string EncodeUserRecordRaw(uint32_t m, uint32_t d, NpyDType dtype,
                                const std::byte* upe, const std::byte* queries);

// Decodes a record into fp32. DataLoss naming `where` (for example the user
// id) when the record is malformed, of an unknown version, or its m/d differ
// from `m`/`d`.
absl::Status DecodeUserRecord(absl::string_view record, uint32_t m, uint32_t d,
                              absl::string_view where, UserEmbedding* out);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_INTERNAL_USER_RECORD_H_
