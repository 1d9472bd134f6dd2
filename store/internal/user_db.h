// RocksDB layout of the users database (store/ internal): column family
// names, options shared by the bulk loader and the online store, and the
// bulk loader used by Ingest. Thread-safe: stateless functions.
#ifndef EMBSUM_STORE_INTERNAL_USER_DB_H_
#define EMBSUM_STORE_INTERNAL_USER_DB_H_

#ifndef EMBSUM_STORE_INTERNAL_ACCESS
#error \
    "store/internal/ is private to embsum::store: include store/'s public headers, or link embsum::store_internal (tests, fuzz, datagen)"
#endif

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/options.h"
#include "scoring/dtype.h"
#include "store/internal/artifact.h"
#include "store/internal/progress.h"
#include "store/user_store.h"

namespace embsum::store::internal {

inline constexpr char kUsersCf[] = "default";
inline constexpr char kSummariesCf[] = "summaries";
inline constexpr char kMetaCf[] = "meta";
inline constexpr char kMetaManifestKey[] = "manifest";
inline constexpr char kMetaUserCountKey[] = "user_count";
// The element type of the user records ("fp32", "fp16", "bf16"); upserts
// are written in it. Absent in directories from before it existed: fp32.
inline constexpr char kMetaUserDTypeKey[] = "user_dtype";
// The write log's sequence of the last message applied (store/write_stamp.h),
// written in the batch of that message's users. Absent: 0.
inline constexpr char kMetaLogSequenceKey[] = "log_sequence";
// Users written online (records, counted in the batch that wrote them).
// Absent: 0.
inline constexpr char kMetaOnlineWritesKey[] = "online_writes";

rocksdb::DBOptions UserDbOptions();
// Options of the three column families, in the order above.
std::vector<rocksdb::ColumnFamilyDescriptor> UserDbColumnFamilies(
    const UserStoreOptions& options);

std::string EncodeCount(uint64_t count);
bool DecodeCount(absl::string_view value, uint64_t* count);

// Creates the users database at `path` (which must not exist) from the
// artifact: sorted SST files built with SstFileWriter under `scratch_dir`,
// then IngestExternalFiles into the three column families. Checks every
// value (NaN/Inf) on the way; errors name the file, the row and the user.
// user_dtype: the records' element type; nullopt keeps the artifact's
// (fp32 or fp16), copying its bytes.
absl::Status BuildUserDatabase(const std::string& path,
                               const std::string& scratch_dir,
                               const ModelArtifact& artifact,
                               Progress::Sink progress, double interval_s,
                               std::optional<scoring::DType> user_dtype = {});

}  // namespace embsum::store::internal

#endif  // EMBSUM_STORE_INTERNAL_USER_DB_H_
