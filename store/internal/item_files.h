// On-disk form of the item catalogue (store/ internal).
//
//   items/CURRENT                 name of the live snapshot directory
//   items/snapshot-<G>/meta.json  {"format":1,"items":N,"item_codes":n,"dim":d,
//                                  "item_keys":bool,"shards":[{"first_row",
//                                  "rows","cpe","cpe_xxh64","keys",
//                                  "keys_xxh64"}...]}
//   items/snapshot-<G>/ids.txt    row -> item id
//   items/snapshot-<G>/cpe-<S>.faiss   IndexIDMap2 over IndexFlatIP: the CPE
//                                  vectors of the shard's rows, vector j of
//                                  row r has FAISS id r*n + j
//   items/snapshot-<G>/keys-<S>.faiss  the keys likewise (when item_keys)
//   items/log/                    RocksDB: item id -> upsert or tombstone
//                                  since the snapshot, WAL-synced
//
// Log entries are idempotent against the snapshot (an upsert replaces, a
// tombstone removes), so a crash between writing a new snapshot and
// trimming the log is harmless. Not thread-safe: one writer.
#ifndef EMBSUM_STORE_INTERNAL_ITEM_FILES_H_
#define EMBSUM_STORE_INTERNAL_ITEM_FILES_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/manifest.h"

namespace faiss {
struct Index;
}

namespace embsum::store::internal {

inline constexpr char kItemsCurrentFile[] = "CURRENT";
inline constexpr char kItemLogDir[] = "log";
// Keys of the item log that are not items start with this byte (an item id
// never holds a control character): the counters written in the batch of
// the write they count, decimal text. Reading the log skips them and a
// checkpoint keeps them.
inline constexpr char kItemLogMetaPrefix = '\0';
// The write log sequence of the last message applied (store/write_stamp.h).
inline constexpr std::string_view kItemLogSequenceKey{"\0log_sequence", 13};
// Items written online since the directory was built.
inline constexpr std::string_view kItemLogOnlineWritesKey{"\0online_writes",
                                                          14};

// Writes one snapshot directory shard by shard (bounded memory).
class SnapshotWriter {
 public:
  // `dir` must not exist. Shards hold at most `shard_bytes` of CPE each.
  static absl::StatusOr<std::unique_ptr<SnapshotWriter>> Create(
      const std::string& dir, const ModelManifest& manifest,
      size_t shard_bytes = size_t{64} << 20);
  ~SnapshotWriter();

  // cpe n*d; keys n*d when the model has keys, else empty. Values must
  // already be validated.
  absl::Status Add(absl::string_view id, std::span<const float> cpe,
                   std::span<const float> keys);
  // Writes the last shard, ids.txt and meta.json, fsyncs all and the dir.
  absl::Status Finish();
  uint64_t rows() const { return ids_.size(); }

 private:
  SnapshotWriter() = default;
  absl::Status FlushShard();

  std::string dir_;
  ModelManifest manifest_;
  size_t rows_per_shard_ = 1;
  uint64_t shard_first_row_ = 0;
  std::vector<std::string> ids_;
  std::vector<std::string> shard_files_;  // "cpe-00000.faiss" pairs, flat
  std::vector<uint64_t> shard_rows_;
  std::vector<uint64_t> shard_checksums_;  // cpe, keys pairs, flat
  std::unique_ptr<faiss::Index> cpe_;
  std::unique_ptr<faiss::Index> keys_;
};

// Reads a snapshot directory written by SnapshotWriter, checking it against
// the manifest. Errors are DataLoss naming the file.
class SnapshotReader {
 public:
  static absl::StatusOr<std::unique_ptr<SnapshotReader>> Open(
      const std::string& dir, const ModelManifest& manifest);

  const std::vector<std::string>& ids() const { return ids_; }

  // Calls `fn(first_row, rows, cpe, keys)` per shard in row order: cpe holds
  // rows*n*d floats, keys likewise or is empty. Loads one shard at a time.
  using ShardFn = std::function<absl::Status(uint64_t first_row, uint64_t rows,
                                             std::span<const float> cpe,
                                             std::span<const float> keys)>;
  absl::Status ForEachShard(const ShardFn& fn) const;

 private:
  struct Shard {
    uint64_t first_row = 0;
    uint64_t rows = 0;
    std::string cpe;
    std::string keys;
    uint64_t cpe_checksum = 0;
    uint64_t keys_checksum = 0;
  };
  std::string dir_;
  ModelManifest manifest_;
  std::vector<std::string> ids_;
  std::vector<Shard> shards_;
};

// A decoded item log value.
struct ItemLogEntry {
  bool tombstone = false;
  std::vector<float> cpe;   // n*d
  std::vector<float> keys;  // n*d or empty
};
std::string EncodeItemLogUpsert(uint32_t n, uint32_t d,
                                std::span<const float> cpe,
                                std::span<const float> keys);
std::string EncodeItemLogTombstone();
absl::Status DecodeItemLog(absl::string_view value, const ModelManifest& m,
                           absl::string_view where, ItemLogEntry* out);

// Reads items/CURRENT: the snapshot directory name.
absl::StatusOr<std::string> ReadCurrentSnapshot(const std::string& items_dir);
// Points items/CURRENT at `snapshot_name` durably (atomic rename).
absl::Status WriteCurrentSnapshot(const std::string& items_dir,
                                  const std::string& snapshot_name);
// "snapshot-000007" for 7; generation of a name, or -1.
std::string SnapshotName(uint64_t generation);
int64_t SnapshotGeneration(absl::string_view name);

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ITEM_FILES_H_
