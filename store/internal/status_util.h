// Conversions of RocksDB and FAISS errors into absl::Status (store/ only).
// Thread-safe: stateless.
#ifndef EMBSUM_STORE_INTERNAL_STATUS_UTIL_H_
#define EMBSUM_STORE_INTERNAL_STATUS_UTIL_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace embsum::store::internal {

// Debian's Abseil has its own string_view: convert std::string_view for
// StrCat and friends.
inline absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Maps a RocksDB status to the absl code of the same meaning; `context`
// (for example the database path and the operation) prefixes the message.
inline absl::Status FromRocksDb(const rocksdb::Status& s,
                                absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsIOError() && absl::StrContains(s.ToString(), "/LOCK")) {
    // RocksDB's own words ("While lock file: ...: Resource temporarily
    // unavailable") do not say that another process holds the directory.
    return absl::UnavailableError(absl::StrCat(
        context,
        ": held by another process (its LOCK file is taken; an earlier "
        "server that has not exited yet, or a running embsum-ingest?); stop "
        "it and retry. RocksDB: ",
        s.ToString()));
  }
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(message);
    case rocksdb::Status::kInvalidArgument:
      return absl::InvalidArgumentError(message);
    case rocksdb::Status::kNotSupported:
      return absl::UnimplementedError(message);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kTimedOut:
      return absl::UnavailableError(message);
    case rocksdb::Status::kAborted:
      return absl::AbortedError(message);
    case rocksdb::Status::kIOError:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_STATUS_UTIL_H_
