#include "scoring/cuda/device_mirror.h"

#include <algorithm>
#include <string>
#include <vector>

namespace embsum::scoring::cuda_internal {
namespace {

std::string Count(size_t n) { return std::to_string(n); }

bool SameLayout(const ArenaLayout& x, const ArenaLayout& y) {
  return x.item_codes == y.item_codes && x.dim == y.dim && x.dtype == y.dtype &&
         x.has_keys == y.has_keys;
}

}  // namespace

std::shared_ptr<DeviceArena> DeviceMirrors::Find(const ItemArena& arena) const {
  std::shared_ptr<DeviceArena> mirror = cache_.Find(arena.identity());
  // An identity belongs to one arena for good; the checks guard the cache
  // against a mirror made from some other arena by mistake.
  if (mirror != nullptr && mirror->capacity == arena.capacity() &&
      SameLayout(mirror->layout, arena.layout())) {
    return mirror;
  }
  return nullptr;
}

Status DeviceMirrors::Get(const ItemArena& arena,
                          std::shared_ptr<DeviceArena>* out) {
  const size_t size = arena.size();
  std::shared_ptr<DeviceArena> mirror = Find(arena);
  if (mirror != nullptr && mirror->synced_rows.load() >= size) {
    *out = std::move(mirror);
    return Status::Ok();
  }
  std::lock_guard<std::mutex> lock(upload_mu_);
  mirror = Find(arena);
  if (mirror == nullptr) {
    auto fresh = std::make_shared<DeviceArena>();
    fresh->identity = arena.identity();
    fresh->layout = arena.layout();
    fresh->capacity = arena.capacity();
    fresh->row_bytes = arena.layout().row_bytes();
    const size_t bytes = std::max<size_t>(fresh->capacity, 1) *
                         std::max<size_t>(fresh->row_bytes, 1);
    Status status = fresh->data.Reserve(bytes);
    if (status.code() == Status::Code::kResourceExhausted) {
      // Drop the other mirrors from the cache (each freed once requests in
      // flight let go of it) and try once more.
      cache_.Shrink(0).clear();
      EMBSUM_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
      status = fresh->data.Reserve(bytes);
    }
    if (!status.ok()) {
      return Status(status.code(),
                    "cuda scorer: cannot mirror an arena of " +
                        Count(fresh->capacity) + " rows x " +
                        Count(fresh->row_bytes) + " bytes on device " +
                        std::to_string(device_) + ": " + status.message());
    }
    mirror = std::move(fresh);
    EMBSUM_SCORING_RETURN_IF_ERROR(CatchUpLocked(*mirror, arena, size));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(upload_stream_.get()));
    cache_.Insert(arena.identity(), mirror).clear();
  } else {
    EMBSUM_SCORING_RETURN_IF_ERROR(CatchUpLocked(*mirror, arena, size));
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(upload_stream_.get()));
  }
  *out = std::move(mirror);
  return Status::Ok();
}

Status DeviceMirrors::Sync(const ItemArena& arena,
                           std::span<const uint32_t> rows) {
  const size_t size = arena.size();
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] >= arena.capacity()) {
      return Status::InvalidArgument(
          "cuda scorer: SyncArena: changed row " + Count(rows[i]) + " (entry " +
          Count(i) + ") beyond arena capacity " + Count(arena.capacity()));
    }
  }
  std::shared_ptr<DeviceArena> mirror = Find(arena);
  if (mirror == nullptr) {
    // New or replaced arena: mirror it whole (uploads every row).
    return Get(arena, &mirror);
  }
  std::lock_guard<std::mutex> lock(upload_mu_);
  // Changed rows below the synced prefix are uploaded again; rows beyond
  // it arrive with the catch-up of appended rows.
  const size_t synced = mirror->synced_rows.load();
  std::vector<uint32_t> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  size_t i = 0;
  while (i < sorted.size() && sorted[i] < synced) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + 1 &&
           sorted[j] < synced) {
      ++j;
    }
    EMBSUM_SCORING_RETURN_IF_ERROR(
        UploadRows(*mirror, arena, sorted[i], sorted[j - 1] + 1));
    i = j;
  }
  EMBSUM_SCORING_RETURN_IF_ERROR(CatchUpLocked(*mirror, arena, size));
  EMBSUM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(upload_stream_.get()));
  return Status::Ok();
}

Status DeviceMirrors::CatchUpLocked(DeviceArena& mirror, const ItemArena& arena,
                                    size_t size) {
  const size_t synced = mirror.synced_rows.load();
  if (size <= synced) return Status::Ok();
  EMBSUM_SCORING_RETURN_IF_ERROR(UploadRows(mirror, arena, synced, size));
  mirror.synced_rows.store(size);
  return Status::Ok();
}

Status DeviceMirrors::UploadRows(DeviceArena& mirror, const ItemArena& arena,
                                 size_t begin, size_t end) {
  if (end <= begin || mirror.row_bytes == 0) return Status::Ok();
  // Copy in slices so one huge pageable copy does not monopolize the
  // driver's staging buffers.
  constexpr size_t kSliceBytes = size_t{256} << 20;
  const size_t rows_per_slice =
      std::max<size_t>(1, kSliceBytes / mirror.row_bytes);
  for (size_t r = begin; r < end; r += rows_per_slice) {
    const size_t n = std::min(rows_per_slice, end - r);
    EMBSUM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        mirror.data.as<std::byte>() + r * mirror.row_bytes, arena.row_data(r),
        n * mirror.row_bytes, cudaMemcpyHostToDevice, upload_stream_.get()));
  }
  return Status::Ok();
}

}  // namespace embsum::scoring::cuda_internal
