// RowTrie (store/ internal): a persistent hash trie from item id to a
// 32-bit entry, the recent-writes layer of RowMap (store/internal/row_map.h).
// 64 children per node (6 hash bits per level, about log64(N) levels). A
// write to a copy duplicates only the nodes on its path; the source keeps
// the rest shared.
//
// The ids are not stored: an entry's low 31 bits are an arena row, and the
// caller passes the row -> id table to every call; ids[entry & kRowMask]
// must be the entry's id while the trie is used. The top bit is the
// caller's (RowMap marks deletions with it).
//
// Thread-safety: a const trie may be read from any number of threads; its
// nodes are never modified once shared. Non-const calls need exclusive use
// of that one object.
#ifndef EMBSUM_STORE_INTERNAL_ROW_TRIE_H_
#define EMBSUM_STORE_INTERNAL_ROW_TRIE_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace embsum::store::internal {

// Row -> id, size >= every row in a map.
using RowIds = std::vector<std::string>;

// The hash every id map here uses (absl::Hash of the bytes).
uint64_t HashItemId(std::string_view id);

class RowTrie {
 public:
  static constexpr uint32_t kRowMask = 0x7fffffffu;

  // The entry of `id` (whose hash is `hash`), or nullopt.
  std::optional<uint32_t> Find(uint64_t hash, std::string_view id,
                               const RowIds& ids) const;
  // Maps `id` to `entry` (ids[entry & kRowMask] == id); returns the entry
  // it replaced, if any.
  std::optional<uint32_t> Set(uint64_t hash, std::string_view id,
                              uint32_t entry, const RowIds& ids);
  // Removes `id`; returns its entry, or nullopt when absent.
  std::optional<uint32_t> Erase(uint64_t hash, std::string_view id,
                                const RowIds& ids);
  // Calls `visit` with every entry, in no particular order.
  void ForEach(const std::function<void(uint32_t entry)>& visit) const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Nodes reachable from the root (tests: structure sharing).
  size_t NodeCount() const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
  size_t size_ = 0;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_ROW_TRIE_H_
