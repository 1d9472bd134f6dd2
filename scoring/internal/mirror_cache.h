// MirrorCache<Mirror>: copies of item arenas kept somewhere else (the CUDA
// scorer's device memory), found by the arena's identity
// (ItemArena::identity()), never by its address: a freed arena's address
// can be handed to the next one, its identity never is. Identities are a
// serial number, so a replacement arena (a reload, a compaction) always has
// a larger one than the arena it replaces: identity doubles as generation.
//
// Up to `capacity` mirrors are kept, so that arenas in use at the same time
// (the old and the new model while requests of both are in flight, or an
// old snapshot's arena just after a compaction) keep one mirror each
// instead of evicting each other and re-uploading in turns. Beyond that the
// least recently found one leaves the cache; whoever still holds it (a
// request, by shared_ptr) keeps it alive until it lets go.
//
// Host-only, no CUDA: tests/scoring/mirror_cache_test.cc runs everywhere.
// Thread-safety: every method may be called concurrently.
#ifndef EMBSUM_SCORING_INTERNAL_MIRROR_CACHE_H_
#define EMBSUM_SCORING_INTERNAL_MIRROR_CACHE_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

namespace embsum::scoring::internal {

template <typename Mirror>
class MirrorCache {
 public:
  explicit MirrorCache(size_t capacity)
      : capacity_(std::max<size_t>(capacity, 1)) {}

  size_t capacity() const { return capacity_; }

  // The mirror of the arena with `identity`, or null. Counts as a use.
  std::shared_ptr<Mirror> Find(uint64_t identity) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& entry : entries_) {
      if (entry->identity == identity) {
        entry->last_used.store(tick_.fetch_add(1) + 1,
                               std::memory_order_relaxed);
        return entry->mirror;
      }
    }
    return nullptr;
  }

  // Adds (or replaces) the mirror of `identity` as the most recently used
  // one. Returns the mirrors that left the cache to make room: the caller
  // lets go of them outside any lock of its own.
  std::vector<std::shared_ptr<Mirror>> Insert(uint64_t identity,
                                              std::shared_ptr<Mirror> mirror) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    std::vector<std::shared_ptr<Mirror>> evicted;
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if ((*it)->identity == identity) {
        evicted.push_back(std::move((*it)->mirror));
        entries_.erase(it);
        break;
      }
    }
    auto entry = std::make_unique<Entry>();
    entry->identity = identity;
    entry->mirror = std::move(mirror);
    entry->last_used.store(tick_.fetch_add(1) + 1, std::memory_order_relaxed);
    entries_.push_back(std::move(entry));
    ShrinkLocked(capacity_, &evicted);
    return evicted;
  }

  // Keeps only the `keep` most recently used mirrors (0: none), e.g. to
  // free device memory for a new one. Returns those that left.
  std::vector<std::shared_ptr<Mirror>> Shrink(size_t keep) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    std::vector<std::shared_ptr<Mirror>> evicted;
    ShrinkLocked(keep, &evicted);
    return evicted;
  }

  // Identities held, most recently used first.
  std::vector<uint64_t> Identities() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    std::vector<std::pair<uint64_t, uint64_t>> by_use;
    for (const auto& entry : entries_) {
      by_use.emplace_back(entry->last_used.load(std::memory_order_relaxed),
                          entry->identity);
    }
    std::sort(by_use.rbegin(), by_use.rend());
    std::vector<uint64_t> out;
    for (const auto& [used, identity] : by_use) out.push_back(identity);
    return out;
  }

 private:
  struct Entry {
    uint64_t identity = 0;
    std::shared_ptr<Mirror> mirror;
    mutable std::atomic<uint64_t> last_used{0};
  };

  void ShrinkLocked(size_t keep, std::vector<std::shared_ptr<Mirror>>* out) {
    while (entries_.size() > keep) {
      auto oldest = std::min_element(
          entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
            return a->last_used.load(std::memory_order_relaxed) <
                   b->last_used.load(std::memory_order_relaxed);
          });
      out->push_back(std::move((*oldest)->mirror));
      entries_.erase(oldest);
    }
  }

  const size_t capacity_;
  mutable std::shared_mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;  // guarded by mu_
  mutable std::atomic<uint64_t> tick_{0};
};

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_MIRROR_CACHE_H_
