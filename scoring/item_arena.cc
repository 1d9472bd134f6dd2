#include "scoring/item_arena.h"

#include <algorithm>
#include <new>
#include <string>
#include <vector>

namespace embsum::scoring {
namespace {

constexpr std::align_val_t kArenaAlignment{64};

uint64_t NextIdentity() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

ItemArena::ItemArena(const ArenaLayout& layout, size_t capacity)
    : layout_(layout),
      identity_(NextIdentity()),
      capacity_(capacity),
      row_bytes_(layout.row_bytes()),
      // At least one cache line, so data() is never null; the extra 64 bytes
      // let vector kernels over-read the last row's tail safely.
      data_(static_cast<std::byte*>(::operator new(
          capacity* layout.row_bytes() + 64, kArenaAlignment))) {}

ItemArena::~ItemArena() { ::operator delete(data_, kArenaAlignment); }

Status ItemArena::SetRow(size_t row, std::span<const float> cpe,
                         std::span<const float> keys) {
  const size_t block = size_t{layout_.item_codes} * layout_.dim;
  if (row >= capacity_) {
    return Status::InvalidArgument("item arena: row " + std::to_string(row) +
                                   " out of range (capacity " +
                                   std::to_string(capacity_) + ")");
  }
  if (cpe.size() != block) {
    return Status::InvalidArgument(
        "item arena: row " + std::to_string(row) + ": cpe has " +
        std::to_string(cpe.size()) +
        " floats, expected item_codes*dim = " + std::to_string(block));
  }
  if (layout_.has_keys && keys.size() != block) {
    return Status::InvalidArgument(
        "item arena: row " + std::to_string(row) + ": keys has " +
        std::to_string(keys.size()) +
        " floats, expected item_codes*dim = " + std::to_string(block));
  }
  if (!layout_.has_keys && !keys.empty()) {
    return Status::InvalidArgument(
        "item arena: row " + std::to_string(row) + ": keys given (" +
        std::to_string(keys.size()) + " floats) but the arena has no keys");
  }
  std::byte* out = mutable_row_data(row);
  if (layout_.dtype == DType::kInt8) {
    QuantizeInt8Block(cpe.data(), layout_.item_codes, layout_.dim, out);
    if (layout_.has_keys) {
      QuantizeInt8Block(keys.data(), layout_.item_codes, layout_.dim,
                        out + layout_.block_bytes());
    }
    return Status::Ok();
  }
  ConvertFromFloat(cpe, layout_.dtype, out);
  if (layout_.has_keys) {
    ConvertFromFloat(keys, layout_.dtype, out + layout_.block_bytes());
  }
  return Status::Ok();
}

Status ItemArena::AppendRow(std::span<const float> cpe,
                            std::span<const float> keys, size_t* row_out) {
  const size_t row = size_.load(std::memory_order_relaxed);
  if (row >= capacity_) {
    return Status::ResourceExhausted("item arena: full (capacity " +
                                     std::to_string(capacity_) + " rows)");
  }
  Status status = SetRow(row, cpe, keys);
  if (!status.ok()) return status;
  size_.store(row + 1, std::memory_order_release);
  if (row_out != nullptr) *row_out = row;
  return Status::Ok();
}

void ItemArena::Publish(size_t n) {
  size_.store(std::min(n, capacity_), std::memory_order_release);
}

void ItemArena::ReadRow(size_t row, std::span<float> cpe,
                        std::span<float> keys) const {
  if (row >= capacity_) return;
  const size_t block = size_t{layout_.item_codes} * layout_.dim;
  const std::byte* in = row_data(row);
  if (layout_.dtype == DType::kInt8) {
    // Whole blocks only: the packed layout interleaves the rows.
    std::vector<float> full(block);
    auto read = [&](const std::byte* src, std::span<float> out) {
      DequantizeInt8Block(src, layout_.item_codes, layout_.dim, full.data());
      std::copy_n(full.begin(), std::min(out.size(), block), out.begin());
    };
    read(in, cpe);
    if (layout_.has_keys) read(in + layout_.block_bytes(), keys);
    return;
  }
  ConvertToFloat(in, layout_.dtype, cpe.first(std::min(cpe.size(), block)));
  if (layout_.has_keys) {
    ConvertToFloat(in + layout_.block_bytes(), layout_.dtype,
                   keys.first(std::min(keys.size(), block)));
  }
}

}  // namespace embsum::scoring
