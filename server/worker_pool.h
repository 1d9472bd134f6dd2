// A fixed set of worker threads fed by a bounded FIFO admission queue. The
// service hands every scoring or store call to it so that gRPC threads never
// block on a busy server (a short call that finds it idle runs on the gRPC
// thread instead, within the same thread budget: RunHereOrSubmit); when the
// queue is full, or the wait it would mean is longer than max_queue_wait,
// Submit refuses at once and the caller answers RESOURCE_EXHAUSTED (load
// shedding instead of unbounded latency).
//
// Thread-safety: all methods are safe to call concurrently.
#ifndef EMBSUM_SERVER_WORKER_POOL_H_
#define EMBSUM_SERVER_WORKER_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "metrics/metrics.h"

namespace embsum::server {

struct WorkerPoolOptions {
  // Threads that run tasks; more than the cores only adds contention.
  int threads = 1;
  // Tasks waiting beyond those running. Larger absorbs bursts but lets
  // queueing delay grow (up to queue_capacity / throughput).
  size_t queue_capacity = 128;
  // Thread name prefix (visible in top -H); at most 10 characters.
  std::string name = "worker";
  // Longest a task may wait in the queue (zero: no limit). Submit refuses a
  // task when the queue already holds more than this much work (queued
  // tasks x the recent mean run time / threads), and a task found older
  // than this when a worker takes it is expired instead of run. Under
  // sustained overload this bounds the latency of what is admitted to about
  // max_queue_wait plus one run, whatever queue_capacity is; shorter sheds
  // more of a burst.
  absl::Duration max_queue_wait = absl::ZeroDuration();
  // Time source for queue waits and run times; null: absl::Now. Tests
  // inject a fake one. Called from Submit and the workers: thread-safe.
  std::function<absl::Time()> clock = nullptr;
  // Observes each task's wait in the queue, seconds (null: not measured).
  // Must outlive the pool.
  metrics::Histogram* queue_wait = nullptr;
};

class WorkerPool {
 public:
  explicit WorkerPool(const WorkerPoolOptions& options);
  // Shutdown().
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  enum class Admission {
    kQueued,
    kQueueFull,    // queue_capacity tasks are waiting
    kWaitTooLong,  // the expected wait exceeds max_queue_wait
    kStopped,      // Shutdown was called
    kRanInline,    // RunHereOrSubmit ran the task on the calling thread
  };
  // Queues `task`, or refuses it (and drops it unrun). A queued task either
  // runs, or, when it waited longer than max_queue_wait, `expired` runs
  // instead on the worker (null: the task runs anyway).
  Admission Submit(absl::AnyInvocable<void()> task,
                   absl::AnyInvocable<void()> expired);
  // Runs `task` here, on the calling thread, when the pool is idle: no task
  // running (inline or not) and none queued (kRanInline, after it ran). A
  // call that arrives at an idle server skips the hand-off to a worker and
  // back. Otherwise the same as Submit. An inline task counts against
  // `threads` like a worker's, so workers and inline callers together
  // never run more than `threads` tasks. Only one task runs inline at a
  // time, so at most one of the callers' threads (gRPC's, which also read
  // the sockets) is held while others arrive: what waits then waits in this
  // pool's queue, where admission sees it, not unread in gRPC. For short
  // tasks only.
  Admission RunHereOrSubmit(absl::AnyInvocable<void()> task,
                            absl::AnyInvocable<void()> expired);
  // Submit without an expiry: true when queued.
  bool TrySubmit(absl::AnyInvocable<void()> task) {
    return Submit(std::move(task), nullptr) == Admission::kQueued;
  }

  // Refuses new tasks, runs every queued task, joins the threads.
  // Idempotent.
  void Shutdown();

  int threads() const { return threads_count_; }
  // Tasks queued and not yet started.
  size_t queued() const;
  // Mean run time of recent tasks (exponentially weighted, 1/8 per task).
  absl::Duration mean_run_time() const;
  // The pool's clock (WorkerPoolOptions::clock, else absl::Now()).
  absl::Time Now() const { return clock_ ? clock_() : absl::Now(); }

 private:
  struct Task {
    absl::AnyInvocable<void()> run;
    absl::AnyInvocable<void()> expired;
    absl::Time queued_at;
  };
  void Run();
  // Updates mean_run_ns_ with one task's run time.
  void RecordRunTime(absl::Duration took);

  const size_t capacity_;
  const int threads_count_;
  const absl::Duration max_queue_wait_;
  const std::function<absl::Time()> clock_;
  metrics::Histogram* const queue_wait_;
  std::atomic<int64_t> mean_run_ns_{0};
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // tasks running, inline or not
  std::vector<std::thread> threads_;
  absl::Mutex join_mu_;  // serialises Shutdown's joins
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_WORKER_POOL_H_
