// A reader-writer lock that prefers writers. std::shared_mutex on glibc lets
// a stream of readers keep the lock while a writer waits, so a few threads
// calling predict in a loop could starve training (measured: a 0.2 us step
// took 149 us with 4 predicting threads). With writer preference a waiting
// training step goes next, and a prediction waits for at most one step.
#pragma once

#include <shared_mutex>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace livelearn {

#if defined(__GLIBC__)

class RwLock {
 public:
  RwLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~RwLock() { pthread_rwlock_destroy(&lock_); }
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

#else

using RwLock = std::shared_mutex;  // elsewhere: the platform's own policy

#endif

}  // namespace livelearn
