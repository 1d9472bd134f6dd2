// Host-only interface of the CUDA scorer: callers see plain C++ (no CUDA
// headers). Implemented in scoring/cuda/*.cu; built when a CUDA compiler is
// found (target embsum::scoring_cuda, macro EMBSUM_HAVE_CUDA=1 for users).
#ifndef EMBSUM_SCORING_CUDA_CUDA_SCORER_H_
#define EMBSUM_SCORING_CUDA_CUDA_SCORER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "scoring/scorer.h"
#include "scoring/status.h"

namespace embsum::scoring {

struct CudaScorerOptions {
  int device = 0;
  // CUDA streams (one per concurrent in-flight batch) with pinned buffers.
  int streams = 4;
  // Dynamic batching: while every stream is busy, Score calls that arrive
  // within this window (or until a stream frees up) are scored in one
  // launch; a call that finds a free stream runs at once, so batching adds
  // no latency at low load. 0 disables batching.
  uint32_t batch_window_us = 100;
  // Largest number of requests fused into one launch.
  uint32_t max_batch = 256;
  // Arenas mirrored on the device at once (keyed by ItemArena::identity()).
  // 2 lets the old and the new model both serve during a hot reload (or an
  // old snapshot's arena finish its requests after a compaction) without
  // re-uploading in turns; each costs one arena's capacity of device memory
  // while it is cached.
  int max_mirrors = 2;
  // Checking aid: fill device outputs with NaN / -1 before every launch so
  // that an output the kernel failed to write cannot pass as a result.
  // Costs one memset per launch.
  bool poison_outputs = false;
  // Tuning and checking aid (benchmarks/gpu): when >= 0, replaces the fast
  // kernel's load, prepare or epilogue mode (LaunchPlan in
  // scoring/cuda/launch_plan.h) in every launch. -1 keeps the defaults.
  int load_mode = -1;
  int prepare_mode = -1;
  int epilogue_mode = -1;
};

// True when a CUDA device can be used; otherwise *why (if non-null) says
// why not ("no CUDA device", driver error text).
bool CudaDeviceAvailable(std::string* why = nullptr);

// Creates a CUDA scorer; Unavailable when no device. The scorer mirrors the
// arenas it is given on the device (uploaded on first use or by SyncArena),
// up to max_mirrors of them.
Status MakeCudaScorer(const CudaScorerOptions& options,
                      std::unique_ptr<Scorer>* out);

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_CUDA_CUDA_SCORER_H_
