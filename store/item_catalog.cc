// The item catalogue's write path: Upsert, Delete, the ANN segments and
// publication (see store/internal/item_catalog_impl.h for the split).
//
// Every write follows one order: build the next snapshot (arena rows beyond
// every published snapshot, which no reader looks at; id map; liveness;
// ANN), then write and sync the log, then publish. An error before the log
// write leaves nothing behind: the rows written are overwritten by the next
// write, and arena().size() has not moved.
#include "store/item_catalog.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/write_batch.h"
#include "store/embedding_rules.h"
#include "store/internal/ids.h"
#include "store/internal/item_catalog_impl.h"
#include "store/internal/status_util.h"

namespace embsum::store {
namespace internal {
namespace {

absl::Status ValidateItem(const ItemUpsert& item, size_t index,
                          const ModelManifest& m) {
  if (absl::Status s = ValidateId(item.item_id); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("item record ", index, ": ", s.message()));
  }
  if (absl::Status s =
          CheckEmbeddingRecord(m, RecordKind::kItem, item.cpe, item.keys);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("item record ", index, " (\"", item.item_id.substr(0, 64),
                     "\"): ", s.message()));
  }
  return absl::OkStatus();
}

// A copy of `cur` to modify: shares the arena, the id map's nodes, the
// liveness pages and the ANN indexes.
std::shared_ptr<SnapshotImpl> CopyForWrite(const SnapshotImpl& cur) {
  auto snap = std::make_shared<SnapshotImpl>();
  snap->state_ = cur.state_;
  snap->rows_ = cur.rows_;
  snap->map_ = cur.map_;
  snap->live_ = cur.live_;
  snap->version_ = cur.version_ + 1;
  snap->main_ann_ = cur.main_ann_;
  snap->main_live_ = cur.main_live_;
  snap->tail_ann_ = cur.tail_ann_;
  snap->search_threads_ = cur.search_threads_;
  snap->ann_enabled_ = cur.ann_enabled_;
  return snap;
}

// Marks `row` dead in `snap`, keeping its count of live main-index rows.
void Kill(SnapshotImpl* snap, uint32_t row) {
  snap->live_.Set(row, false);
  if (snap->main_ann_ != nullptr && row < snap->main_ann_->end()) {
    --snap->main_live_;
  }
}

}  // namespace

size_t CatalogImpl::CapacityFor(size_t rows) const {
  return static_cast<size_t>(static_cast<double>(rows) *
                             std::max(1.0, options_.growth)) +
         std::max<size_t>(1, options_.min_headroom_rows);
}

absl::Status CatalogImpl::Fault(std::string_view step) const {
  if (!testing_.fault) return absl::OkStatus();
  return testing_.fault(step);
}

std::shared_ptr<ArenaState> CatalogImpl::NewArena(size_t capacity) {
  auto state = std::make_shared<ArenaState>();
  state->arena = std::make_unique<scoring::ItemArena>(Layout(), capacity);
  state->row_ids.resize(capacity);
  return state;
}

absl::StatusOr<std::shared_ptr<const AnnIndex>> CatalogImpl::BuildAnnRange(
    const SnapshotImpl& snap, uint32_t begin, uint32_t end, bool flat,
    const AnnIndex* trained) {
  const size_t capacity = snap.state_->arena->capacity();
  if (ann_scratch_.size() < capacity) ann_scratch_.resize(capacity, 0);
  snap.live_.CopyTo(begin, end, ann_scratch_.data() + begin);
  auto built = AnnIndex::Build(*snap.state_->arena, begin, end, ann_scratch_,
                               options_.ann, flat, trained);
  std::fill(ann_scratch_.begin() + begin, ann_scratch_.begin() + end, 0);
  return built;
}

absl::Status CatalogImpl::BuildAnn(SnapshotImpl* snap,
                                   const SnapshotImpl* prev) {
  snap->ann_enabled_ = options_.ann.enabled;
  snap->search_threads_ = options_.ann.search_threads;
  if (!options_.ann.enabled) return absl::OkStatus();
  const uint32_t rows = snap->rows_;
  const uint64_t live = snap->map_.size();
  bool reuse = false;
  if (prev != nullptr && prev->state_ == snap->state_ && prev->main_ann_) {
    // Rebuild when the recent rows or the dead rows in the main index grow
    // large; main_live_ is kept by every write, so this check is O(1).
    const AnnIndex& main = *prev->main_ann_;
    const uint32_t tail = rows - main.end();
    const size_t tail_max =
        std::max<size_t>(options_.ann.tail_max_rows, live / 20);
    const bool main_ok = snap->main_live_ * 4 >= main.items() * 3;
    reuse = tail <= tail_max && main_ok;
  }
  if (reuse) {
    snap->main_ann_ = prev->main_ann_;
    snap->tail_ann_ = prev->tail_ann_;
    const uint32_t indexed = snap->tail_ann_.empty()
                                 ? snap->main_ann_->end()
                                 : snap->tail_ann_.back()->end();
    if (indexed >= rows) return absl::OkStatus();
    // The new rows get a flat segment of their own; then, like a binary
    // counter, the last two segments merge while the last is at least as
    // long as the one before: O(log tail) segments, and each row is
    // re-indexed O(log tail) times over its life in the tail.
    ASSIGN_OR_RETURN(auto segment,
                     BuildAnnRange(*snap, indexed, rows, true, nullptr));
    snap->tail_ann_.push_back(std::move(segment));
    auto span = [](const AnnIndex& a) { return a.end() - a.begin(); };
    while (snap->tail_ann_.size() >= 2 &&
           span(*snap->tail_ann_.back()) >=
               span(*snap->tail_ann_[snap->tail_ann_.size() - 2])) {
      const uint32_t begin =
          snap->tail_ann_[snap->tail_ann_.size() - 2]->begin();
      const uint32_t end = snap->tail_ann_.back()->end();
      ASSIGN_OR_RETURN(auto merged,
                       BuildAnnRange(*snap, begin, end, true, nullptr));
      snap->tail_ann_.pop_back();
      snap->tail_ann_.back() = std::move(merged);
    }
    return absl::OkStatus();
  }
  const AnnIndex* trained = prev != nullptr ? prev->main_ann_.get() : nullptr;
  // Retrain when the catalogue changed size a lot since training.
  if (trained != nullptr &&
      (trained->items() * 2 < live || trained->items() > live * 2)) {
    trained = nullptr;
  }
  ASSIGN_OR_RETURN(snap->main_ann_,
                   BuildAnnRange(*snap, 0, rows, false, trained));
  snap->main_live_ = live;
  snap->tail_ann_.clear();
  return absl::OkStatus();
}

void CatalogImpl::Publish(std::shared_ptr<SnapshotImpl> snap,
                          std::span<const uint32_t> rows) {
  // Arena size first (release), so that a reader of the new snapshot finds
  // arena().size() >= rows(); it never shrinks within one arena.
  std::const_pointer_cast<ArenaState>(snap->state_)
      ->arena->Publish(snap->rows_);
  current_ = snap;
  published_.Store(snap);
  if (listener_) listener_(*snap, rows);
}

void CatalogImpl::PutCounters(rocksdb::WriteBatch* batch, uint64_t written,
                              const WriteStamp& stamp) {
  if (written > 0) {
    batch->Put(rocksdb::Slice(kItemLogOnlineWritesKey.data(),
                              kItemLogOnlineWritesKey.size()),
               std::to_string(online_writes_.load(std::memory_order_relaxed) +
                              written));
  }
  if (stamp.log_sequence != 0) {
    batch->Put(
        rocksdb::Slice(kItemLogSequenceKey.data(), kItemLogSequenceKey.size()),
        std::to_string(stamp.log_sequence));
  }
}

void CatalogImpl::CommitCounters(uint64_t written, const WriteStamp& stamp) {
  online_writes_.fetch_add(written, std::memory_order_relaxed);
  if (stamp.log_sequence != 0) {
    log_sequence_.store(stamp.log_sequence, std::memory_order_release);
  }
}

absl::Status CatalogImpl::Upsert(std::span<const ItemUpsert> items,
                                 const WriteStamp& stamp) {
  for (size_t i = 0; i < items.size(); ++i) {
    RETURN_IF_ERROR(ValidateItem(items[i], i, manifest_));
  }
  if (items.empty()) {
    if (stamp.log_sequence == 0) return absl::OkStatus();
    // Only the sequence (a log message with nothing to apply here).
    absl::MutexLock lock(&mu_);
    rocksdb::WriteBatch batch;
    PutCounters(&batch, 0, stamp);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(FromRocksDb(log_->Write(wo, &batch),
                                absl::StrCat(dir_, "/log: sequence")));
    CommitCounters(0, stamp);
    return absl::OkStatus();
  }
  absl::MutexLock lock(&mu_);
  const SnapshotImpl& cur = *current_;
  const uint64_t live = cur.map_.size();
  const uint64_t dead = cur.rows_ - live;
  const bool full = cur.rows_ + items.size() > state_->arena->capacity();
  const bool compact = dead > live && dead > options_.min_headroom_rows;
  std::shared_ptr<SnapshotImpl> snap;
  std::shared_ptr<ArenaState> state = state_;
  if (full || compact) {
    // A new arena: copy the live rows in row order, then append. O(N), once
    // per geometric growth or per compaction.
    state = NewArena(CapacityFor(live + items.size()));
    const size_t row_bytes = state->arena->layout().row_bytes();
    uint32_t row = 0;
    for (uint32_t r = 0; r < cur.rows_; ++r) {
      if (!cur.IsLive(r)) continue;
      std::memcpy(state->arena->mutable_row_data(row),
                  cur.state_->arena->row_data(r), row_bytes);
      state->row_ids[row] = cur.state_->row_ids[r];
      ++row;
    }
    snap = std::make_shared<SnapshotImpl>();
    snap->version_ = cur.version_ + 1;
    snap->state_ = state;
    snap->rows_ = row;
    snap->live_ = LiveMask(state->arena->capacity(), row);
    std::vector<uint32_t> all(row);
    for (uint32_t r = 0; r < row; ++r) all[r] = r;
    snap->map_ = RowMap::Build(state->row_ids, all);
  } else {
    snap = CopyForWrite(cur);
  }
  // Rows from cur.rows_ on are beyond every published snapshot (and beyond
  // arena().size()): no reader looks at them until Publish.
  std::vector<uint32_t> written;
  written.reserve(items.size());
  for (const ItemUpsert& item : items) {
    const uint32_t row = snap->rows_;
    RETURN_IF_ERROR(FromScoring(state->arena->SetRow(row, item.cpe, item.keys),
                                absl::StrCat(dir_, ": arena")));
    state->row_ids[row] = item.item_id;
    snap->live_.Set(row, true);
    if (std::optional<uint32_t> old =
            snap->map_.Set(state->row_ids[row], row, state->row_ids)) {
      Kill(snap.get(), *old);
    }
    ++snap->rows_;
    written.push_back(row);
  }
  RETURN_IF_ERROR(Fault("upsert:build"));
  // On a new arena the main index is rebuilt, reusing cur's trained IVF
  // quantizer when the catalogue size barely changed.
  RETURN_IF_ERROR(BuildAnn(snap.get(), &cur));

  // Durable: one synced batch in the log. Only now is the write committed.
  rocksdb::WriteBatch batch;
  for (const ItemUpsert& item : items) {
    batch.Put(item.item_id,
              EncodeItemLogUpsert(manifest_.item_codes, manifest_.dim, item.cpe,
                                  item.keys));
  }
  PutCounters(&batch, items.size(), stamp);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(Fault("upsert:log"));
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &batch), absl::StrCat(dir_, "/log: upsert")));
  log_entries_ += items.size();
  CommitCounters(items.size(), stamp);

  if (state != state_) {
    state_ = state;
    written.clear();
  }
  Publish(std::move(snap), written);
  MaybeCheckpointLocked();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CatalogImpl::Delete(
    std::span<const std::string> item_ids, const WriteStamp& stamp) {
  absl::MutexLock lock(&mu_);
  const SnapshotImpl& cur = *current_;
  absl::flat_hash_set<absl::string_view> existing;
  for (const std::string& id : item_ids) {
    if (cur.FindRow(id)) existing.insert(id);
  }
  if (existing.empty()) {
    if (stamp.log_sequence == 0) return 0;
    rocksdb::WriteBatch batch;
    PutCounters(&batch, 0, stamp);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(FromRocksDb(log_->Write(wo, &batch),
                                absl::StrCat(dir_, "/log: sequence")));
    CommitCounters(0, stamp);
    return 0;
  }
  std::shared_ptr<SnapshotImpl> snap = CopyForWrite(cur);
  for (absl::string_view id : existing) {
    std::optional<uint32_t> row = snap->map_.Erase(
        std::string_view(id.data(), id.size()), state_->row_ids);
    Kill(snap.get(), *row);
  }
  RETURN_IF_ERROR(BuildAnn(snap.get(), &cur));

  rocksdb::WriteBatch batch;
  for (absl::string_view id : existing) {
    batch.Put(rocksdb::Slice(id.data(), id.size()), EncodeItemLogTombstone());
  }
  PutCounters(&batch, existing.size(), stamp);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(Fault("delete:log"));
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &batch), absl::StrCat(dir_, "/log: delete")));
  log_entries_ += existing.size();
  CommitCounters(existing.size(), stamp);
  // Deletes change only liveness: no arena rows for the listener.
  current_ = snap;
  published_.Store(std::move(snap));
  MaybeCheckpointLocked();
  return existing.size();
}

void CatalogImpl::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
  if (listener_) listener_(*current_, {});
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<ItemCatalog>> ItemCatalog::Open(
    const std::string& dir, const ModelManifest& manifest,
    const ItemCatalogOptions& options, const ItemCatalogTestingHooks& testing) {
  auto catalog =
      std::make_unique<internal::CatalogImpl>(dir, manifest, options, testing);
  RETURN_IF_ERROR(catalog->Load());
  return std::unique_ptr<ItemCatalog>(std::move(catalog));
}

}  // namespace embsum::store
