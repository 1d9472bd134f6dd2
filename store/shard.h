// User shards (docs/design.md section 9, contract): a user belongs to shard
// crc32(user_id) mod shards, where crc32 is the IEEE CRC-32 of the UTF-8
// bytes (zlib's crc32(), HAProxy's `crc32` converter without avalanche).
// A data directory built with `embsum-ingest --shards=N --shard=I` holds the
// users of shard I and every item; it records that in DATA_DIR/shard.json
// ({"shard": I, "shards": N}). A directory without the file holds all users
// (shard 0 of 1). Thread-safe: value types and pure functions.
#ifndef EMBSUM_STORE_SHARD_H_
#define EMBSUM_STORE_SHARD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embsum::store {

inline constexpr char kShardFile[] = "shard.json";
// More shards than this is a typo, not a deployment.
inline constexpr uint32_t kMaxShards = 65536;

struct ShardSpec {
  uint32_t shard = 0;   // this directory's shard, < shards
  uint32_t shards = 1;  // shard count; 1 = unsharded (every user)
  bool operator==(const ShardSpec&) const = default;
};

// IEEE CRC-32 of the bytes of `user_id` (zlib's crc32 from 0).
uint32_t UserIdCrc32(absl::string_view user_id);
// The shard `user_id` belongs to among `shards` (>= 1).
uint32_t ShardOfUser(absl::string_view user_id, uint32_t shards);
inline bool HoldsUser(const ShardSpec& spec, absl::string_view user_id) {
  return spec.shards <= 1 || ShardOfUser(user_id, spec.shards) == spec.shard;
}

// InvalidArgument unless 1 <= shards <= kMaxShards and shard < shards.
absl::Status ValidateShardSpec(const ShardSpec& spec);

std::string ShardSpecToJson(const ShardSpec& spec);
// Parses shard.json text; `source` names the file in errors.
absl::StatusOr<ShardSpec> ParseShardSpec(absl::string_view json,
                                         absl::string_view source);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_SHARD_H_
