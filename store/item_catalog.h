// Items (docs/design.md section 4): the exact-scoring arena, the id <-> row
// map, and the FAISS ANN index for Retrieve, published together as immutable
// snapshots. Upserts and deletes are durable when acknowledged (RocksDB log
// plus FAISS snapshot files, replayed at open).
#ifndef EMBSUM_STORE_ITEM_CATALOG_H_
#define EMBSUM_STORE_ITEM_CATALOG_H_

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
#include "scoring/item_arena.h"
#include "scoring/user_view.h"
#include "store/manifest.h"
#include "store/testing_hooks.h"
#include "store/write_stamp.h"

namespace embsum::store {

// One item to write: cpe n*d; keys n*d (required iff the model has keys).
struct ItemUpsert {
  std::string item_id;
  std::vector<float> cpe;
  std::vector<float> keys;
};

// An immutable, consistent view of the catalogue. Thread-safe: const.
// Keep the shared_ptr for the duration of a request; rows stay valid.
//
// A snapshot covers arena rows [0, rows()). The arena is shared with later
// snapshots, which append rows beyond rows() (arena().size() may already be
// larger, and grows while a request runs): every reader takes the row count
// from the snapshot, never from the arena.
class ItemSnapshot {
 public:
  virtual ~ItemSnapshot() = default;
  virtual const scoring::ItemArena& arena() const = 0;
  // Arena rows this snapshot covers (<= arena().size() at any time).
  virtual uint32_t rows() const = 0;
  // Row of a live item, or nullopt for unknown/deleted ids.
  virtual std::optional<uint32_t> FindRow(std::string_view item_id) const = 0;
  // FindRow for many ids at once: rows[i] is the row of item_ids[i], or
  // kNoRow (rows.size() == item_ids.size()). The same answers as FindRow in
  // a loop, with the cache misses of neighbouring lookups overlapped.
  static constexpr uint32_t kNoRow = UINT32_MAX;
  virtual void FindRows(std::span<const std::string_view> item_ids,
                        std::span<uint32_t> rows) const = 0;
  // Id of row `row` (< rows()).
  virtual const std::string& ItemId(uint32_t row) const = 0;
  // Whether row `row` holds a live item in this snapshot (false for
  // deleted or superseded rows and rows >= rows()). O(1).
  virtual bool IsLive(uint32_t row) const = 0;
  // Per-row liveness as one array, size rows(): what a full scan takes
  // (Scorer::ScoreAllTopK). Built on the first call (O(rows()), one byte
  // per row) and kept with the snapshot; later calls are free.
  virtual std::span<const uint8_t> live() const = 0;
  // Number of live items.
  virtual uint64_t size() const = 0;
  // Monotonic snapshot number.
  virtual uint64_t version() const = 0;
  // ANN candidates for Retrieve: distinct live rows likely to score high
  // for `user`. First up to `query.k` rows by the mean-vector proxy, best
  // first: the score under uniform attention, mean_i(a_i) . mean_j(b_j),
  // the user's mean UPE row searched against each item's mean CPE row (IVF
  // above AnnOptions::flat_max_items, exact flat below and for recent
  // upserts). With query.codes > 0, then the rows of the per-interest lists
  // (below) and every live row upserted since the main index was built (at
  // most about AnnOptions::tail_max_rows).
  // query.nprobe > 0 overrides AnnOptions::ivf_probes for this search.
  // Memory: O(query.k) per call.
  //
  // Per-interest candidates (query.codes > 0): besides the mean-vector
  // search, the user's `codes` largest-norm UPE rows (all m when codes >=
  // m) each search the per-interest index (AnnOptions::code_index) for
  // their top `per_code` item rows (code_nprobe > 0 overrides its probes);
  // the union is returned after the mean candidates, each list's rows in
  // its own order. Memory: O(k + codes * per_code) per call.
  struct AnnQuery {
    uint32_t k = 0;
    uint32_t nprobe = 0;
    uint32_t codes = 0;
    uint32_t per_code = 0;
    uint32_t code_nprobe = 0;
  };
  virtual absl::Status AnnCandidates(const scoring::UserView& user,
                                     const AnnQuery& query,
                                     std::vector<uint32_t>* rows) const = 0;
  absl::Status AnnCandidates(const scoring::UserView& user, uint32_t k,
                             std::vector<uint32_t>* rows) const {
    return AnnCandidates(user, AnnQuery{k, 0}, rows);
  }
  // The candidate lists behind AnnCandidates, kept apart (for the tuner and
  // for adaptive depth): `mean` up to query.k live rows by the mean-vector
  // proxy, best first; `codes[c]` the distinct live rows found by the c-th
  // user code searched (codes by norm, largest first), best first, up to
  // query.per_code; `recent` the live rows of the recent-upsert segments
  // (always candidates). A row may be in several lists.
  struct AnnLists {
    std::vector<uint32_t> mean;
    std::vector<std::vector<uint32_t>> codes;
    std::vector<uint32_t> recent;
  };
  virtual absl::Status AnnCandidateLists(const scoring::UserView& user,
                                         const AnnQuery& query,
                                         AnnLists* lists) const = 0;
  // Shape of the main ANN index (for tuning its search parameters).
  struct AnnShape {
    bool ivf = false;
    size_t lists = 0;         // IVF lists; 0 for flat
    size_t probes = 0;        // IVF probes of a search with nprobe 0
    uint64_t items = 0;       // items in the main index
    bool code_index = false;  // has a per-interest index
    bool code_ivf = false;
    size_t code_lists = 0;    // its IVF lists; 0 for exact
    size_t code_probes = 0;   // its probes with code_nprobe 0
    uint64_t code_rows = 0;   // vectors in it (n per item)
    uint64_t code_bytes = 0;  // its size in memory, approximately
  };
  virtual AnnShape ann_shape() const = 0;
};

struct AnnOptions {
  // false: no ANN index (saves its build time and memory); AnnCandidates
  // then returns FailedPrecondition. For deployments without Retrieve.
  bool enabled = true;
  // Catalogues up to this many items use an exact flat index; above it IVF.
  size_t flat_max_items = 50000;
  // IVF lists (0 = sqrt(N)) and probes: more probes, better recall, slower.
  // The server tunes the probes per search (--retrieve_recall_target).
  size_t ivf_lists = 0;
  size_t ivf_probes = 16;
  // Items sampled to train IVF.
  size_t train_sample = 100000;
  // The per-interest index (ItemSnapshot::AnnCandidateLists): every CPE row
  // of every item (n per item, labelled by the item's row), searched with
  // the user's individual codes. Its storage: kInt8 (FAISS 8-bit scalar
  // quantizer, n*d bytes per item), kFp16 (2*n*d), kFp32 (4*n*d), each plus
  // 8*n bytes of labels; kOff builds none (mean-vector candidates only).
  // IVF with code_lists lists (0 = sqrt(n * items)) when the mean index is
  // IVF, else exact. Only the main index has one: recent upserts are
  // candidates whatever their score.
  enum class CodeIndex { kOff, kFp32, kFp16, kInt8 };
  CodeIndex code_index = CodeIndex::kInt8;
  size_t code_lists = 0;
  // Upserted rows not yet in the main index are searched exactly in a small
  // side index; above this many (or 5% of the items) the main index is
  // rebuilt. Larger: cheaper upserts, slower Retrieve.
  size_t tail_max_rows = 2048;
  // OpenMP threads per search (0 = OpenMP's default). 1 suits a server that
  // runs many requests in parallel.
  int search_threads = 1;
  // Where FAISS was built with GPU support (EMBSUM_HAVE_FAISS_GPU), kAuto
  // copies each ANN index to GPU `gpu_device` when that device exists and
  // searches it there (faster Retrieve on large catalogues, costs device
  // memory for the vectors); kOff keeps it on the CPU. The CPU index is kept
  // either way, as the fallback on any GPU error. Without GPU FAISS: CPU.
  enum class Gpu { kAuto, kOff };
  Gpu gpu = Gpu::kAuto;
  int gpu_device = 0;
  // Receives one line per GPU event with its level: "info" (first use of a
  // device, no device) or "warning" (a copy or search that failed; the index
  // then stays on the CPU). Null: written to stderr. Called from the thread
  // that builds or searches; must be thread-safe.
  std::function<void(std::string_view level, std::string_view message)> gpu_log;
};

// "int8", "fp16", "fp32" or "off" (the --ann_code_index flag); nullopt for
// anything else.
std::optional<AnnOptions::CodeIndex> ParseAnnCodeIndex(std::string_view text);

// "auto" or "off" (the --ann_gpu flag); nullopt for anything else.
std::optional<AnnOptions::Gpu> ParseAnnGpu(std::string_view text);

struct ItemCatalogOptions {
  // Storage dtype of the scoring arena: 16-bit halves memory and bandwidth.
  scoring::DType dtype = scoring::DType::kFloat32;
  AnnOptions ann;
  // Arena capacity = live rows * growth + min_headroom_rows; unused rows
  // cost address space only. When full, a bigger arena is built (live rows
  // copied) and swapped in.
  double growth = 1.5;
  size_t min_headroom_rows = 1024;
  // The upsert log is folded into a new FAISS snapshot once it holds more
  // than max(checkpoint_min_entries, checkpoint_fraction * items) entries:
  // smaller = faster start-up, more rewriting.
  size_t checkpoint_min_entries = 4096;
  double checkpoint_fraction = 0.1;
};

// Thread-safety: Current() is safe to call concurrently with anything;
// Upsert/Delete serialise among themselves and never block readers.
//
// A write is atomic: the new snapshot is built first (arena rows beyond
// every published snapshot, id map, ANN), then the log entry is written and
// synced, then the snapshot is published. A write that fails before its log
// write changes nothing, now or after a restart; one whose log write
// succeeded is acknowledged and published.
//
// Cost of a write of b items to a catalogue of N: O(b log N) for the id map
// (a persistent hash trie of the recent writes over a flat table, refolded
// in O(N) every max(1024, N/16) entries) and the liveness pages
// (copy-on-write, 16384 rows a page), O(b) for the arena rows and a flat ANN
// segment of the new rows, plus, amortised, merging ANN segments (O(b log b))
// and rebuilding the main ANN index once the recent rows pass
// AnnOptions::tail_max_rows (O(N) every max(tail_max_rows, N/20) rows), a new
// arena when the old one is full or mostly dead (O(N), geometric), and a
// checkpoint when the log passes its threshold (O(N) every
// max(checkpoint_min_entries, checkpoint_fraction*N) entries). The amortised
// parts run on the writing thread, under the writer's lock.
class ItemCatalog {
 public:
  static absl::StatusOr<std::unique_ptr<ItemCatalog>> Open(
      const std::string& dir, const ModelManifest& manifest,
      const ItemCatalogOptions& options,
      const ItemCatalogTestingHooks& testing = {});
  virtual ~ItemCatalog() = default;

  virtual std::shared_ptr<const ItemSnapshot> Current() const = 0;

  // All-or-nothing: validates every record (id, sizes, finite values) first.
  // Durable before it returns; the next Current() sees the change.
  absl::Status Upsert(std::span<const ItemUpsert> items) {
    return Upsert(items, WriteStamp{});
  }
  // Returns how many of the ids existed and were deleted.
  absl::StatusOr<uint64_t> Delete(std::span<const std::string> item_ids) {
    return Delete(item_ids, WriteStamp{});
  }
  // The same, with the stamp written in the item log's batch of the write
  // (atomic with it): a nonzero stamp.log_sequence becomes
  // applied_log_sequence(), also when nothing else is written (no items,
  // or none of the ids existed). Upserted items count in online_writes().
  virtual absl::Status Upsert(std::span<const ItemUpsert> items,
                              const WriteStamp& stamp) = 0;
  virtual absl::StatusOr<uint64_t> Delete(std::span<const std::string> item_ids,
                                          const WriteStamp& stamp) = 0;
  // The write log sequence of the last message applied (0: none). Kept in
  // the item log, so it survives checkpoints and restarts.
  virtual uint64_t applied_log_sequence() const = 0;
  // Items upserted or deleted online since the directory was built.
  virtual uint64_t online_writes() const = 0;

  // Called (under the writer's lock, after publication) with the new
  // snapshot and the arena rows written; rows empty = whole new arena.
  // Rows are only ever appended (an upsert writes a fresh row), so `rows`
  // are at or beyond every earlier snapshot's rows().
  // For mirrors such as the CUDA scorer's device arena.
  // SetListener calls the new listener right away, once, with the current
  // snapshot and empty rows, so a mirror starts from a consistent state.
  // Deletes change only liveness (snapshot.live()) and do not call it.
  using Listener = std::function<void(const ItemSnapshot& snapshot,
                                      std::span<const uint32_t> rows)>;
  virtual void SetListener(Listener listener) = 0;

  // Folds the upsert log into a new FAISS snapshot now (also done
  // automatically, see ItemCatalogOptions). Blocks writers, not readers.
  virtual absl::Status Checkpoint() = 0;
  // Result of the last checkpoint, automatic or not (OK before any). An
  // automatic checkpoint that fails does not fail the write that triggered
  // it (that write is already durable in the log); it is retried later.
  // A checkpoint whose new snapshot is in place but whose log trim failed
  // reports the trim error; the entries left in the log are idempotent and
  // folded again by the next checkpoint.
  virtual absl::Status last_checkpoint_status() const = 0;
};

}  // namespace embsum::store

#endif  // EMBSUM_STORE_ITEM_CATALOG_H_
