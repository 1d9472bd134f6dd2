#include "server/worker_pool.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"

namespace embsum::server {
namespace {

// A clock that moves only when told: queue waits and run times are exact.
class FakeClock {
 public:
  absl::Time Now() const {
    return absl::UnixEpoch() + absl::Nanoseconds(nanos_.load());
  }
  void Advance(absl::Duration d) {
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d));
  }
  std::function<absl::Time()> Source() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> nanos_{int64_t{1} << 50};
};

TEST(WorkerPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool({.threads = 3, .queue_capacity = 1000});
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.TrySubmit([&ran] { ran.fetch_add(1); }));
    }
  }  // destructor drains
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkerPoolTest, RefusesWhenTheQueueIsFull) {
  WorkerPool pool({.threads = 1, .queue_capacity = 2});
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();  // the worker is busy, the queue empty
  std::atomic<int> ran{0};
  EXPECT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
  EXPECT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
  EXPECT_EQ(pool.queued(), 2u);
  EXPECT_FALSE(pool.TrySubmit([&] { ran.fetch_add(100); }));
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 2);
}

TEST(WorkerPoolTest, ObservesEachTasksQueueWait) {
  metrics::Histogram waits(metrics::DecadeBuckets(1e-6, 10));
  WorkerPool pool({.threads = 1, .queue_capacity = 10, .queue_wait = &waits});
  EXPECT_EQ(pool.threads(), 1);
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  const absl::Time queued = absl::Now();
  ASSERT_TRUE(pool.TrySubmit([] {}));
  // The second task waits at least until the first lets the worker go.
  while (absl::Now() == queued) {
  }
  const absl::Duration held = absl::Now() - queued;
  release.Notify();
  pool.Shutdown();
  const metrics::Histogram::Snapshot snapshot = waits.Read();
  EXPECT_EQ(snapshot.count, 2u);
  EXPECT_GE(snapshot.sum, absl::ToDoubleSeconds(held));
}

TEST(WorkerPoolTest, AnIdlePoolRunsTheTaskOnTheCallingThread) {
  metrics::Histogram waits(metrics::DecadeBuckets(1e-6, 10));
  WorkerPool pool({.threads = 2, .queue_capacity = 10, .queue_wait = &waits});
  std::thread::id ran_on;
  EXPECT_EQ(pool.RunHereOrSubmit([&] { ran_on = std::this_thread::get_id(); },
                                 nullptr),
            WorkerPool::Admission::kRanInline);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(waits.Read().count, 1u);  // a wait of zero, still observed
  EXPECT_GT(pool.mean_run_time(), absl::ZeroDuration());
}

// Occupies one worker of `pool` with a task that returns once `release`
// is notified.
void HoldOneWorker(WorkerPool& pool, absl::Notification& release) {
  absl::Notification started;
  ASSERT_TRUE(pool.TrySubmit([&started, &release] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
}

// A task for RunHereOrSubmit that records the thread it ran on.
struct Probe {
  // Atomic: absl::Notification's fast path is invisible to TSan (Debian's
  // absl is not instrumented).
  std::atomic<std::thread::id> ran_on;
  absl::Notification ran;
  WorkerPool::Admission RunHereOrSubmit(WorkerPool& pool) {
    return pool.RunHereOrSubmit(
        [this] {
          ran_on = std::this_thread::get_id();
          ran.Notify();
        },
        nullptr);
  }
};

TEST(WorkerPoolTest, ABusyPoolQueuesWhatWouldHaveRunInline) {
  WorkerPool pool({.threads = 1, .queue_capacity = 10});
  absl::Notification release;
  HoldOneWorker(pool, release);
  Probe probe;
  EXPECT_EQ(probe.RunHereOrSubmit(pool), WorkerPool::Admission::kQueued);
  release.Notify();
  probe.ran.WaitForNotification();
  EXPECT_NE(probe.ran_on, std::this_thread::get_id());
  pool.Shutdown();
  EXPECT_EQ(pool.RunHereOrSubmit([] {}, nullptr),
            WorkerPool::Admission::kStopped);
}

TEST(WorkerPoolTest, OnlyAnIdlePoolRunsInlineEvenWithBudgetLeft) {
  // Two threads' budget, one task running on a worker: a second call is
  // queued for the other worker rather than holding its caller's thread.
  WorkerPool pool({.threads = 2, .queue_capacity = 10});
  absl::Notification release;
  HoldOneWorker(pool, release);
  Probe probe;
  EXPECT_EQ(probe.RunHereOrSubmit(pool), WorkerPool::Admission::kQueued);
  probe.ran.WaitForNotification();  // on the free worker, while the first runs
  EXPECT_NE(probe.ran_on, std::this_thread::get_id());
  release.Notify();
}

TEST(WorkerPoolTest, AnInlineTaskHoldsAThreadOfTheBudget) {
  WorkerPool pool({.threads = 1, .queue_capacity = 10});
  absl::Notification inline_started, release;
  std::atomic<bool> inline_running{false};
  std::thread caller([&] {
    EXPECT_EQ(pool.RunHereOrSubmit(
                  [&] {
                    inline_running = true;
                    inline_started.Notify();
                    release.WaitForNotification();
                    inline_running = false;
                  },
                  nullptr),
              WorkerPool::Admission::kRanInline);
  });
  inline_started.WaitForNotification();
  // The one thread's budget is taken: a queued task waits for it, and a
  // second caller does not run inline either.
  std::atomic<int> overlapped{0};
  ASSERT_TRUE(pool.TrySubmit([&] { overlapped += inline_running ? 1 : 0; }));
  EXPECT_EQ(pool.RunHereOrSubmit([&] { overlapped += inline_running ? 1 : 0; },
                                 nullptr),
            WorkerPool::Admission::kQueued);
  release.Notify();
  caller.join();
  pool.Shutdown();
  EXPECT_EQ(overlapped.load(), 0);
}

TEST(WorkerPoolTest, ShutdownRunsQueuedTasksThenRefuses) {
  WorkerPool pool({.threads = 1, .queue_capacity = 10});
  absl::Notification release;
  std::vector<int> order;
  ASSERT_TRUE(pool.TrySubmit([&] { release.WaitForNotification(); }));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(pool.TrySubmit([&order, i] { order.push_back(i); }));
  }
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));  // FIFO
  EXPECT_FALSE(pool.TrySubmit([] {}));
  pool.Shutdown();  // idempotent
}

TEST(WorkerPoolTest, ATaskThatWaitedTooLongExpiresInsteadOfRunning) {
  FakeClock clock;
  WorkerPool pool({.threads = 1,
                   .queue_capacity = 10,
                   .max_queue_wait = absl::Milliseconds(20),
                   .clock = clock.Source()});
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  std::atomic<int> ran{0}, expired{0}, ran_without_expiry{0};
  // Queued behind the busy worker (the queue was empty: no estimate yet).
  ASSERT_EQ(
      pool.Submit([&] { ran.fetch_add(1); }, [&] { expired.fetch_add(1); }),
      WorkerPool::Admission::kQueued);
  // No expiry callback: runs however long it waited.
  ASSERT_TRUE(pool.TrySubmit([&] { ran_without_expiry.fetch_add(1); }));
  clock.Advance(absl::Milliseconds(21));  // both now waited past the limit
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(expired.load(), 1);
  EXPECT_EQ(ran_without_expiry.load(), 1);
}

TEST(WorkerPoolTest, RefusesWhenTheQueuedWorkWouldTakeLongerThanTheLimit) {
  FakeClock clock;
  WorkerPool pool({.threads = 1,
                   .queue_capacity = 100,
                   .max_queue_wait = absl::Seconds(1),
                   .clock = clock.Source()});
  // One task that takes 300 ms of the fake clock sets the mean run time.
  ASSERT_TRUE(pool.TrySubmit([&] { clock.Advance(absl::Milliseconds(300)); }));
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  // The single worker records the first task's time before it starts this.
  started.WaitForNotification();
  EXPECT_EQ(pool.mean_run_time(), absl::Milliseconds(300));
  // The worker is blocked, so the mean stays put: tasks are admitted while
  // (tasks ahead) x mean <= 1 s, about 4 of them at 300 ms; then refused at
  // once although the queue has room.
  const absl::Duration mean = pool.mean_run_time();
  const size_t admissible =
      static_cast<size_t>(absl::FDivDuration(absl::Seconds(1), mean)) + 1;
  ASSERT_LT(admissible, 100u);
  size_t admitted = 0;
  while (pool.Submit([] {}, [] {}) == WorkerPool::Admission::kQueued) {
    ++admitted;
    ASSERT_LE(admitted, admissible);
  }
  EXPECT_EQ(admitted, admissible);
  EXPECT_EQ(pool.Submit([] {}, [] {}), WorkerPool::Admission::kWaitTooLong);
  EXPECT_EQ(pool.queued(), admissible);
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(pool.Submit([] {}, [] {}), WorkerPool::Admission::kStopped);
}

TEST(WorkerPoolTest, WithoutALimitOnlyTheCapacityRefuses) {
  FakeClock clock;
  WorkerPool pool({.threads = 1, .queue_capacity = 3, .clock = clock.Source()});
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pool.Submit([&] { ran.fetch_add(1); }, [] {}),
              WorkerPool::Admission::kQueued);
  }
  EXPECT_EQ(pool.Submit([] {}, [] {}), WorkerPool::Admission::kQueueFull);
  clock.Advance(absl::Hours(1));  // waits never expire without a limit
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 3);
}

}  // namespace
}  // namespace embsum::server
