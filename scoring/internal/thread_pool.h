// A fixed pool of worker threads that runs "parallel for" jobs. The calling
// thread always works on its own job too, so a job finishes even when every
// worker is busy with other callers' jobs, and concurrent callers share the
// workers. Thread-safe: ParallelFor may be called from any number of
// threads at once (not from inside a task).
#ifndef EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_
#define EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace embsum::scoring::internal {

class ThreadPool {
 public:
  // Starts `workers` threads (0 is allowed: everything runs on callers).
  explicit ThreadPool(int workers);
  // Joins the workers; no ParallelFor may be running.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs task(i) for every i in [0, tasks), on the calling thread and any
  // idle workers, and returns when all have finished. `task` must not throw.
  void ParallelFor(size_t tasks, const std::function<void(size_t)>& task);

 private:
  struct Job {
    size_t tasks = 0;
    const std::function<void(size_t)>* task = nullptr;
    std::atomic<size_t> next{0};
    int helpers = 0;  // workers inside RunTasks; guarded by mu_
  };

  static void RunTasks(Job& job);
  void WorkerLoop();

  std::mutex mu_;
  std::condition_variable work_cv_;  // a job was queued, or stop_
  std::condition_variable done_cv_;  // a worker left a job
  std::deque<Job*> jobs_;            // guarded by mu_
  bool stop_ = false;                // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace embsum::scoring::internal

#endif  // EMBSUM_SCORING_INTERNAL_THREAD_POOL_H_
