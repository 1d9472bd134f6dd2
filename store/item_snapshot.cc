// The published view of the item catalogue and its queries (see
// store/internal/item_catalog_impl.h for how the catalogue is split).
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/internal/item_catalog_impl.h"

namespace embsum::store::internal {

std::span<const uint8_t> SnapshotImpl::live() const {
  std::call_once(flat_once_, [this] {
    flat_live_.resize(rows_);
    live_.CopyTo(0, rows_, flat_live_.data());
  });
  return flat_live_;
}

absl::Status SnapshotImpl::AnnCandidates(const scoring::UserView& user,
                                         const AnnQuery& query,
                                         std::vector<uint32_t>* rows) const {
  rows->clear();
  const scoring::ArenaLayout& layout = state_->arena->layout();
  if (user.dim != layout.dim || user.user_codes == 0 ||
      user.upe.size() != size_t{user.user_codes} * user.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("AnnCandidates: user embedding is ", user.upe.size(),
                     " values for m*d = ", user.user_codes, "*", user.dim,
                     ", catalogue dim is ", layout.dim));
  }
  if (!ann_enabled_) {
    return absl::FailedPreconditionError(
        "AnnCandidates: the ANN index is disabled (AnnOptions::enabled)");
  }
  const uint32_t k = query.k;
  if (k == 0 || map_.empty()) return absl::OkStatus();
  // The query: the user's mean UPE row (the index holds each item's mean
  // CPE row; see ItemSnapshot::AnnCandidates).
  std::vector<float> mean(user.dim, 0.0f);
  for (uint32_t i = 0; i < user.user_codes; ++i) {
    const float* a = user.upe.data() + size_t{i} * user.dim;
    for (uint32_t x = 0; x < user.dim; ++x) mean[x] += a[x];
  }
  for (float& v : mean) v /= static_cast<float>(user.user_codes);
  absl::flat_hash_map<uint32_t, float> best;
  if (main_ann_ != nullptr) {
    // Rows deleted since the main index was built still sit in it:
    // over-fetch by their number so k live rows remain.
    const size_t dead = main_ann_->items() - main_live_;
    const size_t per_query = size_t{k} + dead;
    best.reserve(per_query * 2);
    RETURN_IF_ERROR(main_ann_->Search(mean, 1, per_query, query.nprobe,
                                      search_threads_, &best));
  }
  for (const auto& segment : tail_ann_) {
    // Segments are small exact indexes of recent rows whose dead count is
    // not kept: fetch every row of a segment (the flat search scores them
    // all anyway).
    const size_t per_query = segment->items();
    RETURN_IF_ERROR(segment->Search(mean, 1, per_query, query.nprobe,
                                    search_threads_, &best));
  }
  std::vector<std::pair<float, uint32_t>> hits;
  hits.reserve(best.size());
  for (const auto& [row, score] : best) {
    if (IsLive(row)) hits.emplace_back(score, row);
  }
  size_t keep = std::min<size_t>(k, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + keep, hits.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first
                                                : a.second < b.second;
                    });
  rows->reserve(keep);
  for (size_t i = 0; i < keep; ++i) rows->push_back(hits[i].second);
  return absl::OkStatus();
}

ItemSnapshot::AnnShape SnapshotImpl::ann_shape() const {
  AnnShape shape;
  if (main_ann_ != nullptr) {
    shape.ivf = main_ann_->is_ivf();
    shape.lists = main_ann_->lists();
    shape.items = main_ann_->items();
  }
  return shape;
}

}  // namespace embsum::store::internal
