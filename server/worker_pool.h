// A fixed set of worker threads fed by a bounded FIFO admission queue. The
// service hands every scoring or store call to it so that gRPC threads never
// block; when the queue is full TrySubmit refuses at once and the caller
// answers RESOURCE_EXHAUSTED (load shedding instead of unbounded latency).
//
// Thread-safety: all methods are safe to call concurrently.
#ifndef EMBSUM_SERVER_WORKER_POOL_H_
#define EMBSUM_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace embsum::server {

struct WorkerPoolOptions {
  // Threads that run tasks; more than the cores only adds contention.
  int threads = 1;
  // Tasks waiting beyond those running. Larger absorbs bursts but lets
  // queueing delay grow (up to queue_capacity / throughput).
  size_t queue_capacity = 128;
  // Thread name prefix (visible in top -H); at most 10 characters.
  std::string name = "worker";
};

class WorkerPool {
 public:
  explicit WorkerPool(const WorkerPoolOptions& options);
  // Shutdown().
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false (and `task` is dropped unrun) when the queue holds
  // queue_capacity tasks or the pool is shut down.
  bool TrySubmit(absl::AnyInvocable<void()> task);

  // Refuses new tasks, runs every queued task, joins the threads.
  // Idempotent.
  void Shutdown();

  // Tasks queued and not yet started.
  size_t queued() const;

 private:
  void Run();

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  absl::Mutex join_mu_;  // serialises Shutdown's joins
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_WORKER_POOL_H_
