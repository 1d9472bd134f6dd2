// Dynamic batching for the CUDA scorer: requests with the same key that
// arrive within `window_us` of the first are executed together by one call
// of the executor (one kernel launch for all of them).
//
// The first request of a batch leads. While `max_in_flight` batches are
// already executing (every stream busy), it waits for one of them to
// finish, at most the window, and closes early when max_batch requests
// joined; otherwise it runs at once, so a request that finds a free stream
// never pays the window. It then closes the batch, runs the executor on the
// calling thread and wakes the others, which return the same status. A
// window of 0 or a max_batch of 1 runs every request alone.
//
// Thread-safe: Submit may be called from any number of threads.
#ifndef EMBSUM_SCORING_CUDA_REQUEST_BATCHER_H_
#define EMBSUM_SCORING_CUDA_REQUEST_BATCHER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "scoring/status.h"

namespace embsum::scoring::cuda_internal {

class RequestBatcher {
 public:
  // Runs one batch: `requests` are the Submit arguments in arrival order,
  // all with `key`. Called on a submitting thread, never concurrently with
  // itself for the same batch; different batches may run concurrently.
  using Executor =
      std::function<Status(uint64_t key, std::span<void* const> requests)>;

  RequestBatcher(uint32_t window_us, uint32_t max_batch, uint32_t max_in_flight,
                 Executor executor);
  RequestBatcher(const RequestBatcher&) = delete;
  RequestBatcher& operator=(const RequestBatcher&) = delete;

  // Blocks until the batch holding `request` was executed; returns the
  // executor's status for that batch. `request` is opaque to the batcher.
  Status Submit(uint64_t key, void* request);

  // Batches executed and requests submitted so far (for tests and metrics).
  uint64_t batches() const;
  uint64_t requests() const;

 private:
  struct Batch {
    uint64_t key = 0;
    std::vector<void*> requests;
    bool closed = false;
    bool done = false;
    Status status;
    std::condition_variable cv;
  };

  const uint32_t window_us_;
  const uint32_t max_batch_;
  const int max_in_flight_;
  const Executor executor_;
  mutable std::mutex mu_;
  std::shared_ptr<Batch> open_;  // guarded by mu_
  uint64_t batches_ = 0;         // guarded by mu_
  uint64_t requests_ = 0;        // guarded by mu_
  int executing_ = 0;            // batches in the executor; guarded by mu_
};

}  // namespace embsum::scoring::cuda_internal

#endif  // EMBSUM_SCORING_CUDA_REQUEST_BATCHER_H_
