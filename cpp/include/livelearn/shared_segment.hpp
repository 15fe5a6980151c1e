// SharedSegment: one model's state in POSIX shared memory (/dev/shm), so
// that every process of a machine that opens the same share name trains and
// predicts one model (Network(config, share)).
//
// The segment holds a header (magic, layout version, the configuration's hash
// and text, sizes), a process-shared robust mutex, the table of attached
// processes, the model's counters (MlpCounters), the undo journal of the write
// in progress (StepJournal) and the parameter and optimizer buffers.
//
// Lifecycle: the first process creates the segment (O_CREAT | O_EXCL),
// initialises it and publishes it; later ones wait (bounded) for it to be
// published, check that it holds the same configuration and attach. Each
// attachment is a slot with its pid; the last to detach removes the name. A
// segment whose slots all belong to dead processes is stale: a compatible one
// is taken over (recovered), an incompatible one rebuilt; an incompatible
// segment in use is refused (ShareError).
//
// Faults: a process killed while holding the lock leaves the mutex in the
// EOWNERDEAD state; the next process to lock it rolls the journaled write
// back (repair), marks the mutex consistent and goes on. Every wait is
// bounded (lock_timeout_s), after which ShareError names the holder's pid.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "livelearn/mlp.hpp"

namespace livelearn {

// Raised for every failure of a share: a bad name, an incompatible
// configuration, a lock held past the timeout, a system call that failed.
struct ShareError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SegmentHeader;

class SharedSegment {
 public:
  struct Options {
    std::string name;         // [A-Za-z0-9._-], 1 to 200 characters
    std::string config_text;  // the configuration, as compared and shown in errors
    std::size_t n_parameters;
    std::size_t n_buffers;   // parameters + optimizer buffers (1 to 3)
    std::size_t max_ranges;  // journal capacity: ranges per write
    double lock_timeout_s = 10.0;
    double attach_timeout_s = 5.0;
  };

  // Creates or attaches the segment `options.name`. A created segment is not
  // visible to others until publish().
  static std::unique_ptr<SharedSegment> open(const Options& options);
  ~SharedSegment();  // detaches; the last live process removes the name
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  // Deregisters this attachment (the last live one removes the name), keeping
  // the mapping: the model stays readable and usable here, but the next
  // process to open the name starts a new segment once every attachment is
  // released. Idempotent; the destructor calls it. A forked child's copy
  // never deregisters its parent.
  void release();
  bool released() const { return !registered_; }

  // The owner writes the initial state through external(), then publishes.
  void publish();
  ExternalState external() const;

  const std::string& name() const { return name_; }
  bool created() const { return created_; }      // this process made the segment
  bool recovered() const { return recovered_; }  // took over a stale one
  bool rebuilt() const { return rebuilt_; }      // replaced a stale incompatible one

  // The robust lock. lock() repairs a dead owner's half-written step first.
  // Throws ShareError after lock_timeout_s.
  void lock();
  bool try_lock();
  void unlock();

  // Under the lock or not (a snapshot): live attached processes, repairs made
  // after a dead lock owner, the pid holding the lock (0: none).
  std::size_t processes() const;
  std::uint64_t repairs() const;
  pid_t lock_owner() const;
  // Under the lock: undoes a journaled write left active (by a process
  // killed mid-write); true if there was one. lock() calls it on EOWNERDEAD.
  bool repair();
  // Whether this process is (now) the one that autosaves: the role is taken
  // when free or held by a dead process.
  bool claim_autosave();

  // The file of a share name ("/dev/shm/livelearn-NAME" on Linux).
  static std::string path_of(const std::string& name);
  // Removes a share's name (for tools and tests); true if it existed.
  static bool unlink(const std::string& name);

 private:
  SharedSegment() = default;
  bool lock_for(double seconds);
  // After a pthread_mutex_*lock call that did not time out or find the lock
  // busy: repairs after a dead holder (EOWNERDEAD), fails on other errors,
  // records this process as the owner.
  void took_lock(int rc);
  void prune_dead();
  std::size_t live_slots() const;
  std::size_t distinct_live() const;  // under the lock

  std::string name_;
  std::string shm_name_;
  SegmentHeader* header_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  pid_t pid_ = 0;  // the process that attached (a forked child's copy only unmaps)
  double lock_timeout_s_ = 10.0;
  bool created_ = false;
  bool recovered_ = false;
  bool rebuilt_ = false;
  bool registered_ = false;
};

}  // namespace livelearn
