// A fixed pool of helper threads that runs "parallel for" jobs under a core
// budget. The calling thread always works on its own job, and helpers only
// take extra tasks while a core is free: at most `cores` threads (callers
// inside ParallelFor plus busy helpers) run tasks at once. So a job that
// runs alone gets every core, concurrent callers that already fill the
// cores run inline without waking anyone, and a job finishes even when
// every helper is busy elsewhere.
//
// Waiting is blocking (mutex and condition variables): an idle pool never
// spins, so it takes no cycles from the threads that are scoring.
//
// Thread-safe: ParallelFor may be called from any number of threads at once
// (not from inside a task).
#ifndef EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_
#define EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_

#ifndef EMBSUM_SCORING_INTERNAL_ACCESS
#error \
    "scoring/internal/ is private to embsum::scoring: include scoring/'s public headers, or link embsum::scoring_internal (tests, benchmarks)"
#endif

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace embsum::scoring::internal {

class ThreadPool {
 public:
  // Starts `workers` helper threads (0 is allowed: everything runs on
  // callers). `cores`: the most threads that run tasks at once, callers
  // included; 0 means workers + 1 (one caller plus every helper).
  explicit ThreadPool(int workers, int cores = 0);
  // Joins the workers; no ParallelFor may be running.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }
  int cores() const { return cores_; }

  // Runs task(i) for every i in [0, tasks), on the calling thread and any
  // helpers the core budget allows, and returns when all have finished.
  // `task` must not throw.
  void ParallelFor(size_t tasks, const std::function<void(size_t)>& task);

  // Counters since construction (relaxed; for tests and benchmarks).
  struct Stats {
    uint64_t jobs = 0;            // ParallelFor calls with tasks > 0
    uint64_t inline_jobs = 0;     // of those, run on the caller alone because
                                  // one task, no helpers or no free core
    uint64_t helper_tasks = 0;    // tasks run by helpers
    uint64_t helper_wakeups = 0;  // notifications sent to helpers
  };
  Stats stats() const;

 private:
  struct Job {
    size_t tasks = 0;
    const std::function<void(size_t)>* task = nullptr;
    std::atomic<size_t> next{0};
    int helpers = 0;  // helpers inside the job; guarded by mu_
  };

  // Runs tasks of `job` until none is left.
  static void RunTasks(Job& job);
  // As RunTasks for a helper: also stops when the pool is over its core
  // budget, handing the rest back to the caller. Returns tasks run.
  uint64_t HelpWith(Job& job);
  // The first job with unclaimed tasks, dropping exhausted ones; null when
  // none. Requires mu_.
  Job* NextJob();
  // Whether a helper may start on a job now (a core is free).
  bool CoreFree() const;
  // A caller leaves: frees its core, and lets a helper take queued work.
  void LeaveCaller();
  void WorkerLoop();

  const int cores_;
  std::mutex mu_;
  std::condition_variable work_cv_;  // a job was queued, a core freed, stop_
  std::condition_variable done_cv_;  // a helper left a job
  std::deque<Job*> jobs_;            // guarded by mu_
  bool stop_ = false;                // guarded by mu_
  int idle_ = 0;                     // helpers waiting; guarded by mu_
  // Callers inside ParallelFor and helpers inside a job (written under mu_
  // for busy_; read without it as a hint).
  std::atomic<int> callers_{0};
  std::atomic<int> busy_{0};
  std::atomic<uint64_t> jobs_count_{0};
  std::atomic<uint64_t> inline_jobs_{0};
  std::atomic<uint64_t> helper_tasks_{0};
  std::atomic<uint64_t> helper_wakeups_{0};
  std::vector<std::thread> threads_;
};

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_
