// The durable side of the item catalogue: opening the snapshot files and
// replaying the log (Load), and folding the log into a new snapshot
// (Checkpoint). See store/internal/item_catalog_impl.h for the split.
#include <algorithm>
#include <filesystem>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/write_batch.h"
#include "store/internal/file_util.h"
#include "store/internal/item_catalog_impl.h"
#include "store/internal/status_util.h"

namespace embsum::store::internal {

namespace fs = std::filesystem;

CatalogImpl::~CatalogImpl() {
  if (log_) log_->Close().PermitUncheckedError();
}

absl::Status CatalogImpl::ReadLog(
    const rocksdb::Snapshot* snapshot,
    std::vector<std::pair<std::string, ItemLogEntry>>* entries) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(log_->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string key = it->key().ToString();
    if (!key.empty() && key[0] == kItemLogMetaPrefix) {
      if (key == kItemLogSequenceKey || key == kItemLogOnlineWritesKey) {
        uint64_t value = 0;
        if (!absl::SimpleAtoi(
                absl::string_view(it->value().data(), it->value().size()),
                &value)) {
          return absl::DataLossError(absl::StrCat(
              dir_, "/log: counter \"", key.substr(1), "\" is malformed"));
        }
        (key == kItemLogSequenceKey ? log_sequence_ : online_writes_)
            .store(value, std::memory_order_release);
      }
      continue;
    }
    ItemLogEntry entry;
    RETURN_IF_ERROR(DecodeItemLog(
        absl::string_view(it->value().data(), it->value().size()), manifest_,
        absl::StrCat("\"", key.substr(0, 64), "\" in ", dir_, "/log"), &entry));
    entries->emplace_back(std::move(key), std::move(entry));
  }
  return FromRocksDb(it->status(), absl::StrCat(dir_, "/log: read"));
}

absl::Status CatalogImpl::Load() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(snapshot_name_, ReadCurrentSnapshot(dir_));
  std::string snapshot_dir = absl::StrCat(dir_, "/", snapshot_name_);
  ASSIGN_OR_RETURN(auto reader, SnapshotReader::Open(snapshot_dir, manifest_));

  std::string log_path = absl::StrCat(dir_, "/", kItemLogDir);
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
  std::vector<std::pair<std::string, ItemLogEntry>> log;
  RETURN_IF_ERROR(ReadLog(nullptr, &log));
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

  std::shared_ptr<ArenaState> state = NewArena(CapacityFor(rows));
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

  auto snap = std::make_shared<SnapshotImpl>();
  snap->state_ = state;
  snap->rows_ = rows;
  snap->live_ = LiveMask(state->arena->capacity(), rows);
  std::vector<uint32_t> all(rows);
  for (uint32_t r = 0; r < rows; ++r) all[r] = r;
  snap->map_ = RowMap::Build(state->row_ids, all);
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

absl::Status CatalogImpl::Checkpoint() {
  absl::MutexLock lock(&mu_);
  checkpoint_status_ = CheckpointLocked();
  retry_checkpoint_at_ = 0;
  return checkpoint_status_;
}

absl::Status CatalogImpl::last_checkpoint_status() const {
  absl::MutexLock lock(&mu_);
  return checkpoint_status_;
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
  std::vector<std::pair<std::string, ItemLogEntry>> log;
  RETURN_IF_ERROR(ReadLog(nullptr, &log));
  if (log.empty()) {
    log_entries_ = 0;
    return absl::OkStatus();
  }
  const std::string old_dir = absl::StrCat(dir_, "/", snapshot_name_);
  ASSIGN_OR_RETURN(auto reader, SnapshotReader::Open(old_dir, manifest_));
  const std::string name = SnapshotName(SnapshotGeneration(snapshot_name_) + 1);
  const std::string tmp = absl::StrCat(dir_, "/", name, ".tmp");
  const std::string final_dir = absl::StrCat(dir_, "/", name);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  RETURN_IF_ERROR(Fault("checkpoint:write"));
  ASSIGN_OR_RETURN(auto writer, SnapshotWriter::Create(tmp, manifest_));
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
    if (!entry.tombstone) {
      RETURN_IF_ERROR(writer->Add(id, entry.cpe, entry.keys));
    }
  }
  RETURN_IF_ERROR(writer->Finish());
  // `name` is never CURRENT here (CURRENT is snapshot_name_), so a
  // directory by that name is what an earlier failed checkpoint left.
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(final_dir, ": rename: ", ec.message()));
  }
  RETURN_IF_ERROR(FsyncPath(dir_));
  RETURN_IF_ERROR(WriteCurrentSnapshot(dir_, name));
  // CURRENT names the new snapshot from here on, whatever fails next: the
  // next checkpoint must start from it (and write generation + 1).
  snapshot_name_ = name;
  fs::remove_all(old_dir, ec);
  // The new snapshot holds every entry read; entries are idempotent, so a
  // crash or an error before this trim only replays them (and the next
  // checkpoint folds them again).
  RETURN_IF_ERROR(Fault("checkpoint:trim"));
  rocksdb::WriteBatch trim;
  for (const auto& [id, entry] : log) trim.Delete(id);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(
      FromRocksDb(log_->Write(wo, &trim), absl::StrCat(dir_, "/log: trim")));
  log_entries_ = 0;
  return absl::OkStatus();
}

}  // namespace embsum::store::internal
