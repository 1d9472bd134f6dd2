#include "store/user_store.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "store/embedding_rules.h"
#include "store/internal/ids.h"
#include "store/internal/status_util.h"
#include "store/internal/user_db.h"
#include "store/internal/user_record.h"

namespace embsum::store {
namespace internal {

static_assert(std::endian::native == std::endian::little,
              "user records store raw little-endian floats");

rocksdb::DBOptions UserDbOptions() {
  rocksdb::DBOptions o;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 4;
  o.max_manifest_file_size = 64 << 20;
  // Never fail an open because of a torn last WAL record: a crash while
  // writing an unacknowledged batch loses only that batch.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  return o;
}

std::vector<rocksdb::ColumnFamilyDescriptor> UserDbColumnFamilies(
    const UserStoreOptions& options) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  if (options.bloom_bits_per_key > 0) {
    table.filter_policy.reset(
        rocksdb::NewBloomFilterPolicy(options.bloom_bits_per_key, false));
  }
  table.whole_key_filtering = true;
  // Point lookups: a hash index inside each data block skips binary search.
  table.data_block_index_type =
      rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  table.data_block_hash_table_util_ratio = 0.75;
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.block_size = 16 << 10;

  rocksdb::ColumnFamilyOptions users;
  users.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Embeddings are dense floats that barely compress; skip the CPU cost.
  users.compression = rocksdb::kNoCompression;
  users.bottommost_compression = rocksdb::kNoCompression;
  users.level_compaction_dynamic_level_bytes = true;

  rocksdb::ColumnFamilyOptions summaries = users;
  rocksdb::ColumnFamilyOptions meta;
  return {{kUsersCf, users}, {kSummariesCf, summaries}, {kMetaCf, meta}};
}

std::string EncodeCount(uint64_t count) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(count >> (8 * i));
  return out;
}

bool DecodeCount(absl::string_view value, uint64_t* count) {
  if (value.size() != 8) return false;
  uint64_t c = 0;
  for (int i = 0; i < 8; ++i) {
    c |= uint64_t{static_cast<unsigned char>(value[i])} << (8 * i);
  }
  *count = c;
  return true;
}

namespace {

// Writes sorted key/value pairs into numbered SST files of at most
// kMaxSstBytes each.
class SstSequence {
 public:
  static constexpr uint64_t kMaxSstBytes = uint64_t{256} << 20;

  SstSequence(const rocksdb::Options& options, std::string prefix)
      : options_(options), prefix_(std::move(prefix)) {}

  absl::Status Put(absl::string_view key, absl::string_view value) {
    if (writer_ != nullptr && writer_->FileSize() >= kMaxSstBytes) {
      RETURN_IF_ERROR(Close());
    }
    if (writer_ == nullptr) {
      std::string path = absl::StrCat(prefix_, "-", files_.size(), ".sst");
      writer_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(),
                                                         options_);
      RETURN_IF_ERROR(FromRocksDb(writer_->Open(path), path));
      files_.push_back(path);
    }
    return FromRocksDb(writer_->Put(rocksdb::Slice(key.data(), key.size()),
                                    rocksdb::Slice(value.data(), value.size())),
                       files_.back());
  }

  absl::Status Close() {
    if (writer_ == nullptr) return absl::OkStatus();
    absl::Status s = FromRocksDb(writer_->Finish(), files_.back());
    writer_.reset();
    return s;
  }

  const std::vector<std::string>& files() const { return files_; }

 private:
  rocksdb::Options options_;
  std::string prefix_;
  std::unique_ptr<rocksdb::SstFileWriter> writer_;
  std::vector<std::string> files_;
};

}  // namespace

absl::Status BuildUserDatabase(const std::string& path,
                               const std::string& scratch_dir,
                               const ModelArtifact& artifact,
                               Progress::Sink progress, double interval_s,
                               std::optional<scoring::DType> user_dtype) {
  const ModelManifest& m = artifact.manifest;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs =
      UserDbColumnFamilies(UserStoreOptions{});
  auto options_for = [&](size_t cf) {
    return rocksdb::Options(UserDbOptions(), cfs[cf].options);
  };
  std::error_code ec;
  std::filesystem::create_directories(scratch_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(scratch_dir, ": create: ", ec.message()));
  }

  // Users, in key order (SstFileWriter requires sorted keys).
  const std::vector<std::string>& ids = artifact.user_ids;
  std::vector<uint32_t> order;
  order.reserve(ids.size());
  for (uint32_t row = 0; row < ids.size(); ++row) {
    if (HoldsUser(artifact.user_shard, ids[row])) order.push_back(row);
  }
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return ids[a] < ids[b]; });
  SstSequence users(options_for(0), scratch_dir + "/users");
  const size_t elements = size_t{m.user_codes} * m.dim;
  const scoring::DType artifact_dtype =
      artifact.upe->dtype() == NpyDType::kFloat16 ? scoring::DType::kFloat16
                                                  : scoring::DType::kFloat32;
  const scoring::DType dtype = user_dtype.value_or(artifact_dtype);
  // The artifact's bytes are stored as they are when the types agree.
  const bool copy_raw = dtype == artifact_dtype;
  std::vector<float> upe(elements);
  std::vector<float> queries(artifact.queries ? elements : 0);
  Progress users_progress(progress, "users", order.size(), interval_s);
  for (uint32_t row : order) {
    artifact.upe->ReadRow(row, upe);
    RETURN_IF_ERROR(CheckFiniteRow(upe, m.dim, artifact.upe->name(), row,
                                   "user", ids[row]));
    if (artifact.queries) {
      artifact.queries->ReadRow(row, queries);
      RETURN_IF_ERROR(CheckFiniteRow(queries, m.dim, artifact.queries->name(),
                                     row, "user", ids[row]));
    }
    if (copy_raw) {
      RETURN_IF_ERROR(users.Put(
          ids[row],
          EncodeUserRecordRaw(
              m.user_codes, m.dim, artifact.upe->dtype(),
              artifact.upe->row_data(row),
              artifact.queries ? artifact.queries->row_data(row) : nullptr)));
    } else {
      const std::string where = absl::StrCat(artifact.upe->name(), ": row ",
                                             row, " (user '", ids[row], "')");
      RETURN_IF_ERROR(CheckUserValuesFit(upe, m.dim, dtype, "upe", where));
      RETURN_IF_ERROR(
          CheckUserValuesFit(queries, m.dim, dtype, "queries", where));
      RETURN_IF_ERROR(users.Put(
          ids[row],
          EncodeUserRecord(m.user_codes, m.dim, upe, queries, dtype)));
    }
    users_progress.Advance(1);
  }
  RETURN_IF_ERROR(users.Close());
  users_progress.Done();

  std::vector<const SummaryLine*> summaries;
  for (const SummaryLine& s : artifact.summaries) {
    if (!s.summary.empty() && HoldsUser(artifact.user_shard, s.user_id)) {
      summaries.push_back(&s);
    }
  }
  std::sort(summaries.begin(), summaries.end(),
            [](const SummaryLine* a, const SummaryLine* b) {
              return a->user_id < b->user_id;
            });
  SstSequence summary_files(options_for(1), scratch_dir + "/summaries");
  for (const SummaryLine* s : summaries) {
    RETURN_IF_ERROR(summary_files.Put(s->user_id, s->summary));
  }
  RETURN_IF_ERROR(summary_files.Close());

  // Create the database and ingest all files in one atomic step.
  rocksdb::Options db_options(UserDbOptions(), cfs[0].options);
  db_options.create_if_missing = true;
  db_options.error_if_exists = true;
  db_options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocksDb(
      rocksdb::DB::Open(db_options, path, cfs, &handles, &raw), path));
  std::unique_ptr<rocksdb::DB> db(raw);
  auto close = [&]() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    handles.clear();
    rocksdb::Status s = db->Close();
    db.reset();
    return FromRocksDb(s, path);
  };
  std::vector<rocksdb::IngestExternalFileArg> args;
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = true;
  auto add_arg = [&](rocksdb::ColumnFamilyHandle* cf,
                     const std::vector<std::string>& files) {
    if (files.empty()) return;
    rocksdb::IngestExternalFileArg arg;
    arg.column_family = cf;
    arg.external_files = files;
    arg.options = ingest;
    args.push_back(std::move(arg));
  };
  add_arg(handles[0], users.files());
  add_arg(handles[1], summary_files.files());
  if (!args.empty()) {
    rocksdb::Status s = db->IngestExternalFiles(args);
    if (!s.ok()) {
      close().IgnoreError();
      return FromRocksDb(s, absl::StrCat(path, ": ingest SST files"));
    }
  }
  rocksdb::WriteBatch batch;
  batch.Put(handles[2], kMetaManifestKey, ManifestToJson(m));
  batch.Put(handles[2], kMetaUserCountKey, EncodeCount(order.size()));
  batch.Put(handles[2], kMetaUserDTypeKey,
            std::string(scoring::DTypeName(dtype)));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db->Write(wo, &batch);
  if (!s.ok()) {
    close().IgnoreError();
    return FromRocksDb(s, absl::StrCat(path, ": write meta"));
  }
  // Flush so the directory is self-contained without WAL replay.
  s = db->Flush(rocksdb::FlushOptions(), handles);
  if (!s.ok()) {
    close().IgnoreError();
    return FromRocksDb(s, absl::StrCat(path, ": flush"));
  }
  RETURN_IF_ERROR(close());
  std::filesystem::remove_all(scratch_dir, ec);
  return absl::OkStatus();
}

}  // namespace internal

namespace {

using internal::FromRocksDb;

absl::string_view AsView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

absl::Status ValidateUser(const UserUpsert& u, size_t index,
                          const ModelManifest& m, scoring::DType dtype) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user record ", index, " (\"", u.user_id.substr(0, 64), "\"): ", what));
  };
  if (absl::Status s = ValidateId(u.user_id); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("user record ", index, ": ", s.message()));
  }
  if (absl::Status s =
          CheckEmbeddingRecord(m, RecordKind::kUser, u.upe, u.queries);
      !s.ok()) {
    return error(s.message());
  }
  const std::string where = absl::StrCat("user record ", index, " (\"",
                                         u.user_id.substr(0, 64), "\")");
  RETURN_IF_ERROR(CheckUserValuesFit(u.upe, m.dim, dtype, "upe", where));
  RETURN_IF_ERROR(
      CheckUserValuesFit(u.queries, m.dim, dtype, "queries", where));
  if (u.summary && u.summary->size() > kMaxSummaryBytes) {
    return error(absl::StrCat("summary is ", u.summary->size(),
                              " bytes (at most ", kMaxSummaryBytes, ")"));
  }
  if (u.summary && !IsValidUtf8(*u.summary)) {
    return error("summary is not valid UTF-8");
  }
  return absl::OkStatus();
}

class RocksDbUserStore : public UserStore {
 public:
  RocksDbUserStore(std::string path, ModelManifest manifest,
                   std::unique_ptr<rocksdb::DB> db,
                   std::vector<rocksdb::ColumnFamilyHandle*> handles,
                   uint64_t count, scoring::DType dtype,
                   std::function<void()> between_reads, uint64_t log_sequence,
                   uint64_t online_writes)
      : between_reads_for_testing_(std::move(between_reads)),
        path_(std::move(path)),
        manifest_(std::move(manifest)),
        dtype_(dtype),
        db_(std::move(db)),
        handles_(std::move(handles)),
        count_(count),
        log_sequence_(log_sequence),
        online_writes_(online_writes) {}

  ~RocksDbUserStore() override {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }

  absl::Status Get(std::string_view user_id,
                   UserEmbedding* out) const override {
    rocksdb::PinnableSlice value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), handles_[0],
                 rocksdb::Slice(user_id.data(), user_id.size()), &value);
    if (s.IsNotFound()) return UnknownUser(user_id);
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat(path_, ": get")));
    return DecodeUserRecord(AsView(value), manifest_.user_codes, manifest_.dim,
                            Describe(user_id), out);
  }

  void MultiGet(std::span<const std::string_view> user_ids,
                std::vector<UserEmbedding>* out,
                std::vector<absl::Status>* statuses) const override {
    const size_t n = user_ids.size();
    out->resize(n);
    statuses->assign(n, absl::OkStatus());
    if (n == 0) return;
    std::vector<rocksdb::Slice> keys;
    keys.reserve(n);
    for (std::string_view id : user_ids)
      keys.emplace_back(id.data(), id.size());
    std::vector<rocksdb::PinnableSlice> values(n);
    std::vector<rocksdb::Status> rs(n);
    db_->MultiGet(rocksdb::ReadOptions(), handles_[0], n, keys.data(),
                  values.data(), rs.data());
    for (size_t i = 0; i < n; ++i) {
      if (rs[i].IsNotFound()) {
        (*statuses)[i] = UnknownUser(user_ids[i]);
      } else if (!rs[i].ok()) {
        (*statuses)[i] = FromRocksDb(rs[i], absl::StrCat(path_, ": multiget"));
      } else {
        (*statuses)[i] =
            DecodeUserRecord(AsView(values[i]), manifest_.user_codes,
                             manifest_.dim, Describe(user_ids[i]), &(*out)[i]);
      }
    }
  }

  absl::StatusOr<std::vector<std::string>> SampleIds(size_t n) const override {
    std::vector<std::string> ids;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), handles_[0]));
    for (it->SeekToFirst(); it->Valid() && ids.size() < n; it->Next()) {
      ids.push_back(it->key().ToString());
    }
    RETURN_IF_ERROR(FromRocksDb(it->status(), absl::StrCat(path_, ": scan")));
    return ids;
  }

  absl::StatusOr<std::vector<std::string>> RandomSampleIds(
      size_t n, uint64_t seed) const override {
    // Reservoir sampling (each key kept with probability n / keys seen),
    // then a shuffle so that the order carries no key order.
    std::vector<std::string> ids;
    if (n == 0) return ids;
    std::mt19937_64 rng(seed);
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), handles_[0]));
    uint64_t seen = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++seen;
      if (ids.size() < n) {
        ids.push_back(it->key().ToString());
        continue;
      }
      const uint64_t slot =
          std::uniform_int_distribution<uint64_t>(0, seen - 1)(rng);
      if (slot < n) ids[slot] = it->key().ToString();
    }
    RETURN_IF_ERROR(FromRocksDb(it->status(), absl::StrCat(path_, ": scan")));
    std::shuffle(ids.begin(), ids.end(), rng);
    return ids;
  }

  absl::Status GetWithSummary(std::string_view user_id, UserEmbedding* out,
                              std::string* summary) const override {
    if (summary == nullptr) return Get(user_id, out);
    // One snapshot for both column families.
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.snapshot();
    rocksdb::Slice key(user_id.data(), user_id.size());
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(ro, handles_[0], key, &value);
    if (s.IsNotFound()) return UnknownUser(user_id);
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat(path_, ": get")));
    RETURN_IF_ERROR(DecodeUserRecord(AsView(value), manifest_.user_codes,
                                     manifest_.dim, Describe(user_id), out));
    if (between_reads_for_testing_) between_reads_for_testing_();
    value.Reset();
    s = db_->Get(ro, handles_[1], key, &value);
    if (s.IsNotFound()) {
      summary->clear();
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat(path_, ": get summary")));
    summary->assign(value.data(), value.size());
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> GetSummary(
      std::string_view user_id) const override {
    rocksdb::Slice key(user_id.data(), user_id.size());
    rocksdb::PinnableSlice value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), handles_[1], key, &value);
    if (s.ok()) return value.ToString();
    if (!s.IsNotFound()) {
      return FromRocksDb(s, absl::StrCat(path_, ": get summary"));
    }
    rocksdb::PinnableSlice user;
    s = db_->Get(rocksdb::ReadOptions(), handles_[0], key, &user);
    if (s.IsNotFound()) return UnknownUser(user_id);
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat(path_, ": get")));
    return std::string();
  }

  using UserStore::Upsert;
  absl::Status Upsert(std::span<const UserUpsert> users,
                      const WriteStamp& stamp) override {
    for (size_t i = 0; i < users.size(); ++i) {
      RETURN_IF_ERROR(ValidateUser(users[i], i, manifest_, dtype_));
    }
    if (users.empty() && stamp.log_sequence == 0) return absl::OkStatus();
    absl::MutexLock lock(&write_mu_);
    // Which ids are new (for the exact count)?
    absl::flat_hash_map<absl::string_view, bool> is_new;
    std::vector<rocksdb::Slice> keys;
    for (const UserUpsert& u : users) {
      if (is_new.emplace(u.user_id, false).second) {
        keys.emplace_back(u.user_id);
      }
    }
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> rs(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), handles_[0], keys.size(), keys.data(),
                  values.data(), rs.data());
    uint64_t added = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (rs[i].IsNotFound()) {
        ++added;
      } else if (!rs[i].ok()) {
        return FromRocksDb(rs[i], absl::StrCat(path_, ": upsert lookup"));
      }
    }
    rocksdb::WriteBatch batch;
    for (const UserUpsert& u : users) {
      batch.Put(handles_[0], u.user_id,
                EncodeUserRecord(manifest_.user_codes, manifest_.dim, u.upe,
                                 u.queries, dtype_));
      if (u.summary) {
        if (u.summary->empty()) {
          batch.Delete(handles_[1], u.user_id);
        } else {
          batch.Put(handles_[1], u.user_id, *u.summary);
        }
      }
    }
    uint64_t count = count_.load(std::memory_order_relaxed) + added;
    batch.Put(handles_[2], internal::kMetaUserCountKey,
              internal::EncodeCount(count));
    const uint64_t online =
        online_writes_.load(std::memory_order_relaxed) + users.size();
    if (!users.empty()) {
      batch.Put(handles_[2], internal::kMetaOnlineWritesKey,
                internal::EncodeCount(online));
    }
    if (stamp.log_sequence != 0) {
      batch.Put(handles_[2], internal::kMetaLogSequenceKey,
                internal::EncodeCount(stamp.log_sequence));
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(
        FromRocksDb(db_->Write(wo, &batch), absl::StrCat(path_, ": upsert")));
    count_.store(count, std::memory_order_relaxed);
    online_writes_.store(online, std::memory_order_relaxed);
    if (stamp.log_sequence != 0) {
      log_sequence_.store(stamp.log_sequence, std::memory_order_release);
    }
    return absl::OkStatus();
  }

  uint64_t applied_log_sequence() const override {
    return log_sequence_.load(std::memory_order_acquire);
  }
  uint64_t online_writes() const override {
    return online_writes_.load(std::memory_order_relaxed);
  }

  uint64_t size() const override {
    return count_.load(std::memory_order_relaxed);
  }

  scoring::DType user_dtype() const override { return dtype_; }

 private:
  static std::string Describe(std::string_view user_id) {
    return absl::StrCat("\"", internal::Sv(user_id.substr(0, 64)), "\"");
  }
  static absl::Status UnknownUser(std::string_view user_id) {
    return absl::NotFoundError(absl::StrCat(
        "unknown user \"", internal::Sv(user_id.substr(0, 64)), "\""));
  }

  const std::function<void()> between_reads_for_testing_;
  const std::string path_;
  const ModelManifest manifest_;
  const scoring::DType dtype_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  absl::Mutex write_mu_;
  std::atomic<uint64_t> count_;
  std::atomic<uint64_t> log_sequence_;
  std::atomic<uint64_t> online_writes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<UserStore>> UserStore::Open(
    const std::string& path, const ModelManifest& manifest,
    const UserStoreOptions& options, const UserStoreTestingHooks& testing) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(path) / "CURRENT", ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": no users database here (missing CURRENT); run embsum-ingest"));
  }
  rocksdb::Options db_options(internal::UserDbOptions(),
                              rocksdb::ColumnFamilyOptions());
  db_options.create_if_missing = false;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path,
                                        internal::UserDbColumnFamilies(options),
                                        &handles, &raw);
  if (!s.ok()) {
    absl::Status st =
        FromRocksDb(s, absl::StrCat(path, ": open users database"));
    if (st.code() != absl::StatusCode::kDataLoss) {
      st = absl::FailedPreconditionError(st.message());
    }
    return st;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  auto fail = [&](absl::Status st) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();
    return st;
  };
  std::string value;
  s = db->Get(rocksdb::ReadOptions(), handles[2], internal::kMetaManifestKey,
              &value);
  if (!s.ok()) {
    return fail(absl::DataLossError(
        absl::StrCat(path, ": meta/manifest: ", s.ToString())));
  }
  auto stored = ParseManifest(value, absl::StrCat(path, ": meta/manifest"));
  if (!stored.ok()) return fail(absl::DataLossError(stored.status().message()));
  if (ManifestToJson(*stored) != ManifestToJson(manifest)) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        path, ": users database was built for model \"", stored->model_version,
        "\" (", stored->user_codes, "x", stored->dim,
        "), not for the manifest given (\"", manifest.model_version, "\")")));
  }
  s = db->Get(rocksdb::ReadOptions(), handles[2], internal::kMetaUserCountKey,
              &value);
  uint64_t count = 0;
  if (!s.ok() || !internal::DecodeCount(value, &count)) {
    return fail(absl::DataLossError(
        absl::StrCat(path, ": meta/user_count missing or malformed")));
  }
  scoring::DType dtype = scoring::DType::kFloat32;  // before user_dtype
  s = db->Get(rocksdb::ReadOptions(), handles[2], internal::kMetaUserDTypeKey,
              &value);
  if (s.ok()) {
    const std::optional<scoring::DType> parsed = scoring::ParseDType(value);
    if (!parsed || *parsed == scoring::DType::kInt8) {
      return fail(absl::DataLossError(absl::StrCat(
          path, ": meta/user_dtype is '", internal::Sv(value.substr(0, 16)),
          "'; want fp32, fp16 or bf16")));
    }
    dtype = *parsed;
  } else if (!s.IsNotFound()) {
    return fail(absl::DataLossError(
        absl::StrCat(path, ": meta/user_dtype: ", s.ToString())));
  }
  // Counters that directories from before them lack (0).
  uint64_t counters[2] = {0, 0};
  const char* counter_keys[2] = {internal::kMetaLogSequenceKey,
                                 internal::kMetaOnlineWritesKey};
  for (int i = 0; i < 2; ++i) {
    s = db->Get(rocksdb::ReadOptions(), handles[2], counter_keys[i], &value);
    if (s.IsNotFound()) continue;
    if (!s.ok() || !internal::DecodeCount(value, &counters[i])) {
      return fail(absl::DataLossError(absl::StrCat(
          path, ": meta/", counter_keys[i], " unreadable or malformed")));
    }
  }
  return std::unique_ptr<UserStore>(new RocksDbUserStore(
      path, manifest, std::move(db), std::move(handles), count, dtype,
      testing.between_reads, counters[0], counters[1]));
}

}  // namespace embsum::store
