// FieldModel: gradients against finite differences, the optimizers against
// their reference formulas, the guard, validation, state and concurrency.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "livelearn/field_model.hpp"

namespace livelearn {
namespace {

using State = std::vector<std::vector<float>>;

State export_all(const FieldModel& m, FieldCounters* counters = nullptr) {
  State out;
  std::vector<float*> dest;
  for (const auto& t : m.state_layout()) out.emplace_back(t.size);
  for (auto& v : out) dest.push_back(v.data());
  const FieldCounters c = m.export_state(dest);
  if (counters) *counters = c;
  return out;
}

void import_all(FieldModel& m, const State& s, FieldCounters c = {0, 0}) {
  std::vector<const float*> src;
  for (const auto& v : s) src.push_back(v.data());
  m.import_state(src, c);
}

std::size_t tensor_index(const FieldModel& m, const std::string& name) {
  const auto& layout = m.state_layout();
  for (std::size_t t = 0; t < layout.size(); ++t)
    if (layout[t].name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

// An example with two entries in field 0 (sum pooling) and a repeated index.
struct Example {
  std::vector<std::int64_t> idx{3, 7, 11, 7, 2};
  std::vector<float> val{1.0f, 0.5f, -1.5f, 0.25f, 2.0f};
  std::vector<std::int32_t> fld{0, 1, 2, 1, 0};
  std::vector<float> dense{0.3f, -0.7f};
  FieldRow row() const { return {idx.data(), val.data(), fld.data(), idx.size(), dense.data()}; }
};

FieldConfig small_config(FieldLoss loss, FieldActivation act, std::vector<int> hidden,
                         bool dense_factors = false) {
  FieldConfig c;
  c.dense_factors = dense_factors;
  c.n_buckets = 16;
  c.n_fields = 3;
  c.embedding_dim = 4;
  c.n_dense = 2;
  c.hidden_layers = std::move(hidden);
  c.activation = act;
  c.loss = loss;
  c.optimizer = FieldOptimizer::SGD;
  c.learning_rate = c.embedding_learning_rate = c.mlp_learning_rate = c.bias_learning_rate = 1.0f;
  c.l2 = c.embedding_l2 = 0.0f;  // the step then subtracts exactly the loss' gradient
  c.seed = 3;
  return c;
}

double loss_of(const FieldModel& m, const FieldRow& row, double y) {
  const double z = m.predict_logit(row);
  if (m.config().loss == FieldLoss::MSE) return (z - y) * (z - y);
  return std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::fabs(z)));
}

// SGD with every learning rate 1: a step subtracts the gradient, so the
// gradient is (before - after). Compared with central differences of the
// loss (double logit) for every parameter: untouched rows must have 0.
void check_gradients(FieldLoss loss, FieldActivation act, std::vector<int> hidden,
                     bool dense_factors = false) {
  FieldModel m(small_config(loss, act, hidden, dense_factors));
  // Random parameters everywhere (the MLP's output layer starts at zero).
  State s = export_all(m);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 0.4f);
  for (std::size_t t = 0; t < m.n_parameter_tensors(); ++t)
    for (auto& v : s[t]) v = nd(rng);
  import_all(m, s);
  const Example ex;
  const float y = loss == FieldLoss::BCE ? 1.0f : 0.8f;

  FieldModel probe(small_config(loss, act, hidden, dense_factors));
  import_all(probe, s);
  const FieldStepResult r = probe.train_step(ex.row(), y);
  ASSERT_EQ(r.status, FieldStatus::Trained);
  EXPECT_NEAR(r.loss, loss_of(m, ex.row(), y), 1e-9);
  const State after = export_all(probe);

  std::size_t checked = 0, nonzero = 0;
  for (std::size_t t = 0; t < m.n_parameter_tensors(); ++t) {
    for (std::size_t i = 0; i < s[t].size(); ++i) {
      const double analytic = static_cast<double>(s[t][i]) - static_cast<double>(after[t][i]);
      State plus = s, minus = s;
      plus[t][i] = s[t][i] + 1e-3f;
      minus[t][i] = s[t][i] - 1e-3f;
      const double h = static_cast<double>(plus[t][i]) - static_cast<double>(minus[t][i]);
      import_all(m, plus);
      const double lp = loss_of(m, ex.row(), y);
      import_all(m, minus);
      const double lm = loss_of(m, ex.row(), y);
      const double numeric = (lp - lm) / h;
      EXPECT_NEAR(analytic, numeric, 2e-4 + 2e-3 * std::fabs(numeric))
          << m.state_layout()[t].name << "[" << i << "]";
      ++checked;
      nonzero += std::fabs(numeric) > 1e-6;
    }
  }
  EXPECT_GT(nonzero, 20u);  // wide, embeddings, dense, bias (and MLP) all have gradients
  EXPECT_GT(checked, 80u);
}

TEST(FieldModel, GradientsMatchFiniteDifferencesBce) {
  check_gradients(FieldLoss::BCE, FieldActivation::Tanh, {});
}
TEST(FieldModel, GradientsMatchFiniteDifferencesDeepTanh) {
  check_gradients(FieldLoss::BCE, FieldActivation::Tanh, {5, 3});
}
TEST(FieldModel, GradientsMatchFiniteDifferencesDeepReluMse) {
  check_gradients(FieldLoss::MSE, FieldActivation::Relu, {6});
}
TEST(FieldModel, GradientsMatchFiniteDifferencesDenseFactors) {
  check_gradients(FieldLoss::BCE, FieldActivation::Tanh, {}, true);
  check_gradients(FieldLoss::MSE, FieldActivation::Relu, {4}, true);
}

TEST(FieldModel, RunningBiasAloneIsTheRunningMean) {
  FieldConfig c;
  c.n_buckets = 4;
  c.n_fields = 1;
  c.bias_prior = 2.0f;  // two pseudo-events at sigmoid(0) = 0.5
  FieldModel m(c);
  const FieldRow empty{nullptr, nullptr, nullptr, 0, nullptr};
  double clicks = 0.0;
  for (int t = 0; t < 200; ++t) {
    const float y = (t % 7 == 0 || t % 11 == 0) ? 1.0f : 0.0f;
    const auto r = m.train_step(empty, y);
    ASSERT_EQ(r.status, FieldStatus::Trained);
    EXPECT_NEAR(r.prediction, (1.0 + clicks) / (2.0 + t), 2e-6) << "event " << t;
    clicks += y;
  }
  const State s = export_all(m);
  EXPECT_FLOAT_EQ(s[tensor_index(m, "optimizer.bias.N")][0], 202.0f);
}

FieldConfig one_field(FieldOptimizer opt) {
  FieldConfig c;
  c.n_buckets = 8;
  c.n_fields = 1;
  c.embedding_dim = 2;
  c.optimizer = opt;
  c.learning_rate = 0.1f;
  c.bias_learning_rate = 0.3f;
  return c;
}

TEST(FieldModel, AdaGradFirstUpdateIsLearningRateTimesSign) {
  FieldConfig c = one_field(FieldOptimizer::AdaGrad);
  c.initial_accumulator = 0.0f;
  c.running_bias = false;  // the bias under AdaGrad too
  FieldModel m(c);
  const std::int64_t idx = 5;
  const float val = 0.01f;  // a tiny gradient still moves the weight by lr
  const std::int32_t fld = 0;
  const FieldRow row{&idx, &val, &fld, 1, nullptr};
  const auto r = m.train_step(row, 0.0f);
  ASSERT_EQ(r.status, FieldStatus::Trained);
  const State s = export_all(m);
  EXPECT_NEAR(s[tensor_index(m, "wide")][5], -0.1f, 1e-5);
  EXPECT_NEAR(s[tensor_index(m, "bias")][0], -0.3f, 1e-5);
}

TEST(FieldModel, AdaGradAndFtrlFollowTheirReferenceFormulas) {
  for (FieldOptimizer opt : {FieldOptimizer::AdaGrad, FieldOptimizer::FTRL}) {
    FieldConfig c = one_field(opt);
    c.l1 = 0.05f;
    c.l2 = 0.2f;
    c.initial_accumulator = 0.1f;
    FieldModel m(c);
    const std::int64_t idx = 5;
    const float val = 1.5f;
    const std::int32_t fld = 0;
    const FieldRow row{&idx, &val, &fld, 1, nullptr};
    double w = 0.0, a = opt == FieldOptimizer::AdaGrad ? 0.1 : 0.0, n = 0.0;
    const float ys[] = {1.0f, 1.0f, 0.0f, 1.0f, 1.0f, 1.0f};
    for (float y : ys) {
      const auto r = m.train_step(row, y);
      ASSERT_EQ(r.status, FieldStatus::Trained);
      const double g = (static_cast<double>(r.prediction) - y) * val;
      if (opt == FieldOptimizer::AdaGrad) {
        const double gg = g + 0.2 * w;
        a += gg * gg;
        w -= 0.1 * gg / (std::sqrt(a) + 1e-8);
      } else {
        const double sigma = (std::sqrt(n + g * g) - std::sqrt(n)) / 0.1;
        a += g - sigma * w;
        n += g * g;
        w = std::fabs(a) <= 0.05
                ? 0.0
                : -(a - (a > 0 ? 0.05 : -0.05)) / ((1.0 + std::sqrt(n)) / 0.1 + 0.2);
      }
      const State s = export_all(m);
      EXPECT_NEAR(s[tensor_index(m, "wide")][5], w, 2e-5 * (1 + std::fabs(w)));
      if (opt == FieldOptimizer::AdaGrad) {
        EXPECT_NEAR(s[tensor_index(m, "optimizer.wide.G")][5], a, 1e-4 * a);
      } else {
        EXPECT_NEAR(s[tensor_index(m, "optimizer.wide.z")][5], a, 1e-4 * (1 + std::fabs(a)));
        EXPECT_NEAR(s[tensor_index(m, "optimizer.wide.n")][5], n, 1e-4 * n);
      }
    }
  }
}

TEST(FieldModel, FtrlL1MakesUselessAndUnseenWeightsExactlyZero) {
  FieldConfig c = one_field(FieldOptimizer::FTRL);
  c.n_buckets = 64;
  c.n_fields = 2;
  c.l1 = 3.0f;
  c.learning_rate = 0.1f;
  FieldModel m(c);
  std::mt19937 rng(5);
  std::bernoulli_distribution coin(0.5);
  for (int t = 0; t < 1000; ++t) {
    const bool good = coin(rng);
    // Field 0: index 1 or 2 decides the label; field 1: a noise index in 10..59 (~20 times each).
    const std::int64_t idx[2] = {good ? 1 : 2, 10 + static_cast<std::int64_t>(rng() % 50)};
    const float val[2] = {1.0f, 1.0f};
    const std::int32_t fld[2] = {0, 1};
    const FieldRow row{idx, val, fld, 2, nullptr};
    const float y = std::bernoulli_distribution(good ? 0.9 : 0.1)(rng) ? 1.0f : 0.0f;
    ASSERT_EQ(m.train_step(row, y).status, FieldStatus::Trained);
  }
  const State s = export_all(m);
  const auto& w = s[tensor_index(m, "wide")];
  EXPECT_GT(w[1], 0.5f);
  EXPECT_LT(w[2], -0.5f);
  int zeros = 0;
  for (int j = 10; j < 60; ++j) zeros += w[static_cast<std::size_t>(j)] == 0.0f;
  EXPECT_GE(zeros, 45);  // noise features: exactly zero (a few may survive by chance)
  for (int j = 60; j < 64; ++j) EXPECT_EQ(w[static_cast<std::size_t>(j)], 0.0f);
  EXPECT_EQ(w[0], 0.0f);
}

TEST(FieldModel, NonFiniteStepsChangeNothing) {
  FieldConfig c = small_config(FieldLoss::BCE, FieldActivation::Relu, {4});
  c.optimizer = FieldOptimizer::AdaGrad;
  c.learning_rate = c.embedding_learning_rate = c.mlp_learning_rate = 0.05f;
  FieldModel m(c);
  Example ex;
  ASSERT_EQ(m.train_step(ex.row(), 1.0f).status, FieldStatus::Trained);
  const State before = export_all(m);
  const auto version = m.version();

  Example bad = ex;
  bad.val[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(m.train_step(bad.row(), 1.0f).status, FieldStatus::NonFiniteInput);
  bad = ex;
  bad.dense[1] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(m.train_step(bad.row(), 1.0f).status, FieldStatus::NonFiniteInput);
  EXPECT_EQ(m.train_step(ex.row(), std::nanf("")).status, FieldStatus::NonFiniteInput);
  EXPECT_EQ(m.train_step(ex.row(), 1.0f, std::numeric_limits<float>::infinity()).status,
            FieldStatus::NonFiniteInput);
  EXPECT_EQ(m.train_step(ex.row(), 1.5f).status, FieldStatus::TargetOutOfRange);
  bad = ex;
  bad.val[0] = 1e30f;  // (v x)^2 overflows nothing in double, but the update does in float
  const auto r = m.train_step(bad.row(), 0.0f);
  EXPECT_TRUE(r.status == FieldStatus::NonFiniteLoss || r.status == FieldStatus::NonFiniteUpdate)
      << static_cast<int>(r.status);
  EXPECT_EQ(r.step, 0u);
  EXPECT_EQ(export_all(m), before);
  EXPECT_EQ(m.version(), version);
  EXPECT_EQ(m.counters().steps, 1u);
  EXPECT_EQ(m.counters().rejected_steps, 6u);
}

TEST(FieldModel, StructuralErrorsThrowBeforeAnythingChanges) {
  FieldModel m(small_config(FieldLoss::BCE, FieldActivation::Relu, {}));
  const State before = export_all(m);
  Example ex;
  ex.idx[1] = 16;
  EXPECT_THROW(m.train_step(ex.row(), 1.0f), std::invalid_argument);
  ex = Example();
  ex.fld[4] = 3;
  EXPECT_THROW(m.train_step(ex.row(), 1.0f), std::invalid_argument);
  ex = Example();
  EXPECT_THROW(m.train_step(ex.row(), 1.0f, -1.0f), std::invalid_argument);
  FieldRow no_dense = ex.row();
  no_dense.dense = nullptr;
  EXPECT_THROW(m.train_step(no_dense, 1.0f), std::invalid_argument);
  // A batch whose second row is bad: the first row is not trained either.
  std::vector<std::int64_t> indptr{0, 2, 4}, idx{1, 2, 3, -1};
  std::vector<float> val{1, 1, 1, 1}, dense(4, 0.0f), y{1, 0};
  std::vector<std::int32_t> fld{0, 1, 0, 1};
  const FieldCsr csr{2, indptr.data(), idx.data(), val.data(), fld.data(), dense.data()};
  try {
    m.train_batch(csr, y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
    ADD_FAILURE() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("row 1: indices[3] = -1"), std::string::npos) << e.what();
  }
  std::vector<std::int64_t> bad_ptr{0, 3, 2};
  const FieldCsr csr2{2, bad_ptr.data(), idx.data(), val.data(), fld.data(), dense.data()};
  EXPECT_THROW(m.train_batch(csr2, y.data(), nullptr, nullptr, nullptr, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_EQ(export_all(m), before);
  EXPECT_EQ(m.counters().steps, 0u);
  EXPECT_EQ(m.counters().rejected_steps, 0u);
  EXPECT_EQ(m.version(), 0u);
}

// A deterministic stream over 3 fields with n_buckets 64.
struct Stream {
  std::vector<std::int64_t> indptr{0}, idx;
  std::vector<float> val, dense, y;
  std::vector<std::int32_t> fld;
  explicit Stream(std::size_t n, unsigned seed = 1) {
    std::mt19937 rng(seed);
    for (std::size_t r = 0; r < n; ++r) {
      const auto u = static_cast<std::int64_t>(rng() % 20),
                 a = 20 + static_cast<std::int64_t>(rng() % 10);
      idx.insert(idx.end(), {u, a, 40 + static_cast<std::int64_t>(rng() % 3)});
      val.insert(val.end(), {1.0f, 1.0f, 1.0f});
      fld.insert(fld.end(), {0, 1, 2});
      indptr.push_back(static_cast<std::int64_t>(idx.size()));
      dense.push_back(static_cast<float>(rng() % 100) / 100.0f);
      dense.push_back(-1.0f);
      y.push_back(((u + a) % 2 == 0) && rng() % 10 < 8 ? 1.0f : 0.0f);
    }
  }
  FieldCsr csr() const {
    return {y.size(), indptr.data(), idx.data(), val.data(), fld.data(), dense.data()};
  }
};

FieldConfig stream_config(FieldOptimizer opt) {
  FieldConfig c;
  c.n_buckets = 64;
  c.n_fields = 3;
  c.embedding_dim = 4;
  c.n_dense = 2;
  c.hidden_layers = {8};
  c.optimizer = opt;
  c.seed = 9;
  return c;
}

TEST(FieldModel, StateRoundTripResumesExactly) {
  for (FieldOptimizer opt : {FieldOptimizer::AdaGrad, FieldOptimizer::FTRL, FieldOptimizer::SGD}) {
    const Stream first(300, 1), second(300, 2);
    FieldModel a(stream_config(opt));
    a.train_batch(first.csr(), first.y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
    FieldCounters c;
    const State mid = export_all(a, &c);
    FieldConfig other = stream_config(opt);
    other.seed = 1234;  // different init: everything must come from the state
    FieldModel b(other);
    import_all(b, mid, c);
    EXPECT_EQ(b.counters().steps, 300u);
    std::vector<double> la(300), lb(300);
    std::vector<std::int64_t> sa(300), sb(300);
    a.train_batch(second.csr(), second.y.data(), nullptr, la.data(), nullptr, nullptr, sa.data());
    b.train_batch(second.csr(), second.y.data(), nullptr, lb.data(), nullptr, nullptr, sb.data());
    EXPECT_EQ(la, lb);
    EXPECT_EQ(sa, sb);
    EXPECT_EQ(sa.back(), 600);
    EXPECT_EQ(export_all(a), export_all(b)) << to_string(opt);
  }
}

TEST(FieldModel, SameSeedSameModel) {
  const Stream s(200);
  FieldModel a(stream_config(FieldOptimizer::AdaGrad)), b(stream_config(FieldOptimizer::AdaGrad));
  a.train_batch(s.csr(), s.y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
  b.train_batch(s.csr(), s.y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
  EXPECT_EQ(export_all(a), export_all(b));
}

TEST(FieldModel, ImportRefusesNonFiniteAndNegativeAccumulators) {
  FieldModel m(stream_config(FieldOptimizer::AdaGrad));
  State s = export_all(m);
  const State before = s;
  s[tensor_index(m, "embedding")][3] = std::nanf("");
  EXPECT_THROW(import_all(m, s), std::invalid_argument);
  s = before;
  s[tensor_index(m, "optimizer.embedding.G")][3] = -1.0f;
  EXPECT_THROW(import_all(m, s), std::invalid_argument);
  EXPECT_EQ(export_all(m), before);
}

TEST(FieldModel, ApplyDeltaAddsToParametersAndKeepsFtrlConsistent) {
  for (FieldOptimizer opt : {FieldOptimizer::AdaGrad, FieldOptimizer::FTRL}) {
    const Stream s(200);
    FieldModel m(stream_config(opt));
    m.train_batch(s.csr(), s.y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
    const State before = export_all(m);
    State delta(m.n_parameter_tensors());
    for (std::size_t t = 0; t < delta.size(); ++t) delta[t].assign(before[t].size(), 0.25f);
    std::vector<const float*> src;
    for (const auto& d : delta) src.push_back(d.data());
    const auto version = m.version();
    m.apply_delta(src, 2.0f);
    EXPECT_EQ(m.version(), version + 1);
    const State after = export_all(m);
    for (std::size_t t = 0; t < delta.size(); ++t)
      for (std::size_t i = 0; i < after[t].size(); ++i)
        ASSERT_FLOAT_EQ(after[t][i], before[t][i] + 0.5f) << m.state_layout()[t].name;
    if (opt == FieldOptimizer::FTRL) {
      // One step on a row that does not touch wide[50]: its weight stays the shifted one,
      // and a step that touches it starts from the shifted weight (z was moved).
      const auto w = tensor_index(m, "wide");
      const std::int64_t idx = 50;
      const float val = 1.0f;
      const std::int32_t fld = 0;
      const float dense[2] = {0.0f, 0.0f};
      const FieldRow row{&idx, &val, &fld, 1, dense};
      const auto r = m.train_step(row, 1.0f);
      ASSERT_EQ(r.status, FieldStatus::Trained);
      const double g = static_cast<double>(r.prediction) - 1.0;
      const State next = export_all(m);
      // w moved from 0.5 by less than a plain step of alpha * |g| would allow.
      EXPECT_GT(next[w][50], 0.5f);
      EXPECT_LT(next[w][50], 0.5f + 0.1f * std::fabs(g) + 1e-6f);
    }
    std::vector<float> bad(before[0].size(), std::nanf(""));
    src[0] = bad.data();
    const State kept = export_all(m);
    EXPECT_THROW(m.apply_delta(src, 1.0f), std::invalid_argument);
    EXPECT_EQ(export_all(m), kept);
  }
}

// Predictions from other threads while one trains: each must equal the
// prediction of the serial model after some prefix of the steps (no torn reads).
TEST(FieldModel, ConcurrentPredictionsSeeWholeSteps) {
  const Stream s(1500, 4);
  const Example probe_ex;
  std::vector<std::int64_t> pidx{1, 25, 41};
  std::vector<float> pval{1, 1, 1}, pdense{0.5f, -1.0f};
  std::vector<std::int32_t> pfld{0, 1, 2};
  const FieldRow probe{pidx.data(), pval.data(), pfld.data(), 3, pdense.data()};
  std::set<float> serial;
  {
    FieldModel ref(stream_config(FieldOptimizer::AdaGrad));
    serial.insert(ref.predict(probe));
    const auto nd = static_cast<std::size_t>(ref.config().n_dense);
    for (std::size_t r = 0; r < s.y.size(); ++r) {
      ref.train_step(s.csr().row(r, nd), s.y[r]);
      serial.insert(ref.predict(probe));
    }
  }
  FieldModel m(stream_config(FieldOptimizer::AdaGrad));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, seen{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        const float p = m.predict(probe);
        torn += serial.count(p) == 0;
        ++seen;
      }
    });
  }
  m.train_batch(s.csr(), s.y.data(), nullptr, nullptr, nullptr, nullptr, nullptr);
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(seen.load(), 0);
  EXPECT_EQ(m.counters().steps, 1500u);
}

TEST(FieldModel, ConfigValidationNamesTheParameter) {
  FieldConfig c;
  c.embedding_dim = 0;
  EXPECT_THROW(FieldModel{c}, std::invalid_argument);
  c = FieldConfig();
  c.learning_rate = -1.0f;
  try {
    FieldModel m(c);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate"), std::string::npos);
  }
  EXPECT_THROW(parse_field_optimizer("adam"), std::invalid_argument);
}

}  // namespace
}  // namespace livelearn
