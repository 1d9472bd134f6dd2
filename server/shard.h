// The server's side of user sharding (docs/design.md section 9,
// docs/operations.md "Sharded deployment"): a data directory built for shard I
// of N serves and accepts only the users of shard I. A call for another shard's
// user is a routing error, not an unknown user, so it is FAILED_PRECONDITION
// naming both shards: the proxy (or writer) sent it to the wrong replica group.
// Thread-safe: a pure function.
#ifndef EMBSUM_SERVER_SHARD_H_
#define EMBSUM_SERVER_SHARD_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "store/shard.h"

namespace embsum::server {

// OK when `served` holds `user_id` (always, unsharded). Otherwise
// FailedPrecondition: "user_id 'u' belongs to shard 1 of 2; this server
// holds shard 0 of 2 (...)". Costs one CRC-32 of the id when sharded.
absl::Status CheckUserShard(const store::ShardSpec& served,
                            absl::string_view user_id);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_SHARD_H_
