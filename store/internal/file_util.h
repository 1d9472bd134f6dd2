// Small POSIX file helpers for store/: whole-file reads, durable writes,
// read-only memory maps. Errors name the path and the OS error.
// Thread-safe: stateless functions; MappedFile is immutable once open.
#ifndef EMBSUM_STORE_INTERNAL_FILE_UTIL_H_
#define EMBSUM_STORE_INTERNAL_FILE_UTIL_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embsum::store::internal {

// Error status for a failed system call: "<path>: <what>: <strerror>".
absl::Status ErrnoError(int err, absl::string_view path,
                        absl::string_view what);

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` via a temporary file in the same directory,
// fsyncs it, renames it over `path` and fsyncs the directory.
absl::Status WriteFileDurably(const std::string& path,
                              absl::string_view contents);

// XXH64 of `data` (seed 0, libxxhash): a fast checksum for files without
// their own. The value is stored on disk (items/snapshot-*/meta.json), so
// it must never change.
uint64_t Checksum64(const void* data, size_t size);

// Writes `data` to a new file at `path` and fsyncs it.
absl::Status WriteNewFileDurably(const std::string& path, const void* data,
                                 size_t size);

// fsync of a file or directory by path.
absl::Status FsyncPath(const std::string& path);

// A read-only private mapping of a whole file (empty files map to nothing).
// Thread-safe: immutable.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const std::byte* data_;
  size_t size_;
};

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_FILE_UTIL_H_
