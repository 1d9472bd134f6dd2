// The published view of the item catalogue and its queries (see
// store/internal/item_catalog_impl.h for how the catalogue is split).
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/internal/item_catalog_impl.h"

namespace embsum::store::internal {

absl::Status FromScoring(const scoring::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.code()),
                      absl::StrCat(context, ": ", s.message()));
}

std::span<const uint8_t> SnapshotImpl::live() const {
  std::call_once(flat_once_, [this] {
    flat_live_.resize(rows_);
    live_.CopyTo(0, rows_, flat_live_.data());
  });
  return flat_live_;
}

absl::Status SnapshotImpl::AnnCandidates(const scoring::UserView& user,
                                         uint32_t k,
                                         std::vector<uint32_t>* rows) const {
  rows->clear();
  const scoring::ArenaLayout& layout = state_->arena->layout();
  if (user.dim != layout.dim ||
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
  if (k == 0 || map_.empty()) return absl::OkStatus();
  // Each item has n vectors, and some indexed rows may be dead since the
  // index was built: over-fetch vectors so k distinct live rows remain.
  const size_t per_query = size_t{2} * k * layout.item_codes;
  absl::flat_hash_map<uint32_t, float> best;
  if (main_ann_ != nullptr) {
    RETURN_IF_ERROR(main_ann_->Search(user.upe, user.user_codes, per_query,
                                      search_threads_, &best));
  }
  for (const auto& segment : tail_ann_) {
    RETURN_IF_ERROR(segment->Search(user.upe, user.user_codes, per_query,
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

}  // namespace embsum::store::internal
