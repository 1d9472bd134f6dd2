#include "server/runtime_info.h"

#if EMBSUM_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace embsum::server {

BlasInfo GetBlasInfo() {
  BlasInfo info;
#if EMBSUM_HAVE_OPENBLAS
  if (const char* core = openblas_get_corename(); core != nullptr) {
    info.core = core;
  }
  if (const char* config = openblas_get_config(); config != nullptr) {
    info.config = config;
  }
  info.threads = openblas_get_num_threads();
#endif
  return info;
}

void LimitBlasThreads(int threads) {
#if EMBSUM_HAVE_OPENBLAS
  if (threads > 0) openblas_set_num_threads(threads);
#else
  (void)threads;
#endif
}

}  // namespace embsum::server
