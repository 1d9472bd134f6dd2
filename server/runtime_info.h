// What the process runs on, for the start-up log line and /metrics: the
// BLAS library's core (the kernels it picked for this CPU) and its thread
// count, and the limit the server puts on it. Thread-safe: the functions
// only read or set the libraries' own process-wide settings.
#ifndef EMBSUM_SERVER_RUNTIME_INFO_H_
#define EMBSUM_SERVER_RUNTIME_INFO_H_

#include <string>

namespace embsum::server {

struct BlasInfo {
  // OpenBLAS's openblas_get_corename() ("Haswell", "SkylakeX", "Zen"...),
  // or "none" when the binary has no OpenBLAS.
  std::string core = "none";
  // openblas_get_config(): version and build options; empty without it.
  std::string config;
  // Threads a BLAS call may use (openblas_get_num_threads()); 0 without it.
  int threads = 0;
};

BlasInfo GetBlasInfo();

// Caps the threads of BLAS calls (FAISS's ANN search multiplies matrices
// through OpenBLAS): 1 runs them on the calling worker, so OpenBLAS's own
// threads, which busy-wait for a while after each call, never compete with
// the scoring threads for the cores. threads <= 0 leaves the library's
// default. No-op without OpenBLAS.
void LimitBlasThreads(int threads);

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_RUNTIME_INFO_H_
