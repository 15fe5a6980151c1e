// SharedSegment and the shared Network: one model in POSIX shared memory for
// several processes (fork) and threads. Children report through their exit
// status (_exit, no gtest in the child); every wait is bounded.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "livelearn/network.hpp"
#include "livelearn/shared_segment.hpp"

namespace livelearn {
namespace {

Config share_config(int inputs = 4, Optimizer opt = Optimizer::SGD) {
  Config c;
  c.layers = {inputs, 16, 8, 1};
  c.learning_rate = 0.01f;
  c.optimizer = opt;
  c.seed = 5;
  return c;
}

std::string unique_name(const char* test) {
  return std::string("gtest-") + test + "-" + std::to_string(getpid());
}

ShareOptions opts(const std::string& name, double lock_timeout = 10.0) {
  ShareOptions o;
  o.name = name;
  o.lock_timeout_s = lock_timeout;
  o.attach_timeout_s = 5.0;
  return o;
}

bool exists(const std::string& name) {
  return access(SharedSegment::path_of(name).c_str(), F_OK) == 0;
}

void example(std::uint64_t i, float* x, float* y) {
  for (int k = 0; k < 4; ++k) x[k] = std::sin(static_cast<float>(i * 7 + k));
  y[0] = x[0] + x[1] > 0.0f ? 1.0f : 0.0f;
}

std::uint64_t train_n(Network& net, std::uint64_t n, std::uint64_t offset = 0) {
  std::uint64_t ok = 0;
  float x[4], y[1];
  for (std::uint64_t i = 0; i < n; ++i) {
    example(offset + i, x, y);
    ok += net.train_step(x, y, nullptr).status == StepStatus::Trained;
  }
  return ok;
}

float probe(const Network& net) {
  const float x[4] = {0.3f, -0.2f, 0.9f, 0.1f};
  float out = 0.0f;
  net.predict(1, x, &out);
  return out;
}

bool all_finite(const Network& net) {
  std::vector<std::vector<float>> out;
  std::vector<float*> dest;
  for (const auto& info : net.state_layout()) out.emplace_back(info.size);
  for (auto& v : out) dest.push_back(v.data());
  net.export_state(dest);
  for (const auto& v : out) {
    for (float f : v) {
      if (!std::isfinite(f)) return false;
    }
  }
  return true;
}

// Waits (bounded) for a child; returns its exit status or -1.
int wait_child(pid_t pid, double seconds = 30.0) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

// The child writes one byte once attached (its attach takes the lock briefly,
// so lock_owner() means the test hook only after that); the parent waits.
bool wait_ready(int fd, int timeout_ms = 20000) {
  struct pollfd p {
    fd, POLLIN, 0
  };
  char c = 0;
  return poll(&p, 1, timeout_ms) == 1 && read(fd, &c, 1) == 1;
}

void signal_ready(int fd) {
  const char c = 1;
  (void)!write(fd, &c, 1);
}

TEST(SharedSegment, TwoAttachmentsShareOneModelAndTheLastRemovesIt) {
  const std::string name = unique_name("two");
  {
    Network a(share_config(), opts(name));
    EXPECT_TRUE(a.share()->created());
    Network b(share_config(), opts(name));
    EXPECT_FALSE(b.share()->created());
    EXPECT_FALSE(b.share()->recovered());
    EXPECT_EQ(train_n(a, 50), 50u);
    EXPECT_EQ(train_n(b, 30, 50), 30u);
    EXPECT_EQ(a.counters().steps, 80u);
    EXPECT_EQ(b.counters().steps, 80u);
    EXPECT_EQ(a.version(), b.version());
    EXPECT_EQ(probe(a), probe(b));
    EXPECT_EQ(a.share()->processes(), 1u);
    EXPECT_TRUE(exists(name));
  }
  EXPECT_FALSE(exists(name));
}

TEST(SharedSegment, SharedTrainingEqualsLocalTrainingInTheSameOrder) {
  const std::string name = unique_name("same");
  for (Optimizer opt : {Optimizer::SGD, Optimizer::Adam}) {
    Network local(share_config(4, opt));
    Network shared(share_config(4, opt), opts(name));
    train_n(local, 200);
    train_n(shared, 200);
    EXPECT_EQ(probe(local), probe(shared));
    EXPECT_EQ(local.counters().steps, shared.counters().steps);
  }
}

TEST(SharedSegment, IncompatibleConfigurationIsRefused) {
  const std::string name = unique_name("incompatible");
  Network a(share_config(4), opts(name));
  try {
    Network b(share_config(5), opts(name));
    FAIL() << "expected ShareError";
  } catch (const ShareError& e) {
    EXPECT_NE(std::string(e.what()).find("incompatible configuration"), std::string::npos);
  }
  EXPECT_THROW(Network(share_config(), opts("bad/name")), ShareError);
  EXPECT_THROW(Network(share_config(), opts("")), ShareError);
}

TEST(SharedSegment, ThreadsOfTwoAttachmentsCountEveryStep) {
  const std::string name = unique_name("threads");
  Network a(share_config(), opts(name));
  Network b(share_config(), opts(name));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    Network& net = t % 2 ? a : b;
    threads.emplace_back([&net, t] {
      train_n(net, 500, static_cast<std::uint64_t>(t) * 1000);
      for (int i = 0; i < 50; ++i) (void)probe(net);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(a.counters().steps, 2000u);
  EXPECT_TRUE(all_finite(a));
}

TEST(SharedSegment, ForkedProcessesTrainOneModel) {
  const std::string name = unique_name("fork");
  Network parent(share_config(), opts(name));
  std::vector<pid_t> kids;
  for (int k = 0; k < 3; ++k) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      {
        Network child(share_config(), opts(name));
        if (child.share()->created()) code = 2;
        if (train_n(child, 400, static_cast<std::uint64_t>(k) * 1000) != 400) code = 3;
      }
      _exit(code);
    }
    kids.push_back(pid);
  }
  train_n(parent, 400, 9000);
  for (pid_t pid : kids) EXPECT_EQ(wait_child(pid), 0);
  EXPECT_EQ(parent.counters().steps, 1600u);
  EXPECT_TRUE(all_finite(parent));
  EXPECT_EQ(parent.share()->processes(), 1u);
}

TEST(SharedSegment, AKilledLockHolderIsRolledBackAndTheOthersGoOn) {
  const std::string name = unique_name("kill");
  Network parent(share_config(4, Optimizer::Adam), opts(name, 5.0));
  train_n(parent, 100);
  const float before = probe(parent);
  const std::uint64_t version = parent.version();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Network child(share_config(4, Optimizer::Adam), opts(name));
    signal_ready(fds[1]);
    child.hold_lock_for_test(60.0, true);  // killed long before
    _exit(0);
  }
  ASSERT_TRUE(wait_ready(fds[0]));
  close(fds[0]);
  close(fds[1]);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (parent.share()->lock_owner() != pid && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(parent.share()->lock_owner(), pid);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_child(pid), 128 + SIGKILL);
  EXPECT_EQ(probe(parent), before);  // the NaN the child wrote was rolled back
  EXPECT_EQ(parent.version(), version);
  EXPECT_EQ(parent.share()->repairs(), 1u);
  EXPECT_TRUE(all_finite(parent));
  EXPECT_EQ(train_n(parent, 10), 10u);
  EXPECT_EQ(parent.counters().steps, 110u);
}

TEST(SharedSegment, EveryWaitForTheLockIsBounded) {
  const std::string name = unique_name("timeout");
  Network parent(share_config(), opts(name, 0.2));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Network child(share_config(), opts(name));
    signal_ready(fds[1]);
    child.hold_lock_for_test(60.0, false);
    _exit(0);
  }
  ASSERT_TRUE(wait_ready(fds[0]));
  close(fds[0]);
  close(fds[1]);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (parent.share()->lock_owner() != pid && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(parent.share()->lock_owner(), pid);
  float x[4] = {0, 0, 0, 0}, y[1] = {1};
  EXPECT_THROW(parent.train_step(x, y, nullptr), ShareError);
  kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(train_n(parent, 5), 5u);  // the kill released it
}

TEST(SharedSegment, AStaleSegmentIsRecoveredAndAStaleIncompatibleOneRebuilt) {
  const std::string name = unique_name("stale");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto* net = new Network(share_config(), opts(name));  // never destroyed: a crash
    train_n(*net, 70);
    _exit(0);
  }
  ASSERT_EQ(wait_child(pid), 0);
  ASSERT_TRUE(exists(name));
  {
    Network again(share_config(), opts(name));
    EXPECT_FALSE(again.share()->created());
    EXPECT_TRUE(again.share()->recovered());
    EXPECT_EQ(again.counters().steps, 70u);
  }
  EXPECT_FALSE(exists(name));

  const pid_t pid2 = fork();
  ASSERT_GE(pid2, 0);
  if (pid2 == 0) {
    new Network(share_config(4), opts(name));
    _exit(0);
  }
  ASSERT_EQ(wait_child(pid2), 0);
  Network other(share_config(6), opts(name));
  EXPECT_TRUE(other.share()->created());
  EXPECT_TRUE(other.share()->rebuilt());
  EXPECT_EQ(other.counters().steps, 0u);
}

TEST(SharedSegment, AutosaveIsClaimedByOneProcess) {
  const std::string name = unique_name("autosave");
  Network a(share_config(), opts(name));
  Network b(share_config(), opts(name));
  EXPECT_TRUE(a.share()->claim_autosave());
  EXPECT_TRUE(b.share()->claim_autosave());  // the same process
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code;
    {
      Network c(share_config(), opts(name));
      code = c.share()->claim_autosave() ? 1 : 0;
    }
    _exit(code);
  }
  EXPECT_EQ(wait_child(pid), 0);
}

}  // namespace
}  // namespace livelearn
