#include "scoring/cuda/request_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace embsum::scoring::cuda_internal {
namespace {

constexpr uint32_t kHour = 3'600'000'000u;  // a window no test waits out
constexpr int kBlocker = -1;

// Records each executed batch (the request ids it held). A batch holding
// kBlocker stays in the executor until Release(), keeping the device "busy".
class Recorder {
 public:
  Status Execute(uint64_t key, std::span<void* const> requests) {
    std::unique_lock<std::mutex> lock(mu_);
    std::vector<int> ids;
    for (void* r : requests) ids.push_back(*static_cast<int*>(r));
    batches_.push_back({key, ids});
    cv_.notify_all();
    if (std::find(ids.begin(), ids.end(), kBlocker) != ids.end()) {
      cv_.wait(lock, [&] { return released_; });
    }
    if (fail_key_ == key) return Status::Internal("batch failed");
    return Status::Ok();
  }
  std::vector<std::pair<uint64_t, std::vector<int>>> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  void WaitForBatches(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return batches_.size() >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  void FailKey(uint64_t key) { fail_key_ = key; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<uint64_t, std::vector<int>>> batches_;
  bool released_ = false;
  uint64_t fail_key_ = ~uint64_t{0};
};

// One batch in flight at a time (one stream).
RequestBatcher MakeBatcher(Recorder& recorder, uint32_t window_us,
                           uint32_t max_batch) {
  return RequestBatcher(window_us, max_batch, 1,
                        [&recorder](uint64_t k, std::span<void* const> r) {
                          return recorder.Execute(k, r);
                        });
}

// Occupies the batcher with a batch that stays executing until
// recorder.Release(); join the returned thread after releasing.
std::thread StartBlocker(RequestBatcher& batcher, Recorder& recorder,
                         uint64_t key) {
  static int blocker = kBlocker;
  std::thread t([&batcher, key] { (void)batcher.Submit(key, &blocker); });
  recorder.WaitForBatches(1);
  return t;
}

// Runs `count` submissions (ids first_id..) from as many threads, released
// together; returns their statuses.
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
  RequestBatcher batcher = MakeBatcher(recorder, 0, 256);
  std::thread blocker = StartBlocker(batcher, recorder, 1);
  const auto statuses = SubmitConcurrently(batcher, 8, [](int) { return 1; });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok());
  recorder.Release();
  blocker.join();
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 9u);
  for (const auto& b : batches) EXPECT_EQ(b.second.size(), 1u);
  EXPECT_EQ(batcher.batches(), 9u);
  EXPECT_EQ(batcher.requests(), 9u);
}

TEST(RequestBatcherTest, LoneRequestOnAnIdleDeviceRunsAtOnce) {
  Recorder recorder;
  // Were the window waited for, this test would hang.
  RequestBatcher batcher = MakeBatcher(recorder, kHour, 256);
  int id = 42;
  EXPECT_TRUE(batcher.Submit(3, &id).ok());
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].second, std::vector<int>{42});
}

TEST(RequestBatcherTest, WaitingLeaderRunsWhenAStreamFrees) {
  Recorder recorder;
  RequestBatcher batcher = MakeBatcher(recorder, kHour, 256);
  std::thread blocker = StartBlocker(batcher, recorder, 2);
  int id = 5;
  Status status = Status::Internal("not run");
  std::thread waiter([&] { status = batcher.Submit(2, &id); });
  // The waiter leads a batch that waits for the busy stream; releasing the
  // blocker frees it, and the waiter must run long before the window ends
  // (the test would hang otherwise).
  while (batcher.requests() < 2) std::this_thread::yield();
  recorder.Release();
  waiter.join();
  blocker.join();
  EXPECT_TRUE(status.ok());
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].second, std::vector<int>{5});
}

TEST(RequestBatcherTest, LeaderWithAFreeStreamDoesNotWait) {
  Recorder recorder;
  // Two streams, one busy: a new request still runs at once.
  RequestBatcher batcher(kHour, 256, 2,
                         [&recorder](uint64_t k, std::span<void* const> r) {
                           return recorder.Execute(k, r);
                         });
  std::thread blocker = StartBlocker(batcher, recorder, 4);
  int id = 6;
  EXPECT_TRUE(batcher.Submit(4, &id).ok());
  recorder.Release();
  blocker.join();
  ASSERT_EQ(recorder.batches().size(), 2u);
}

TEST(RequestBatcherTest, RequestsArrivingWhileBusyShareOneBatch) {
  Recorder recorder;
  RequestBatcher batcher = MakeBatcher(recorder, kHour, 16);
  std::thread blocker = StartBlocker(batcher, recorder, 7);
  // The batch closes when max_batch (16) requests joined, long before the
  // window ends.
  const auto statuses = SubmitConcurrently(batcher, 16, [](int) { return 7; });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok());
  recorder.Release();
  blocker.join();
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].first, 7u);
  std::vector<int> ids = batches[1].second;
  std::sort(ids.begin(), ids.end());
  ASSERT_EQ(ids.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(ids[i], i);
  EXPECT_EQ(batcher.batches(), 2u);
  EXPECT_EQ(batcher.requests(), 17u);
}

TEST(RequestBatcherTest, MaxBatchSplitsLargeBursts) {
  Recorder recorder;
  RequestBatcher batcher = MakeBatcher(recorder, kHour, 4);
  std::thread blocker = StartBlocker(batcher, recorder, 1);
  SubmitConcurrently(batcher, 12, [](int) { return 1; });
  recorder.Release();
  blocker.join();
  const auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 4u);
  for (size_t i = 1; i < batches.size(); ++i) {
    EXPECT_EQ(batches[i].second.size(), 4u);
  }
}

TEST(RequestBatcherTest, DifferentKeysNeverShareABatch) {
  Recorder recorder;
  RequestBatcher batcher = MakeBatcher(recorder, 20'000, 256);
  std::thread blocker = StartBlocker(batcher, recorder, 99);
  SubmitConcurrently(batcher, 24, [](int i) { return uint64_t(i % 3); });
  recorder.Release();
  blocker.join();
  int seen = 0;
  for (const auto& b : recorder.batches()) {
    for (int id : b.second) {
      if (id == kBlocker) continue;
      EXPECT_EQ(uint64_t(id % 3), b.first) << "request " << id;
      ++seen;
    }
  }
  EXPECT_EQ(seen, 24);
}

TEST(RequestBatcherTest, EveryRequestOfAFailedBatchGetsTheError) {
  Recorder recorder;
  recorder.FailKey(5);
  RequestBatcher batcher = MakeBatcher(recorder, kHour, 6);
  std::thread blocker = StartBlocker(batcher, recorder, 0);
  const auto statuses = SubmitConcurrently(batcher, 6, [](int) { return 5; });
  recorder.Release();
  blocker.join();
  ASSERT_EQ(recorder.batches().size(), 2u);
  for (const Status& s : statuses) {
    EXPECT_EQ(s.code(), Status::Code::kInternal);
    EXPECT_EQ(s.message(), "batch failed");
  }
}

}  // namespace
}  // namespace embsum::scoring::cuda_internal
