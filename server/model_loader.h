// Opens the data directory embsum-server serves, at start-up and on every
// hot reload (SIGHUP, or a poll that sees the directory replaced, e.g. by
// `embsum-ingest --force`). A reload opens and checks the new directory
// completely beside the model in service and attaches the scorer's item
// mirror to it before anything is swapped: a missing, partial or corrupt
// directory is refused with the reason logged and counted, and the previous
// model keeps serving.
//
// Which directory is "new": embsum-ingest builds a fresh tree and renames it
// over DATA_DIR, so a replaced directory is a different inode. A reload of
// an unchanged directory does nothing (reopening it would also collide with
// the RocksDB lock this process already holds). Writes acknowledged on the
// replaced model after the ingest and before the reload are dropped with it:
// ingest replaces the whole model. The app never drops them in silence: a
// guard (SetGuard) refuses a same-version directory while the model in
// service holds online writes, and the reload line counts what another
// version drops (docs/operations.md, "Without the log: what a reload
// drops"); with the write log the new model applies them from the log.
//
// Thread-compatible: one thread (the app's signal loop) calls Load/Reload.
#ifndef EMBSUM_SERVER_MODEL_LOADER_H_
#define EMBSUM_SERVER_MODEL_LOADER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "metrics/metrics.h"
#include "scoring/scorer.h"
#include "server/backend.h"
#include "server/serving_model.h"
#include "store/data_dir.h"

namespace embsum::server {

class ModelLoader {
 public:
  // scorer and registry (may be null: no metrics) must outlive the loader
  // and every model it returns. Registers
  // embsum_model_reloads_total{result="ok"|"failed"} and
  // embsum_model_reload_failing (1 while the directory on disk is one this
  // loader refused, else 0). Every model it opens (start-up and each
  // reload) is also measured for the scorer's dispatch (DispatchScorer in
  // server/backend.h) before it is returned, unless dispatch.budget is zero.
  ModelLoader(std::string data_dir, store::DataDirOptions options,
              scoring::Scorer* scorer, metrics::Registry* registry,
              ScorerDispatchOptions dispatch = {});

  // The start-up model: opened, scorer attached and its dispatch measured.
  // Errors as DataDir::Open.
  absl::StatusOr<std::shared_ptr<const ServingModel>> Load();

  enum class Outcome {
    kReloaded,   // `model` is the new model, ready to publish
    kUnchanged,  // the directory is the one in service
    kFailed,     // `status` says why; keep serving the current model
  };
  struct Reload {
    Outcome outcome = Outcome::kUnchanged;
    std::shared_ptr<const ServingModel> model;
    absl::Status status;
  };
  // Called with each newly opened directory (before the scorer is
  // attached to it); a non-OK status refuses it as a failed open would be
  // (kFailed with that status, counted, not retried by polls). Null: every
  // directory that opens is accepted.
  void SetGuard(std::function<absl::Status(const store::DataDir&)> guard) {
    guard_ = std::move(guard);
  }

  // force: retry a directory whose last reload failed (SIGHUP does; a poll
  // does not, so a bad directory is reported once, not every interval).
  Reload ReloadIfChanged(bool force);

 private:
  struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const Identity&) const = default;
  };

  // DispatchScorer on a model just opened; failures are logged.
  void MeasureDispatch(const store::DataDir& dir);

  std::string data_dir_;
  store::DataDirOptions options_;
  scoring::Scorer* scorer_;
  ScorerDispatchOptions dispatch_;
  metrics::Counter* reloads_ok_ = nullptr;
  metrics::Counter* reloads_failed_ = nullptr;
  metrics::Gauge* failing_ = nullptr;
  std::optional<Identity> serving_;
  std::optional<Identity> failed_;
  uint64_t generation_ = 0;
  std::function<absl::Status(const store::DataDir&)> guard_;
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_MODEL_LOADER_H_
