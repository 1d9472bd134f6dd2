#include "store/internal/row_map.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace embsum::store::internal {

RowMap::RowMap() = default;

RowMap RowMap::Build(const RowIds& ids, std::span<const uint32_t> rows) {
  RowMap map;
  map.size_ = rows.size();
  if (!rows.empty())
    map.base_ = std::make_shared<const FlatRowIndex>(ids, rows);
  return map;
}

uint32_t RowMap::BaseFind(uint64_t hash, std::string_view id,
                          const RowIds& ids) const {
  return base_ != nullptr ? base_->Find(hash, id, ids) : kNoRow;
}

uint32_t RowMap::FindHashed(uint64_t hash, std::string_view id,
                            const RowIds& ids) const {
  if (!recent_.empty()) {
    if (std::optional<uint32_t> entry = recent_.Find(hash, id, ids)) {
      return (*entry & kDeleted) != 0 ? kNoRow : *entry;
    }
  }
  return BaseFind(hash, id, ids);
}

std::optional<uint32_t> RowMap::Find(std::string_view id,
                                     const RowIds& ids) const {
  const uint32_t row = FindHashed(HashItemId(id), id, ids);
  if (row == kNoRow) return std::nullopt;
  return row;
}

void RowMap::FindMany(std::span<const std::string_view> keys, const RowIds& ids,
                      std::span<uint32_t> rows) const {
  // In blocks small enough that what a block prefetched is still in L1
  // when it is read: first every slot, then every id a slot names, then
  // the lookups themselves.
  constexpr size_t kBlock = 32;
  uint64_t hashes[kBlock];
  for (size_t begin = 0; begin < keys.size(); begin += kBlock) {
    const size_t n = std::min(kBlock, keys.size() - begin);
    for (size_t i = 0; i < n; ++i) {
      hashes[i] = HashItemId(keys[begin + i]);
      if (base_ != nullptr) base_->PrefetchSlot(hashes[i]);
    }
    if (base_ != nullptr) {
      for (size_t i = 0; i < n; ++i) {
        const uint32_t row = base_->FirstCandidate(hashes[i]);
        if (row != kNoRow) __builtin_prefetch(&ids[row]);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      rows[begin + i] = FindHashed(hashes[i], keys[begin + i], ids);
    }
  }
}

std::optional<uint32_t> RowMap::Set(std::string_view id, uint32_t row,
                                    const RowIds& ids) {
  const uint64_t hash = HashItemId(id);
  // A recent entry (live or a tombstone) overrides the base.
  const std::optional<uint32_t> prev = recent_.Set(hash, id, row, ids);
  const uint32_t old = !prev                     ? BaseFind(hash, id, ids)
                       : (*prev & kDeleted) != 0 ? kNoRow
                                                 : *prev;
  std::optional<uint32_t> replaced;
  if (old != kNoRow) {
    replaced = old;
  } else {
    ++size_;
  }
  MaybeRebuild(ids);
  return replaced;
}

std::optional<uint32_t> RowMap::Erase(std::string_view id, const RowIds& ids) {
  const uint64_t hash = HashItemId(id);
  std::optional<uint32_t> entry;
  if (!recent_.empty()) entry = recent_.Find(hash, id, ids);
  if (entry && (*entry & kDeleted) != 0) return std::nullopt;
  const uint32_t base_row = BaseFind(hash, id, ids);
  const uint32_t row = entry ? *entry : base_row;
  if (row == kNoRow) return std::nullopt;
  if (base_row != kNoRow) {
    recent_.Set(hash, id, base_row | kDeleted, ids);  // hides the base id
  } else {
    recent_.Erase(hash, id, ids);
  }
  --size_;
  MaybeRebuild(ids);
  return row;
}

void RowMap::MaybeRebuild(const RowIds& ids) {
  const size_t base_size = base_ != nullptr ? base_->size() : 0;
  if (recent_.size() <= std::max(kMinRecent, base_size / kRecentDivisor)) {
    return;
  }
  std::vector<uint32_t> rows;
  rows.reserve(size_);
  if (base_ != nullptr) {
    for (uint32_t row : base_->Rows()) {
      const std::string& id = ids[row];
      if (!recent_.Find(HashItemId(id), id, ids)) rows.push_back(row);
    }
  }
  recent_.ForEach([&rows](uint32_t entry) {
    if ((entry & kDeleted) == 0) rows.push_back(entry);
  });
  *this = Build(ids, rows);
}

LiveMask::LiveMask(size_t rows, size_t live_prefix) : size_(rows) {
  const size_t pages = (rows + kPageRows - 1) / kPageRows;
  pages_.reserve(pages);
  for (size_t p = 0; p < pages; ++p) {
    auto page = std::make_shared<Page>();
    const size_t begin = p * kPageRows;
    if (live_prefix > begin) {
      std::memset(page->flags, 1, std::min(kPageRows, live_prefix - begin));
    }
    pages_.push_back(std::move(page));
  }
  owned_.assign(pages, true);
}

void LiveMask::Set(size_t row, bool live) {
  const size_t p = row / kPageRows;
  if (!owned_[p]) {
    pages_[p] = std::make_shared<Page>(*pages_[p]);
    owned_[p] = true;
  }
  // Made by this object (make_shared<Page>, non-const) and not shared.
  const_cast<Page*>(pages_[p].get())->flags[row % kPageRows] = live ? 1 : 0;
}

void LiveMask::CopyTo(size_t begin, size_t end, uint8_t* out) const {
  while (begin < end) {
    const size_t p = begin / kPageRows;
    const size_t in_page = begin % kPageRows;
    const size_t n = std::min(end - begin, kPageRows - in_page);
    std::memcpy(out, pages_[p]->flags + in_page, n);
    out += n;
    begin += n;
  }
}

}  // namespace embsum::store::internal
