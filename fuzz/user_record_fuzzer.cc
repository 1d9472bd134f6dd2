// Fuzzes the RocksDB user record decoder (what a corrupt or foreign value in
// the users database looks like). The first 4 input bytes pick the model
// shape the decoder expects; the rest is the stored value. An accepted
// record must decode to m*d values and re-encode to the same bytes (as the
// current version) when it is float32.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "store/internal/user_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using embsum::store::DecodeUserRecord;
  using embsum::store::EncodeUserRecord;
  using embsum::store::UserEmbedding;
  if (size < 4) return 0;
  // m in 1..64, d in 1..1024: the shapes the server meets.
  const uint32_t m = 1 + data[0] % 64;
  const uint32_t d = 1 + ((data[1] | (data[2] << 8)) % 1024);
  const bool seed_valid = data[3] & 1;
  absl::string_view record(reinterpret_cast<const char*>(data + 4), size - 4);
  // Half the time patch the header so the decoder gets past the shape check.
  std::string patched;
  if (seed_valid && record.size() >= 12) {
    patched.assign(record.data(), record.size());
    std::memcpy(patched.data() + 4, &m, 4);
    std::memcpy(patched.data() + 8, &d, 4);
    record = patched;
  }
  UserEmbedding user;
  absl::Status s = DecodeUserRecord(record, m, d, "fuzz", &user);
  if (!s.ok()) {
    if (s.message().empty()) std::abort();
    return 0;
  }
  const size_t elements = size_t{m} * d;
  if (user.upe.size() != elements ||
      (!user.queries.empty() && user.queries.size() != elements)) {
    std::fprintf(stderr, "decoded the wrong number of values\n");
    std::abort();
  }
  if (record[1] == 0) {
    // Byte 3 is reserved: the decoder ignores it, the encoder writes 0.
    std::string again = EncodeUserRecord(m, d, user.upe, user.queries);
    std::string expected(record);
    expected[0] = static_cast<char>(embsum::store::kUserRecordVersion);
    expected[3] = 0;
    if (again != expected) {
      std::fprintf(stderr, "float32 record does not round-trip\n");
      std::abort();
    }
  }
  return 0;
}
