// The item catalogue's id -> row map and liveness flags (store/ internal),
// made for snapshots: a write to a copy costs O(changed entries) instead of
// O(catalogue), and the copy shares the rest with its source.
//
//  - RowMap: item id -> arena row, in two layers. The base is a flat
//    open-addressing table (FlatRowIndex) of the ids as of its last build:
//    a lookup there costs about two cache misses, and a batch of lookups
//    overlaps them (FindMany). The writes since then live in a persistent
//    hash trie (RowTrie) that overrides the base: a new row for an id, or a
//    tombstone that hides a deleted base id. Once the trie holds more than
//    max(kMinRecent, base size / kRecentDivisor) entries the next write
//    folds it into a fresh base (O(N), amortised O(kRecentDivisor) per
//    write). Ids are not stored: the caller passes the row -> id table
//    (`RowIds`) to every call, and it must hold the id of every row the map
//    holds or held since its last build while the map is used (rows are
//    never reused within an arena, so the catalogue's table does).
//  - LiveMask: one byte per arena row, in pages of kPageRows rows shared
//    copy-on-write. Copying a mask copies the page table (capacity /
//    kPageRows pointers); Set copies the one page it changes, once per
//    copy. A mask must not be modified after it has been copied (the
//    catalogue modifies only the fresh copy it is about to publish).
//
// Thread-safety: a const map or mask may be read from any number of
// threads; its nodes, tables and pages are never modified once shared.
// Non-const calls need exclusive use of that one object (the catalogue's
// writer).
#ifndef EMBSUM_STORE_INTERNAL_ROW_MAP_H_
#define EMBSUM_STORE_INTERNAL_ROW_MAP_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/internal/flat_row_index.h"
#include "store/internal/row_trie.h"

namespace embsum::store::internal {

class RowMap {
 public:
  static constexpr uint32_t kNoRow = UINT32_MAX;
  static constexpr size_t kMinRecent = 1024;
  static constexpr size_t kRecentDivisor = 16;

  RowMap();
  // Maps ids[r] -> r for every r in `rows` (ids distinct, r < 2^31). O(N).
  static RowMap Build(const RowIds& ids, std::span<const uint32_t> rows);

  std::optional<uint32_t> Find(std::string_view id, const RowIds& ids) const;
  // rows[i] = the row of keys[i], or kNoRow (rows.size() == keys.size()).
  // Same answers as Find, with the cache misses of neighbouring lookups
  // overlapped.
  void FindMany(std::span<const std::string_view> keys, const RowIds& ids,
                std::span<uint32_t> rows) const;
  // Maps `id` (== ids[row], row < 2^31) to `row`; returns the row it
  // replaced, if any.
  std::optional<uint32_t> Set(std::string_view id, uint32_t row,
                              const RowIds& ids);
  // Removes `id`; returns its row, or nullopt when absent.
  std::optional<uint32_t> Erase(std::string_view id, const RowIds& ids);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Entries written since the base was built (tests: when it is rebuilt).
  size_t recent_entries() const { return recent_.size(); }
  // Nodes of the recent-writes trie (tests: structure sharing).
  size_t RecentNodeCountForTesting() const { return recent_.NodeCount(); }

 private:
  // Recent entries with this bit hide the base id of the row they carry.
  static constexpr uint32_t kDeleted = 0x80000000u;

  // The row of `id` (hash `hash`), or kNoRow.
  uint32_t FindHashed(uint64_t hash, std::string_view id,
                      const RowIds& ids) const;
  uint32_t BaseFind(uint64_t hash, std::string_view id,
                    const RowIds& ids) const;
  // Folds the recent writes into a new base when there are too many.
  void MaybeRebuild(const RowIds& ids);

  std::shared_ptr<const FlatRowIndex> base_;  // null: empty
  RowTrie recent_;
  size_t size_ = 0;
};

class LiveMask {
 public:
  static constexpr size_t kPageRows = 16384;

  LiveMask() = default;
  LiveMask(const LiveMask& other)
      : size_(other.size_),
        pages_(other.pages_),
        owned_(other.pages_.size(), false) {}
  LiveMask& operator=(const LiveMask& other) {
    size_ = other.size_;
    pages_ = other.pages_;
    owned_.assign(pages_.size(), false);
    return *this;
  }
  LiveMask(LiveMask&&) = default;
  LiveMask& operator=(LiveMask&&) = default;
  // `rows` flags, the first `live_prefix` of them 1, the rest 0.
  LiveMask(size_t rows, size_t live_prefix);

  size_t size() const { return size_; }
  bool Get(size_t row) const {
    return row < size_ && pages_[row / kPageRows]->flags[row % kPageRows] != 0;
  }
  // row < size().
  void Set(size_t row, bool live);
  // Copies flags [begin, end) into out[0, end - begin).
  void CopyTo(size_t begin, size_t end, uint8_t* out) const;

 private:
  struct Page {
    uint8_t flags[kPageRows];
  };
  size_t size_ = 0;
  std::vector<std::shared_ptr<const Page>> pages_;
  // Pages this object made since it was copied (safe to modify in
  // place), by page index.
  std::vector<bool> owned_;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ROW_MAP_H_
