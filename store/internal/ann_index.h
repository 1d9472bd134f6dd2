// The FAISS index behind ItemSnapshot::AnnCandidates (store/ internal): one
// vector per item, the mean of its n CPE rows, for a range of arena rows,
// labelled by row. (mean_j b_j . mean_i a_i is the score under uniform
// attention: on datagen S1 it orders items far closer to the EmbSum score
// than the best single row does; docs/store.md.) d floats per item. Exact (flat
// inner product) for small catalogues, IVF above AnnOptions::flat_max_items.
// With GPU FAISS (AnnOptions::gpu, see ann_gpu.h) a copy is searched on the
// GPU; the CPU index stays, for searches the GPU cannot take (k above its
// limit) and after any GPU error (logged, then CPU for good).
// Thread-safe: immutable after Build; Search is const and may run
// concurrently.
#ifndef EMBSUM_STORE_INTERNAL_ANN_INDEX_H_
#define EMBSUM_STORE_INTERNAL_ANN_INDEX_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scoring/item_arena.h"
#include "store/internal/ann_gpu.h"
#include "store/item_catalog.h"

namespace faiss {
struct Index;
}

namespace embsum::store::internal {

class AnnIndex {
 public:
  // Indexes the live rows in [begin, end) of `arena`. `force_flat` builds an
  // exact index whatever the size (for the small tail of recent upserts).
  // With `trained` (an earlier IVF index of the same catalogue) its coarse
  // quantizer is reused instead of training again.
  static absl::StatusOr<std::shared_ptr<const AnnIndex>> Build(
      const scoring::ItemArena& arena, uint32_t begin, uint32_t end,
      std::span<const uint8_t> live, const AnnOptions& options, bool force_flat,
      const AnnIndex* trained);
  ~AnnIndex();

  uint32_t begin() const { return begin_; }
  uint32_t end() const { return end_; }
  // Items (rows) indexed.
  uint64_t items() const { return items_; }
  bool is_ivf() const { return ivf_; }
  // IVF lists (0 for a flat index).
  size_t lists() const { return lists_; }
  // Probes of a search with nprobe 0 (AnnOptions::ivf_probes, capped).
  size_t default_probes() const { return probes_; }
  // Whether searches go to a GPU copy (false after a GPU search failed).
  bool on_gpu() const { return gpu_ != nullptr && gpu_->usable(); }

  // The per-interest index (AnnOptions::code_index): every CPE row of each
  // item, labelled by the item's row. Built with the main index only (not
  // for force_flat segments); CPU only.
  bool has_codes() const { return codes_ != nullptr; }
  bool codes_ivf() const { return codes_ivf_; }
  size_t code_lists() const { return code_lists_; }
  uint64_t code_rows() const;
  // Bytes of the per-interest index's vectors and labels (codes and ids;
  // the coarse centroids and list overhead are not counted).
  uint64_t code_bytes() const { return code_bytes_; }

  // One search of either index, results left as FAISS gives them: for each
  // of the nq queries, k (score, label) pairs best first (label -1 where
  // fewer); labels are arena rows, possibly repeated for the per-interest
  // index (an item has n rows there). `nprobe` as in Search.
  enum class Which { kMean, kCodes };
  absl::Status SearchRaw(Which which, std::span<const float> queries,
                         uint32_t nq, size_t k, size_t nprobe, int threads,
                         std::vector<float>* distances,
                         std::vector<int64_t>* labels) const;

  // Searches the `k` nearest vectors of each of the nq queries (nq*d
  // floats) and keeps, per row, the best inner product in `best`.
  // `nprobe` > 0 overrides the IVF probe count of the build (CPU search;
  // capped at lists()); 0 keeps it. Ignored by a flat index.
  absl::Status Search(std::span<const float> queries, uint32_t nq, size_t k,
                      size_t nprobe, int threads,
                      absl::flat_hash_map<uint32_t, float>* best) const;
  // Same with the build's probe count.
  absl::Status Search(std::span<const float> queries, uint32_t nq, size_t k,
                      int threads,
                      absl::flat_hash_map<uint32_t, float>* best) const;

 private:
  AnnIndex() = default;
  static void BuildCodes(const scoring::ItemArena& arena,
                         const std::vector<uint32_t>& rows,
                         const AnnOptions& options, const AnnIndex* trained,
                         AnnIndex* ann);
  std::unique_ptr<faiss::Index> index_;  // CPU; source of `trained` clones
  std::unique_ptr<AnnGpuIndex> gpu_;     // null: CPU only
  std::unique_ptr<faiss::Index> codes_;  // per-interest; null: none
  bool codes_ivf_ = false;
  size_t code_lists_ = 0;
  uint64_t code_bytes_ = 0;
  uint32_t begin_ = 0;
  uint32_t end_ = 0;
  uint64_t items_ = 0;
  uint32_t item_codes_ = 0;
  bool ivf_ = false;
  size_t lists_ = 0;
  size_t probes_ = 0;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ANN_INDEX_H_
