// Scorer selection for --backend=auto|cpu|cuda. "cuda" exists when the
// binary was built with embsum::scoring_cuda (EMBSUM_HAVE_CUDA); "auto"
// picks it when a device is usable, else the CPU scorer. Thread-safe.
#ifndef EMBSUM_SERVER_BACKEND_H_
#define EMBSUM_SERVER_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scoring/scorer.h"
#include "store/data_dir.h"
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
// cpu_isa: empty or "auto" lets the CPU scorer pick its kernel family by
// measurement (DispatchScorer); a family name (scoring/cpu_scorer.h) forces
// it: InvalidArgument for an unknown name, FailedPrecondition for one this
// CPU lacks. It applies only when the CPU scorer is made.
absl::StatusOr<BackendChoice> MakeScorer(std::string_view backend,
                                         int cpu_threads,
                                         std::string_view cpu_isa = "");

// Dispatch where the server runs (--dispatch_budget).
struct ScorerDispatchOptions {
  // Wall-clock budget of the measurement per load; zero disables it (the
  // scorer keeps the kernel it was made with).
  absl::Duration budget = absl::ZeroDuration();
  // Candidates per timed call: a Rank-sized request.
  uint32_t candidates = 500;
  // Tests only: see scoring::DispatchOptions::timer.
  std::function<double(std::string_view, const std::function<void()>&)> timer;
};

// Times the scorer's kernel families on `dir`'s item arena and served shape
// (the manifest's user_codes and user_queries) and keeps the fastest
// (Scorer::DispatchOn), then logs event=scorer_dispatch with every family's
// time and the kernel in use. Does nothing when options.budget is zero.
// Errors of the measurement are returned (the previous kernel stays).
absl::Status DispatchScorer(scoring::Scorer* scorer, const store::DataDir& dir,
                            const ScorerDispatchOptions& options);

// "avx512:2.613ms,avx2:4.020ms": the families of `info`, fastest first,
// each with the first quartile of its times (the race's ranking).
std::string FamilyTimesText(const scoring::KernelInfo& info);

// Keeps a scorer's mirror of the item arena (CUDA) in step with the
// catalogue: registers scorer->SyncArena as the catalogue's listener and
// syncs the current snapshot once. Errors of later syncs are logged.
absl::Status AttachScorer(scoring::Scorer* scorer, store::ItemCatalog* catalog);

// True when the binary includes the CUDA scorer.
bool BuiltWithCuda();

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_BACKEND_H_
