// The CUDA scorer's device copies of host item arenas (scoring/cuda
// internal; includes the CUDA runtime header through cuda_util.h).
//
// A mirror is one cudaMalloc of the arena's capacity rows. Rows appended to
// the host arena since the last call are uploaded before a mirror is handed
// out; Sync re-uploads rows changed in place. Mirrors are kept in a
// MirrorCache (scoring/internal/mirror_cache.h) keyed by the arena's
// identity, up to `max_mirrors` at once: the arenas of an old and a new
// model, both serving during a reload, each keep theirs. Whoever holds a
// mirror (a request in flight) keeps it alive after it leaves the cache.
//
// Thread-safety: every method may be called concurrently; uploads are
// serialised on one upload stream.
#ifndef EMBSUM_SCORING_CUDA_DEVICE_MIRROR_H_
#define EMBSUM_SCORING_CUDA_DEVICE_MIRROR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "scoring/cuda/cuda_util.h"
#include "scoring/internal/mirror_cache.h"
#include "scoring/item_arena.h"
#include "scoring/status.h"

namespace embsum::scoring::cuda_internal {

// Device copy of one host ItemArena.
struct DeviceArena {
  uint64_t identity = 0;  // ItemArena::identity() of the source
  ArenaLayout layout;
  size_t capacity = 0;
  size_t row_bytes = 0;
  DeviceBuffer data;
  // Rows [0, synced_rows) match the host arena. Written under the upload
  // mutex.
  std::atomic<size_t> synced_rows{0};
};

class DeviceMirrors {
 public:
  DeviceMirrors(int device, size_t max_mirrors)
      : device_(device), cache_(max_mirrors) {}
  Status Init() { return upload_stream_.Create(); }

  // The mirror of `arena` with at least its first arena.size() rows
  // uploaded; made (a full upload) when the cache has none.
  Status Get(const ItemArena& arena, std::shared_ptr<DeviceArena>* out);
  // Re-uploads `rows` of `arena` (changed in place) where its mirror has
  // them, then catches up with appended rows; mirrors it whole when there
  // is no mirror yet.
  Status Sync(const ItemArena& arena, std::span<const uint32_t> rows);

  // Identities of the arenas mirrored now, most recently used first.
  std::vector<uint64_t> Identities() const { return cache_.Identities(); }

 private:
  // The cached mirror of `arena`, or null.
  std::shared_ptr<DeviceArena> Find(const ItemArena& arena) const;
  // Enqueues the upload of rows [synced_rows, size). Requires upload_mu_.
  Status CatchUpLocked(DeviceArena& mirror, const ItemArena& arena,
                       size_t size);
  // Enqueues the upload of rows [begin, end) on the upload stream.
  Status UploadRows(DeviceArena& mirror, const ItemArena& arena, size_t begin,
                    size_t end);

  const int device_;
  internal::MirrorCache<DeviceArena> cache_;
  // Serialises uploads; guards upload_stream_ and synced_rows writes.
  std::mutex upload_mu_;
  Stream upload_stream_;
};

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_DEVICE_MIRROR_H_
