// Thread-safety annotations and the annotated Mutex they need.
//
// The state that several threads share (the dispatcher's queues, the recorder's pending
// incidents, the metrics registry's families) is declared GUARDED_BY the mutex that protects it,
// and functions that expect a lock held say REQUIRES(mu). clang's -Wthread-safety (on in every
// clang build; CMakeLists.txt makes it an error) then proves at compile time that no access skips
// its lock; g++ ignores the attributes. ThreadSanitizer (`make test-tsan`) checks the rest at run
// time.
//
// std::mutex is not annotated as a capability in libstdc++, so the shared state uses
// mxward::Mutex (a std::mutex with annotations), MutexLock (its scoped lock) and, for waits,
// std::condition_variable_any on a MutexLock: cv.wait(lock, pred) releases and re-takes the same
// Mutex, exactly like std::condition_variable with std::unique_lock.
#pragma once

#include <mutex>

#if defined(__clang__)
#define MXWARD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define MXWARD_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) MXWARD_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY MXWARD_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) MXWARD_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) MXWARD_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) MXWARD_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) MXWARD_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) MXWARD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) MXWARD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) MXWARD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define EXCLUDES(...) MXWARD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) MXWARD_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS MXWARD_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace mxward {

// A std::mutex that clang's analysis knows as a capability.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope. Also BasicLockable (lock/unlock), so a
// std::condition_variable_any can wait on it: the wait releases and re-takes the Mutex.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // For std::condition_variable_any, and for code that lets go of the lock early (like
  // std::unique_lock, the destructor unlocks only what is still held). The analysis treats the
  // lock as held throughout, which is what the code between waits sees.
  void lock() NO_THREAD_SAFETY_ANALYSIS {
    mu_.lock();
    held_ = true;
  }
  void unlock() NO_THREAD_SAFETY_ANALYSIS {
    held_ = false;
    mu_.unlock();
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

}  // namespace mxward
