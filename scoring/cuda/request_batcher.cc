#include "scoring/cuda/request_batcher.h"

#include <chrono>
#include <utility>

namespace embsum::scoring::cuda_internal {

RequestBatcher::RequestBatcher(uint32_t window_us, uint32_t max_batch,
                               uint32_t max_in_flight, Executor executor)
    : window_us_(window_us),
      max_batch_(max_batch == 0 ? 1 : max_batch),
      max_in_flight_(static_cast<int>(max_in_flight == 0 ? 1 : max_in_flight)),
      executor_(std::move(executor)) {}

uint64_t RequestBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

uint64_t RequestBatcher::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

Status RequestBatcher::Submit(uint64_t key, void* request) {
  if (window_us_ == 0 || max_batch_ == 1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batches_;
      ++requests_;
    }
    void* const one[] = {request};
    return executor_(key, one);
  }
  std::unique_lock<std::mutex> lock(mu_);
  ++requests_;
  if (open_ != nullptr && open_->key == key) {
    // Join the open batch and wait for its leader.
    std::shared_ptr<Batch> batch = open_;
    batch->requests.push_back(request);
    if (batch->requests.size() >= max_batch_) {
      batch->closed = true;
      open_.reset();
      batch->cv.notify_all();
    }
    batch->cv.wait(lock, [&] { return batch->done; });
    return batch->status;
  }
  // Lead a new batch. A different-key batch that was open keeps its own
  // leader, which still closes and runs it.
  auto batch = std::make_shared<Batch>();
  batch->key = key;
  batch->requests.reserve(max_batch_);
  batch->requests.push_back(request);
  open_ = batch;
  if (executing_ >= max_in_flight_) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::microseconds(window_us_);
    batch->cv.wait_until(lock, deadline, [&] {
      return batch->closed || executing_ < max_in_flight_;
    });
  }
  batch->closed = true;
  if (open_ == batch) open_.reset();
  ++batches_;
  ++executing_;
  const std::vector<void*> requests = std::move(batch->requests);
  lock.unlock();
  const Status status = executor_(key, requests);
  lock.lock();
  --executing_;
  if (open_ != nullptr) open_->cv.notify_all();  // a stream is free
  batch->status = status;
  batch->done = true;
  batch->cv.notify_all();
  return status;
}

}  // namespace embsum::scoring::cuda_internal
