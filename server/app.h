// embsum-server as a function: opens (or, with demo, builds) a data
// directory, picks the scorer, serves gRPC and /metrics, reloads the data
// directory on SIGHUP (server/model_loader.h), and on SIGTERM or SIGINT goes
// NOT_SERVING, drains the calls in flight and returns 0.
// tools/server/main.cc maps flags onto AppOptions.
//
// Not thread-safe: call once per process (it owns the signal mask).
#ifndef EMBSUM_SERVER_APP_H_
#define EMBSUM_SERVER_APP_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "scoring/dtype.h"
#include "server/backend.h"
#include "server/server.h"
#include "server/write_log.h"
#include "store/item_catalog.h"

namespace embsum::server {

// Builds a demo model under `root` (a fresh temporary directory) and sets
// `data_dir` to the data directory it made. The executable supplies it
// (tools/server/demo_model.h), so the server library does not link the
// synthetic-data generator.
using DemoBuilder =
    std::function<absl::Status(const std::string& root, std::string* data_dir)>;

struct AppOptions {
  std::string data_dir;
  // Builds a model with build_demo into a temporary directory (removed at
  // exit) and serves it instead of opening data_dir.
  bool demo = false;
  DemoBuilder build_demo;
  // auto | cpu | cuda.
  std::string backend = "auto";
  // The CPU scorer's kernel family: "auto" (dispatch by measurement on
  // each loaded model) or a family name that forces it (--isa).
  std::string isa = "auto";
  // Dispatch where the server runs: the families are timed on every
  // loaded model's arena within this budget (--dispatch_budget).
  ScorerDispatchOptions dispatch = [] {
    ScorerDispatchOptions o;
    o.budget = absl::Milliseconds(300);
    return o;
  }();
  scoring::DType item_dtype = scoring::DType::kFloat32;
  // ANN index for Retrieve on the GPU where FAISS has GPU support (kAuto:
  // when a device is present) or on the CPU (kOff).
  store::AnnOptions::Gpu ann_gpu = store::AnnOptions::Gpu::kAuto;
  // The per-interest ANN index's storage (--ann_code_index).
  store::AnnOptions::CodeIndex ann_code_index =
      store::AnnOptions::CodeIndex::kInt8;
  // HOST:PORT for GET /metrics; empty disables it.
  std::string metrics_listen = "0.0.0.0:9464";
  ServerOptions server;
  // Threads a BLAS call may use once the model is loaded (FAISS's ANN
  // search): 1 keeps OpenBLAS's busy-waiting threads off the scoring cores
  // (server/runtime_info.h); 0 leaves OpenBLAS's default (all cores).
  int blas_threads = 1;
  // Hot reload: SIGHUP always checks data_dir; with a positive interval the
  // server also checks it that often and reloads when the directory was
  // replaced (embsum-ingest --force). Zero: SIGHUP only.
  absl::Duration reload_interval = absl::ZeroDuration();
  // After SIGTERM: time spent NOT_SERVING while still serving, so load
  // balancers stop sending before the ports close.
  absl::Duration shutdown_delay = absl::ZeroDuration();
  // Then: how long calls in flight may take before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(30);
  // The write log (server/write_log.h); unset: writes are applied locally.
  std::optional<WriteLogOptions> write_log;
  // With the log: SERVING at start-up once at most this many messages
  // behind (server/log_applier.h).
  uint64_t write_log_serving_lag = 0;
  // Without the log, a reload to a directory of the same model version is
  // refused while the model in service holds online writes (they would be
  // lost); true lets it go on, counting what it drops.
  bool reload_drops_online_writes = false;
};

// Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean
// shutdown, 1 when start-up failed (the reason is logged).
int RunApp(const AppOptions& options);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_APP_H_
