#include "server/backend.h"

#include <atomic>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/status_util.h"

#ifdef EMBSUM_HAVE_CUDA
#include "scoring/cuda/cuda_scorer.h"
#endif

namespace embsum::server {

bool BuiltWithCuda() {
#ifdef EMBSUM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<BackendChoice> MakeScorer(std::string_view backend,
                                         int cpu_threads) {
  if (backend != "auto" && backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--backend='", std::string(backend), "': want auto, cpu or cuda"));
  }
  BackendChoice choice;
  if (backend == "cuda" || backend == "auto") {
#ifdef EMBSUM_HAVE_CUDA
    std::string why;
    if (scoring::CudaDeviceAvailable(&why)) {
      absl::Status s = ToAbslStatus(scoring::MakeCudaScorer(
          scoring::CudaScorerOptions{}, &choice.scorer));
      if (s.ok()) {
        choice.reason = backend == "cuda" ? "requested" : "CUDA device found";
        return choice;
      }
      why = std::string(s.message());
    }
    if (backend == "cuda") {
      return absl::UnavailableError(absl::StrCat("--backend=cuda: ", why));
    }
    choice.reason = absl::StrCat("no usable CUDA device: ", why);
#else
    if (backend == "cuda") {
      return absl::UnavailableError(
          "--backend=cuda: this binary was built without the CUDA scorer "
          "(no CUDA compiler at build time)");
    }
    choice.reason = "built without CUDA";
#endif
  } else {
    choice.reason = "requested";
  }
  choice.scorer =
      scoring::MakeCpuScorer(scoring::CpuScorerOptions{.threads = cpu_threads});
  return choice;
}

absl::Status AttachScorer(scoring::Scorer* scorer,
                          store::ItemCatalog* catalog) {
  // SetListener calls the listener once, synchronously, with the current
  // snapshot: that first sync's error fails start-up; later ones are logged.
  auto first = std::make_shared<std::optional<scoring::Status>>();
  auto first_done = std::make_shared<std::atomic<bool>>(false);
  catalog->SetListener(
      [scorer, first, first_done](const store::ItemSnapshot& snapshot,
                                  std::span<const uint32_t> rows) {
        const scoring::Status s = scorer->SyncArena(snapshot.arena(), rows);
        if (!first_done->exchange(true)) {
          *first = s;
          return;
        }
        if (!s.ok()) {
          LogEvent("error", "arena_sync_failed",
                   {{"backend", std::string(scorer->backend())},
                    {"rows", std::to_string(rows.size())},
                    {"message", s.message()}});
        }
      });
  if (first->has_value()) return ToAbslStatus(**first);
  // A catalogue that did not call back: sync the current snapshot here.
  first_done->store(true);
  return ToAbslStatus(scorer->SyncArena(catalog->Current()->arena(), {}));
}

}  // namespace embsum::server
