#include "server/backend.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "scoring/cpu_scorer.h"
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
                                         int cpu_threads,
                                         std::string_view cpu_isa) {
  std::optional<scoring::CpuIsa> forced;
  if (!cpu_isa.empty() && cpu_isa != "auto") {
    forced = scoring::ParseCpuIsa(cpu_isa);
    if (!forced.has_value()) {
      std::string names;
      for (int i = 0;; ++i) {
        const std::string_view name =
            scoring::CpuIsaName(static_cast<scoring::CpuIsa>(i));
        if (name == "unknown") break;
        absl::StrAppend(&names, names.empty() ? "" : ", ", std::string(name));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "--isa='", std::string(cpu_isa), "': want auto or one of ", names));
    }
  }
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
  const scoring::CpuScorerOptions cpu_options{.threads = cpu_threads};
  if (forced.has_value()) {
    absl::Status s = ToAbslStatus(
        scoring::MakeCpuScorerWithIsa(cpu_options, *forced, &choice.scorer));
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("--isa: ", s.message()));
    }
    return choice;
  }
  choice.scorer = scoring::MakeCpuScorer(cpu_options);
  return choice;
}

std::string FamilyTimesText(const scoring::KernelInfo& info) {
  std::string out;
  for (const scoring::KernelFamilyTime& f : info.families) {
    absl::StrAppend(&out, out.empty() ? "" : ",", f.kernel, ":",
                    absl::StrFormat("%.3fms", f.seconds_q25 * 1e3));
  }
  return out;
}

absl::Status DispatchScorer(scoring::Scorer* scorer, const store::DataDir& dir,
                            const ScorerDispatchOptions& options) {
  if (options.budget <= absl::ZeroDuration()) return absl::OkStatus();
  const store::ModelManifest& manifest = dir.manifest();
  scoring::DispatchOptions dispatch;
  dispatch.user_codes = manifest.user_codes;
  dispatch.queries = manifest.user_queries;
  dispatch.candidates = options.candidates;
  dispatch.budget_seconds = absl::ToDoubleSeconds(options.budget);
  dispatch.timer = options.timer;
  const scoring::ItemArena& arena = dir.items().Current()->arena();
  RETURN_IF_ERROR(ToAbslStatus(scorer->DispatchOn(arena, dispatch)));
  const scoring::DType dtype = arena.layout().dtype;
  const scoring::KernelInfo info = scorer->kernel_info(dtype);
  if (info.families.empty()) return absl::OkStatus();  // one kernel only
  LogEvent("info", "scorer_dispatch",
           {{"dtype", std::string(scoring::DTypeName(dtype))},
            {"kernel", info.kernel},
            {"forced", info.forced ? "yes" : "no"},
            {"families", FamilyTimesText(info)},
            {"sample", info.dispatch_sample},
            {"stop", info.dispatch_stop},
            {"rounds", std::to_string(info.dispatch_rounds)},
            {"took", absl::StrFormat("%.1fms", info.dispatch_seconds * 1e3)}});
  return absl::OkStatus();
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
