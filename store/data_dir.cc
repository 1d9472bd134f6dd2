#include "store/data_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "store/internal/artifact.h"
#include "store/internal/file_util.h"
#include "store/internal/item_files.h"
#include "store/internal/progress.h"
#include "store/internal/status_util.h"
#include "store/internal/user_db.h"

namespace embsum::store {
namespace {

namespace fs = std::filesystem;

constexpr char kManifestFile[] = "manifest.json";
constexpr char kUsersDir[] = "users";
constexpr char kItemsDir[] = "items";

absl::Status FsError(const std::error_code& ec, const fs::path& path,
                     absl::string_view what) {
  return absl::InternalError(
      absl::StrCat(path.string(), ": ", what, ": ", ec.message()));
}

// Writes the item snapshot and an empty item log under `items_dir`.
absl::Status BuildItems(const std::string& items_dir,
                        const ModelArtifact& artifact,
                        const IngestOptions& options) {
  const ModelManifest& m = artifact.manifest;
  std::error_code ec;
  fs::create_directory(items_dir, ec);
  if (ec) return FsError(ec, items_dir, "create");
  const std::string name = internal::SnapshotName(1);
  ASSIGN_OR_RETURN(auto writer, internal::SnapshotWriter::Create(
                                    absl::StrCat(items_dir, "/", name), m));
  const size_t elements = size_t{m.item_codes} * m.dim;
  std::vector<float> cpe(elements);
  std::vector<float> keys(artifact.keys ? elements : 0);
  internal::Progress progress(options.progress, "items",
                              artifact.item_ids.size(),
                              options.progress_interval_s);
  for (uint64_t row = 0; row < artifact.item_ids.size(); ++row) {
    const std::string& id = artifact.item_ids[row];
    artifact.cpe->ReadRow(row, cpe);
    RETURN_IF_ERROR(
        CheckFiniteRow(cpe, m.dim, artifact.cpe->name(), row, "item", id));
    if (artifact.keys) {
      artifact.keys->ReadRow(row, keys);
      RETURN_IF_ERROR(
          CheckFiniteRow(keys, m.dim, artifact.keys->name(), row, "item", id));
    }
    RETURN_IF_ERROR(writer->Add(id, cpe, keys));
    progress.Advance(1);
  }
  RETURN_IF_ERROR(writer->Finish());
  progress.Done();
  RETURN_IF_ERROR(internal::WriteCurrentSnapshot(items_dir, name));

  std::string log_path = absl::StrCat(items_dir, "/", internal::kItemLogDir);
  rocksdb::Options log_options;
  log_options.create_if_missing = true;
  log_options.error_if_exists = true;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(internal::FromRocksDb(
      rocksdb::DB::Open(log_options, log_path, &raw), log_path));
  std::unique_ptr<rocksdb::DB> log(raw);
  RETURN_IF_ERROR(internal::FromRocksDb(log->Close(), log_path));
  return internal::FsyncPath(items_dir);
}

// Removes build directories of ingests whose process is gone.
void RemoveStaleTemporaries(const fs::path& parent, const std::string& base) {
  std::error_code ec;
  const std::string prefixes[] = {absl::StrCat(".", base, ".ingest-"),
                                  absl::StrCat(".", base, ".old-")};
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    for (const std::string& prefix : prefixes) {
      if (name.rfind(prefix, 0) != 0) continue;
      int pid = 0;
      if (!absl::SimpleAtoi(name.substr(prefix.size()), &pid) || pid <= 0) {
        continue;
      }
      if (pid == getpid()) continue;
      if (::kill(pid, 0) != 0 && errno == ESRCH) {
        fs::remove_all(entry.path(), ec);
      }
    }
  }
}

// Replaces `target` (an existing directory) by `fresh` atomically where the
// file system supports RENAME_EXCHANGE; `old` receives the previous tree.
absl::Status SwapIn(const fs::path& fresh, const fs::path& target,
                    const fs::path& old) {
  if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(),
                  RENAME_EXCHANGE) == 0) {
    // `fresh` now holds the previous tree.
    std::error_code ec;
    fs::rename(fresh, old, ec);
    if (ec) return FsError(ec, fresh, "rename");
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
    return internal::ErrnoError(errno, target.string(), "rename (exchange)");
  }
  // No atomic exchange here: two renames, a short window without `target`.
  std::error_code ec;
  fs::rename(target, old, ec);
  if (ec) return FsError(ec, target, "rename");
  fs::rename(fresh, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::rename(old, target, ignored);
    return FsError(ec, fresh, "rename");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(
    const std::string& path, const DataDirOptions& options,
    const DataDirTestingHooks& testing) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": not a data directory (create one with embsum-ingest)"));
  }
  const std::string manifest_path = absl::StrCat(path, "/", kManifestFile);
  auto text = internal::ReadFileToString(manifest_path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        text.status().message(), " (not a complete data directory)"));
  }
  auto manifest = ParseManifest(*text, manifest_path);
  if (!manifest.ok()) return absl::DataLossError(manifest.status().message());
  std::unique_ptr<DataDir> dir(new DataDir());
  dir->manifest_ = *manifest;
  const std::string shard_path = absl::StrCat(path, "/", kShardFile);
  if (fs::exists(shard_path, ec)) {
    ASSIGN_OR_RETURN(std::string shard_text,
                     internal::ReadFileToString(shard_path));
    ASSIGN_OR_RETURN(dir->shard_, ParseShardSpec(shard_text, shard_path));
  }
  ASSIGN_OR_RETURN(
      dir->users_,
      UserStore::Open(absl::StrCat(path, "/", kUsersDir), dir->manifest_,
                      options.users, testing.users));
  ASSIGN_OR_RETURN(
      dir->items_,
      ItemCatalog::Open(absl::StrCat(path, "/", kItemsDir), dir->manifest_,
                        options.items, testing.items));
  return dir;
}

absl::Status Ingest(const IngestOptions& options) {
  if (options.model_dir.empty() || options.data_dir.empty()) {
    return absl::InvalidArgumentError("both model_dir and data_dir are needed");
  }
  std::error_code ec;
  fs::path target = fs::absolute(options.data_dir, ec).lexically_normal();
  if (ec) return FsError(ec, options.data_dir, "resolve");
  if (target.filename().empty()) target = target.parent_path();
  const bool exists = fs::exists(target, ec);
  if (exists && !options.force) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.string(),
        ": already exists; pass --force to replace it (it is left as is)"));
  }
  if (exists && !fs::is_directory(target, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(target.string(), ": exists and is not a directory"));
  }
  // --force replaces data directories only: never a model directory, a
  // home directory or anything else that happens to be named.
  if (exists && !fs::is_empty(target, ec) &&
      !(fs::is_regular_file(target / kManifestFile, ec) &&
        fs::is_directory(target / kUsersDir, ec) &&
        fs::is_directory(target / kItemsDir, ec))) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.string(),
        ": exists and is not a data directory (no manifest.json, users/, "
        "items/); refusing to replace it"));
  }
  const fs::path model = fs::absolute(options.model_dir, ec).lexically_normal();
  const std::string model_str = model.string() + "/";
  const std::string target_str = target.string() + "/";
  if (model_str.rfind(target_str, 0) == 0 ||
      target_str.rfind(model_str, 0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data_dir ", target.string(), " and model_dir ",
                     model.string(), " must not contain each other"));
  }
  RETURN_IF_ERROR(ValidateShardSpec(options.shard));
  // Everything but the values is checked before anything is written.
  ASSIGN_OR_RETURN(ModelArtifact artifact,
                   ModelArtifact::Open(options.model_dir));
  artifact.user_shard = options.shard;

  const fs::path parent = target.parent_path();
  const std::string base = target.filename().string();
  fs::create_directories(parent, ec);
  if (ec) return FsError(ec, parent, "create");
  RemoveStaleTemporaries(parent, base);
  const fs::path tmp = parent / absl::StrCat(".", base, ".ingest-", getpid());
  const fs::path old = parent / absl::StrCat(".", base, ".old-", getpid());
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) return FsError(ec, tmp, "create");

  absl::Status s = internal::BuildUserDatabase(
      (tmp / kUsersDir).string(), (tmp / "users.sst").string(), artifact,
      options.progress, options.progress_interval_s, options.user_dtype);
  if (s.ok()) s = BuildItems((tmp / kItemsDir).string(), artifact, options);
  if (s.ok()) {
    s = internal::WriteFileDurably((tmp / kManifestFile).string(),
                                   ManifestToJson(artifact.manifest));
  }
  if (s.ok()) {
    s = internal::WriteFileDurably((tmp / kShardFile).string(),
                                   ShardSpecToJson(options.shard));
  }
  if (s.ok()) s = internal::FsyncPath(tmp.string());
  if (s.ok()) {
    if (exists) {
      s = SwapIn(tmp, target, old);
    } else {
      fs::rename(tmp, target, ec);
      if (ec) s = FsError(ec, tmp, "rename");
    }
  }
  if (s.ok()) s = internal::FsyncPath(parent.string());
  fs::remove_all(s.ok() ? old : tmp, ec);
  return s;
}

absl::Status CheckArtifact(const IngestOptions& options) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("model_dir is needed");
  }
  ASSIGN_OR_RETURN(ModelArtifact artifact,
                   ModelArtifact::Open(options.model_dir));
  const ModelManifest& m = artifact.manifest;
  // One pass per kind: the embedding and the second matrix of a row are
  // checked together, so the first bad row is reported whichever file
  // holds it.
  auto check = [&](const char* kind, const std::vector<std::string>& ids,
                   const NpyArray& first, const NpyArray* second,
                   uint32_t codes) -> absl::Status {
    std::vector<float> a(size_t{codes} * m.dim);
    std::vector<float> b(second ? a.size() : 0);
    internal::Progress progress(options.progress, kind, ids.size(),
                                options.progress_interval_s);
    for (uint64_t row = 0; row < ids.size(); ++row) {
      first.ReadRow(row, a);
      RETURN_IF_ERROR(
          CheckFiniteRow(a, m.dim, first.name(), row, kind, ids[row]));
      if (second) {
        second->ReadRow(row, b);
        RETURN_IF_ERROR(
            CheckFiniteRow(b, m.dim, second->name(), row, kind, ids[row]));
      }
      progress.Advance(1);
    }
    progress.Done();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check("user", artifact.user_ids, *artifact.upe,
                        artifact.queries.get(), m.user_codes));
  return check("item", artifact.item_ids, *artifact.cpe, artifact.keys.get(),
               m.item_codes);
}

}  // namespace embsum::store
