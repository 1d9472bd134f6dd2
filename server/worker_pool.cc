#include "server/worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

namespace embsum::server {

WorkerPool::WorkerPool(const WorkerPoolOptions& options)
    : capacity_(options.queue_capacity),
      threads_count_(std::max(1, options.threads)),
      max_queue_wait_(options.max_queue_wait),
      clock_(options.clock),
      queue_wait_(options.queue_wait) {
  const int n = threads_count_;
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this] { Run(); });
    const std::string name =
        options.name.substr(0, 10) + "-" + std::to_string(i);
    pthread_setname_np(threads_.back().native_handle(),
                       name.substr(0, 15).c_str());
  }
}

WorkerPool::~WorkerPool() { Shutdown(); }

WorkerPool::Admission WorkerPool::Submit(absl::AnyInvocable<void()> task,
                                         absl::AnyInvocable<void()> expired) {
  const absl::Time now = Now();
  absl::MutexLock lock(&mu_);
  if (stopping_) return Admission::kStopped;
  if (queue_.size() >= capacity_) return Admission::kQueueFull;
  if (max_queue_wait_ > absl::ZeroDuration() && !queue_.empty()) {
    const absl::Duration expected =
        absl::Nanoseconds(mean_run_ns_.load(std::memory_order_relaxed)) *
        static_cast<double>(queue_.size()) / threads_count_;
    if (expected > max_queue_wait_) return Admission::kWaitTooLong;
  }
  queue_.push_back(Task{std::move(task), std::move(expired), now});
  return Admission::kQueued;
}

WorkerPool::Admission WorkerPool::RunHereOrSubmit(
    absl::AnyInvocable<void()> task, absl::AnyInvocable<void()> expired) {
  bool here = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return Admission::kStopped;
    here = queue_.empty() && running_ == 0;
    if (here) ++running_;
  }
  if (!here) return Submit(std::move(task), std::move(expired));
  if (queue_wait_ != nullptr) queue_wait_->Observe(0.0);
  const absl::Time start = Now();
  task();
  RecordRunTime(Now() - start);
  absl::MutexLock lock(&mu_);
  --running_;
  return Admission::kRanInline;
}

void WorkerPool::RecordRunTime(absl::Duration took_time) {
  // Relaxed read-modify-write races between threads only lose an update
  // of an estimate.
  const int64_t took = absl::ToInt64Nanoseconds(took_time);
  const int64_t mean = mean_run_ns_.load(std::memory_order_relaxed);
  mean_run_ns_.store(mean == 0 ? took : mean + (took - mean) / 8,
                     std::memory_order_relaxed);
}

absl::Duration WorkerPool::mean_run_time() const {
  return absl::Nanoseconds(mean_run_ns_.load(std::memory_order_relaxed));
}

size_t WorkerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void WorkerPool::Shutdown() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Run() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool->mu_) {
            return (pool->stopping_ && pool->queue_.empty()) ||
                   (!pool->queue_.empty() &&
                    pool->running_ < pool->threads_count_);
          },
          this));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    const absl::Time start = Now();
    if (queue_wait_ != nullptr) {
      queue_wait_->Observe(absl::ToDoubleSeconds(start - task.queued_at));
    }
    if (max_queue_wait_ > absl::ZeroDuration() && task.expired != nullptr &&
        start - task.queued_at > max_queue_wait_) {
      task.expired();
    } else {
      task.run();
      RecordRunTime(Now() - start);
    }
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace embsum::server
