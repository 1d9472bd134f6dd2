// The contiguous item arena that exact scoring reads: row r holds item r's
// CPE B (n*d elements) followed, when the arena has keys, by its keys G
// (n*d elements), all in the arena's storage dtype: row-major n x d for
// fp32/fp16/bf16 (the layout the CUDA mirror copies as is); for int8 each
// block is the packed int8 block of dtype.h (4-k groups interleaved across
// the n rows, then the per-row scales and sums), written at SetRow. Rows are
// addressed by a dense index; the id <-> row map lives in store/.
//
// Memory is allocated once for `capacity` rows, 64-byte aligned, and never
// moves, so a row's address is stable for the arena's lifetime.
//
// Thread-safety: any number of concurrent readers. One writer at a time may
// SetRow/AppendRow; a writer must not touch a row that readers may be
// reading (store/ writes new versions of an item to fresh rows and publishes
// them with a release store of the new size or a new snapshot).
#ifndef EMBSUM_SCORING_ITEM_ARENA_H_
#define EMBSUM_SCORING_ITEM_ARENA_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "scoring/dtype.h"
#include "scoring/status.h"

namespace embsum::scoring {

struct ArenaLayout {
  uint32_t item_codes = 0;  // n
  uint32_t dim = 0;         // d
  DType dtype = DType::kFloat32;
  bool has_keys = false;  // false: G = B

  // Elements per row: n*d, doubled when has_keys.
  size_t row_elements() const {
    return size_t{item_codes} * dim * (has_keys ? 2 : 1);
  }
  // Bytes of one block (the CPE, or the keys): n*d elements, or for int8
  // the packed block of dtype.h (values, per-row scales and sums).
  size_t block_bytes() const {
    return dtype == DType::kInt8 ? Int8BlockBytes(item_codes, dim)
                                 : size_t{item_codes} * dim * DTypeSize(dtype);
  }
  size_t row_bytes() const { return block_bytes() * (has_keys ? 2 : 1); }
};

class ItemArena {
 public:
  // Allocates capacity * layout.row_bytes() bytes (uninitialised).
  ItemArena(const ArenaLayout& layout, size_t capacity);
  ~ItemArena();
  ItemArena(const ItemArena&) = delete;
  ItemArena& operator=(const ItemArena&) = delete;

  const ArenaLayout& layout() const { return layout_; }
  size_t capacity() const { return capacity_; }
  // Process-unique serial number, never reused (unlike the address): an
  // arena made later has a larger one. Mirrors of the arena (the CUDA
  // scorer's device copy) are keyed by it.
  uint64_t identity() const { return identity_; }
  // Rows published so far (acquire load).
  size_t size() const { return size_.load(std::memory_order_acquire); }

  // Writes row `row` (< capacity) from fp32: cpe size n*d; keys size n*d when
  // has_keys, else must be empty. Converts to the storage dtype. Does not
  // change size(). Error on wrong sizes or row out of range.
  Status SetRow(size_t row, std::span<const float> cpe,
                std::span<const float> keys);
  // SetRow(size(), ...) then publishes it (release). Error when full.
  Status AppendRow(std::span<const float> cpe, std::span<const float> keys,
                   size_t* row_out);
  // Publishes rows [0, n) (n <= capacity) after bulk SetRow calls.
  void Publish(size_t n);

  // Raw storage of row `row`: row_bytes() bytes. CPE block first, then keys
  // (each layout().block_bytes()).
  const std::byte* row_data(size_t row) const {
    return data_ + row * row_bytes_;
  }
  std::byte* mutable_row_data(size_t row) { return data_ + row * row_bytes_; }
  // The whole arena: capacity() * row_bytes() bytes.
  const std::byte* data() const { return data_; }

  // Reads back row `row` as fp32 (for tests, mirrors and re-snapshotting):
  // cpe size n*d; keys size n*d when has_keys (else ignored).
  void ReadRow(size_t row, std::span<float> cpe, std::span<float> keys) const;

 private:
  ArenaLayout layout_;
  uint64_t identity_;
  size_t capacity_;
  size_t row_bytes_;
  std::byte* data_;
  std::atomic<size_t> size_{0};
};

}  // namespace embsum::scoring

#endif  // EMBSUM_SCORING_ITEM_ARENA_H_
