#include "scoring/internal/thread_pool.h"

#include <algorithm>

namespace embsum::scoring::internal {

ThreadPool::ThreadPool(int workers, int cores)
    : cores_(cores > 0 ? cores : std::max(workers, 0) + 1) {
  threads_.reserve(static_cast<size_t>(std::max(workers, 0)));
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

ThreadPool::Stats ThreadPool::stats() const {
  Stats s;
  s.jobs = jobs_count_.load(std::memory_order_relaxed);
  s.inline_jobs = inline_jobs_.load(std::memory_order_relaxed);
  s.helper_tasks = helper_tasks_.load(std::memory_order_relaxed);
  s.helper_wakeups = helper_wakeups_.load(std::memory_order_relaxed);
  return s;
}

void ThreadPool::RunTasks(Job& job) {
  for (size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
       i < job.tasks; i = job.next.fetch_add(1, std::memory_order_relaxed)) {
    (*job.task)(i);
  }
}

uint64_t ThreadPool::HelpWith(Job& job) {
  uint64_t ran = 0;
  for (size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
       i < job.tasks;) {
    (*job.task)(i);
    ++ran;
    // More threads than cores (a caller arrived since): leave the rest of
    // the job to its caller rather than share a core with it.
    if (callers_.load(std::memory_order_relaxed) +
            busy_.load(std::memory_order_relaxed) >
        cores_) {
      break;
    }
    i = job.next.fetch_add(1, std::memory_order_relaxed);
  }
  return ran;
}

bool ThreadPool::CoreFree() const {
  return callers_.load(std::memory_order_relaxed) +
             busy_.load(std::memory_order_relaxed) <
         cores_;
}

ThreadPool::Job* ThreadPool::NextJob() {
  while (!jobs_.empty()) {
    Job* job = jobs_.front();
    if (job->next.load(std::memory_order_relaxed) < job->tasks) return job;
    jobs_.pop_front();  // exhausted; its caller finishes it
  }
  return nullptr;
}

void ThreadPool::LeaveCaller() {
  callers_.fetch_sub(1, std::memory_order_relaxed);
  if (threads_.empty()) return;
  // A core is free again: a helper may join a job that is still queued.
  // Taking mu_ orders this against a helper that is about to wait.
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_ > 0 && NextJob() != nullptr) {
    helper_wakeups_.fetch_add(1, std::memory_order_relaxed);
    work_cv_.notify_one();
  }
}

void ThreadPool::ParallelFor(size_t tasks,
                             const std::function<void(size_t)>& task) {
  if (tasks == 0) return;
  jobs_count_.fetch_add(1, std::memory_order_relaxed);
  const int callers = callers_.fetch_add(1, std::memory_order_relaxed) + 1;
  auto run_inline = [&] {
    inline_jobs_.fetch_add(1, std::memory_order_relaxed);
    for (size_t i = 0; i < tasks; ++i) task(i);
    LeaveCaller();
  };
  if (tasks == 1 || threads_.empty() ||
      callers + busy_.load(std::memory_order_relaxed) >= cores_) {
    run_inline();
    return;
  }
  Job job;
  job.tasks = tasks;
  job.task = &task;
  size_t wake = 0;
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int spare = cores_ - callers_.load(std::memory_order_relaxed) -
                      busy_.load(std::memory_order_relaxed);
    if (spare > 0) {
      jobs_.push_back(&job);
      queued = true;
      wake = std::min(
          {tasks - 1, static_cast<size_t>(spare), static_cast<size_t>(idle_)});
    }
  }
  if (!queued) {  // the cores filled up since the check above
    run_inline();
    return;
  }
  for (size_t i = 0; i < wake; ++i) work_cv_.notify_one();
  helper_wakeups_.fetch_add(wake, std::memory_order_relaxed);
  RunTasks(job);
  {
    // Every task is claimed; wait for the helpers still running one.
    std::unique_lock<std::mutex> lock(mu_);
    auto it = std::find(jobs_.begin(), jobs_.end(), &job);
    if (it != jobs_.end()) jobs_.erase(it);
    done_cv_.wait(lock, [&job] { return job.helpers == 0; });
  }
  LeaveCaller();
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    ++idle_;
    work_cv_.wait(lock, [this] { return stop_ || (CoreFree() && NextJob()); });
    --idle_;
    if (stop_) return;
    // The caller claims tasks without the lock: the job seen by the wait
    // may be exhausted by now.
    Job* job = NextJob();
    if (job == nullptr) continue;
    ++job->helpers;
    busy_.fetch_add(1, std::memory_order_relaxed);
    lock.unlock();
    const uint64_t ran = HelpWith(*job);
    helper_tasks_.fetch_add(ran, std::memory_order_relaxed);
    lock.lock();
    busy_.fetch_sub(1, std::memory_order_relaxed);
    if (--job->helpers == 0) done_cv_.notify_all();
  }
}

}  // namespace embsum::scoring::internal
