// SharedSegment: creation, attachment, the robust lock, repair and detach
// (see shared_segment.hpp for the design).
#include "livelearn/shared_segment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#if defined(__SANITIZE_THREAD__)
#define LL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LL_TSAN 1
#endif
#endif
#ifndef LL_TSAN
#define LL_TSAN 0
#endif

namespace livelearn {

namespace {

constexpr std::uint64_t kMagic = 0x0031455241485320ULL ^ 0x4C4C000000000000ULL;  // "LL SHARE1"
constexpr std::uint32_t kLayoutVersion = 1;
constexpr std::size_t kSlots = 256;
constexpr std::size_t kTextSize = 1024;
constexpr std::size_t kAlign = 64;
constexpr int kSpins = 1000;
constexpr std::uint32_t kCreating = 0, kReady = 1;

}  // namespace

struct SegmentHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_size;
  std::atomic<std::uint32_t> state;  // kCreating until the creator publishes
  std::int32_t creator_pid;
  std::uint64_t total_size;
  std::uint64_t config_hash;
  std::uint64_t n_parameters, n_buffers, max_ranges;
  char config_text[kTextSize];
  pthread_mutex_t mutex;  // PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST
  // Everything below is read and written under the mutex.
  std::int32_t lock_owner;
  std::int32_t autosave_pid;
  std::uint32_t unlinked;  // the name was removed: attachers must retry
  std::uint32_t reserved;
  std::uint64_t repairs;
  std::uint64_t attaches;
  std::int32_t slots[kSlots];  // one per attachment: its pid, 0 when free
  MlpCounters counters;
  StepJournal journal;
  std::uint64_t off_params, off_m, off_v, off_ranges, off_saved;
};

namespace {

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw ShareError("share '" + name + "': " + what);
}

[[noreturn]] void fail_errno(const std::string& name, const std::string& what) {
  fail(name, what + ": " + std::strerror(errno));
}

// A pid is alive if signal 0 reaches it and it is not a zombie.
bool alive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  if (FILE* f = std::fopen(path, "r")) {
    char buf[256] = {0};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    const char* close_paren = std::strrchr(buf, ')');
    if (n > 0 && close_paren && close_paren[1] == ' ' &&
        (close_paren[2] == 'Z' || close_paren[2] == 'X')) {
      return false;
    }
  }
  return true;
}

void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Whether the mutex looks held by a live owner (glibc: its futex word holds
// the owner's tid, FUTEX_TID_MASK; the kernel clears it and sets
// FUTEX_OWNER_DIED when the owner dies, and then a trylock repairs it).
bool held_hint(const pthread_mutex_t& m) {
#if defined(__GLIBC__)
  return (__atomic_load_n(&m.__data.__lock, __ATOMIC_RELAXED) & 0x3fffffff) != 0;
#else
  (void)m;
  return false;
#endif
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Layout {
  std::size_t params, m, v, ranges, saved, total;
};

Layout layout_of(std::size_t n, std::size_t n_bufs, std::size_t max_ranges) {
  Layout l{};
  std::size_t off = align_up(sizeof(SegmentHeader));
  l.params = off;
  off = align_up(off + n * sizeof(float));
  l.m = n_bufs >= 2 ? off : 0;
  if (n_bufs >= 2) off = align_up(off + n * sizeof(float));
  l.v = n_bufs >= 3 ? off : 0;
  if (n_bufs >= 3) off = align_up(off + n * sizeof(float));
  l.ranges = off;
  off = align_up(off + 2 * max_ranges * sizeof(std::uint64_t));
  l.saved = off;
  off = align_up(off + n_bufs * n * sizeof(float));
  l.total = off;
  return l;
}

bool same_file(int fd, const std::string& path) {
  struct stat a {
  }, b{};
  return fstat(fd, &a) == 0 && stat(path.c_str(), &b) == 0 && a.st_ino == b.st_ino &&
         a.st_dev == b.st_dev;
}

}  // namespace

std::string SharedSegment::path_of(const std::string& name) { return "/dev/shm/livelearn-" + name; }

bool SharedSegment::unlink(const std::string& name) {
  return shm_unlink(("/livelearn-" + name).c_str()) == 0;
}

std::unique_ptr<SharedSegment> SharedSegment::open(const Options& o) {
  if (o.name.empty() || o.name.size() > 200) fail(o.name, "the name must have 1 to 200 characters");
  for (char c : o.name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) fail(o.name, "the name may only hold letters, digits, '.', '_' and '-'");
  }
  if (o.name[0] == '.') fail(o.name, "the name must not start with '.'");
  if (o.config_text.size() >= kTextSize) fail(o.name, "configuration text too long");
  if (o.n_buffers < 1 || o.n_buffers > 3) fail(o.name, "n_buffers must be 1 to 3");
  if (!(o.lock_timeout_s > 0) || !(o.attach_timeout_s > 0)) fail(o.name, "timeouts must be > 0");

  std::unique_ptr<SharedSegment> seg(new SharedSegment());
  seg->name_ = o.name;
  seg->shm_name_ = "/livelearn-" + o.name;
  seg->lock_timeout_s_ = o.lock_timeout_s;
  seg->pid_ = getpid();
  const Layout lay = layout_of(o.n_parameters, o.n_buffers, o.max_ranges);
  const std::uint64_t hash = fnv1a(o.config_text);
  const std::string path = path_of(o.name);
  const double give_up = now_s() + o.attach_timeout_s + 5.0;
  bool rebuilt = false;

  while (true) {
    if (now_s() > give_up) fail(o.name, "could not create or attach within the timeout");
    int fd = shm_open(seg->shm_name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {  // ours to create
      if (ftruncate(fd, static_cast<off_t>(lay.total)) != 0) {
        const int err = errno;
        shm_unlink(seg->shm_name_.c_str());
        close(fd);
        errno = err;
        fail_errno(o.name, "cannot size the segment");
      }
      void* p = mmap(nullptr, lay.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        shm_unlink(seg->shm_name_.c_str());
        close(fd);
        errno = err;
        fail_errno(o.name, "cannot map the segment");
      }
      auto* h = static_cast<SegmentHeader*>(p);              // zero-filled by ftruncate
      h->state.store(kCreating, std::memory_order_relaxed);  // published by publish()
      h->creator_pid = seg->pid_;
      h->magic = kMagic;
      h->layout_version = kLayoutVersion;
      h->header_size = sizeof(SegmentHeader);
      h->total_size = lay.total;
      h->config_hash = hash;
      h->n_parameters = o.n_parameters;
      h->n_buffers = o.n_buffers;
      h->max_ranges = o.max_ranges;
      std::memcpy(h->config_text, o.config_text.data(), o.config_text.size());
      h->off_params = lay.params;
      h->off_m = lay.m;
      h->off_v = lay.v;
      h->off_ranges = lay.ranges;
      h->off_saved = lay.saved;
      pthread_mutexattr_t attr;
      pthread_mutexattr_init(&attr);
      pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
      pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
      const int rc = pthread_mutex_init(&h->mutex, &attr);
      pthread_mutexattr_destroy(&attr);
      if (rc != 0) {
        munmap(p, lay.total);
        shm_unlink(seg->shm_name_.c_str());
        close(fd);
        errno = rc;
        fail_errno(o.name, "cannot initialise the lock");
      }
      h->slots[0] = seg->pid_;
      h->attaches = 1;
      seg->header_ = h;
      seg->size_ = lay.total;
      seg->fd_ = fd;
      seg->created_ = true;
      seg->rebuilt_ = rebuilt;
      seg->registered_ = true;
      return seg;
    }
    if (errno != EEXIST) fail_errno(o.name, "cannot create " + path);
    fd = shm_open(seg->shm_name_.c_str(), O_RDWR, 0);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // removed meanwhile: try to create it
      fail_errno(o.name, "cannot open " + path);
    }
    // Wait (bounded) for the creator to publish it.
    SegmentHeader* h = nullptr;
    std::size_t mapped = 0;
    const double deadline = now_s() + o.attach_timeout_s;
    while (true) {
      struct stat st {};
      if (fstat(fd, &st) != 0) {
        close(fd);
        fail_errno(o.name, "cannot stat " + path);
      }
      const auto size = static_cast<std::size_t>(st.st_size);
      if (!h && size >= sizeof(SegmentHeader)) {
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
          close(fd);
          fail_errno(o.name, "cannot map " + path);
        }
        h = static_cast<SegmentHeader*>(p);
        mapped = size;
      }
      if (h && h->state.load(std::memory_order_acquire) == kReady) break;
      if (now_s() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!h || h->state.load(std::memory_order_acquire) != kReady) {
      const pid_t creator = h ? h->creator_pid : 0;
      if (h) munmap(h, mapped);
      if (!alive(creator)) {  // its creator died before publishing: remove it, start again
        if (same_file(fd, path)) shm_unlink(seg->shm_name_.c_str());
        close(fd);
        rebuilt = true;
        continue;
      }
      close(fd);
      fail(o.name, "pid " + std::to_string(creator) + " is creating it and did not finish within " +
                       seconds_text(o.attach_timeout_s) + " s");
    }
    if (h->magic != kMagic || h->layout_version != kLayoutVersion ||
        h->header_size != sizeof(SegmentHeader) || h->total_size != mapped) {
      munmap(h, mapped);
      close(fd);
      fail(o.name, path +
                       " was made by another livelearn version or is damaged; remove it when no "
                       "process uses it");
    }
    seg->header_ = h;
    seg->size_ = mapped;
    seg->fd_ = fd;
    seg->lock();
    if (h->unlinked) {  // the last user removed it (or died removing it): start again
      if (same_file(fd, path)) shm_unlink(seg->shm_name_.c_str());
      seg->unlock();
      munmap(h, mapped);
      close(fd);
      seg->header_ = nullptr;
      seg->fd_ = -1;
      continue;
    }
    seg->prune_dead();
    const std::size_t live = seg->live_slots();
    const bool compatible = h->config_hash == hash && h->n_parameters == o.n_parameters &&
                            h->n_buffers == o.n_buffers && h->max_ranges == o.max_ranges &&
                            h->total_size == lay.total &&
                            std::strncmp(h->config_text, o.config_text.c_str(), kTextSize) == 0;
    if (!compatible) {
      const std::string theirs(h->config_text, strnlen(h->config_text, kTextSize));
      if (live > 0) {
        const std::size_t users = seg->distinct_live();
        seg->unlock();
        munmap(h, mapped);
        close(fd);
        seg->header_ = nullptr;
        seg->fd_ = -1;
        fail(o.name, "incompatible configuration: the shared model (used by " +
                         std::to_string(users) + " process(es)) has " + theirs +
                         "; this one asks for " + o.config_text);
      }
      // Stale and incompatible: never reused, rebuilt.
      h->unlinked = 1;
      shm_unlink(seg->shm_name_.c_str());
      seg->unlock();
      munmap(h, mapped);
      close(fd);
      seg->header_ = nullptr;
      seg->fd_ = -1;
      rebuilt = true;
      continue;
    }
    std::size_t slot = kSlots;
    for (std::size_t i = 0; i < kSlots; ++i) {
      if (h->slots[i] == 0) {
        slot = i;
        break;
      }
    }
    if (slot == kSlots) {
      seg->unlock();
      fail(o.name, "more than " + std::to_string(kSlots) + " attachments");
    }
    h->slots[slot] = seg->pid_;
    ++h->attaches;
    seg->recovered_ = live == 0;  // every previous user is dead: a stale segment taken over
    seg->registered_ = true;
    seg->rebuilt_ = rebuilt;
    seg->unlock();
    return seg;
  }
}

SharedSegment::~SharedSegment() {
  if (!header_) return;
  release();
  munmap(header_, size_);
  if (fd_ >= 0) close(fd_);
}

void SharedSegment::release() {
  if (registered_ && getpid() == pid_) {
    registered_ = false;
    try {
      if (lock_for(lock_timeout_s_)) {
        for (std::size_t i = 0; i < kSlots; ++i) {
          if (header_->slots[i] == pid_) {
            header_->slots[i] = 0;
            break;
          }
        }
        prune_dead();
        if (header_->autosave_pid == pid_) header_->autosave_pid = 0;
        if (live_slots() == 0) {
          header_->unlinked = 1;
          shm_unlink(shm_name_.c_str());
        }
        unlock();
      }
    } catch (...) {  // never throws: the segment stays for the others
    }
  }
}

void SharedSegment::publish() { header_->state.store(kReady, std::memory_order_release); }

ExternalState SharedSegment::external() const {
  char* base = reinterpret_cast<char*>(header_);
  ExternalState e{};
  e.params = reinterpret_cast<float*>(base + header_->off_params);
  e.m = header_->n_buffers >= 2 ? reinterpret_cast<float*>(base + header_->off_m) : nullptr;
  e.v = header_->n_buffers >= 3 ? reinterpret_cast<float*>(base + header_->off_v) : nullptr;
  e.counters = &header_->counters;
  e.journal = &header_->journal;
  e.ranges = reinterpret_cast<std::uint64_t*>(base + header_->off_ranges);
  e.max_ranges = header_->max_ranges;
  e.saved = reinterpret_cast<float*>(base + header_->off_saved);
  return e;
}

bool SharedSegment::lock_for(double seconds) {
  // Spin first (test and test-and-set: the lock word is read, and only a free
  // lock is tried, so waiting processes do not pull the holder's cache line).
  int rc = EBUSY;
  for (int i = 0; i < kSpins; ++i) {
    if (!held_hint(header_->mutex)) {
      rc = pthread_mutex_trylock(&header_->mutex);
      if (rc != EBUSY) break;
    }
    relax();
  }
  if (rc == EBUSY) {
    struct timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    const auto whole = static_cast<time_t>(seconds);
    ts.tv_sec += whole;
    ts.tv_nsec += static_cast<long>((seconds - static_cast<double>(whole)) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec += 1;
      ts.tv_nsec -= 1000000000L;
    }
#if LL_TSAN
    // ThreadSanitizer does not see a lock taken by pthread_mutex_timedlock
    // with EOWNERDEAD (it does for trylock): poll instead, under TSan only.
    const double until = now_s() + seconds;
    while ((rc = pthread_mutex_trylock(&header_->mutex)) == EBUSY && now_s() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (rc == EBUSY) rc = ETIMEDOUT;
    (void)ts;
#else
    rc = pthread_mutex_timedlock(&header_->mutex, &ts);
#endif
  }
  if (rc == ETIMEDOUT) return false;
  took_lock(rc);
  return true;
}

void SharedSegment::took_lock(int rc) {
  if (rc == EOWNERDEAD) {  // the holder died: undo its write, then mark the lock usable
    repair();
    ++header_->repairs;
    pthread_mutex_consistent(&header_->mutex);
  } else if (rc != 0) {
    errno = rc;
    fail_errno(name_, "cannot take the lock");
  }
  __atomic_store_n(&header_->lock_owner, getpid(), __ATOMIC_RELAXED);
}

void SharedSegment::lock() {
  if (!lock_for(lock_timeout_s_)) {
    fail(name_, "the lock was not released within " + seconds_text(lock_timeout_s_) +
                    " s (held by pid " + std::to_string(lock_owner()) + ")");
  }
}

bool SharedSegment::try_lock() {
  const int rc = pthread_mutex_trylock(&header_->mutex);
  if (rc == EBUSY) return false;
  took_lock(rc);
  return true;
}

void SharedSegment::unlock() {
  __atomic_store_n(&header_->lock_owner, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&header_->mutex);
}

bool SharedSegment::repair() {
  StepJournal& j = header_->journal;
  if (!j.active) return false;
  const ExternalState e = external();
  float* const bufs[3] = {e.params, e.m, e.v};
  const float* in = e.saved;
  const std::size_t n_bufs = std::min<std::size_t>(j.n_buffers, header_->n_buffers);
  const std::size_t n_ranges = std::min<std::size_t>(j.n_ranges, header_->max_ranges);
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for (std::size_t r = 0; r < n_ranges; ++r) {
      const std::uint64_t off = e.ranges[2 * r], len = e.ranges[2 * r + 1];
      if (off + len > header_->n_parameters) continue;  // never written so (defensive)
      std::memcpy(bufs[b] + off, in, len * sizeof(float));
      in += len;
    }
  }
  header_->counters = j.saved;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  j.active = 0;
  return true;
}

void SharedSegment::prune_dead() {
  for (std::size_t i = 0; i < kSlots; ++i) {
    if (header_->slots[i] != 0 && !alive(header_->slots[i])) header_->slots[i] = 0;
  }
}

std::size_t SharedSegment::live_slots() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kSlots; ++i) n += header_->slots[i] != 0;
  return n;
}

std::size_t SharedSegment::distinct_live() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kSlots; ++i) {
    const pid_t p = header_->slots[i];
    if (p == 0 || !alive(p)) continue;
    bool seen = false;
    for (std::size_t k = 0; k < i; ++k) seen |= header_->slots[k] == p;
    n += !seen;
  }
  return n;
}

std::size_t SharedSegment::processes() const {
  auto* self = const_cast<SharedSegment*>(this);
  self->lock();
  const std::size_t n = distinct_live();
  self->unlock();
  return n;
}

std::uint64_t SharedSegment::repairs() const {
  auto* self = const_cast<SharedSegment*>(this);
  self->lock();
  const std::uint64_t n = header_->repairs;
  self->unlock();
  return n;
}

pid_t SharedSegment::lock_owner() const {
  return __atomic_load_n(&header_->lock_owner, __ATOMIC_RELAXED);
}

bool SharedSegment::claim_autosave() {
  lock();
  const pid_t holder = header_->autosave_pid;
  const bool mine = holder == pid_ || holder == 0 || !alive(holder);
  if (mine) header_->autosave_pid = pid_;
  unlock();
  return mine;
}

}  // namespace livelearn
