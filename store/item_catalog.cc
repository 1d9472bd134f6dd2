#include "store/item_catalog.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "store/internal/ann_index.h"
#include "store/internal/file_util.h"
#include "store/internal/ids.h"
#include "store/internal/item_files.h"
#include "store/internal/status_util.h"

namespace embsum::store {
namespace {

namespace fs = std::filesystem;
using internal::AnnIndex;
using internal::FromRocksDb;

absl::Status FromScoring(const scoring::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.code()),
                      absl::StrCat(context, ": ", s.message()));
}

// The arena and its row -> id table, shared by every snapshot over it.
// Rows are written (data and id) before a snapshot covering them is
// published and never change afterwards.
struct ArenaState {
  std::unique_ptr<scoring::ItemArena> arena;
  std::vector<std::string> row_ids;  // size capacity
};

class SnapshotImpl final : public ItemSnapshot {
 public:
  const scoring::ItemArena& arena() const override { return *state_->arena; }

  std::optional<uint32_t> FindRow(std::string_view item_id) const override {
    auto it = index_.find(absl::string_view(item_id.data(), item_id.size()));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }

  const std::string& ItemId(uint32_t row) const override {
    return state_->row_ids[row];
  }

  std::span<const uint8_t> live() const override { return live_; }
  uint64_t size() const override { return index_.size(); }
  uint64_t version() const override { return version_; }

  using ItemSnapshot::AnnCandidates;
  absl::Status AnnCandidates(const scoring::UserView& user,
                             const AnnQuery& query,
                             std::vector<uint32_t>* rows) const override {
    rows->clear();
    const scoring::ArenaLayout& layout = state_->arena->layout();
    if (user.dim != layout.dim || user.user_codes == 0 ||
        user.upe.size() != size_t{user.user_codes} * user.dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("AnnCandidates: user embedding is ", user.upe.size(),
                       " values for m*d = ", user.user_codes, "*", user.dim,
                       ", catalogue dim is ", layout.dim));
    }
    if (!ann_enabled_) {
      return absl::FailedPreconditionError(
          "AnnCandidates: the ANN index is disabled (AnnOptions::enabled)");
    }
    const uint32_t k = query.k;
    if (k == 0 || index_.empty()) return absl::OkStatus();
    // The query: the user's mean UPE row.
    std::vector<float> mean(user.dim, 0.0f);
    for (uint32_t i = 0; i < user.user_codes; ++i) {
      const float* a = user.upe.data() + size_t{i} * user.dim;
      for (uint32_t x = 0; x < user.dim; ++x) mean[x] += a[x];
    }
    for (float& v : mean) v /= static_cast<float>(user.user_codes);
    // Rows deleted since the index was built still sit in it: over-fetch
    // by their number so k live rows remain.
    const size_t per_query = size_t{k} + ann_dead_rows_;
    absl::flat_hash_map<uint32_t, float> best;
    best.reserve(per_query * 2);
    for (const auto* ann : {main_ann_.get(), tail_ann_.get()}) {
      if (ann == nullptr) continue;
      RETURN_IF_ERROR(ann->Search(mean, 1, per_query, query.nprobe,
                                  search_threads_, &best));
    }
    std::vector<std::pair<float, uint32_t>> hits;
    hits.reserve(best.size());
    for (const auto& [row, score] : best) {
      if (row < rows_ && live_[row]) hits.emplace_back(score, row);
    }
    size_t keep = std::min<size_t>(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + keep, hits.end(),
                      [](const auto& a, const auto& b) {
                        return a.first != b.first ? a.first > b.first
                                                  : a.second < b.second;
                      });
    rows->reserve(keep);
    for (size_t i = 0; i < keep; ++i) rows->push_back(hits[i].second);
    return absl::OkStatus();
  }

  AnnShape ann_shape() const override {
    AnnShape shape;
    if (main_ann_ != nullptr) {
      shape.ivf = main_ann_->is_ivf();
      shape.lists = main_ann_->lists();
      shape.items = main_ann_->items();
    }
    return shape;
  }

  std::shared_ptr<const ArenaState> state_;
  uint32_t rows_ = 0;  // arena rows this snapshot covers
  absl::flat_hash_map<absl::string_view, uint32_t> index_;  // live id -> row
  std::vector<uint8_t> live_;                               // size capacity
  uint64_t version_ = 0;
  std::shared_ptr<const AnnIndex> main_ann_;  // rows [0, main_ann_->end())
  std::shared_ptr<const AnnIndex> tail_ann_;  // rows after that, or null
  int search_threads_ = 1;
  bool ann_enabled_ = true;
  uint64_t ann_dead_rows_ = 0;  // indexed rows no longer live
};

absl::Status ValidateItem(const ItemUpsert& item, size_t index,
                          const ModelManifest& m) {
  if (absl::Status s = ValidateId(item.item_id); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("item record ", index, ": ", s.message()));
  }
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("item record ", index, " (\"", item.item_id.substr(0, 64),
                     "\"): ", what));
  };
  const size_t want = size_t{m.item_codes} * m.dim;
  if (item.cpe.size() != want) {
    return error(absl::StrCat("cpe has ", item.cpe.size(),
                              " values, expected n*d = ", m.item_codes, "*",
                              m.dim, " = ", want));
  }
  if (m.item_keys && item.keys.size() != want) {
    return error(absl::StrCat("keys has ", item.keys.size(),
                              " values, expected n*d = ", want,
                              " (the model has item keys)"));
  }
  if (!m.item_keys && !item.keys.empty()) {
    return error(absl::StrCat("keys has ", item.keys.size(),
                              " values, but the model has no item keys"));
  }
  for (const auto* values : {&item.cpe, &item.keys}) {
    for (size_t i = 0; i < values->size(); ++i) {
      if (!std::isfinite((*values)[i])) {
        return error(absl::StrCat(values == &item.cpe ? "cpe" : "keys",
                                  std::isnan((*values)[i]) ? ": NaN" : ": Inf",
                                  " at vector ", i / m.dim, ", element ",
                                  i % m.dim));
      }
    }
  }
  return absl::OkStatus();
}

class CatalogImpl final : public ItemCatalog {
 public:
  CatalogImpl(std::string dir, ModelManifest manifest,
              ItemCatalogOptions options)
      : dir_(std::move(dir)),
        manifest_(std::move(manifest)),
        options_(std::move(options)) {}

  ~CatalogImpl() override {
    if (log_) log_->Close().PermitUncheckedError();
  }

  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  std::shared_ptr<const ItemSnapshot> Current() const override {
    absl::ReaderMutexLock lock(&published_mu_);
    return published_;
  }

  absl::Status Upsert(std::span<const ItemUpsert> items) override;
  absl::StatusOr<uint64_t> Delete(
      std::span<const std::string> item_ids) override;
  void SetListener(Listener listener) override;
  absl::Status Checkpoint() override {
    absl::MutexLock lock(&mu_);
    checkpoint_status_ = CheckpointLocked();
    retry_checkpoint_at_ = 0;
    return checkpoint_status_;
  }
  absl::Status last_checkpoint_status() const override {
    absl::MutexLock lock(&mu_);
    return checkpoint_status_;
  }

 private:
  scoring::ArenaLayout Layout() const {
    return scoring::ArenaLayout{manifest_.item_codes, manifest_.dim,
                                options_.dtype, manifest_.item_keys};
  }
  size_t CapacityFor(size_t rows) const {
    return static_cast<size_t>(static_cast<double>(rows) *
                               std::max(1.0, options_.growth)) +
           std::max<size_t>(1, options_.min_headroom_rows);
  }
  // Reads every log entry (key order).
  absl::Status ReadLog(
      std::vector<std::pair<std::string, internal::ItemLogEntry>>* entries);
  absl::Status CheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checkpoints when the log passed its threshold.
  void MaybeCheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds the ANN indexes of `snap` (rows [0, rows_)): reuses the main
  // index of `prev` when it still fits and indexes the rest in a tail.
  absl::Status BuildAnn(SnapshotImpl* snap, const SnapshotImpl* prev);
  void SetPublished(std::shared_ptr<const SnapshotImpl> snap)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::MutexLock lock(&published_mu_);
    published_.swap(snap);
    // The previous snapshot, if this was its last reference, is destroyed
    // here after the lock is released (it may free a whole arena).
  }
  void Publish(std::shared_ptr<SnapshotImpl> snap,
               std::span<const uint32_t> rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const ModelManifest manifest_;
  const ItemCatalogOptions options_;
  std::unique_ptr<rocksdb::DB> log_;

  mutable absl::Mutex mu_;  // serialises writers; readers never take it
  std::shared_ptr<ArenaState> state_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const SnapshotImpl> current_ ABSL_GUARDED_BY(mu_);
  std::string snapshot_name_ ABSL_GUARDED_BY(mu_);
  uint64_t log_entries_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t retry_checkpoint_at_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status checkpoint_status_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);
  // Held only to copy or swap the pointer, never during I/O. (A mutex rather
  // than std::atomic<std::shared_ptr>: libstdc++ 12's load unlocks with
  // relaxed order, a formal data race that ThreadSanitizer reports.)
  mutable absl::Mutex published_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::shared_ptr<const SnapshotImpl> published_ ABSL_GUARDED_BY(published_mu_);
};

absl::Status CatalogImpl::ReadLog(
    std::vector<std::pair<std::string, internal::ItemLogEntry>>* entries) {
  std::unique_ptr<rocksdb::Iterator> it(
      log_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string key = it->key().ToString();
    internal::ItemLogEntry entry;
    RETURN_IF_ERROR(internal::DecodeItemLog(
        absl::string_view(it->value().data(), it->value().size()), manifest_,
        absl::StrCat("\"", key.substr(0, 64), "\" in ", dir_, "/log"), &entry));
    entries->emplace_back(std::move(key), std::move(entry));
  }
  return FromRocksDb(it->status(), absl::StrCat(dir_, "/log: read"));
}

absl::Status CatalogImpl::BuildAnn(SnapshotImpl* snap,
                                   const SnapshotImpl* prev) {
  snap->ann_enabled_ = options_.ann.enabled;
  snap->search_threads_ = options_.ann.search_threads;
  if (!options_.ann.enabled) return absl::OkStatus();
  const scoring::ItemArena& arena = *snap->state_->arena;
  const uint32_t rows = snap->rows_;
  const uint64_t live = snap->index_.size();
  const SnapshotImpl* reuse = nullptr;
  if (prev != nullptr && prev->state_ == snap->state_ && prev->main_ann_) {
    // Rebuild when the tail or the dead rows in the main index grow large.
    const AnnIndex& main = *prev->main_ann_;
    uint64_t main_live = 0;
    for (uint32_t r = main.begin(); r < main.end(); ++r) {
      main_live += snap->live_[r];
    }
    uint32_t tail = rows - main.end();
    size_t tail_max = std::max<size_t>(options_.ann.tail_max_rows, live / 20);
    bool main_ok = main_live * 4 >= main.items() * 3;
    if (tail <= tail_max && main_ok) reuse = prev;
    snap->ann_dead_rows_ = main.items() - main_live;
  }
  if (reuse != nullptr) {
    snap->main_ann_ = reuse->main_ann_;
    if (snap->main_ann_->end() < rows) {
      ASSIGN_OR_RETURN(
          snap->tail_ann_,
          AnnIndex::Build(arena, snap->main_ann_->end(), rows, snap->live_,
                          options_.ann, true, nullptr));
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
                   AnnIndex::Build(arena, 0, rows, snap->live_, options_.ann,
                                   false, trained));
  snap->tail_ann_.reset();
  snap->ann_dead_rows_ = 0;
  return absl::OkStatus();
}

void CatalogImpl::Publish(std::shared_ptr<SnapshotImpl> snap,
                          std::span<const uint32_t> rows) {
  current_ = snap;
  SetPublished(snap);
  if (listener_) listener_(*snap, rows);
}

absl::Status CatalogImpl::Load() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(snapshot_name_, internal::ReadCurrentSnapshot(dir_));
  std::string snapshot_dir = absl::StrCat(dir_, "/", snapshot_name_);
  ASSIGN_OR_RETURN(auto reader,
                   internal::SnapshotReader::Open(snapshot_dir, manifest_));

  std::string log_path = absl::StrCat(dir_, "/", internal::kItemLogDir);
  rocksdb::Options log_options;
  log_options.create_if_missing = false;
  log_options.max_background_jobs = 1;
  log_options.keep_log_file_num = 4;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(log_options, log_path, &raw);
  if (!s.ok()) {
    absl::Status st = FromRocksDb(s, absl::StrCat(log_path, ": open item log"));
    return st.code() == absl::StatusCode::kDataLoss
               ? st
               : absl::FailedPreconditionError(st.message());
  }
  log_.reset(raw);
  std::vector<std::pair<std::string, internal::ItemLogEntry>> log;
  RETURN_IF_ERROR(ReadLog(&log));
  log_entries_ = log.size();

  // Snapshot rows not overridden by the log keep their order; then the
  // log's upserts in key order.
  absl::flat_hash_set<absl::string_view> overridden;
  for (const auto& [id, entry] : log) overridden.insert(id);
  const std::vector<std::string>& ids = reader->ids();
  std::vector<int64_t> target(ids.size(), -1);
  uint32_t kept = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!overridden.contains(ids[i])) target[i] = kept++;
  }
  uint32_t rows = kept;
  for (const auto& [id, entry] : log) rows += entry.tombstone ? 0 : 1;

  auto state = std::make_shared<ArenaState>();
  const size_t capacity = CapacityFor(rows);
  state->arena = std::make_unique<scoring::ItemArena>(Layout(), capacity);
  state->row_ids.resize(capacity);
  const size_t elements = size_t{manifest_.item_codes} * manifest_.dim;
  RETURN_IF_ERROR(reader->ForEachShard(
      [&](uint64_t first, uint64_t count, std::span<const float> cpe,
          std::span<const float> keys) -> absl::Status {
        for (uint64_t i = 0; i < count; ++i) {
          int64_t row = target[first + i];
          if (row < 0) continue;
          RETURN_IF_ERROR(FromScoring(
              state->arena->SetRow(
                  row, cpe.subspan(i * elements, elements),
                  keys.empty() ? keys : keys.subspan(i * elements, elements)),
              snapshot_dir));
          state->row_ids[row] = ids[first + i];
        }
        return absl::OkStatus();
      }));
  uint32_t row = kept;
  for (const auto& [id, entry] : log) {
    if (entry.tombstone) continue;
    RETURN_IF_ERROR(FromScoring(
        state->arena->SetRow(row, entry.cpe, entry.keys), log_path));
    state->row_ids[row] = id;
    ++row;
  }
  state->arena->Publish(rows);

  auto snap = std::make_shared<SnapshotImpl>();
  snap->state_ = state;
  snap->rows_ = rows;
  snap->live_.assign(capacity, 0);
  std::fill_n(snap->live_.begin(), rows, 1);
  snap->index_.reserve(rows);
  for (uint32_t r = 0; r < rows; ++r) snap->index_[state->row_ids[r]] = r;
  snap->version_ = 1;
  RETURN_IF_ERROR(BuildAnn(snap.get(), nullptr));
  state_ = state;
  Publish(std::move(snap), {});

  // Leftovers of interrupted checkpoints.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("snapshot-", 0) == 0 && name != snapshot_name_) {
      fs::remove_all(entry.path(), ec);
    }
  }
  MaybeCheckpointLocked();
  return absl::OkStatus();
}

void CatalogImpl::MaybeCheckpointLocked() {
  const double items = static_cast<double>(current_->size());
  const double limit =
      std::max(static_cast<double>(options_.checkpoint_min_entries),
               options_.checkpoint_fraction * items);
  if (static_cast<double>(log_entries_) <= limit ||
      log_entries_ < retry_checkpoint_at_) {
    return;
  }
  // The write that got here is durable in the log already, so a failed
  // checkpoint (say, a full disk) does not fail it; it is retried once the
  // log has doubled, and reported by last_checkpoint_status().
  checkpoint_status_ = CheckpointLocked();
  retry_checkpoint_at_ = checkpoint_status_.ok() ? 0 : 2 * log_entries_;
}

absl::Status CatalogImpl::CheckpointLocked() {
  std::vector<std::pair<std::string, internal::ItemLogEntry>> log;
  RETURN_IF_ERROR(ReadLog(&log));
  if (log.empty()) {
    log_entries_ = 0;
    return absl::OkStatus();
  }
  const std::string old_dir = absl::StrCat(dir_, "/", snapshot_name_);
  ASSIGN_OR_RETURN(auto reader,
                   internal::SnapshotReader::Open(old_dir, manifest_));
  const std::string name =
      internal::SnapshotName(internal::SnapshotGeneration(snapshot_name_) + 1);
  const std::string tmp = absl::StrCat(dir_, "/", name, ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  ASSIGN_OR_RETURN(auto writer,
                   internal::SnapshotWriter::Create(tmp, manifest_));
  absl::flat_hash_set<absl::string_view> overridden;
  for (const auto& [id, entry] : log) overridden.insert(id);
  const size_t elements = size_t{manifest_.item_codes} * manifest_.dim;
  const std::vector<std::string>& ids = reader->ids();
  RETURN_IF_ERROR(reader->ForEachShard(
      [&](uint64_t first, uint64_t count, std::span<const float> cpe,
          std::span<const float> keys) -> absl::Status {
        for (uint64_t i = 0; i < count; ++i) {
          if (overridden.contains(ids[first + i])) continue;
          RETURN_IF_ERROR(writer->Add(
              ids[first + i], cpe.subspan(i * elements, elements),
              keys.empty() ? keys : keys.subspan(i * elements, elements)));
        }
        return absl::OkStatus();
      }));
  for (const auto& [id, entry] : log) {
    if (!entry.tombstone)
      RETURN_IF_ERROR(writer->Add(id, entry.cpe, entry.keys));
  }
  RETURN_IF_ERROR(writer->Finish());
  const std::string final_dir = absl::StrCat(dir_, "/", name);
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(final_dir, ": rename: ", ec.message()));
  }
  RETURN_IF_ERROR(internal::FsyncPath(dir_));
  RETURN_IF_ERROR(internal::WriteCurrentSnapshot(dir_, name));
  // The new snapshot holds every entry read; entries are idempotent, so a
  // crash before this trim only replays them.
  rocksdb::WriteBatch trim;
  for (const auto& [id, entry] : log) trim.Delete(id);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &trim), absl::StrCat(dir_, "/log: trim")));
  snapshot_name_ = name;
  log_entries_ = 0;
  fs::remove_all(old_dir, ec);
  return absl::OkStatus();
}

absl::Status CatalogImpl::Upsert(std::span<const ItemUpsert> items) {
  for (size_t i = 0; i < items.size(); ++i) {
    RETURN_IF_ERROR(ValidateItem(items[i], i, manifest_));
  }
  if (items.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  // Durable first: one synced batch in the log.
  rocksdb::WriteBatch batch;
  for (const ItemUpsert& item : items) {
    batch.Put(item.item_id,
              internal::EncodeItemLogUpsert(manifest_.item_codes, manifest_.dim,
                                            item.cpe, item.keys));
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &batch), absl::StrCat(dir_, "/log: upsert")));
  log_entries_ += items.size();

  const SnapshotImpl& cur = *current_;
  auto snap = std::make_shared<SnapshotImpl>();
  snap->version_ = cur.version_ + 1;
  std::vector<uint32_t> written;
  const uint64_t live = cur.index_.size();
  const uint64_t dead = cur.rows_ - live;
  const bool full = cur.rows_ + items.size() > state_->arena->capacity();
  const bool compact = dead > live && dead > options_.min_headroom_rows;
  if (full || compact) {
    // A new arena: copy the live rows in row order, then append.
    auto state = std::make_shared<ArenaState>();
    const size_t capacity = CapacityFor(live + items.size());
    state->arena = std::make_unique<scoring::ItemArena>(Layout(), capacity);
    state->row_ids.resize(capacity);
    const size_t row_bytes = state->arena->layout().row_bytes();
    uint32_t row = 0;
    for (uint32_t r = 0; r < cur.rows_; ++r) {
      if (!cur.live_[r]) continue;
      std::memcpy(state->arena->mutable_row_data(row),
                  cur.state_->arena->row_data(r), row_bytes);
      state->row_ids[row] = cur.state_->row_ids[r];
      ++row;
    }
    snap->state_ = state;
    snap->rows_ = row;
    snap->live_.assign(capacity, 0);
    std::fill_n(snap->live_.begin(), row, 1);
    snap->index_.reserve(live + items.size());
    for (uint32_t r = 0; r < row; ++r) snap->index_[state->row_ids[r]] = r;
  } else {
    snap->state_ = state_;
    snap->rows_ = cur.rows_;
    snap->live_ = cur.live_;
    snap->index_ = cur.index_;
  }
  ArenaState& state = *std::const_pointer_cast<ArenaState>(snap->state_);
  for (const ItemUpsert& item : items) {
    const uint32_t row = snap->rows_;
    RETURN_IF_ERROR(FromScoring(state.arena->SetRow(row, item.cpe, item.keys),
                                absl::StrCat(dir_, ": arena")));
    state.row_ids[row] = item.item_id;
    auto it = snap->index_.find(item.item_id);
    if (it != snap->index_.end()) {
      snap->live_[it->second] = 0;
      snap->index_.erase(it);
    }
    snap->index_.emplace(state.row_ids[row], row);
    snap->live_[row] = 1;
    ++snap->rows_;
    written.push_back(row);
  }
  state.arena->Publish(snap->rows_);
  const bool new_arena = snap->state_ != state_;
  // On a new arena the main index is rebuilt, reusing cur's trained IVF
  // quantizer when the catalogue size barely changed.
  RETURN_IF_ERROR(BuildAnn(snap.get(), &cur));
  if (new_arena) {
    state_ = std::const_pointer_cast<ArenaState>(snap->state_);
    written.clear();
  }
  Publish(std::move(snap), written);
  MaybeCheckpointLocked();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CatalogImpl::Delete(
    std::span<const std::string> item_ids) {
  absl::MutexLock lock(&mu_);
  const SnapshotImpl& cur = *current_;
  absl::flat_hash_set<absl::string_view> existing;
  for (const std::string& id : item_ids) {
    if (cur.index_.contains(id)) existing.insert(id);
  }
  if (existing.empty()) return 0;
  rocksdb::WriteBatch batch;
  for (absl::string_view id : existing) {
    batch.Put(rocksdb::Slice(id.data(), id.size()),
              internal::EncodeItemLogTombstone());
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &batch), absl::StrCat(dir_, "/log: delete")));
  log_entries_ += existing.size();
  auto snap = std::make_shared<SnapshotImpl>();
  snap->state_ = cur.state_;
  snap->rows_ = cur.rows_;
  snap->live_ = cur.live_;
  snap->index_ = cur.index_;
  snap->version_ = cur.version_ + 1;
  for (absl::string_view id : existing) {
    auto it = snap->index_.find(id);
    snap->live_[it->second] = 0;
    snap->index_.erase(it);
  }
  RETURN_IF_ERROR(BuildAnn(snap.get(), &cur));
  current_ = snap;
  SetPublished(snap);
  MaybeCheckpointLocked();
  return existing.size();
}

void CatalogImpl::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
  if (listener_) listener_(*current_, {});
}

}  // namespace

absl::StatusOr<std::unique_ptr<ItemCatalog>> ItemCatalog::Open(
    const std::string& dir, const ModelManifest& manifest,
    const ItemCatalogOptions& options) {
  auto catalog = std::make_unique<CatalogImpl>(dir, manifest, options);
  RETURN_IF_ERROR(catalog->Load());
  return std::unique_ptr<ItemCatalog>(std::move(catalog));
}

}  // namespace embsum::store
