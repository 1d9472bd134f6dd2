// Scorer selection for --backend=auto|cpu|cuda. "cuda" exists when the
// binary was built with embsum::scoring_cuda (EMBSUM_HAVE_CUDA); "auto"
// picks it when a device is usable, else the CPU scorer. Thread-safe.
#ifndef EMBSUM_SERVER_BACKEND_H_
#define EMBSUM_SERVER_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "scoring/scorer.h"
#include "store/item_catalog.h"

namespace embsum::server {

struct BackendChoice {
  std::unique_ptr<scoring::Scorer> scorer;
  // Why this backend ("requested", "no CUDA device: ...", "not built with
  // CUDA"): logged at start-up.
  std::string reason;
};

// InvalidArgument for an unknown name; Unavailable for --backend=cuda
// without a usable device or without CUDA support in the build.
// cpu_threads: the CPU scorer's threads for large candidate sets.
absl::StatusOr<BackendChoice> MakeScorer(std::string_view backend,
                                         int cpu_threads);

// Keeps a scorer's mirror of the item arena (CUDA) in step with the
// catalogue: registers scorer->SyncArena as the catalogue's listener and
// syncs the current snapshot once. Errors of later syncs are logged.
absl::Status AttachScorer(scoring::Scorer* scorer, store::ItemCatalog* catalog);

// True when the binary includes the CUDA scorer.
bool BuiltWithCuda();

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_BACKEND_H_
