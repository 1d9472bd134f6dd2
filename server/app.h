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
#include <string>

#include "absl/time/time.h"
#include "scoring/dtype.h"
#include "server/server.h"
#include "store/item_catalog.h"

namespace embsum::server {

struct DemoOptions {
  uint64_t users = 1000;
  uint64_t items = 5000;
  uint32_t dim = 64;
  uint32_t user_codes = 8;
  uint32_t item_codes = 4;
  uint64_t seed = 1;
};

struct AppOptions {
  std::string data_dir;
  // Builds a synthetic model into a temporary data directory (removed at
  // exit) instead of opening data_dir.
  bool demo = false;
  DemoOptions demo_shape;
  // auto | cpu | cuda.
  std::string backend = "auto";
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
};

// Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean
// shutdown, 1 when start-up failed (the reason is logged).
int RunApp(const AppOptions& options);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_APP_H_
