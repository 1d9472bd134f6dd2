// Published<T>: the one way this code base publishes a shared, immutable
// object (an item snapshot, the serving model) to concurrent readers.
//
// A reader takes a std::shared_ptr copy (Load) and keeps it for as long as
// it needs the object; a writer swaps in the next one (Store/Exchange). The
// object a writer replaces is destroyed by whichever thread lets go of it
// last, never under the lock.
//
// Why a mutex and not std::atomic<std::shared_ptr<T>>: libstdc++ 12 (Debian
// 12's) implements the atomic with a lock bit inside the control-block
// pointer, so it is not lock-free either, and its load releases that bit
// with a relaxed store: ThreadSanitizer cannot see the hand-over and
// reports a data race on every load/store pair. absl::Mutex is visible to
// TSan (fuzz/sanitizers/tsan_absl_mutex.cc), costs about the same
// uncontended (one atomic read-modify-write each way), and the critical
// section is a reference-count increment. Readers share the lock
// (ReaderMutexLock), so they never wait for each other.
//
// Thread-safety: every method may be called concurrently.
#ifndef EMBSUM_COMMON_PUBLISHED_H_
#define EMBSUM_COMMON_PUBLISHED_H_

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace embsum {

template <typename T>
class Published {
 public:
  Published() = default;
  explicit Published(std::shared_ptr<const T> initial)
      : current_(std::move(initial)) {}
  Published(const Published&) = delete;
  Published& operator=(const Published&) = delete;

  // The current object (null before the first Store).
  std::shared_ptr<const T> Load() const {
    absl::ReaderMutexLock lock(&mu_);
    return current_;
  }
  // Replaces the current object; returns the one it replaced, which is
  // destroyed when the caller and every reader holding it let go.
  std::shared_ptr<const T> Exchange(std::shared_ptr<const T> next) {
    {
      absl::MutexLock lock(&mu_);
      current_.swap(next);
    }
    return next;
  }
  void Store(std::shared_ptr<const T> next) { Exchange(std::move(next)); }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const T> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace embsum

#endif  // EMBSUM_COMMON_PUBLISHED_H_
