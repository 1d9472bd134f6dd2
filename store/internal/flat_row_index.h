// FlatRowIndex (store/ internal): an immutable open-addressing table from
// item id to arena row, the base layer of RowMap (store/internal/row_map.h).
// Built once from a row list; a lookup is one probe of an 8-byte slot
// (a 32-bit hash tag and the row, at most half the slots full) and one
// comparison with the id the row holds, so a batch of lookups can prefetch
// both and overlap their cache misses.
//
// Like RowTrie, it stores rows, not ids: the caller passes the row -> id
// table, which must hold the id of every row in the index while it is used.
//
// Thread-safety: const after Build; read from any number of threads.
#ifndef EMBSUM_STORE_INTERNAL_FLAT_ROW_INDEX_H_
#define EMBSUM_STORE_INTERNAL_FLAT_ROW_INDEX_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "store/internal/row_trie.h"

namespace embsum::store::internal {

class FlatRowIndex {
 public:
  static constexpr uint32_t kNoRow = UINT32_MAX;

  FlatRowIndex() = default;
  // Maps ids[r] -> r for every r in `rows` (ids distinct). O(N).
  FlatRowIndex(const RowIds& ids, std::span<const uint32_t> rows);

  // The row of `id` (whose HashItemId is `hash`), or kNoRow.
  uint32_t Find(uint64_t hash, std::string_view id, const RowIds& ids) const;
  // Asks the cache for the slot Find(hash, ...) reads first.
  void PrefetchSlot(uint64_t hash) const;
  // The row in the slot Find(hash, ...) reads first when its tag matches
  // (the likely answer), else kNoRow: lets a batch prefetch the id to
  // compare before calling Find.
  uint32_t FirstCandidate(uint64_t hash) const;

  size_t size() const { return size_; }
  // Every row in the index, in no particular order.
  std::vector<uint32_t> Rows() const;

 private:
  struct Slot {
    uint32_t tag = 0;       // the hash's top 32 bits
    uint32_t row = kNoRow;  // kNoRow: empty
  };
  static uint32_t Tag(uint64_t hash) {
    return static_cast<uint32_t>(hash >> 32);
  }
  std::vector<Slot> slots_;  // a power of two, or empty
  uint64_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_FLAT_ROW_INDEX_H_
