// Persistent (immutable, structure-sharing) maps for the item catalogue's
// snapshots (store/ internal). A write to a copy costs O(changed entries)
// instead of O(catalogue): a copy shares every node or page with its source
// and only the path or page a write touches is duplicated.
//
//  - RowMap: item id -> arena row. A hash trie, 64 children per node
//    (6 hash bits per level, about log64(N) levels: 4 at a million ids).
//    The ids themselves are not stored: each leaf holds its row, and the
//    caller passes the row -> id table (`RowIds`) to every call. That
//    table must hold the id of every row in the map while the map is used.
//  - LiveMask: one byte per arena row, in pages of kPageRows rows shared
//    copy-on-write. Copying a mask copies the page table (capacity /
//    kPageRows pointers); Set copies the one page it changes, once per
//    copy. A mask must not be modified after it has been copied (the
//    catalogue modifies only the fresh copy it is about to publish).
//
// Thread-safety: a const map or mask may be read from any number of
// threads; its nodes and pages are never modified once shared. Non-const
// calls need exclusive use of that one object (the catalogue's writer).
#ifndef EMBSUM_STORE_INTERNAL_ROW_MAP_H_
#define EMBSUM_STORE_INTERNAL_ROW_MAP_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace embsum::store::internal {

// Row -> id, size >= every row in a RowMap.
using RowIds = std::vector<std::string>;

class RowMap {
 public:
  RowMap();
  // Maps ids[r] -> r for every r in `rows` (ids distinct). O(N log N).
  static RowMap Build(const RowIds& ids, std::span<const uint32_t> rows);

  std::optional<uint32_t> Find(std::string_view id, const RowIds& ids) const;
  // Maps `id` (== ids[row]) to `row`; returns the row it replaced, if any.
  std::optional<uint32_t> Set(std::string_view id, uint32_t row,
                              const RowIds& ids);
  // Removes `id`; returns its row, or nullopt when absent.
  std::optional<uint32_t> Erase(std::string_view id, const RowIds& ids);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Nodes reachable from the root (tests: structure sharing, depth).
  size_t NodeCountForTesting() const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
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
