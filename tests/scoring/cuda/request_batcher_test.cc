#include "scoring/cuda/request_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace embsum::scoring::cuda_internal {
namespace {

// Records each executed batch (the request ids it held).
class Recorder {
 public:
  Status Execute(uint64_t key, std::span<void* const> requests) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int> ids;
    for (void* r : requests) ids.push_back(*static_cast<int*>(r));
    batches_.push_back({key, ids});
    if (fail_key_ == key) return Status::Internal("batch failed");
    return Status::Ok();
  }
  std::vector<std::pair<uint64_t, std::vector<int>>> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  void FailKey(uint64_t key) { fail_key_ = key; }

 private:
  std::mutex mu_;
  std::vector<std::pair<uint64_t, std::vector<int>>> batches_;
  uint64_t fail_key_ = ~uint64_t{0};
};

// Runs `count` submissions from as many threads, released together.
std::vector<Status> SubmitConcurrently(RequestBatcher& batcher, int count,
                                       std::function<uint64_t(int)> key) {
  std::vector<int> ids(count);
  std::vector<Status> statuses(count);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    ids[i] = i;
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < count) std::this_thread::yield();
      statuses[i] = batcher.Submit(key(i), &ids[i]);
    });
  }
  for (auto& t : threads) t.join();
  return statuses;
}

TEST(RequestBatcherTest, ZeroWindowRunsEachRequestAlone) {
  Recorder recorder;
  RequestBatcher batcher(0, 256, [&](uint64_t k, std::span<void* const> r) {
    return recorder.Execute(k, r);
  });
  const auto statuses = SubmitConcurrently(batcher, 8, [](int) { return 1; });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok());
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 8u);
  for (const auto& b : batches) EXPECT_EQ(b.second.size(), 1u);
  EXPECT_EQ(batcher.batches(), 8u);
  EXPECT_EQ(batcher.requests(), 8u);
}

TEST(RequestBatcherTest, ConcurrentRequestsWithinTheWindowShareOneBatch) {
  Recorder recorder;
  // A window far longer than thread start-up; the batch closes as soon as
  // max_batch (16) requests joined, so the test does not wait for it.
  RequestBatcher full(2'000'000, 16, [&](uint64_t k, std::span<void* const> r) {
    return recorder.Execute(k, r);
  });
  const auto statuses = SubmitConcurrently(full, 16, [](int) { return 7; });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok());
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].first, 7u);
  std::vector<int> ids = batches[0].second;
  std::sort(ids.begin(), ids.end());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(ids[i], i);
  EXPECT_EQ(full.batches(), 1u);
  EXPECT_EQ(full.requests(), 16u);
}

TEST(RequestBatcherTest, MaxBatchSplitsLargeBursts) {
  Recorder recorder;
  RequestBatcher batcher(2'000'000, 4,
                         [&](uint64_t k, std::span<void* const> r) {
                           return recorder.Execute(k, r);
                         });
  SubmitConcurrently(batcher, 12, [](int) { return 1; });
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 3u);
  for (const auto& b : batches) EXPECT_EQ(b.second.size(), 4u);
}

TEST(RequestBatcherTest, LoneRequestRunsAfterTheWindow) {
  Recorder recorder;
  RequestBatcher batcher(1000, 256, [&](uint64_t k, std::span<void* const> r) {
    return recorder.Execute(k, r);
  });
  int id = 42;
  EXPECT_TRUE(batcher.Submit(3, &id).ok());
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].second, std::vector<int>{42});
}

TEST(RequestBatcherTest, DifferentKeysNeverShareABatch) {
  Recorder recorder;
  RequestBatcher batcher(20'000, 256,
                         [&](uint64_t k, std::span<void* const> r) {
                           return recorder.Execute(k, r);
                         });
  SubmitConcurrently(batcher, 24, [](int i) { return uint64_t(i % 3); });
  int seen = 0;
  for (const auto& b : recorder.batches()) {
    for (int id : b.second) {
      EXPECT_EQ(uint64_t(id % 3), b.first) << "request " << id;
      ++seen;
    }
  }
  EXPECT_EQ(seen, 24);
}

TEST(RequestBatcherTest, EveryRequestOfAFailedBatchGetsTheError) {
  Recorder recorder;
  recorder.FailKey(5);
  RequestBatcher batcher(2'000'000, 6,
                         [&](uint64_t k, std::span<void* const> r) {
                           return recorder.Execute(k, r);
                         });
  const auto statuses = SubmitConcurrently(batcher, 6, [](int) { return 5; });
  ASSERT_EQ(recorder.batches().size(), 1u);
  for (const Status& s : statuses) {
    EXPECT_EQ(s.code(), Status::Code::kInternal);
    EXPECT_EQ(s.message(), "batch failed");
  }
}

}  // namespace
}  // namespace embsum::scoring::cuda_internal
