#include "scoring/internal/thread_pool.h"

#include <algorithm>

namespace embsum::scoring::internal {

ThreadPool::ThreadPool(int workers) {
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

void ThreadPool::RunTasks(Job& job) {
  for (size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
       i < job.tasks; i = job.next.fetch_add(1, std::memory_order_relaxed)) {
    (*job.task)(i);
  }
}

void ThreadPool::ParallelFor(size_t tasks,
                             const std::function<void(size_t)>& task) {
  if (tasks == 0) return;
  if (tasks == 1 || threads_.empty()) {
    for (size_t i = 0; i < tasks; ++i) task(i);
    return;
  }
  Job job;
  job.tasks = tasks;
  job.task = &task;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(&job);
  }
  if (tasks - 1 >= threads_.size()) {
    work_cv_.notify_all();
  } else {
    for (size_t i = 0; i + 1 < tasks; ++i) work_cv_.notify_one();
  }
  RunTasks(job);
  // Every task is claimed; wait for the workers still running one.
  std::unique_lock<std::mutex> lock(mu_);
  auto it = std::find(jobs_.begin(), jobs_.end(), &job);
  if (it != jobs_.end()) jobs_.erase(it);
  done_cv_.wait(lock, [&job] { return job.helpers == 0; });
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    Job* job = jobs_.front();
    if (job->next.load(std::memory_order_relaxed) >= job->tasks) {
      jobs_.pop_front();  // exhausted; its caller finishes it
      continue;
    }
    ++job->helpers;
    lock.unlock();
    RunTasks(*job);
    lock.lock();
    if (--job->helpers == 0) done_cv_.notify_all();
  }
}

}  // namespace embsum::scoring::internal
