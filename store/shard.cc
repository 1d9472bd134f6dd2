#include "store/shard.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace embsum::store {

uint32_t UserIdCrc32(absl::string_view user_id) {
  // zlib takes uInt lengths; user ids are at most 256 bytes, but feed
  // longer inputs in pieces rather than truncate.
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* data = reinterpret_cast<const Bytef*>(user_id.data());
  size_t left = user_id.size();
  while (left > 0) {
    const uInt piece = static_cast<uInt>(
        std::min<size_t>(left, std::numeric_limits<uInt>::max()));
    crc = crc32(crc, data, piece);
    data += piece;
    left -= piece;
  }
  return static_cast<uint32_t>(crc);
}

uint32_t ShardOfUser(absl::string_view user_id, uint32_t shards) {
  if (shards <= 1) return 0;
  return UserIdCrc32(user_id) % shards;
}

absl::Status ValidateShardSpec(const ShardSpec& spec) {
  if (spec.shards < 1 || spec.shards > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shard count ", spec.shards, " is out of range [1, ", kMaxShards, "]"));
  }
  if (spec.shard >= spec.shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", spec.shard, " is out of range [0, ",
                     spec.shards - 1, "] for ", spec.shards, " shards"));
  }
  return absl::OkStatus();
}

std::string ShardSpecToJson(const ShardSpec& spec) {
  nlohmann::json j;
  j["shard"] = spec.shard;
  j["shards"] = spec.shards;
  j["hash"] = "crc32(user_id) mod shards";
  return j.dump() + "\n";
}

absl::StatusOr<ShardSpec> ParseShardSpec(absl::string_view json,
                                         absl::string_view source) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(source, ": not a JSON object"));
  }
  ShardSpec spec;
  for (auto [field, out] :
       {std::pair<const char*, uint32_t*>{"shard", &spec.shard},
        {"shards", &spec.shards}}) {
    auto it = j.find(field);
    if (it == j.end() || !it->is_number_unsigned() ||
        it->get<uint64_t>() > kMaxShards) {
      return absl::DataLossError(absl::StrCat(
          source, ": field \"", field, "\": expected an integer in [0, ",
          kMaxShards, "], got ", it == j.end() ? "nothing" : it->dump()));
    }
    *out = it->get<uint32_t>();
  }
  if (absl::Status s = ValidateShardSpec(spec); !s.ok()) {
    return absl::DataLossError(absl::StrCat(source, ": ", s.message()));
  }
  return spec;
}

}  // namespace embsum::store
