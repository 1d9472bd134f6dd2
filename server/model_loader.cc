#include "server/model_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "server/backend.h"
#include "server/log.h"

namespace embsum::server {
namespace {

// Owns a descriptor until released.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace

void ModelLoader::MeasureDispatch(const store::DataDir& dir) {
  // A failed measurement keeps the kernel in use: worth a log line, not a
  // refused model.
  if (absl::Status s = DispatchScorer(scorer_, dir, dispatch_); !s.ok()) {
    LogEvent("warning", "scorer_dispatch_failed",
             {{"message", std::string(s.message())}});
  }
}

ModelLoader::ModelLoader(std::string data_dir, store::DataDirOptions options,
                         scoring::Scorer* scorer, metrics::Registry* registry,
                         ScorerDispatchOptions dispatch)
    : data_dir_(std::move(data_dir)),
      options_(std::move(options)),
      scorer_(scorer),
      dispatch_(std::move(dispatch)) {
  if (registry != nullptr) {
    metrics::Family<metrics::Counter>& reloads = registry->AddCounter(
        "embsum_model_reloads_total",
        "Hot reloads of the data directory by result (failed: the previous "
        "model kept serving).",
        {"result"});
    reloads_ok_ = &reloads.WithLabels({"ok"});
    reloads_failed_ = &reloads.WithLabels({"failed"});
    failing_ = &registry
                    ->AddGauge("embsum_model_reload_failing",
                               "1 while the data directory on disk is one "
                               "the last reload refused (the previous model "
                               "keeps serving), else 0.")
                    .WithLabels({});
  }
}

absl::StatusOr<std::shared_ptr<const ServingModel>> ModelLoader::Load() {
  struct stat st;
  if (::stat(data_dir_.c_str(), &st) != 0) {
    const int error = errno;
    return absl::FailedPreconditionError(
        absl::StrCat(data_dir_, ": ", std::strerror(error)));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<store::DataDir> dir,
                   store::DataDir::Open(data_dir_, options_));
  RETURN_IF_ERROR(AttachScorer(scorer_, &dir->items()));
  MeasureDispatch(*dir);
  serving_ = Identity{st.st_dev, st.st_ino};
  return std::make_shared<const ServingModel>(std::move(dir), ++generation_);
}

ModelLoader::Reload ModelLoader::ReloadIfChanged(bool force) {
  Reload result;
  // The directory is opened once and read through its descriptor: a
  // reload reads exactly the tree it identified even if another ingest
  // renames a newer one into place meanwhile, and the path differs from
  // the one the model in service was opened with (RocksDB refuses a second
  // open of a path this process holds, whatever the inode).
  Fd fd(::open(data_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st;
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0) {
    const int error = errno;
    // A poll that finds no directory is most likely between the two
    // renames of a replacement without RENAME_EXCHANGE: look again next
    // time. SIGHUP reports it.
    if (!force) return result;
    result.outcome = Outcome::kFailed;
    result.status = absl::FailedPreconditionError(
        absl::StrCat(data_dir_, ": ", std::strerror(error)));
    if (reloads_failed_ != nullptr) reloads_failed_->Increment();
    return result;
  }
  const Identity identity{st.st_dev, st.st_ino};
  if (failing_ != nullptr) failing_->Set(failed_ == identity ? 1 : 0);
  if (serving_ == identity) return result;
  if (!force && failed_ == identity) return result;

  const std::string alias = absl::StrCat("/proc/self/fd/", fd.get());
  const std::string path =
      ::access(alias.c_str(), F_OK) == 0 ? alias : data_dir_;
  absl::Status status;
  absl::StatusOr<std::unique_ptr<store::DataDir>> dir =
      store::DataDir::Open(path, options_);
  if (dir.ok() && guard_) status = guard_(**dir);
  if (dir.ok() && status.ok()) {
    // Before the model is published: the scorer's mirror (CUDA) of the
    // new arena is complete when the first request reaches it.
    status = AttachScorer(scorer_, &(*dir)->items());
    if (status.ok()) MeasureDispatch(**dir);
  } else if (!dir.ok()) {
    status = dir.status();
  }
  if (!status.ok()) {
    failed_ = identity;
    if (reloads_failed_ != nullptr) reloads_failed_->Increment();
    if (failing_ != nullptr) failing_->Set(1);
    result.outcome = Outcome::kFailed;
    // Messages name the files by the path operators know.
    result.status = absl::Status(
        status.code(),
        absl::StrReplaceAll(status.message(), {{alias, data_dir_}}));
    return result;
  }
  serving_ = identity;
  failed_.reset();
  if (reloads_ok_ != nullptr) reloads_ok_->Increment();
  if (failing_ != nullptr) failing_->Set(0);
  result.outcome = Outcome::kReloaded;
  result.model = std::make_shared<const ServingModel>(
      *std::move(dir), ++generation_, fd.release());
  return result;
}

}  // namespace embsum::server
