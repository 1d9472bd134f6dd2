// The item catalogue's implementation (store/ internal), split by seam:
//   store/item_snapshot.cc      SnapshotImpl: the published view and its
//                               queries (FindRow, liveness, AnnCandidates)
//   store/item_catalog_log.cc   the durable side: Load (snapshot files plus
//                               log replay), ReadLog, Checkpoint
//   store/item_catalog.cc       the write path: Upsert, Delete, the ANN
//                               segments, publication, ItemCatalog::Open
#ifndef EMBSUM_STORE_INTERNAL_ITEM_CATALOG_IMPL_H_
#define EMBSUM_STORE_INTERNAL_ITEM_CATALOG_IMPL_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/published.h"
#include "common/status_conversion.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "scoring/item_arena.h"
#include "scoring/status.h"
#include "store/internal/ann_index.h"
#include "store/internal/item_files.h"
#include "store/internal/row_map.h"
#include "store/item_catalog.h"

namespace embsum::store::internal {

// A scoring error with `context` ("context: message"), same code.
inline absl::Status FromScoring(const scoring::Status& s,
                                absl::string_view context) {
  return FromScoringStatus(s, context);
}

// The arena and its row -> id table, shared by every snapshot over it.
// A row (data and id) is written before the first snapshot that covers it
// is published and never changes afterwards; rows beyond every published
// snapshot belong to the writer.
struct ArenaState {
  std::unique_ptr<scoring::ItemArena> arena;
  RowIds row_ids;  // size capacity
};

// Immutable once published (the lazily built flat liveness array aside,
// which is built once under its own once_flag).
class SnapshotImpl final : public ItemSnapshot {
 public:
  const scoring::ItemArena& arena() const override { return *state_->arena; }
  uint32_t rows() const override { return rows_; }
  std::optional<uint32_t> FindRow(std::string_view item_id) const override {
    return map_.Find(item_id, state_->row_ids);
  }
  void FindRows(std::span<const std::string_view> item_ids,
                std::span<uint32_t> rows) const override {
    map_.FindMany(item_ids, state_->row_ids, rows);
  }
  const std::string& ItemId(uint32_t row) const override {
    return state_->row_ids[row];
  }
  bool IsLive(uint32_t row) const override {
    return row < rows_ && live_.Get(row);
  }
  std::span<const uint8_t> live() const override;
  uint64_t size() const override { return map_.size(); }
  uint64_t version() const override { return version_; }
  using ItemSnapshot::AnnCandidates;
  absl::Status AnnCandidates(const scoring::UserView& user,
                             const AnnQuery& query,
                             std::vector<uint32_t>* rows) const override;
  absl::Status AnnCandidateLists(const scoring::UserView& user,
                                 const AnnQuery& query,
                                 AnnLists* lists) const override;
  AnnShape ann_shape() const override;

  // Set by the writer before publication.
  std::shared_ptr<const ArenaState> state_;
  uint32_t rows_ = 0;  // arena rows this snapshot covers
  RowMap map_;         // live id -> row
  LiveMask live_;      // size capacity; 0 for rows >= rows_
  uint64_t version_ = 0;
  std::shared_ptr<const AnnIndex> main_ann_;  // rows [0, main_ann_->end())
  uint64_t main_live_ = 0;  // live rows below main_ann_->end()
  // Flat indexes of the rows after that, in row order, contiguous.
  std::vector<std::shared_ptr<const AnnIndex>> tail_ann_;
  int search_threads_ = 1;
  bool ann_enabled_ = true;

 private:
  mutable std::once_flag flat_once_;
  mutable std::vector<uint8_t> flat_live_;  // size rows_, after flat_once_
};

class CatalogImpl final : public ItemCatalog {
 public:
  CatalogImpl(std::string dir, ModelManifest manifest,
              ItemCatalogOptions options, ItemCatalogTestingHooks testing)
      : dir_(std::move(dir)),
        manifest_(std::move(manifest)),
        options_(std::move(options)),
        testing_(std::move(testing)) {}
  ~CatalogImpl() override;

  // Opens the snapshot files and the log and publishes the first snapshot.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  std::shared_ptr<const ItemSnapshot> Current() const override {
    return published_.Load();
  }
  using ItemCatalog::Delete;
  using ItemCatalog::Upsert;
  absl::Status Upsert(std::span<const ItemUpsert> items,
                      const WriteStamp& stamp) override;
  absl::StatusOr<uint64_t> Delete(std::span<const std::string> item_ids,
                                  const WriteStamp& stamp) override;
  uint64_t applied_log_sequence() const override {
    return log_sequence_.load(std::memory_order_acquire);
  }
  uint64_t online_writes() const override {
    return online_writes_.load(std::memory_order_relaxed);
  }
  void SetListener(Listener listener) override;
  absl::Status Checkpoint() override;
  absl::Status last_checkpoint_status() const override;

 private:
  scoring::ArenaLayout Layout() const {
    return scoring::ArenaLayout{manifest_.item_codes, manifest_.dim,
                                options_.dtype, manifest_.item_keys};
  }
  size_t CapacityFor(size_t rows) const;
  // testing_.fault at `step`, or OK.
  absl::Status Fault(std::string_view step) const;
  // Reads every log entry (key order), at `snapshot` when non-null.
  absl::Status ReadLog(
      const rocksdb::Snapshot* snapshot,
      std::vector<std::pair<std::string, ItemLogEntry>>* entries);
  absl::Status CheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the counters a write of `written` entries stamped `stamp` changes
  // to `batch` (see kItemLogMetaPrefix); CommitCounters publishes them once
  // the batch is durable.
  void PutCounters(rocksdb::WriteBatch* batch, uint64_t written,
                   const WriteStamp& stamp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitCounters(uint64_t written, const WriteStamp& stamp)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checkpoints when the log passed its threshold.
  void MaybeCheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A fresh arena holding `rows` rows' worth of capacity and its snapshot
  // skeleton (no rows yet); resets the ANN scratch mask.
  std::shared_ptr<ArenaState> NewArena(size_t capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds the ANN indexes of `snap` (rows [0, rows_)): keeps the main
  // index and segments of `prev` when they still fit, indexes rows added
  // since `prev` in a new flat segment, and merges or rebuilds as needed.
  absl::Status BuildAnn(SnapshotImpl* snap, const SnapshotImpl* prev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One AnnIndex over the live rows of `snap` in [begin, end).
  absl::StatusOr<std::shared_ptr<const AnnIndex>> BuildAnnRange(
      const SnapshotImpl& snap, uint32_t begin, uint32_t end, bool flat,
      const AnnIndex* trained) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes `snap` current: publishes its arena rows, then the snapshot,
  // then tells the listener about `rows`.
  void Publish(std::shared_ptr<SnapshotImpl> snap,
               std::span<const uint32_t> rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const ModelManifest manifest_;
  const ItemCatalogOptions options_;
  const ItemCatalogTestingHooks testing_;
  std::unique_ptr<rocksdb::DB> log_;

  mutable absl::Mutex mu_;  // the writer's lock
  std::shared_ptr<ArenaState> state_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const SnapshotImpl> current_ ABSL_GUARDED_BY(mu_);
  std::string snapshot_name_ ABSL_GUARDED_BY(mu_);
  uint64_t log_entries_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t retry_checkpoint_at_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status checkpoint_status_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);
  // Size capacity of state_'s arena, all zero between BuildAnnRange calls:
  // the liveness AnnIndex::Build reads, filled only for the rows it
  // indexes, so a small segment costs O(its rows).
  std::vector<uint8_t> ann_scratch_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> log_sequence_{0};
  std::atomic<uint64_t> online_writes_{0};
  // What Current() returns (common/published.h says why a mutex).
  Published<SnapshotImpl> published_;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ITEM_CATALOG_IMPL_H_
