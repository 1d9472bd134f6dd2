#include "scoring/internal/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace embsum::scoring::internal {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskOnce) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.workers(), 3);
  std::vector<std::atomic<int>> runs(1000);
  pool.ParallelFor(runs.size(), [&](size_t i) { runs[i].fetch_add(1); });
  for (const auto& r : runs) EXPECT_EQ(r.load(), 1);
  pool.ParallelFor(0, [&](size_t) { FAIL() << "no tasks expected"; });
}

TEST(ThreadPoolTest, UsesWorkersAndCaller) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::atomic<int> waiting{0};
  // Three tasks that each wait until all three are running: only possible
  // if the caller and both workers run one at the same time.
  pool.ParallelFor(3, [&](size_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    waiting.fetch_add(1);
    while (waiting.load() < 3) std::this_thread::yield();
  });
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id()));
}

TEST(ThreadPoolTest, ConcurrentCallersAllFinish) {
  ThreadPool pool(2);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        pool.ParallelFor(
            17, [&](size_t i) { total.fetch_add(static_cast<long>(i)); });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 6L * 50 * (16 * 17 / 2));
}

TEST(ThreadPoolTest, JobsFinishedBeforeTheHelperArrivesAreSkipped) {
  // Tiny jobs end on the caller while the woken helper is on its way: the
  // helper must find them gone (this once crashed on a finished job).
  ThreadPool pool(1, 2);
  std::atomic<long> total{0};
  for (int round = 0; round < 100000; ++round) {
    pool.ParallelFor(2, [&](size_t i) {
      total.fetch_add(static_cast<long>(i) + 1, std::memory_order_relaxed);
    });
  }
  EXPECT_EQ(total.load(), 100000L * 3);
}

TEST(ThreadPoolTest, NoWorkersRunsOnCaller) {
  ThreadPool pool(0);
  int sum = 0;  // no synchronisation needed: caller only
  pool.ParallelFor(10, [&](size_t i) { sum += static_cast<int>(i); });
  EXPECT_EQ(sum, 45);
}

TEST(ThreadPoolTest, CoresDefaultToWorkersPlusCaller) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.cores(), 4);
  ThreadPool capped(3, 2);
  EXPECT_EQ(capped.cores(), 2);
}

// A one-shot event: Wait blocks until Notify.
class Event {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return set_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;
};

TEST(ThreadPoolTest, AloneJobGetsAHelper) {
  ThreadPool pool(1, 2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  Event second_done;
  // Whichever thread takes task 0 waits for task 1: only a second thread
  // can run it, so the helper must join a job that runs alone.
  pool.ParallelFor(2, [&](size_t i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    if (i == 0) {
      second_done.Wait();
    } else {
      second_done.Notify();
    }
  });
  EXPECT_EQ(ids.size(), 2u);
  const ThreadPool::Stats stats = pool.stats();
  EXPECT_EQ(stats.jobs, 1u);
  EXPECT_EQ(stats.inline_jobs, 0u);
  EXPECT_EQ(stats.helper_tasks, 1u);
}

TEST(ThreadPoolTest, CallersThatFillTheCoresRunInline) {
  ThreadPool pool(1, 2);
  Event first_running, release_first;
  // Caller A holds one core inside a one-task job until released.
  std::thread a([&] {
    pool.ParallelFor(1, [&](size_t) {
      first_running.Notify();
      release_first.Wait();
    });
  });
  first_running.Wait();
  // Caller B now fills the second core: its job must run on B alone, with
  // no helper woken.
  std::set<std::thread::id> ids;
  pool.ParallelFor(64, [&](size_t) { ids.insert(std::this_thread::get_id()); });
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id()));
  const ThreadPool::Stats stats = pool.stats();
  EXPECT_EQ(stats.helper_wakeups, 0u);
  EXPECT_EQ(stats.helper_tasks, 0u);
  EXPECT_EQ(stats.inline_jobs, 2u);  // A's single task and B's job
  release_first.Notify();
  a.join();
}

}  // namespace
}  // namespace embsum::scoring::internal
