#include "store/internal/row_map.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace embsum::store::internal {
namespace {

// 6 hash bits per level; levels 0..10 use all 64 bits (the last one 4),
// below that ids with equal hashes share a bucket node searched linearly.
constexpr int kBits = 6;
constexpr int kLevels = 11;

uint64_t HashId(std::string_view id) {
  return absl::Hash<absl::string_view>{}(
      absl::string_view(id.data(), id.size()));
}

uint32_t Chunk(uint64_t hash, int depth) {
  return static_cast<uint32_t>((hash >> (kBits * depth)) & 63);
}

}  // namespace

struct RowMap::Node {
  struct Slot {
    uint32_t row = 0;                   // a leaf when child is null
    std::shared_ptr<const Node> child;  // a subtree
  };
  uint64_t bitmap = 0;      // bit c: a slot for chunk c (0 in bucket nodes)
  std::vector<Slot> slots;  // chunk order; bucket nodes: any order
};

namespace {

using Node = RowMap::Node;
using NodePtr = std::shared_ptr<const Node>;
using Slot = Node::Slot;

size_t SlotIndex(uint64_t bitmap, uint32_t chunk) {
  return static_cast<size_t>(
      std::popcount(bitmap & ((uint64_t{1} << chunk) - 1)));
}

// A node holding leaves a and b, which agree on the chunks above `depth`.
NodePtr Split(uint32_t a, uint64_t hash_a, uint32_t b, uint64_t hash_b,
              int depth) {
  auto node = std::make_shared<Node>();
  if (depth >= kLevels) {
    node->slots = {Slot{a, nullptr}, Slot{b, nullptr}};
    return node;
  }
  const uint32_t ca = Chunk(hash_a, depth);
  const uint32_t cb = Chunk(hash_b, depth);
  if (ca == cb) {
    node->bitmap = uint64_t{1} << ca;
    node->slots = {Slot{0, Split(a, hash_a, b, hash_b, depth + 1)}};
  } else {
    node->bitmap = (uint64_t{1} << ca) | (uint64_t{1} << cb);
    node->slots = ca < cb ? std::vector<Slot>{{a, nullptr}, {b, nullptr}}
                          : std::vector<Slot>{{b, nullptr}, {a, nullptr}};
  }
  return node;
}

// A copy of `node` (null: empty) with id -> row.
NodePtr SetIn(const Node* node, int depth, uint64_t hash, std::string_view id,
              uint32_t row, const RowIds& ids,
              std::optional<uint32_t>* replaced) {
  auto out = node != nullptr ? std::make_shared<Node>(*node)
                             : std::make_shared<Node>();
  if (depth >= kLevels) {
    for (Slot& s : out->slots) {
      if (ids[s.row] == id) {
        *replaced = s.row;
        s.row = row;
        return out;
      }
    }
    out->slots.push_back(Slot{row, nullptr});
    return out;
  }
  const uint32_t chunk = Chunk(hash, depth);
  const uint64_t bit = uint64_t{1} << chunk;
  const size_t i = SlotIndex(out->bitmap, chunk);
  if ((out->bitmap & bit) == 0) {
    out->bitmap |= bit;
    out->slots.insert(out->slots.begin() + static_cast<ptrdiff_t>(i),
                      Slot{row, nullptr});
    return out;
  }
  Slot& slot = out->slots[i];
  if (slot.child != nullptr) {
    slot.child =
        SetIn(slot.child.get(), depth + 1, hash, id, row, ids, replaced);
  } else if (ids[slot.row] == id) {
    *replaced = slot.row;
    slot.row = row;
  } else {
    slot.child = Split(slot.row, HashId(ids[slot.row]), row, hash, depth + 1);
  }
  return out;
}

// A copy of `node` without `id` (which it holds); null when that empties it.
NodePtr EraseIn(const Node* node, int depth, uint64_t hash, std::string_view id,
                const RowIds& ids) {
  auto out = std::make_shared<Node>(*node);
  size_t i = 0;
  if (depth >= kLevels) {
    while (ids[out->slots[i].row] != id) ++i;
  } else {
    const uint32_t chunk = Chunk(hash, depth);
    i = SlotIndex(out->bitmap, chunk);
    Slot& slot = out->slots[i];
    if (slot.child != nullptr) {
      slot.child = EraseIn(slot.child.get(), depth + 1, hash, id, ids);
      if (slot.child != nullptr) return out;
    }
    out->bitmap &= ~(uint64_t{1} << chunk);
  }
  out->slots.erase(out->slots.begin() + static_cast<ptrdiff_t>(i));
  if (out->slots.empty()) return nullptr;
  return out;
}

struct Keyed {
  uint64_t hash;
  uint64_t order;  // the chunks, level 0 most significant
  uint32_t row;
};

NodePtr BuildRange(std::span<const Keyed> items, int depth) {
  auto node = std::make_shared<Node>();
  if (depth >= kLevels) {
    for (const Keyed& k : items) node->slots.push_back(Slot{k.row, nullptr});
    return node;
  }
  size_t i = 0;
  while (i < items.size()) {
    const uint32_t chunk = Chunk(items[i].hash, depth);
    size_t j = i + 1;
    while (j < items.size() && Chunk(items[j].hash, depth) == chunk) ++j;
    node->bitmap |= uint64_t{1} << chunk;
    if (j - i == 1) {
      node->slots.push_back(Slot{items[i].row, nullptr});
    } else {
      node->slots.push_back(
          Slot{0, BuildRange(items.subspan(i, j - i), depth + 1)});
    }
    i = j;
  }
  return node;
}

size_t CountNodes(const Node* node) {
  if (node == nullptr) return 0;
  size_t n = 1;
  for (const Slot& s : node->slots) n += CountNodes(s.child.get());
  return n;
}

}  // namespace

RowMap::RowMap() = default;

RowMap RowMap::Build(const RowIds& ids, std::span<const uint32_t> rows) {
  std::vector<Keyed> items;
  items.reserve(rows.size());
  for (uint32_t row : rows) {
    const uint64_t hash = HashId(ids[row]);
    uint64_t order = 0;
    for (int d = 0; d < kLevels - 1; ++d) order = (order << 6) | Chunk(hash, d);
    order = (order << 4) | Chunk(hash, kLevels - 1);
    items.push_back(Keyed{hash, order, row});
  }
  std::sort(items.begin(), items.end(), [](const Keyed& a, const Keyed& b) {
    return a.order != b.order ? a.order < b.order : a.row < b.row;
  });
  RowMap map;
  map.size_ = items.size();
  if (!items.empty()) map.root_ = BuildRange(items, 0);
  return map;
}

std::optional<uint32_t> RowMap::Find(std::string_view id,
                                     const RowIds& ids) const {
  const uint64_t hash = HashId(id);
  const Node* node = root_.get();
  for (int depth = 0; node != nullptr; ++depth) {
    if (depth >= kLevels) {
      for (const Slot& s : node->slots) {
        if (ids[s.row] == id) return s.row;
      }
      return std::nullopt;
    }
    const uint32_t chunk = Chunk(hash, depth);
    if ((node->bitmap & (uint64_t{1} << chunk)) == 0) return std::nullopt;
    const Slot& slot = node->slots[SlotIndex(node->bitmap, chunk)];
    if (slot.child == nullptr) {
      if (ids[slot.row] == id) return slot.row;
      return std::nullopt;
    }
    node = slot.child.get();
  }
  return std::nullopt;
}

std::optional<uint32_t> RowMap::Set(std::string_view id, uint32_t row,
                                    const RowIds& ids) {
  std::optional<uint32_t> replaced;
  root_ = SetIn(root_.get(), 0, HashId(id), id, row, ids, &replaced);
  if (!replaced) ++size_;
  return replaced;
}

std::optional<uint32_t> RowMap::Erase(std::string_view id, const RowIds& ids) {
  std::optional<uint32_t> row = Find(id, ids);
  if (!row) return std::nullopt;
  root_ = EraseIn(root_.get(), 0, HashId(id), id, ids);
  --size_;
  return row;
}

size_t RowMap::NodeCountForTesting() const { return CountNodes(root_.get()); }

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
