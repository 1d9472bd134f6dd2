// ThreadSanitizer view of absl::Mutex, linked into the tsan preset's
// executables only (fuzz/sanitizers/tsan_absl_mutex.cmake).
//
// Debian builds abseil without -fsanitize=thread, so absl::Mutex takes and
// releases its lock with uninstrumented atomics and futexes that TSan never
// sees: every field our code guards with an absl::Mutex (WorkerPool, the
// loadgen driver, metrics::Registry, ItemCatalog, ...) is then reported as a
// race. These definitions replace the library's entry points (the
// executable's symbols come first, also for calls from libgrpc and abseil
// itself), call the real function found with dlsym(RTLD_NEXT), and tell TSan
// what happened: an acquire of the mutex's address after the lock is held, a
// release before it is given up. Conditions that abseil evaluates inside its
// calls (possibly on another thread, while it holds the lock) run with
// memory accesses ignored, as abseil's own TSan annotations do.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin();
void __tsan_ignore_thread_end();
}

namespace {

template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

#define EMBSUM_REAL(type, mangled) static const auto real = Real<type>(mangled)

struct Ignored {
  Ignored() { __tsan_ignore_thread_begin(); }
  ~Ignored() { __tsan_ignore_thread_end(); }
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using MuFn = void (*)(Mutex*);
using MuTryFn = bool (*)(Mutex*);
using MuCondFn = void (*)(Mutex*, const Condition&);
using MuCondDurFn = bool (*)(Mutex*, const Condition&, Duration);
using MuCondTimeFn = bool (*)(Mutex*, const Condition&, Time);

void Mutex::Lock() {
  EMBSUM_REAL(MuFn, "_ZN4absl7debian35Mutex4LockEv");
  {
    Ignored ignored;
    real(this);
  }
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  EMBSUM_REAL(MuFn, "_ZN4absl7debian35Mutex10ReaderLockEv");
  {
    Ignored ignored;
    real(this);
  }
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  EMBSUM_REAL(MuTryFn, "_ZN4absl7debian35Mutex7TryLockEv");
  bool locked;
  {
    Ignored ignored;
    locked = real(this);
  }
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  EMBSUM_REAL(MuTryFn, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  bool locked;
  {
    Ignored ignored;
    locked = real(this);
  }
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  EMBSUM_REAL(MuFn, "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  Ignored ignored;
  real(this);
}

void Mutex::ReaderUnlock() {
  EMBSUM_REAL(MuFn, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  Ignored ignored;
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  EMBSUM_REAL(MuCondFn, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  {
    Ignored ignored;
    real(this, cond);
  }
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  EMBSUM_REAL(MuCondFn,
              "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  {
    Ignored ignored;
    real(this, cond);
  }
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  EMBSUM_REAL(MuCondDurFn,
              "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_"
              "9ConditionENS0_8DurationE");
  bool result;
  {
    Ignored ignored;
    result = real(this, cond, timeout);
  }
  __tsan_acquire(this);  // held whatever the result
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  EMBSUM_REAL(MuCondTimeFn,
              "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_"
              "9ConditionENS0_4TimeE");
  bool result;
  {
    Ignored ignored;
    result = real(this, cond, deadline);
  }
  __tsan_acquire(this);
  return result;
}

void Mutex::Await(const Condition& cond) {
  EMBSUM_REAL(MuCondFn, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  {
    Ignored ignored;
    real(this, cond);
  }
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  EMBSUM_REAL(MuCondDurFn,
              "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_"
              "9ConditionENS0_8DurationE");
  __tsan_release(this);
  bool result;
  {
    Ignored ignored;
    result = real(this, cond, timeout);
  }
  __tsan_acquire(this);
  return result;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  EMBSUM_REAL(MuCondTimeFn,
              "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_"
              "9ConditionENS0_4TimeE");
  __tsan_release(this);
  bool result;
  {
    Ignored ignored;
    result = real(this, cond, deadline);
  }
  __tsan_acquire(this);
  return result;
}

using CvFn = void (*)(CondVar*, Mutex*);
using CvDurFn = bool (*)(CondVar*, Mutex*, Duration);
using CvTimeFn = bool (*)(CondVar*, Mutex*, Time);

void CondVar::Wait(Mutex* mu) {
  EMBSUM_REAL(CvFn, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  {
    Ignored ignored;
    real(this, mu);
  }
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  EMBSUM_REAL(CvDurFn,
              "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_"
              "8DurationE");
  __tsan_release(mu);
  bool result;
  {
    Ignored ignored;
    result = real(this, mu, timeout);
  }
  __tsan_acquire(mu);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  EMBSUM_REAL(CvTimeFn,
              "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_"
              "4TimeE");
  __tsan_release(mu);
  bool result;
  {
    Ignored ignored;
    result = real(this, mu, deadline);
  }
  __tsan_acquire(mu);
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl
