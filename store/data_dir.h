// A data directory: what embsum-ingest writes and embsum-server serves.
//   DATA_DIR/manifest.json   the model manifest
//   DATA_DIR/users/          RocksDB (users, summaries, meta)
//   DATA_DIR/items/          FAISS snapshot files, id map, RocksDB item log
//   DATA_DIR/shard.json      the user shard it holds (store/shard.h); absent
//                            in directories that predate shards: all users
#ifndef EMBSUM_STORE_DATA_DIR_H_
#define EMBSUM_STORE_DATA_DIR_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scoring/dtype.h"
#include "store/item_catalog.h"
#include "store/manifest.h"
#include "store/shard.h"
#include "store/testing_hooks.h"
#include "store/user_store.h"

namespace embsum::store {

struct DataDirOptions {
  UserStoreOptions users;
  ItemCatalogOptions items;
};

// Thread-safety: as UserStore and ItemCatalog.
class DataDir {
 public:
  // Refuses (FailedPrecondition/DataLoss with the file named) a missing,
  // partial or corrupt directory; never crashes on bad files.
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(
      const std::string& path, const DataDirOptions& options,
      const DataDirTestingHooks& testing = {});

  const ModelManifest& manifest() const { return manifest_; }
  // The users this directory holds: shard() of shards (0 of 1: all).
  const ShardSpec& shard() const { return shard_; }
  UserStore& users() { return *users_; }
  const UserStore& users() const { return *users_; }
  ItemCatalog& items() { return *items_; }
  const ItemCatalog& items() const { return *items_; }

 private:
  DataDir() = default;
  ModelManifest manifest_;
  ShardSpec shard_;
  std::unique_ptr<UserStore> users_;
  std::unique_ptr<ItemCatalog> items_;
};

struct IngestOptions {
  std::string model_dir;
  std::string data_dir;
  bool force = false;  // replace an existing data directory
  // Keep only the users of this shard (every item is kept); recorded in
  // DATA_DIR/shard.json. Default: one shard, every user.
  ShardSpec shard;
  // Element type of the stored users (embsum-ingest --user_dtype): fp16 or
  // bf16 halve the per-request user read and the cache footprint, within
  // docs/design.md section 2's 16-bit accuracy; upserts are rounded to it.
  // nullopt keeps the artifact's type (fp32 or fp16).
  std::optional<scoring::DType> user_dtype;
  // Progress lines (rows/s, ETA) for large artifacts; null = silent.
  std::function<void(const std::string& line)> progress;
  // At most one progress line per this many seconds per phase (0 = a line
  // per row, for tests).
  double progress_interval_s = 1.0;
};

// docs/design.md section 3 artifact -> data directory. Builds into a temporary
// directory next to the target and renames atomically; on any error the
// existing data directory is untouched and the message names the file, the
// row and the problem.
absl::Status Ingest(const IngestOptions& options);

// Checks the artifact of options.model_dir as Ingest does, writing nothing
// (embsum-ingest --check): everything ModelArtifact::Open checks, then every
// value of every user (upe then queries, row by row, every shard) and every
// item (cpe then keys), in row order. The error names the file, the row and
// the problem, as Ingest's does; the Python validator
// (python/embsum/artifact.py) reports the same file and row. Uses
// options.progress and progress_interval_s; ignores data_dir, force, shard
// and user_dtype.
absl::Status CheckArtifact(const IngestOptions& options);

}  // namespace embsum::store

#endif  // EMBSUM_STORE_DATA_DIR_H_
