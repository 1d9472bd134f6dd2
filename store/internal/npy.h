// A strict reader and a streaming writer for NumPy .npy files holding
// little-endian float32 ('<f4') or float16 ('<f2') arrays in C order, as the
// model artifact of docs/design.md section 3 uses. Versions 1.0, 2.0 and 3.0.
#ifndef EMBSUM_STORE_INTERNAL_NPY_H_
#define EMBSUM_STORE_INTERNAL_NPY_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/internal/file_util.h"

namespace embsum::store {

enum class NpyDType : uint8_t { kFloat32, kFloat16 };

size_t NpyDTypeSize(NpyDType dtype);

struct NpyHeader {
  int major_version = 1;
  NpyDType dtype = NpyDType::kFloat32;
  std::vector<uint64_t> shape;
  size_t data_offset = 0;  // bytes from the start of the file to the data
};

// Parses the header at the start of `file` (the whole file's bytes): magic,
// version, dictionary, dtype, fortran_order false, shape, and that the file
// holds exactly the data the shape calls for. `name` prefixes errors.
absl::StatusOr<NpyHeader> ParseNpyHeader(std::span<const std::byte> file,
                                         absl::string_view name);

// A memory-mapped .npy array. Rows are the slices along the first axis.
// Thread-safe: immutable once open.
class NpyArray {
 public:
  // `name` is how errors refer to the file (for example "users/upe.npy").
  static absl::StatusOr<std::unique_ptr<NpyArray>> Open(const std::string& path,
                                                        std::string name);

  const std::string& name() const { return name_; }
  const NpyHeader& header() const { return header_; }
  NpyDType dtype() const { return header_.dtype; }
  const std::vector<uint64_t>& shape() const { return header_.shape; }
  // shape[0] (1 for a 0-d array).
  uint64_t rows() const;
  // Product of shape[1:].
  size_t row_elements() const { return row_elements_; }

  // Error unless shape() == expected, naming the file and both shapes.
  absl::Status CheckShape(std::span<const uint64_t> expected) const;

  // Raw bytes of row `row` (< rows()): row_elements() * dtype size.
  const std::byte* row_data(uint64_t row) const;
  // Converts row `row` to fp32 into `out` (size row_elements()).
  void ReadRow(uint64_t row, std::span<float> out) const;

 private:
  NpyArray() = default;
  std::string name_;
  std::unique_ptr<internal::MappedFile> file_;
  NpyHeader header_;
  size_t row_elements_ = 0;
};

// Writes a version 1.0 .npy file row by row, in C order. Not thread-safe.
class NpyWriter {
 public:
  static absl::StatusOr<std::unique_ptr<NpyWriter>> Create(
      const std::string& path, NpyDType dtype, std::vector<uint64_t> shape);
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  // Appends values (any multiple of nothing in particular; the total must
  // reach the product of the shape before Finish), converting to the dtype.
  absl::Status Append(std::span<const float> values);
  // Checks the element count, flushes and fsyncs.
  absl::Status Finish();

 private:
  NpyWriter() = default;
  std::string path_;
  NpyDType dtype_ = NpyDType::kFloat32;
  uint64_t expected_ = 0;
  uint64_t written_ = 0;
  std::FILE* file_ = nullptr;
  std::vector<uint16_t> scratch_;
};

}  // namespace embsum::store

#endif  // EMBSUM_STORE_INTERNAL_NPY_H_
