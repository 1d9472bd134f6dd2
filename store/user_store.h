// Users in RocksDB (docs/design.md section 4): key = user id, value = a
// versioned binary record (m, d, dtype, A, optional Q); summaries in their own
// column family; the manifest in a meta column family.
//
// Thread-safety: all methods are safe to call concurrently.
#ifndef EMBSUM_STORE_USER_STORE_H_
#define EMBSUM_STORE_USER_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scoring/dtype.h"
#include "scoring/user_view.h"
#include "store/manifest.h"
#include "store/testing_hooks.h"
#include "store/write_stamp.h"

namespace embsum::store {

// A user's embedding, decoded to fp32 (owning).
struct UserEmbedding {
  uint32_t user_codes = 0;     // m
  uint32_t dim = 0;            // d
  std::vector<float> upe;      // m*d
  std::vector<float> queries;  // m*d or empty (Q = A)

  scoring::UserView view() const {
    return scoring::UserView{user_codes, dim, upe, queries};
  }
};

// One user to write. upe: m*d; queries: m*d or empty; summary: set to
// replace the stored summary.
struct UserUpsert {
  std::string user_id;
  std::vector<float> upe;
  std::vector<float> queries;
  std::optional<std::string> summary;
};

struct UserStoreOptions {
  // RocksDB block cache: larger keeps more users in RAM, costs memory.
  size_t block_cache_bytes = size_t{256} << 20;
  // Bloom filter bits per key: fewer disk reads for unknown users.
  int bloom_bits_per_key = 10;
};

class UserStore {
 public:
  // Opens the RocksDB database at `path` (created by Ingest).
  static absl::StatusOr<std::unique_ptr<UserStore>> Open(
      const std::string& path, const ModelManifest& manifest,
      const UserStoreOptions& options,
      const UserStoreTestingHooks& testing = {});
  virtual ~UserStore() = default;

  // NotFound when the user is unknown.
  virtual absl::Status Get(std::string_view user_id,
                           UserEmbedding* out) const = 0;
  // Batched Get: (*out)[i] and (*statuses)[i] for user_ids[i] (NotFound for
  // unknown users). One RocksDB MultiGet; cheaper than a loop of Get.
  virtual void MultiGet(std::span<const std::string_view> user_ids,
                        std::vector<UserEmbedding>* out,
                        std::vector<absl::Status>* statuses) const = 0;
  // Empty string when the user has no summary; NotFound for unknown user.
  virtual absl::StatusOr<std::string> GetSummary(
      std::string_view user_id) const = 0;
  // Get and, when `summary` is non-null, the summary ("" when none), both
  // read at one RocksDB snapshot: an upsert that lands in between cannot
  // pair one version's embedding with another version's summary.
  virtual absl::Status GetWithSummary(std::string_view user_id,
                                      UserEmbedding* out,
                                      std::string* summary) const = 0;
  // Validates every record first (id; embedding and queries by the rule of
  // store/embedding_rules.h, values that fit user_dtype(): queries present
  // exactly when the manifest has user_queries; summary size and UTF-8): if any
  // is invalid nothing is written and the error names the record. Otherwise one
  // atomic WriteBatch through the WAL, synced before returning.
  absl::Status Upsert(std::span<const UserUpsert> users) {
    return Upsert(users, WriteStamp{});
  }
  // The same, with the stamp written in the same batch: a nonzero
  // stamp.log_sequence becomes applied_log_sequence() atomically with the
  // users (with no users, only the sequence is written). Also adds the
  // users to online_writes().
  virtual absl::Status Upsert(std::span<const UserUpsert> users,
                              const WriteStamp& stamp) = 0;
  // The write log sequence of the last message applied (0: none).
  virtual uint64_t applied_log_sequence() const = 0;
  // Users written by upserts since the directory was built (persisted).
  virtual uint64_t online_writes() const = 0;
  // Number of users (exact, maintained across upserts).
  virtual uint64_t size() const = 0;
  // Element type of the stored records (embsum-ingest --user_dtype, kept in
  // the database's meta; fp32 for directories from before the option).
  // Upserts are rounded to it; Get always returns fp32.
  virtual scoring::DType user_dtype() const = 0;
  // Up to `n` user ids, the first in key (byte) order: a sample for tuning
  // (the Retrieve recall tuner), not a uniform one.
  virtual absl::StatusOr<std::vector<std::string>> SampleIds(
      size_t n) const = 0;
  // Up to `n` user ids drawn uniformly at random without replacement
  // (every id when there are at most n), in a random order determined by
  // `seed` and the stored ids: the same seed on the same store draws the
  // same sample. Reads every key once (O(users) time, O(n) memory); for
  // tuning, off the request path.
  virtual absl::StatusOr<std::vector<std::string>> RandomSampleIds(
      size_t n, uint64_t seed) const = 0;
};

}  // namespace embsum::store

#endif  // EMBSUM_STORE_USER_STORE_H_
