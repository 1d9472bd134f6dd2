// Fuzzes the .npy header parser and, for headers it accepts, the memory
// mapped reader: every accepted file must hold exactly the data its shape
// calls for, and every row must convert to fp32 without reading outside it.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "store/internal/npy.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using embsum::store::NpyArray;
  using embsum::store::NpyDTypeSize;
  using embsum::store::ParseNpyHeader;
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                                   size);
  auto header = ParseNpyHeader(bytes, "fuzz.npy");
  if (!header.ok()) {
    Check(!header.status().message().empty(), "error without a message");
    return 0;
  }
  uint64_t elements = 1;
  for (uint64_t dim : header->shape) elements *= dim;
  Check(header->data_offset <= size, "data offset past the end");
  Check(size - header->data_offset == elements * NpyDTypeSize(header->dtype),
        "accepted a file whose size does not match its shape");

  // The reader maps a file: hand it the same bytes through a memfd.
  static int fd = memfd_create("fuzz_npy", 0);
  if (fd < 0 || ftruncate(fd, 0) != 0) return 0;
  if (pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  auto array =
      NpyArray::Open("/proc/self/fd/" + std::to_string(fd), "fuzz.npy");
  Check(array.ok(), "Open rejected bytes that ParseNpyHeader accepted");
  const NpyArray& a = **array;
  // With rows() > 0 the data bounds row_elements(); with 0 rows a shape
  // such as (0, 2**40) is legal and there is nothing to read.
  if (a.rows() == 0) return 0;
  std::vector<float> row(a.row_elements());
  const uint64_t rows = a.rows() < 64 ? a.rows() : 64;
  for (uint64_t r = 0; r < rows; ++r) a.ReadRow(r, row);
  return 0;
}
