// The published view of the item catalogue and its queries (see
// store/internal/item_catalog_impl.h for how the catalogue is split).
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

absl::Status SnapshotImpl::AnnCandidateLists(const scoring::UserView& user,
                                             const AnnQuery& query,
                                             AnnLists* lists) const {
  lists->mean.clear();
  lists->codes.clear();
  lists->recent.clear();
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
  if (map_.empty()) return absl::OkStatus();
  const uint32_t k = query.k;
  if (k > 0 && (main_ann_ != nullptr || !tail_ann_.empty())) {
    // The query: the user's mean UPE row (the index holds each item's mean
    // CPE row; see ItemSnapshot::AnnCandidates).
    std::vector<float> mean(user.dim, 0.0f);
    for (uint32_t i = 0; i < user.user_codes; ++i) {
      const float* a = user.upe.data() + size_t{i} * user.dim;
      for (uint32_t x = 0; x < user.dim; ++x) mean[x] += a[x];
    }
    for (float& v : mean) v /= static_cast<float>(user.user_codes);
    absl::flat_hash_map<uint32_t, float> best;
    // Rows deleted since the main index was built still sit in it:
    // over-fetch by their number so k live rows remain.
    if (main_ann_ != nullptr) {
      const size_t dead = main_ann_->items() - main_live_;
      const size_t per_query = size_t{k} + dead;
      best.reserve(per_query * 2);
      RETURN_IF_ERROR(main_ann_->Search(mean, 1, per_query, query.nprobe,
                                        search_threads_, &best));
    }
    for (const auto& segment : tail_ann_) {
      // Recent upserts compete by the same proxy. Segments are small exact
      // indexes whose dead count is not kept: fetch every row of a segment
      // (the flat search scores them all anyway).
      RETURN_IF_ERROR(segment->Search(mean, 1, segment->items(), query.nprobe,
                                      search_threads_, &best));
    }
    std::vector<std::pair<float, uint32_t>> hits;
    hits.reserve(best.size());
    for (const auto& [row, score] : best) {
      if (IsLive(row)) hits.emplace_back(score, row);
    }
    const size_t keep = std::min<size_t>(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + keep, hits.end(),
                      [](const auto& a, const auto& b) {
                        return a.first != b.first ? a.first > b.first
                                                  : a.second < b.second;
                      });
    lists->mean.reserve(keep);
    for (size_t i = 0; i < keep; ++i) lists->mean.push_back(hits[i].second);
  }
  if (query.codes > 0 && query.per_code > 0 && main_ann_ != nullptr &&
      main_ann_->has_codes()) {
    // The user's largest codes by norm: the score is at most the largest
    // single product a_i . b_j (docs/design.md section 2), and long codes
    // make the large products.
    const uint32_t m = user.user_codes;
    const uint32_t c = std::min(query.codes, m);
    std::vector<std::pair<float, uint32_t>> norms(m);
    for (uint32_t i = 0; i < m; ++i) {
      const float* a = user.upe.data() + size_t{i} * user.dim;
      float sq = 0;
      for (uint32_t x = 0; x < user.dim; ++x) sq += a[x] * a[x];
      norms[i] = {sq, i};
    }
    std::stable_sort(
        norms.begin(), norms.end(),
        [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<float> queries(size_t{c} * user.dim);
    for (uint32_t q = 0; q < c; ++q) {
      std::copy_n(user.upe.data() + size_t{norms[q].second} * user.dim,
                  user.dim, queries.data() + size_t{q} * user.dim);
    }
    // An item has n rows here, several of which may answer one code: fetch
    // more than per_code rows so that per_code distinct items remain, and
    // more again for rows deleted since the build.
    const size_t dead = main_ann_->items() - main_live_;
    const size_t raw_k =
        size_t{query.per_code} * std::min<uint32_t>(layout.item_codes, 2) +
        dead;
    std::vector<float> distances;
    std::vector<int64_t> labels;
    RETURN_IF_ERROR(main_ann_->SearchRaw(AnnIndex::Which::kCodes, queries, c,
                                         raw_k, query.code_nprobe,
                                         search_threads_, &distances, &labels));
    const size_t got = c > 0 ? labels.size() / c : 0;
    lists->codes.resize(c);
    absl::flat_hash_set<uint32_t> seen;
    for (uint32_t q = 0; q < c; ++q) {
      seen.clear();
      std::vector<uint32_t>& out = lists->codes[q];
      out.reserve(query.per_code);
      for (size_t i = 0; i < got && out.size() < query.per_code; ++i) {
        const int64_t label = labels[size_t{q} * got + i];
        if (label < 0) continue;
        const uint32_t row = static_cast<uint32_t>(label);
        if (!IsLive(row) || !seen.insert(row).second) continue;
        out.push_back(row);
      }
    }
  }
  // Recent upserts: every live row of the small exact segments.
  for (const auto& segment : tail_ann_) {
    for (uint32_t row = segment->begin(); row < segment->end(); ++row) {
      if (IsLive(row)) lists->recent.push_back(row);
    }
  }
  return absl::OkStatus();
}

absl::Status SnapshotImpl::AnnCandidates(const scoring::UserView& user,
                                         const AnnQuery& query,
                                         std::vector<uint32_t>* rows) const {
  rows->clear();
  AnnLists lists;
  RETURN_IF_ERROR(AnnCandidateLists(user, query, &lists));
  if (lists.codes.empty()) {
    // Mean-vector candidates only: up to k, best first, recent upserts
    // ranked among them by the same proxy.
    *rows = std::move(lists.mean);
    return absl::OkStatus();
  }
  absl::flat_hash_set<uint32_t> seen;
  auto add = [&](uint32_t row) {
    if (seen.insert(row).second) rows->push_back(row);
  };
  for (uint32_t row : lists.mean) add(row);
  for (const auto& list : lists.codes) {
    for (uint32_t row : list) add(row);
  }
  for (uint32_t row : lists.recent) add(row);
  return absl::OkStatus();
}

ItemSnapshot::AnnShape SnapshotImpl::ann_shape() const {
  AnnShape shape;
  if (main_ann_ != nullptr) {
    shape.ivf = main_ann_->is_ivf();
    shape.lists = main_ann_->lists();
    shape.probes = main_ann_->default_probes();
    shape.code_probes =
        std::min(main_ann_->default_probes(), main_ann_->code_lists());
    shape.items = main_ann_->items();
    shape.code_index = main_ann_->has_codes();
    shape.code_ivf = main_ann_->codes_ivf();
    shape.code_lists = main_ann_->code_lists();
    shape.code_rows = main_ann_->code_rows();
    shape.code_bytes = main_ann_->code_bytes();
  }
  return shape;
}

}  // namespace embsum::store::internal
