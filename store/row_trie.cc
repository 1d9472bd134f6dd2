#include "store/internal/row_trie.h"

#include <bit>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace embsum::store::internal {

uint64_t HashItemId(std::string_view id) {
  return absl::Hash<absl::string_view>{}(
      absl::string_view(id.data(), id.size()));
}

namespace {

// 6 hash bits per level; levels 0..10 use all 64 bits (the last one 4),
// below that ids with equal hashes share a bucket node searched linearly.
constexpr int kBits = 6;
constexpr int kLevels = 11;

uint32_t Chunk(uint64_t hash, int depth) {
  return static_cast<uint32_t>((hash >> (kBits * depth)) & 63);
}

}  // namespace

struct RowTrie::Node {
  struct Slot {
    uint32_t entry = 0;                 // a leaf when child is null
    std::shared_ptr<const Node> child;  // a subtree
  };
  uint64_t bitmap = 0;      // bit c: a slot for chunk c (0 in bucket nodes)
  std::vector<Slot> slots;  // chunk order; bucket nodes: any order
};

namespace {

using Node = RowTrie::Node;
using NodePtr = std::shared_ptr<const Node>;
using Slot = Node::Slot;

const std::string& IdOf(const RowIds& ids, uint32_t entry) {
  return ids[entry & RowTrie::kRowMask];
}

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

// A copy of `node` (null: empty) with id -> entry.
NodePtr SetIn(const Node* node, int depth, uint64_t hash, std::string_view id,
              uint32_t entry, const RowIds& ids,
              std::optional<uint32_t>* replaced) {
  auto out = node != nullptr ? std::make_shared<Node>(*node)
                             : std::make_shared<Node>();
  if (depth >= kLevels) {
    for (Slot& s : out->slots) {
      if (IdOf(ids, s.entry) == id) {
        *replaced = s.entry;
        s.entry = entry;
        return out;
      }
    }
    out->slots.push_back(Slot{entry, nullptr});
    return out;
  }
  const uint32_t chunk = Chunk(hash, depth);
  const uint64_t bit = uint64_t{1} << chunk;
  const size_t i = SlotIndex(out->bitmap, chunk);
  if ((out->bitmap & bit) == 0) {
    out->bitmap |= bit;
    out->slots.insert(out->slots.begin() + static_cast<ptrdiff_t>(i),
                      Slot{entry, nullptr});
    return out;
  }
  Slot& slot = out->slots[i];
  if (slot.child != nullptr) {
    slot.child =
        SetIn(slot.child.get(), depth + 1, hash, id, entry, ids, replaced);
  } else if (IdOf(ids, slot.entry) == id) {
    *replaced = slot.entry;
    slot.entry = entry;
  } else {
    slot.child = Split(slot.entry, HashItemId(IdOf(ids, slot.entry)), entry,
                       hash, depth + 1);
  }
  return out;
}

// A copy of `node` without `id` (which it holds); null when that empties it.
NodePtr EraseIn(const Node* node, int depth, uint64_t hash, std::string_view id,
                const RowIds& ids) {
  auto out = std::make_shared<Node>(*node);
  size_t i = 0;
  if (depth >= kLevels) {
    while (IdOf(ids, out->slots[i].entry) != id) ++i;
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

void Visit(const Node* node, const std::function<void(uint32_t)>& visit) {
  if (node == nullptr) return;
  for (const Slot& s : node->slots) {
    if (s.child != nullptr) {
      Visit(s.child.get(), visit);
    } else {
      visit(s.entry);
    }
  }
}

size_t CountNodes(const Node* node) {
  if (node == nullptr) return 0;
  size_t n = 1;
  for (const Slot& s : node->slots) n += CountNodes(s.child.get());
  return n;
}

}  // namespace

std::optional<uint32_t> RowTrie::Find(uint64_t hash, std::string_view id,
                                      const RowIds& ids) const {
  const Node* node = root_.get();
  for (int depth = 0; node != nullptr; ++depth) {
    if (depth >= kLevels) {
      for (const Slot& s : node->slots) {
        if (IdOf(ids, s.entry) == id) return s.entry;
      }
      return std::nullopt;
    }
    const uint32_t chunk = Chunk(hash, depth);
    if ((node->bitmap & (uint64_t{1} << chunk)) == 0) return std::nullopt;
    const Slot& slot = node->slots[SlotIndex(node->bitmap, chunk)];
    if (slot.child == nullptr) {
      if (IdOf(ids, slot.entry) == id) return slot.entry;
      return std::nullopt;
    }
    node = slot.child.get();
  }
  return std::nullopt;
}

std::optional<uint32_t> RowTrie::Set(uint64_t hash, std::string_view id,
                                     uint32_t entry, const RowIds& ids) {
  std::optional<uint32_t> replaced;
  root_ = SetIn(root_.get(), 0, hash, id, entry, ids, &replaced);
  if (!replaced) ++size_;
  return replaced;
}

std::optional<uint32_t> RowTrie::Erase(uint64_t hash, std::string_view id,
                                       const RowIds& ids) {
  std::optional<uint32_t> entry = Find(hash, id, ids);
  if (!entry) return std::nullopt;
  root_ = EraseIn(root_.get(), 0, hash, id, ids);
  --size_;
  return entry;
}

void RowTrie::ForEach(const std::function<void(uint32_t entry)>& visit) const {
  Visit(root_.get(), visit);
}

size_t RowTrie::NodeCount() const { return CountNodes(root_.get()); }

}  // namespace embsum::store::internal
