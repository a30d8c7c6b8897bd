// Mutex, MutexLock and CondVar with Clang thread-safety annotations.
//
//   class Counter {
//    public:
//     void Add(int n) { MutexLock lock(&mu_); total_ += n; }
//    private:
//     Mutex mu_;
//     int total_ KEEL_GUARDED_BY(mu_) = 0;
//   };
//
// Built with clang, -Wthread-safety turns a read of total_ without mu_ into a compile error
// (keel_warnings adds the flag; tests/thread_safety/ proves it). No recursive mutexes.
// Thread-safety: these are the synchronisation primitives; all members are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define KEEL_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define KEEL_THREAD_ANNOTATION_(x)
#endif

#define KEEL_CAPABILITY(x) KEEL_THREAD_ANNOTATION_(capability(x))
#define KEEL_SCOPED_CAPABILITY KEEL_THREAD_ANNOTATION_(scoped_lockable)
#define KEEL_GUARDED_BY(x) KEEL_THREAD_ANNOTATION_(guarded_by(x))
#define KEEL_PT_GUARDED_BY(x) KEEL_THREAD_ANNOTATION_(pt_guarded_by(x))
#define KEEL_ACQUIRED_BEFORE(...) KEEL_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))
#define KEEL_ACQUIRED_AFTER(...) KEEL_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
#define KEEL_REQUIRES(...) KEEL_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define KEEL_EXCLUDES(...) KEEL_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#define KEEL_ACQUIRE(...) KEEL_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define KEEL_RELEASE(...) KEEL_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define KEEL_TRY_ACQUIRE(...) KEEL_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
#define KEEL_ASSERT_CAPABILITY(x) KEEL_THREAD_ANNOTATION_(assert_capability(x))
#define KEEL_RETURN_CAPABILITY(x) KEEL_THREAD_ANNOTATION_(lock_returned(x))
#define KEEL_NO_THREAD_SAFETY_ANALYSIS KEEL_THREAD_ANNOTATION_(no_thread_safety_analysis)

namespace keel {

class CondVar;

class KEEL_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() KEEL_ACQUIRE() { mu_.lock(); }
  void Unlock() KEEL_RELEASE() { mu_.unlock(); }
  bool TryLock() KEEL_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the lock is held (no run-time check).
  void AssertHeld() const KEEL_ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for the enclosing scope.
class KEEL_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) KEEL_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() KEEL_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// Condition variable bound to a keel::Mutex. Wait* must be called with the mutex held; it is
// released while waiting and held again on return. Spurious wake-ups happen: loop on the
// predicate, or use the predicate overloads.
class CondVar {
 public:
  void Wait(Mutex* mu) KEEL_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  template <typename Pred>
  void Wait(Mutex* mu, Pred pred) KEEL_REQUIRES(mu) {
    while (!pred()) Wait(mu);
  }
  // Returns false on timeout (no signal came; spurious wake-ups return true).
  bool WaitFor(Mutex* mu, std::chrono::nanoseconds timeout) KEEL_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool signalled = cv_.wait_for(lock, timeout) == std::cv_status::no_timeout;
    lock.release();
    return signalled;
  }
  // Returns false on timeout (the predicate still false).
  template <typename Pred>
  bool WaitFor(Mutex* mu, std::chrono::nanoseconds timeout, Pred pred) KEEL_REQUIRES(mu) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool result = cv_.wait_until(lock, deadline, pred);
    lock.release();
    return result;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace keel
