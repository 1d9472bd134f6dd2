#include "store/internal/flat_row_index.h"

#include <bit>

namespace embsum::store::internal {

FlatRowIndex::FlatRowIndex(const RowIds& ids, std::span<const uint32_t> rows)
    : size_(rows.size()) {
  if (rows.empty()) return;
  // At most half full: a miss ends within a probe or two.
  slots_.resize(std::bit_ceil(rows.size() * 2));
  mask_ = slots_.size() - 1;
  for (uint32_t row : rows) {
    const uint64_t hash = HashItemId(ids[row]);
    uint64_t i = hash & mask_;
    while (slots_[i].row != kNoRow) i = (i + 1) & mask_;
    slots_[i] = Slot{Tag(hash), row};
  }
}

uint32_t FlatRowIndex::Find(uint64_t hash, std::string_view id,
                            const RowIds& ids) const {
  if (slots_.empty()) return kNoRow;
  const uint32_t tag = Tag(hash);
  for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.row == kNoRow) return kNoRow;
    if (s.tag == tag && ids[s.row] == id) return s.row;
  }
}

void FlatRowIndex::PrefetchSlot(uint64_t hash) const {
  if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
}

uint32_t FlatRowIndex::FirstCandidate(uint64_t hash) const {
  if (slots_.empty()) return kNoRow;
  const Slot& s = slots_[hash & mask_];
  return s.tag == Tag(hash) ? s.row : kNoRow;
}

std::vector<uint32_t> FlatRowIndex::Rows() const {
  std::vector<uint32_t> rows;
  rows.reserve(size_);
  for (const Slot& s : slots_) {
    if (s.row != kNoRow) rows.push_back(s.row);
  }
  return rows;
}

}  // namespace embsum::store::internal
