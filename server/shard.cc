#include "server/shard.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace embsum::server {

absl::Status CheckUserShard(const store::ShardSpec& served,
                            absl::string_view user_id) {
  if (served.shards <= 1) return absl::OkStatus();
  const uint32_t shard = store::ShardOfUser(user_id, served.shards);
  if (shard == served.shard) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "user_id '", user_id, "' belongs to shard ", shard, " of ", served.shards,
      "; this server holds shard ", served.shard, " of ", served.shards,
      " (route by crc32(x-user-id) mod ", served.shards, ")"));
}

}  // namespace embsum::server
