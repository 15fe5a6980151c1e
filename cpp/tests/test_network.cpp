// Network: the locking facade. Concurrency tests are written to be race-free
// by design, so a ThreadSanitizer build reports only real races in the core.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "livelearn/network.hpp"

namespace livelearn {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Config small_config(int inputs = 4) {
  Config c;
  c.layers = {inputs, 16, 8, 1};
  c.learning_rate = 0.01f;
  c.seed = 17;
  return c;
}

std::vector<std::vector<float>> export_all(const Network& t, Counters* counters = nullptr) {
  std::vector<std::vector<float>> out;
  std::vector<float*> dest;
  for (const auto& info : t.state_layout()) out.emplace_back(info.size);
  for (auto& v : out) dest.push_back(v.data());
  const Counters c = t.export_state(dest);
  if (counters) *counters = c;
  return out;
}

// A deterministic example stream per thread: row r of thread `id`.
struct Stream {
  std::vector<float> X, Y;
  Stream(int id, std::size_t n, std::size_t inputs, std::size_t nan_every) {
    std::mt19937 rng(1000 + id);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    X.resize(n * inputs);
    Y.resize(n);
    for (auto& v : X) v = u(rng);
    for (std::size_t r = 0; r < n; ++r) {
      Y[r] = X[r * inputs] + X[r * inputs + 1] > 0 ? 1.0f : 0.0f;
      if (nan_every && r % nan_every == nan_every - 1) X[r * inputs + 2] = kNaN;
    }
  }
};

// 4 training threads (alternating train_step and train_batch chunks, some
// rows non-finite) against 4 threads that predict and read counters. Every
// submitted step is accounted for exactly once, and readers only ever see
// finite probabilities and monotone counters.
TEST(NetworkStress, ConcurrentTrainingAndPrediction) {
  constexpr int kTrainers = 4, kReaders = 4;
  constexpr std::size_t kRows = 3000, kNanEvery = 97;
  constexpr int kMaxReads = 20000;
  Network trainer(small_config());
  std::vector<Stream> streams;
  std::size_t expected_rejected = 0;
  for (int t = 0; t < kTrainers; ++t) {
    streams.emplace_back(t, kRows, 4, kNanEvery);
    expected_rejected += kRows / kNanEvery;
  }

  std::atomic<int> trainers_left{kTrainers}, readers_left{kReaders};
  std::atomic<bool> reader_failed{false};
  std::atomic<std::uint64_t> predictions_made{0};
  // Reads that saw training in progress. The whole training takes a few ms,
  // so on a loaded machine the scheduler could run it before any reader;
  // trainers therefore pause half-way until a reader has seen them there.
  std::atomic<std::uint64_t> mid_training_reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kTrainers; ++t) {
    threads.emplace_back([&, t] {
      const Stream& s = streams[t];
      std::size_t r = 0;
      bool paused = false;
      while (r < kRows) {
        if (!paused && r >= kRows / 2) {
          paused = true;
          while (mid_training_reads.load() == 0 && readers_left.load() > 0) {
            std::this_thread::yield();
          }
        }
        if ((r / 50) % 2 == 0) {
          trainer.train_step(&s.X[r * 4], &s.Y[r], nullptr);
          ++r;
        } else {
          const std::size_t n = std::min<std::size_t>(50, kRows - r);
          std::vector<double> losses(n);
          std::vector<StepStatus> status(n);
          trainer.train_batch(n, &s.X[r * 4], &s.Y[r], losses.data(), nullptr, status.data());
          r += n;
        }
      }
      trainers_left.fetch_sub(1);
    });
  }
  for (int t = 0; t < kReaders; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::uniform_real_distribution<float> u(-3.0f, 3.0f);
      std::vector<float> X(8 * 4), out(8);
      Counters last{0, 0};
      // Read while the trainers run (at least 200 times). The cap bounds the
      // run time: std::shared_mutex on glibc prefers readers, so 4 readers on
      // 2 cores can starve the trainers for a long time (writer starvation).
      for (int iter = 0; (trainers_left.load() > 0 && iter < kMaxReads) || iter < 200; ++iter) {
        for (auto& v : X) v = u(rng);
        trainer.predict(8, X.data(), out.data());
        for (float p : out) {
          if (!(p >= 0.0f && p <= 1.0f)) reader_failed = true;
        }
        const Counters c = trainer.counters();
        if (c.steps < last.steps || c.rejected_steps < last.rejected_steps) reader_failed = true;
        const std::uint64_t seen = c.steps + c.rejected_steps;
        if (seen > 0 && seen < std::uint64_t{kTrainers} * kRows) mid_training_reads.fetch_add(1);
        last = c;
        predictions_made.fetch_add(8);
        std::this_thread::yield();  // a gap for the trainers (see above)
      }
      readers_left.fetch_sub(1);
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_FALSE(reader_failed.load());
  EXPECT_GT(predictions_made.load(), 0u);
  EXPECT_GT(mid_training_reads.load(), 0u);
  const Counters c = trainer.counters();
  EXPECT_EQ(c.steps + c.rejected_steps, std::uint64_t{kTrainers} * kRows);
  EXPECT_EQ(c.rejected_steps, expected_rejected);
  for (const auto& tensor : export_all(trainer)) {
    for (float v : tensor) ASSERT_TRUE(std::isfinite(v));
  }
}

// One trainer thread racing readers (predict, counters, export_state) ends in
// exactly the state of the same sequence replayed serially: readers never
// perturb training.
TEST(NetworkStress, ConcurrentReadersDoNotChangeTraining) {
  constexpr std::size_t kRows = 4000;
  const Stream s(7, kRows, 4, 0);
  Config c = small_config();
  c.optimizer = Optimizer::Adam;
  c.learning_rate = 1e-3f;

  Network serial(c);
  std::vector<double> serial_losses(kRows);
  for (std::size_t r = 0; r < kRows; ++r) {
    serial_losses[r] = serial.train_step(&s.X[r * 4], &s.Y[r], nullptr).loss;
  }

  Network raced(c);
  std::vector<double> raced_losses(kRows);
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::vector<float> x{0.1f * t, 0.2f, -0.3f, 0.4f}, out(1);
      while (!done.load()) {
        raced.predict(1, x.data(), out.data());
        (void)raced.counters();
        if (t == 0) (void)export_all(raced);
      }
    });
  }
  for (std::size_t r = 0; r < kRows; r += 100) {
    raced.train_batch(100, &s.X[r * 4], &s.Y[r], &raced_losses[r], nullptr, nullptr);
  }
  done = true;
  for (auto& th : readers) th.join();

  EXPECT_EQ(std::memcmp(serial_losses.data(), raced_losses.data(), kRows * sizeof(double)), 0);
  Counters cs{}, cr{};
  const auto a = export_all(serial, &cs), b = export_all(raced, &cr);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t t = 0; t < a.size(); ++t) {
    EXPECT_EQ(std::memcmp(a[t].data(), b[t].data(), a[t].size() * sizeof(float)), 0) << t;
  }
  EXPECT_EQ(cs.steps, cr.steps);
  EXPECT_EQ(cs.steps, kRows);
}

// train_batch is n train_step calls, bit for bit, including its outputs.
// Each thread's batches report the step number of each of its rows: read
// under the lock, so together the threads name every step exactly once.
TEST(NetworkStress, ConcurrentBatchesReportEveryStepNumberOnce) {
  Network t(small_config());
  constexpr int kThreads = 4;
  constexpr std::size_t kRows = 2000, kChunk = 250;
  std::vector<std::vector<std::uint64_t>> steps(kThreads, std::vector<std::uint64_t>(kRows));
  std::vector<std::vector<StepStatus>> status(kThreads, std::vector<StepStatus>(kRows));
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      const Stream s(id, kRows, 4, 40);
      for (std::size_t lo = 0; lo < kRows; lo += kChunk) {
        t.train_batch(kChunk, s.X.data() + lo * 4, s.Y.data() + lo, nullptr, nullptr,
                      status[id].data() + lo, steps[id].data() + lo);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::uint64_t> trained;
  for (int id = 0; id < kThreads; ++id) {
    for (std::size_t r = 0; r < kRows; ++r) {
      if (status[id][r] == StepStatus::Trained) {
        trained.push_back(steps[id][r]);
      } else {
        EXPECT_EQ(steps[id][r], 0u) << "a rejected row reports step 0";
      }
    }
  }
  std::sort(trained.begin(), trained.end());
  ASSERT_EQ(trained.size(), t.counters().steps);
  ASSERT_EQ(trained.size(), kThreads * (kRows - kRows / 40));
  for (std::size_t i = 0; i < trained.size(); ++i) ASSERT_EQ(trained[i], i + 1);
}

TEST(Network, BatchEqualsSequentialSteps) {
  const Stream s(3, 300, 4, 41);
  Network a(small_config()), b(small_config());
  std::vector<double> la(300), lb(300);
  std::vector<float> pa(300), pb(300);
  std::vector<StepStatus> sa(300), sb(300);
  for (std::size_t r = 0; r < 300; ++r) {
    const StepResult res = a.train_step(&s.X[r * 4], &s.Y[r], &pa[r]);
    la[r] = res.loss;
    sa[r] = res.status;
  }
  b.train_batch(300, s.X.data(), s.Y.data(), lb.data(), pb.data(), sb.data());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), sizeof(double) * 300), 0);
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), sizeof(float) * 300), 0);
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(sa[40], StepStatus::NonFiniteInput);
  EXPECT_EQ(b.counters().rejected_steps, 300u / 41);
  const auto ea = export_all(a), eb = export_all(b);
  for (std::size_t t = 0; t < ea.size(); ++t) EXPECT_EQ(ea[t], eb[t]);
}

// BCE targets outside [0, 1] in the middle of a batch: those rows are
// rejected (NaN loss and prediction, TargetOutOfRange), and every other row
// trains exactly as in a batch without them. Dense and sparse.
TEST(Network, BatchRejectsBceTargetsOutsideUnitIntervalOnly) {
  constexpr std::size_t kRows = 60;
  const Stream s(4, kRows, 4, 0);
  std::vector<float> Y = s.Y;
  const std::vector<std::size_t> bad{17, 30, 31};
  Y[17] = 2.0f;
  Y[30] = -1.0f;
  Y[31] = -1e30f;
  std::vector<float> Xk, Yk;  // the batch without the bad rows
  std::vector<std::size_t> kept;
  for (std::size_t r = 0; r < kRows; ++r) {
    if (std::find(bad.begin(), bad.end(), r) != bad.end()) continue;
    kept.push_back(r);
    Xk.insert(Xk.end(), &s.X[r * 4], &s.X[r * 4 + 4]);
    Yk.push_back(Y[r]);
  }
  const std::size_t nk = kept.size();
  Network a(small_config()), b(small_config());
  std::vector<double> la(kRows), lb(nk);
  std::vector<float> pa(kRows), pb(nk);
  std::vector<StepStatus> sa(kRows), sb(nk);
  a.train_batch(kRows, s.X.data(), Y.data(), la.data(), pa.data(), sa.data());
  b.train_batch(nk, Xk.data(), Yk.data(), lb.data(), pb.data(), sb.data());
  for (std::size_t r : bad) {
    EXPECT_EQ(sa[r], StepStatus::TargetOutOfRange) << r;
    EXPECT_TRUE(std::isnan(la[r]) && std::isnan(pa[r])) << r;
  }
  for (std::size_t j = 0; j < nk; ++j) {
    const std::size_t r = kept[j];
    EXPECT_EQ(sa[r], StepStatus::Trained) << r;
    EXPECT_EQ(sb[j], StepStatus::Trained) << r;
    EXPECT_EQ(std::memcmp(&la[r], &lb[j], sizeof(double)), 0) << r;
    EXPECT_EQ(std::memcmp(&pa[r], &pb[j], sizeof(float)), 0) << r;
  }
  EXPECT_EQ(export_all(a), export_all(b));
  EXPECT_EQ(a.counters().steps, nk);
  EXPECT_EQ(a.counters().rejected_steps, bad.size());

  // Sparse: the same rows as CSR (every input active).
  std::vector<std::int64_t> ptr{0}, ptr_k{0};
  std::vector<std::int32_t> idx, idx_k;
  std::vector<float> val, val_k;
  for (std::size_t r = 0; r < kRows; ++r) {
    const bool keep = std::find(bad.begin(), bad.end(), r) == bad.end();
    for (std::int32_t i = 0; i < 4; ++i) {
      idx.push_back(i);
      val.push_back(s.X[r * 4 + i]);
      if (keep) {
        idx_k.push_back(i);
        val_k.push_back(s.X[r * 4 + i]);
      }
    }
    ptr.push_back(static_cast<std::int64_t>(idx.size()));
    if (keep) ptr_k.push_back(static_cast<std::int64_t>(idx_k.size()));
  }
  Network c(small_config()), d(small_config());
  std::vector<double> lc(kRows), ld(nk);
  std::vector<StepStatus> sc(kRows), sd(nk);
  c.train_batch_sparse({kRows, ptr.data(), idx.data(), val.data()}, Y.data(), lc.data(), nullptr,
                       sc.data());
  d.train_batch_sparse({nk, ptr_k.data(), idx_k.data(), val_k.data()}, Yk.data(), ld.data(),
                       nullptr, sd.data());
  for (std::size_t r : bad) EXPECT_EQ(sc[r], StepStatus::TargetOutOfRange) << r;
  for (std::size_t j = 0; j < nk; ++j) {
    EXPECT_EQ(sc[kept[j]], StepStatus::Trained);
    EXPECT_EQ(std::memcmp(&lc[kept[j]], &ld[j], sizeof(double)), 0) << kept[j];
  }
  EXPECT_EQ(export_all(c), export_all(d));
  EXPECT_EQ(c.counters().rejected_steps, bad.size());
}

// Bad weights (NaN, inf, negative) in the middle of a weighted batch: those
// rows are rejected as NonFiniteInput (NaN loss and prediction, step 0), and
// every other row, weight-0 rows included, trains exactly as in the batch
// without them; the step numbers count the weight-0 rows. Dense and sparse,
// SGD and Adam (whose bias correction reads the step counter).
TEST(Network, BatchWeightsRejectBadRowsOnly) {
  constexpr std::size_t kRows = 40;
  const Stream s(6, kRows, 4, 0);
  std::vector<float> W(kRows);
  for (std::size_t r = 0; r < kRows; ++r) W[r] = 0.25f + 0.1f * static_cast<float>(r % 7);
  W[3] = 0.0f;
  W[22] = 0.0f;
  const std::vector<std::size_t> bad{5, 17, 18, 33};
  W[5] = kNaN;
  W[17] = -1.0f;
  W[18] = std::numeric_limits<float>::infinity();
  W[33] = -std::numeric_limits<float>::infinity();
  std::vector<float> Xk, Yk, Wk;
  std::vector<std::size_t> kept;
  for (std::size_t r = 0; r < kRows; ++r) {
    if (std::find(bad.begin(), bad.end(), r) != bad.end()) continue;
    kept.push_back(r);
    Xk.insert(Xk.end(), &s.X[r * 4], &s.X[r * 4 + 4]);
    Yk.push_back(s.Y[r]);
    Wk.push_back(W[r]);
  }
  const std::size_t nk = kept.size();
  std::vector<std::int64_t> ptr{0}, ptr_k{0};
  std::vector<std::int32_t> idx, idx_k;
  std::vector<float> val, val_k;
  for (std::size_t r = 0; r < kRows; ++r) {
    const bool keep = std::find(bad.begin(), bad.end(), r) == bad.end();
    for (std::int32_t i = 0; i < 4; i += 2) {  // inputs 0 and 2 active
      idx.push_back(i);
      val.push_back(s.X[r * 4 + i]);
      if (keep) {
        idx_k.push_back(i);
        val_k.push_back(s.X[r * 4 + i]);
      }
    }
    ptr.push_back(static_cast<std::int64_t>(idx.size()));
    if (keep) ptr_k.push_back(static_cast<std::int64_t>(idx_k.size()));
  }
  for (const Optimizer opt : {Optimizer::SGD, Optimizer::Adam}) {
    for (const bool sparse : {false, true}) {
      Config cfg = small_config();
      cfg.optimizer = opt;
      cfg.weight_decay = 0.01f;
      Network a(cfg), b(cfg);
      std::vector<double> la(kRows), lb(nk);
      std::vector<float> pa(kRows), pb(nk);
      std::vector<StepStatus> sa(kRows), sb(nk);
      std::vector<std::uint64_t> na(kRows), nb(nk);
      if (sparse) {
        a.train_batch_sparse({kRows, ptr.data(), idx.data(), val.data()}, s.Y.data(), la.data(),
                             pa.data(), sa.data(), na.data(), W.data());
        b.train_batch_sparse({nk, ptr_k.data(), idx_k.data(), val_k.data()}, Yk.data(), lb.data(),
                             pb.data(), sb.data(), nb.data(), Wk.data());
      } else {
        a.train_batch(kRows, s.X.data(), s.Y.data(), la.data(), pa.data(), sa.data(), na.data(),
                      W.data());
        b.train_batch(nk, Xk.data(), Yk.data(), lb.data(), pb.data(), sb.data(), nb.data(),
                      Wk.data());
      }
      for (std::size_t r : bad) {
        EXPECT_EQ(sa[r], StepStatus::NonFiniteInput) << r;
        EXPECT_TRUE(std::isnan(la[r]) && std::isnan(pa[r])) << r;
        EXPECT_EQ(na[r], 0u) << r;
      }
      for (std::size_t j = 0; j < nk; ++j) {
        const std::size_t r = kept[j];
        EXPECT_EQ(sa[r], StepStatus::Trained) << r;
        EXPECT_EQ(std::memcmp(&la[r], &lb[j], sizeof(double)), 0) << r;
        EXPECT_EQ(std::memcmp(&pa[r], &pb[j], sizeof(float)), 0) << r;
        EXPECT_EQ(na[r], j + 1) << r;  // weight-0 rows are numbered steps too
        EXPECT_EQ(nb[j], j + 1) << r;
      }
      EXPECT_EQ(la[3], 0.0);
      EXPECT_EQ(export_all(a), export_all(b));
      EXPECT_EQ(a.counters().steps, nk);
      EXPECT_EQ(a.counters().rejected_steps, bad.size());
      EXPECT_EQ(b.counters().rejected_steps, 0u);
      EXPECT_EQ(a.version(), b.version());
    }
  }
}

// A weighted batch is the sequence of weighted steps; a null weights array
// is the batch of weight-1 rows.
TEST(Network, WeightedBatchEqualsWeightedSteps) {
  const Stream s(7, 100, 4, 0);
  std::vector<float> W(100);
  for (std::size_t r = 0; r < 100; ++r) W[r] = static_cast<float>(r % 5) * 0.75f;
  Network a(small_config()), b(small_config()), c(small_config()), d(small_config());
  std::vector<double> la(100), lb(100);
  for (std::size_t r = 0; r < 100; ++r) {
    la[r] = a.train_step(&s.X[r * 4], &s.Y[r], nullptr, W[r]).loss;
  }
  b.train_batch(100, s.X.data(), s.Y.data(), lb.data(), nullptr, nullptr, nullptr, W.data());
  EXPECT_EQ(la, lb);
  EXPECT_EQ(export_all(a), export_all(b));
  const std::vector<float> ones(100, 1.0f);
  c.train_batch(100, s.X.data(), s.Y.data(), nullptr, nullptr, nullptr, nullptr, ones.data());
  d.train_batch(100, s.X.data(), s.Y.data(), nullptr, nullptr, nullptr);
  EXPECT_EQ(export_all(c), export_all(d));
}

// Weighted batches from 4 threads (weight-0 and NaN-weight rows among them):
// every accepted row, weight 0 included, gets a distinct step number, and the
// counters add up exactly.
TEST(NetworkStress, ConcurrentWeightedBatchesCountExactly) {
  Network t(small_config());
  constexpr int kThreads = 4;
  constexpr std::size_t kRows = 1000, kChunk = 125;
  std::vector<std::vector<std::uint64_t>> steps(kThreads, std::vector<std::uint64_t>(kRows));
  std::vector<std::vector<StepStatus>> status(kThreads, std::vector<StepStatus>(kRows));
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      const Stream s(id, kRows, 4, 0);
      std::vector<float> W(kRows);
      for (std::size_t r = 0; r < kRows; ++r) {
        W[r] = r % 10 == 0 ? 0.0f : (r % 25 == 1 ? kNaN : 0.5f + static_cast<float>(r % 3));
      }
      for (std::size_t lo = 0; lo < kRows; lo += kChunk) {
        t.train_batch(kChunk, s.X.data() + lo * 4, s.Y.data() + lo, nullptr, nullptr,
                      status[id].data() + lo, steps[id].data() + lo, W.data() + lo);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::uint64_t> trained;
  std::size_t rejected = 0;
  for (int id = 0; id < kThreads; ++id) {
    for (std::size_t r = 0; r < kRows; ++r) {
      if (status[id][r] == StepStatus::Trained) {
        trained.push_back(steps[id][r]);
      } else {
        EXPECT_EQ(status[id][r], StepStatus::NonFiniteInput);
        ++rejected;
      }
    }
  }
  std::sort(trained.begin(), trained.end());
  ASSERT_EQ(rejected, kThreads * (kRows / 25));
  ASSERT_EQ(trained.size(), kThreads * kRows - rejected);
  ASSERT_EQ(t.counters().steps, trained.size());
  ASSERT_EQ(t.counters().rejected_steps, rejected);
  for (std::size_t i = 0; i < trained.size(); ++i) ASSERT_EQ(trained[i], i + 1);
}

TEST(Network, PredictRejectsNonFiniteRows) {
  Network t(small_config());
  std::vector<float> X{0.1f, 0.2f, 0.3f, 0.4f, 0.1f, kNaN, 0.3f, 0.4f}, out(2);
  try {
    t.predict(2, X.data(), out.data());
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
}

// -------------------------------------------------------- CSR validation

void expect_invalid(const std::function<void()>& f, const std::string& parameter) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind(parameter + ":", 0), 0u) << e.what();
    return;
  }
  ADD_FAILURE() << "expected std::invalid_argument naming '" << parameter << "'";
}

TEST(Csr, ValidationErrorsNameTheArray) {
  Network t(small_config(10));
  const std::vector<float> values{1, 1, 1, 1, 1, 1};
  auto csr = [&](const std::vector<std::int64_t>& indptr, const std::vector<std::int32_t>& idx) {
    return CsrView{indptr.size() - 1, indptr.data(), idx.data(), values.data()};
  };
  // Valid: an empty row, unsorted unique indices, the last input.
  const std::vector<std::int64_t> ok_ptr{0, 0, 3, 4};
  const std::vector<std::int32_t> ok_idx{5, 0, 3, 9};
  EXPECT_NO_THROW(t.validate_csr(csr(ok_ptr, ok_idx)));

  const std::vector<std::int64_t> not_zero{1, 2}, decreasing{0, 3, 2, 4};
  const std::vector<std::int32_t> idx4{0, 1, 2, 3};
  expect_invalid([&] { t.validate_csr(csr(not_zero, idx4)); }, "indptr");
  expect_invalid([&] { t.validate_csr(csr(decreasing, idx4)); }, "indptr");

  const std::vector<std::int64_t> ptr{0, 2, 4};
  for (const std::vector<std::int32_t>& bad :
       {std::vector<std::int32_t>{0, 1, 2, 10}, std::vector<std::int32_t>{0, -1, 2, 3},
        std::vector<std::int32_t>{0, 1, 4, 4}}) {
    expect_invalid([&] { t.validate_csr(csr(ptr, bad)); }, "indices");
  }
  // Unsorted duplicates are found too; the same index in two rows is fine.
  const std::vector<std::int32_t> dup_unsorted{0, 1, 8, 3, 8}, across_rows{1, 2, 1, 2};
  const std::vector<std::int64_t> ptr3{0, 2, 5};
  expect_invalid([&] { t.validate_csr(csr(ptr3, dup_unsorted)); }, "indices");
  EXPECT_NO_THROW(t.validate_csr(csr(ptr, across_rows)));

  const std::int32_t dup[] = {4, 2, 4};
  expect_invalid([&] { t.validate_sparse_row(dup, 3); }, "indices");
  const float v3[] = {1, 1, 1}, y = 1.0f;
  expect_invalid([&] { t.train_step_sparse(dup, v3, 3, &y, nullptr); }, "indices");
  EXPECT_EQ(t.counters().steps + t.counters().rejected_steps, 0u);
}

// The whole batch is validated before the first step: a bad last row means
// no step at all, not a half-trained batch.
TEST(Csr, BadRowRejectsTheWholeBatchUpFront) {
  Network t(small_config(10));
  const auto before = export_all(t);
  const std::vector<std::int64_t> ptr{0, 2, 4, 6};
  const std::vector<std::int32_t> idx{0, 1, 2, 3, 4, 12};
  const std::vector<float> val(6, 0.5f), Y{1, 0, 1};
  const CsrView v{3, ptr.data(), idx.data(), val.data()};
  std::vector<float> out(3);
  EXPECT_THROW(t.train_batch_sparse(v, Y.data(), nullptr, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(t.predict_sparse(v, out.data()), std::invalid_argument);
  const Counters c = t.counters();
  EXPECT_EQ(c.steps + c.rejected_steps, 0u);
  EXPECT_EQ(export_all(t), before);
}

TEST(Csr, SparseBatchEqualsSparseSteps) {
  Network a(small_config(10)), b(small_config(10));
  const std::vector<std::int64_t> ptr{0, 2, 2, 5};
  const std::vector<std::int32_t> idx{3, 1, 0, 9, 4};
  const std::vector<float> val{0.5f, -1.0f, 2.0f, 0.25f, -0.5f}, Y{1, 0, 1};
  std::vector<double> la(3), lb(3);
  for (std::size_t r = 0; r < 3; ++r) {
    la[r] =
        a.train_step_sparse(&idx[ptr[r]], &val[ptr[r]], ptr[r + 1] - ptr[r], &Y[r], nullptr).loss;
  }
  b.train_batch_sparse({3, ptr.data(), idx.data(), val.data()}, Y.data(), lb.data(), nullptr,
                       nullptr);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(export_all(a), export_all(b));
  std::vector<float> pa(3), pb(3);
  a.predict_sparse({3, ptr.data(), idx.data(), val.data()}, pa.data());
  b.predict_sparse({3, ptr.data(), idx.data(), val.data()}, pb.data());
  EXPECT_EQ(pa, pb);
}

TEST(Network, ImportStateSetsCountersAndValidatesFirst) {
  Network a(small_config()), b(small_config());
  const Stream s(1, 10, 4, 0);
  a.train_batch(10, s.X.data(), s.Y.data(), nullptr, nullptr, nullptr);
  auto state = export_all(a);
  std::vector<const float*> src;
  for (const auto& v : state) src.push_back(v.data());
  b.import_state(src, {123, 4});
  EXPECT_EQ(b.counters().steps, 123u);
  EXPECT_EQ(b.counters().rejected_steps, 4u);
  EXPECT_EQ(export_all(b), state);

  state.back()[0] = kNaN;
  const auto before = export_all(b);
  EXPECT_THROW(b.import_state(src, {999, 999}), std::invalid_argument);
  EXPECT_EQ(b.counters().steps, 123u);  // counters untouched by a failed import
  EXPECT_EQ(export_all(b), before);
}

// The cost model (multiply-adds, kCostlyWork = 32768): a 4-16-8-1 step or
// one-row predict is cheap; a batch predict or a wide network is costly.
TEST(Network, CostlyFollowsTheMultiplyAddModel) {
  const Network small(small_config());  // 4-16-8-1: 225 parameters
  EXPECT_FALSE(small.costly_step());
  EXPECT_FALSE(small.costly_predict(1));
  EXPECT_FALSE(small.costly_predict(140));    // (140 + 3) * 225 < 32768
  EXPECT_TRUE(small.costly_predict(143));     // (143 + 3) * 225 >= 32768
  const Config wide = small_config(1 << 14);  // a hashed input space
  const Network hashed(wide);
  EXPECT_TRUE(hashed.costly_step());
  EXPECT_FALSE(hashed.costly_sparse_step(8));  // only the active rows count
  EXPECT_TRUE(hashed.costly_sparse_step(1000));
  EXPECT_FALSE(hashed.costly_predict_sparse(1, 8));
  EXPECT_TRUE(hashed.costly_predict(1));
}

}  // namespace
}  // namespace livelearn
