// Mlp: configuration validation, initialisation, exact gradients (by
// central finite differences in double), the non-finite guard, sparse steps
// and state import/export.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "livelearn/config.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs f, which must throw std::invalid_argument whose message starts with
// "<parameter>:" (the documented contract: the message names the parameter).
void expect_invalid(const std::function<void()>& f, const std::string& parameter) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(parameter + ":", 0), 0u) << "message: " << what;
    return;
  }
  ADD_FAILURE() << "expected std::invalid_argument naming '" << parameter << "'";
}

Config make_config(std::vector<int> layers, Activation hidden = Activation::Tanh,
                   Activation output = Activation::Sigmoid, Loss loss = Loss::BCE) {
  Config c;
  c.layers = std::move(layers);
  c.hidden_activation = hidden;
  c.output_activation = output;
  c.loss = loss;
  return c;
}

// Every tensor of a network, flattened in state_layout() order.
struct State {
  std::vector<std::vector<float>> tensors;
  bool operator==(const State& o) const {
    if (tensors.size() != o.tensors.size()) return false;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      // Bytes, not values: -0 vs 0 and NaN payloads count as changes.
      if (tensors[t].size() != o.tensors[t].size() ||
          std::memcmp(tensors[t].data(), o.tensors[t].data(), tensors[t].size() * 4) != 0) {
        return false;
      }
    }
    return true;
  }
};

State export_state(const Mlp& net) {
  State s;
  std::vector<float*> dest;
  for (const auto& t : net.state_layout()) s.tensors.emplace_back(t.size);
  for (auto& t : s.tensors) dest.push_back(t.data());
  net.export_state(dest);
  return s;
}

void import_state(Mlp& net, const State& s) {
  std::vector<const float*> src;
  for (const auto& t : s.tensors) src.push_back(t.data());
  net.import_state(src);
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float lo = -1.0f,
                                 float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// ---------------------------------------------------------------- validation

TEST(Config, DefaultIsValid) { EXPECT_NO_THROW(Config{}.validate()); }

TEST(Config, InvalidValuesNameTheParameter) {
  auto check = [](const std::function<void(Config&)>& edit, const std::string& parameter) {
    Config c;
    edit(c);
    expect_invalid([&] { c.validate(); }, parameter);
    expect_invalid([&] { Mlp net(c); }, parameter);  // the constructor validates too
  };
  check([](Config& c) { c.layers = {4}; }, "layers");
  check([](Config& c) { c.layers = {}; }, "layers");
  check([](Config& c) { c.layers = {4, 0, 1}; }, "layers");
  check([](Config& c) { c.layers = {4, 8, -1}; }, "layers");
  check([](Config& c) { c.layers = {4, (1 << 16) + 1, 1}; }, "layers");  // hidden too wide
  check([](Config& c) { c.layers = {(1 << 30) + 1, 1}; }, "layers");     // input too wide
  // 2^30 inputs x 16 hidden = 2^34 weights: rejected before allocating.
  check([](Config& c) { c.layers = {1 << 30, 16, 1}; }, "layers");
  check([](Config& c) { c.output_activation = Activation::Relu; }, "output");
  check([](Config& c) { c.output_activation = Activation::Tanh; }, "output");
  check([](Config& c) { c.output_activation = Activation::Identity; }, "output");  // with BCE
  for (float lr : {0.0f, -0.1f, kNaN, kInf}) {
    check([lr](Config& c) { c.learning_rate = lr; }, "learning_rate");
  }
  for (float mu : {-0.1f, 1.0f, 1.5f, kNaN}) {
    check([mu](Config& c) { c.momentum = mu; }, "momentum");
  }
  check(
      [](Config& c) {
        c.optimizer = Optimizer::Adam;
        c.momentum = 0.9f;
      },
      "momentum");
  for (float wd : {-1e-4f, kNaN, kInf}) {
    check([wd](Config& c) { c.weight_decay = wd; }, "weight_decay");
  }
  for (float clip : {-1.0f, 0.0f, kNaN, kInf}) {
    check([clip](Config& c) { c.clip_norm = clip; }, "clip_norm");
  }
  for (float b : {-0.1f, 1.0f, kNaN}) {
    check([b](Config& c) { c.beta1 = b; }, "beta1");
    check([b](Config& c) { c.beta2 = b; }, "beta2");
  }
  for (float eps : {0.0f, -1e-8f, kNaN}) {
    check([eps](Config& c) { c.epsilon = eps; }, "epsilon");
  }
}

TEST(Config, BoundaryValuesAreAccepted) {
  Config c;
  c.layers = {1, 1};
  c.momentum = 0.0f;
  c.clip_norm = std::nullopt;  // no clipping
  EXPECT_NO_THROW(c.validate());
  c.clip_norm = 1e-30f;
  c.weight_decay = 0.0f;
  EXPECT_NO_THROW(c.validate());
  c.momentum = 0.99f;
  c.beta1 = 0.0f;
  EXPECT_NO_THROW(c.validate());
  c = make_config({3, 2}, Activation::Relu, Activation::Identity, Loss::MSE);
  EXPECT_NO_THROW(c.validate());
}

TEST(Config, ParseNames) {
  EXPECT_EQ(parse_activation("tanh", "activation"), Activation::Tanh);
  EXPECT_EQ(parse_activation("relu", "activation"), Activation::Relu);
  EXPECT_EQ(parse_activation("sigmoid", "output"), Activation::Sigmoid);
  EXPECT_EQ(parse_activation("identity", "output"), Activation::Identity);
  EXPECT_EQ(parse_loss("mse"), Loss::MSE);
  EXPECT_EQ(parse_optimizer("adam"), Optimizer::Adam);
  expect_invalid([] { parse_activation("softmax", "activation"); }, "activation");
  expect_invalid([] { parse_activation("Tanh", "output"); }, "output");
  expect_invalid([] { parse_loss("hinge"); }, "loss");
  expect_invalid([] { parse_optimizer("rmsprop"); }, "optimizer");
  for (Activation a :
       {Activation::Identity, Activation::Tanh, Activation::Relu, Activation::Sigmoid}) {
    EXPECT_EQ(parse_activation(to_string(a), "activation"), a);
  }
}

// ------------------------------------------------------------ initialisation

TEST(Init, SameSeedSameWeightsOtherSeedOtherWeights) {
  Config c = make_config({10, 32, 16, 1});
  c.seed = 42;
  EXPECT_EQ(export_state(Mlp(c)), export_state(Mlp(c)));
  Config d = c;
  d.seed = 43;
  EXPECT_FALSE(export_state(Mlp(c)) == export_state(Mlp(d)));
}

TEST(Init, LayoutNamesAndShapes) {
  Config c = make_config({5, 3, 2});
  c.optimizer = Optimizer::Adam;
  const auto layout = Mlp(c).state_layout();
  const std::vector<std::string> names{
      "layers.0.weight",
      "layers.0.bias",
      "layers.1.weight",
      "layers.1.bias",
      "optimizer.exp_avg.layers.0.weight",
      "optimizer.exp_avg.layers.0.bias",
      "optimizer.exp_avg.layers.1.weight",
      "optimizer.exp_avg.layers.1.bias",
      "optimizer.exp_avg_sq.layers.0.weight",
      "optimizer.exp_avg_sq.layers.0.bias",
      "optimizer.exp_avg_sq.layers.1.weight",
      "optimizer.exp_avg_sq.layers.1.bias",
  };
  ASSERT_EQ(layout.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(layout[i].name, names[i]);
  EXPECT_EQ(layout[0].shape, (std::vector<std::int64_t>{5, 3}));  // input-major (in, out)
  EXPECT_EQ(layout[1].shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(layout[2].shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(Mlp(c).n_parameters(), 5u * 3 + 3 + 3 * 2 + 2);

  c.optimizer = Optimizer::SGD;
  EXPECT_EQ(Mlp(c).state_layout().size(), 4u);  // no buffer without momentum
  c.momentum = 0.9f;
  const auto m = Mlp(c).state_layout();
  ASSERT_EQ(m.size(), 8u);
  EXPECT_EQ(m[4].name, "optimizer.momentum.layers.0.weight");
}

// Xavier uniform (bound sqrt(6 / (in + out))) before tanh/sigmoid/identity,
// He uniform (sqrt(6 / in)) before relu; biases zero. The maximum must come
// close to the bound too, or a too-small init would pass.
TEST(Init, XavierAndHeBounds) {
  for (Activation hidden :
       {Activation::Tanh, Activation::Sigmoid, Activation::Identity, Activation::Relu}) {
    Config c = make_config({64, 64, 32, 1}, hidden);
    c.seed = 7;
    Mlp net(c);
    const State s = export_state(net);
    const auto layout = net.state_layout();
    for (std::size_t l = 0; l < 3; ++l) {
      const double in = layout[2 * l].shape[0], out = layout[2 * l].shape[1];
      const bool he = hidden == Activation::Relu && l < 2;  // the output layer is sigmoid
      const double bound = he ? std::sqrt(6.0 / in) : std::sqrt(6.0 / (in + out));
      const auto& W = s.tensors[2 * l];
      double max_abs = 0, sum = 0;
      for (float w : W) {
        max_abs = std::max(max_abs, std::fabs(double{w}));
        sum += w;
      }
      EXPECT_LE(max_abs, bound) << to_string(hidden) << " layer " << l;
      if (W.size() >= 512) {
        EXPECT_GE(max_abs, 0.95 * bound) << to_string(hidden) << " layer " << l;
        // Uniform on [-b, b]: mean 0, standard error b / sqrt(3 n).
        EXPECT_LT(std::fabs(sum / W.size()), 5 * bound / std::sqrt(3.0 * W.size()));
      }
      for (float b : s.tensors[2 * l + 1]) EXPECT_EQ(b, 0.0f);
    }
  }
}

// ------------------------------------------------- gradients (finite diffs)

// Loss of one example computed in double from the network's forward pass
// (predict), exactly as documented: the mean over outputs of BCE or MSE.
double loss_of(const Mlp& net, const std::vector<float>& x, const std::vector<float>& y) {
  ForwardScratch scratch;
  std::vector<float> p(net.n_outputs());
  net.predict(x.data(), p.data(), scratch);
  double loss = 0;
  for (std::size_t o = 0; o < p.size(); ++o) {
    const double q = p[o], t = y[o];
    loss += net.config().loss == Loss::BCE ? -(t * std::log(q) + (1 - t) * std::log(1 - q))
                                           : (q - t) * (q - t);
  }
  return loss / p.size();
}

struct GradCase {
  const char* name;
  std::vector<int> layers;
  Activation hidden, output;
  Loss loss;
};

void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

class FiniteDifference : public ::testing::TestWithParam<GradCase> {};

// One plain SGD step changes every parameter by -lr * dL/dw. With lr = 1 the
// change is the gradient itself, compared against central differences of the
// float forward pass: perturbations of 2^-8 keep the float noise of the loss
// (~1e-7 / 2^-8 ~ 3e-5) and the O(h^2) truncation both far below tolerance.
TEST_P(FiniteDifference, SgdStepMovesWeightsByMinusLrTimesGradient) {
  const GradCase& gc = GetParam();
  Config c = make_config(gc.layers, gc.hidden, gc.output, gc.loss);
  c.learning_rate = 1.0f;
  c.seed = 3;
  Mlp net(c);
  std::mt19937 rng(11);
  const auto x = random_vector(net.n_inputs(), rng);
  auto y = random_vector(net.n_outputs(), rng, 0.0f, 1.0f);
  if (gc.loss == Loss::BCE) {
    for (auto& t : y) t = t > 0.5f ? 1.0f : 0.0f;
  }

  const State before = export_state(net);
  ForwardScratch scratch;
  std::vector<float> p_before(net.n_outputs()), p_step(net.n_outputs());
  net.predict(x.data(), p_before.data(), scratch);
  const StepResult r = net.train_step(x.data(), y.data(), p_step.data());
  ASSERT_EQ(r.status, StepStatus::Trained);
  EXPECT_EQ(p_step, p_before);  // the step reports the prediction before the update
  EXPECT_NEAR(r.loss,
              loss_of(
                  [&] {
                    Mlp probe(c);
                    import_state(probe, before);
                    return probe;
                  }(),
                  x, y),
              1e-5);
  const State after = export_state(net);

  Mlp probe(c);
  double max_grad = 0;
  int checked = 0;
  for (std::size_t t = 0; t < before.tensors.size(); ++t) {
    for (std::size_t i = 0; i < before.tensors[t].size(); ++i) {
      State s = before;
      const float w = before.tensors[t][i];
      const float h = 0x1.0p-8f;
      s.tensors[t][i] = w + h;
      const double up = double{s.tensors[t][i]} - w;  // the step float actually took
      import_state(probe, s);
      const double l_up = loss_of(probe, x, y);
      s.tensors[t][i] = w - h;
      const double down = double{w} - s.tensors[t][i];
      import_state(probe, s);
      const double l_down = loss_of(probe, x, y);
      const double numeric = (l_up - l_down) / (up + down);
      const double analytic = -(double{after.tensors[t][i]} - w) / c.learning_rate;
      max_grad = std::max(max_grad, std::fabs(numeric));
      EXPECT_NEAR(analytic, numeric, 2e-4 + 2e-3 * std::fabs(numeric))
          << gc.name << " tensor " << net.state_layout()[t].name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(net.n_parameters()));
  EXPECT_GT(max_grad, 1e-2);  // the check compared real gradients, not zeros
}

INSTANTIATE_TEST_SUITE_P(
    Nets, FiniteDifference,
    ::testing::Values(
        GradCase{"tanh_bce", {3, 5, 4, 1}, Activation::Tanh, Activation::Sigmoid, Loss::BCE},
        GradCase{"sigmoid_bce", {3, 4, 1}, Activation::Sigmoid, Activation::Sigmoid, Loss::BCE},
        GradCase{"relu_mse", {4, 6, 1}, Activation::Relu, Activation::Identity, Loss::MSE},
        GradCase{
            "identity_mse_sig", {2, 3, 2}, Activation::Identity, Activation::Sigmoid, Loss::MSE},
        GradCase{"tanh_multi_bce", {3, 4, 3}, Activation::Tanh, Activation::Sigmoid, Loss::BCE},
        GradCase{
            "tanh_multi_mse", {2, 3, 3, 2}, Activation::Tanh, Activation::Identity, Loss::MSE}),
    [](const auto& p) { return std::string(p.param.name); });

// Weight decay joins the gradient of weights only; biases see the plain
// gradient. Two identical nets, one with decay: the difference of their
// single-step changes is exactly -lr * wd * w on weights and 0 on biases.
TEST(Update, WeightDecayAppliesToWeightsNotBiases) {
  Config c = make_config({3, 4, 1});
  c.learning_rate = 0.5f;
  Config d = c;
  d.weight_decay = 0.1f;
  Mlp a(c), b(d);
  const std::vector<float> x{0.3f, -0.7f, 0.2f}, y{1.0f};
  const State s0 = export_state(a);
  a.train_step(x.data(), y.data(), nullptr);
  b.train_step(x.data(), y.data(), nullptr);
  const State sa = export_state(a), sb = export_state(b);
  for (std::size_t t = 0; t < s0.tensors.size(); ++t) {
    const bool is_bias = t % 2 == 1;
    for (std::size_t i = 0; i < s0.tensors[t].size(); ++i) {
      const double expected = is_bias ? 0.0 : -0.5 * 0.1 * s0.tensors[t][i];
      EXPECT_NEAR(double{sb.tensors[t][i]} - sa.tensors[t][i], expected, 1e-6)
          << "tensor " << t << "[" << i << "]";
    }
  }
}

// --------------------------------------------------------- non-finite guard

struct GuardCase {
  const char* name;
  Optimizer optimizer;
  float momentum;
  float weight_decay;
};

void PrintTo(const GuardCase& c, std::ostream* os) { *os << c.name; }

class Guard : public ::testing::TestWithParam<GuardCase> {
 protected:
  Mlp make() const {
    const GuardCase& g = GetParam();
    Config c = make_config({4, 6, 3, 1}, Activation::Tanh, Activation::Identity, Loss::MSE);
    c.optimizer = g.optimizer;
    c.momentum = g.momentum;
    c.weight_decay = g.weight_decay;
    Mlp net(c);
    // Warm up so optimizer buffers are non-zero and would show any change.
    std::mt19937 rng(5);
    for (int i = 0; i < 20; ++i) {
      const auto x = random_vector(4, rng);
      const float y = x[0] * x[1];
      EXPECT_EQ(net.train_step(x.data(), &y, nullptr).status, StepStatus::Trained);
    }
    return net;
  }

  // Runs a step that must be rejected with `expected`, and checks that it
  // changed nothing but rejected_steps.
  static void expect_rejected(Mlp& net, const std::function<StepResult()>& step,
                              StepStatus expected) {
    const State before = export_state(net);
    const auto steps = net.steps(), rejected = net.rejected_steps();
    const StepResult r = step();
    EXPECT_EQ(r.status, expected) << to_string(r.status);
    EXPECT_EQ(export_state(net), before);
    EXPECT_EQ(net.steps(), steps);
    EXPECT_EQ(net.rejected_steps(), rejected + 1);
  }
};

TEST_P(Guard, NonFiniteInputChangesNothing) {
  Mlp net = make();
  const float y = 0.5f;
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> x{0.1f, bad, 0.3f, 0.4f};
    std::vector<float> pred(1, 123.0f);
    expect_rejected(
        net, [&] { return net.train_step(x.data(), &y, pred.data()); }, StepStatus::NonFiniteInput);
    EXPECT_TRUE(std::isnan(pred[0]));
    const std::vector<float> ok{0.1f, 0.2f, 0.3f, 0.4f};
    expect_rejected(
        net, [&] { return net.train_step(ok.data(), &bad, nullptr); }, StepStatus::NonFiniteInput);
    const std::int32_t idx[] = {0, 2};
    const float val[] = {1.0f, bad};
    expect_rejected(
        net, [&] { return net.train_step_sparse(idx, val, 2, &y, nullptr); },
        StepStatus::NonFiniteInput);
  }
}

// A finite target so large that the gradient of the loss at the identity
// output, 2 (p - y), overflows a float (the loss itself, 9e76, is a finite
// double): nothing downstream could be finite, so the loss step rejects it.
TEST_P(Guard, NonFiniteLossChangesNothing) {
  Mlp net = make();
  const std::vector<float> x{1.0f, 1.0f, 1.0f, 1.0f};
  const float y = 3e38f;
  expect_rejected(
      net, [&] { return net.train_step(x.data(), &y, nullptr); }, StepStatus::NonFiniteLoss);
}

// With loss BCE the target is a probability: one outside [0, 1] is rejected
// before anything is computed (NaN loss and prediction, dense and sparse);
// the bounds themselves train.
TEST_P(Guard, BceTargetOutsideUnitIntervalChangesNothing) {
  const GuardCase& g = GetParam();
  Config c = make_config({4, 6, 3, 1});  // sigmoid output, BCE
  c.optimizer = g.optimizer;
  c.momentum = g.momentum;
  c.weight_decay = g.weight_decay;
  Mlp net(c);
  std::mt19937 rng(5);
  for (int i = 0; i < 20; ++i) {  // non-zero optimizer buffers show any change
    const auto x = random_vector(4, rng);
    const float y = x[0] > x[1] ? 1.0f : 0.0f;
    ASSERT_EQ(net.train_step(x.data(), &y, nullptr).status, StepStatus::Trained);
  }
  const std::vector<float> x{0.1f, -0.2f, 0.3f, 0.4f};
  const std::int32_t idx[] = {0, 2};
  const float val[] = {1.0f, -0.5f};
  for (float bad : {2.0f, -1.0f, -1e30f, 1e30f, 3.4e38f, std::nextafter(1.0f, 2.0f), -1e-45f}) {
    std::vector<float> pred(1, 123.0f);
    double loss = 0.0;
    expect_rejected(
        net,
        [&] {
          const StepResult r = net.train_step(x.data(), &bad, pred.data());
          loss = r.loss;
          return r;
        },
        StepStatus::TargetOutOfRange);
    EXPECT_TRUE(std::isnan(pred[0])) << bad;
    EXPECT_TRUE(std::isnan(loss)) << bad;
    expect_rejected(
        net, [&] { return net.train_step_sparse(idx, val, 2, &bad, pred.data()); },
        StepStatus::TargetOutOfRange);
  }
  for (float ok : {0.0f, -0.0f, 1.0f, 0.25f}) {
    EXPECT_EQ(net.train_step(x.data(), &ok, nullptr).status, StepStatus::Trained) << ok;
    EXPECT_EQ(net.train_step_sparse(idx, val, 2, &ok, nullptr).status, StepStatus::Trained) << ok;
  }
}

// Finite loss (1.44e38), but the update is not: lr * g overflows the weights
// for SGD/momentum, and g^2 (g ~ 2.4e19) overflows Adam's second moment. The
// update is computed in place, so this checks the complete roll-back of
// weights and optimizer buffers.
constexpr float kHugeTarget = 1.2e19f;
constexpr float kHugeLr = 1e30f;

TEST_P(Guard, NonFiniteUpdateChangesNothing) {
  Mlp net = make();
  net.set_learning_rate(kHugeLr);
  const std::vector<float> x{0.5f, -0.5f, 0.5f, 0.5f};
  const float y = kHugeTarget;
  expect_rejected(
      net, [&] { return net.train_step(x.data(), &y, nullptr); }, StepStatus::NonFiniteUpdate);
  // Still trainable afterwards with a sane learning rate.
  net.set_learning_rate(0.01f);
  const float sane = 0.5f;
  EXPECT_EQ(net.train_step(x.data(), &sane, nullptr).status, StepStatus::Trained);
}

TEST_P(Guard, SparseNonFiniteUpdateChangesNothing) {
  Config c = make_config({1000, 4, 1}, Activation::Tanh, Activation::Identity, Loss::MSE);
  const GuardCase& g = GetParam();
  c.optimizer = g.optimizer;
  c.momentum = g.momentum;
  c.weight_decay = g.weight_decay;
  c.learning_rate = kHugeLr;
  Mlp net(c);
  const std::int32_t idx[] = {3, 500, 999};
  const float val[] = {0.5f, -0.5f, 0.5f};
  const float y = kHugeTarget;
  expect_rejected(
      net, [&] { return net.train_step_sparse(idx, val, 3, &y, nullptr); },
      StepStatus::NonFiniteUpdate);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, Guard,
                         ::testing::Values(GuardCase{"sgd", Optimizer::SGD, 0.0f, 0.0f},
                                           GuardCase{"momentum", Optimizer::SGD, 0.9f, 0.0f},
                                           GuardCase{"adam", Optimizer::Adam, 0.0f, 0.0f},
                                           GuardCase{"momentum_wd", Optimizer::SGD, 0.5f, 1e-3f},
                                           GuardCase{"adam_wd", Optimizer::Adam, 0.0f, 1e-3f}),
                         [](const auto& p) { return std::string(p.param.name); });

// One bad output of several rejects the whole example; mse has no range.
TEST(TargetRange, AnyBceOutputOutsideUnitIntervalRejectsAndMseDoesNotCheck) {
  Mlp bce(make_config({3, 4, 2}));
  const std::vector<float> x{0.5f, -0.5f, 1.0f};
  std::vector<float> y{0.5f, 1.5f}, pred(2, 123.0f);
  const State before = export_state(bce);
  EXPECT_EQ(bce.train_step(x.data(), y.data(), pred.data()).status, StepStatus::TargetOutOfRange);
  EXPECT_TRUE(std::isnan(pred[0]) && std::isnan(pred[1]));
  EXPECT_EQ(export_state(bce), before);
  EXPECT_EQ(bce.steps(), 0u);
  EXPECT_EQ(bce.rejected_steps(), 1u);
  EXPECT_EQ(std::string(to_string(StepStatus::TargetOutOfRange)), "target outside [0, 1] for bce");

  Mlp mse(make_config({3, 4, 2}, Activation::Tanh, Activation::Sigmoid, Loss::MSE));
  y = {-1.0f, 2.0f};
  EXPECT_EQ(mse.train_step(x.data(), y.data(), nullptr).status, StepStatus::Trained);
}

// The loss is summed and reported in double: with |p - t| ~ 1e25 it is 1e50,
// far beyond FLT_MAX, while the gradient 2 (p - t) is an ordinary float, so
// with a small learning rate the step trains. (Summed in float, this loss
// overflowed and every such step was rejected as a non-finite loss.)
TEST(Loss, MseBeyondFloatRangeIsAFiniteDoubleAndTrains) {
  for (float momentum : {0.0f, 0.9f}) {  // (Adam's g^2 = 1e50 would overflow its moment)
    Config c = make_config({2, 2}, Activation::Tanh, Activation::Identity, Loss::MSE);
    c.momentum = momentum;
    c.learning_rate = 1e-30f;
    Mlp net(c);
    State s = export_state(net);
    s.tensors[0] = {1e25f, 0.0f, 0.0f, -3e25f};  // W (input-major): p = (1e25, -3e25)
    s.tensors[1] = {0.0f, 0.0f};
    import_state(net, s);
    const std::vector<float> x{1.0f, 1.0f}, y{0.0f, 1.0f};
    std::vector<float> pred(2);
    const StepResult r = net.train_step(x.data(), y.data(), pred.data());
    EXPECT_EQ(r.status, StepStatus::Trained) << to_string(r.status);
    EXPECT_EQ(pred[0], 1e25f);
    EXPECT_EQ(pred[1], -3e25f);
    const double d0 = static_cast<double>(1e25f), d1 = static_cast<double>(-3e25f) - 1.0;
    EXPECT_DOUBLE_EQ(r.loss, (d0 * d0 + d1 * d1) / 2.0);
    EXPECT_GT(r.loss, static_cast<double>(std::numeric_limits<float>::max()));
    EXPECT_EQ(net.steps(), 1u);
    for (const auto& t : export_state(net).tensors) {
      for (float v : t) EXPECT_TRUE(std::isfinite(v));
    }
  }
}

// Weights near 1e30 saturate tanh/sigmoid hidden units (derivative exactly 0)
// and make the error 2e30: backpropagated, sum_o W d overflows to inf, but the
// unit's gradient is 0 * that, not NaN. The step trains (loss 4e60 in double),
// the output layer moves and the saturated layer's weights do not.
TEST(Loss, SaturatedHiddenUnitsPassNoGradientEvenWhenTheSumOverflows) {
  for (Activation hidden : {Activation::Tanh, Activation::Sigmoid}) {
    Config c = make_config({1, 2, 1}, hidden, Activation::Identity, Loss::MSE);
    c.learning_rate = 1e-3f;
    Mlp net(c);
    State s = export_state(net);
    s.tensors[0] = {1e30f, 1e30f};  // hidden pre-activations 1e30: a = 1
    s.tensors[1] = {0.0f, 0.0f};
    s.tensors[2] = {1e30f, 1e30f};  // output 2e30
    s.tensors[3] = {0.0f};
    import_state(net, s);
    const float x = 1.0f, y = 0.0f;
    const StepResult r = net.train_step(&x, &y, nullptr);
    ASSERT_EQ(r.status, StepStatus::Trained) << to_string(hidden) << " " << to_string(r.status);
    const double p = static_cast<double>(1e30f + 1e30f);
    EXPECT_DOUBLE_EQ(r.loss, p * p);
    const State after = export_state(net);
    EXPECT_EQ(after.tensors[0], s.tensors[0]);  // no gradient through saturated units
    EXPECT_EQ(after.tensors[1], s.tensors[1]);
    EXPECT_LT(after.tensors[2][0], 1e30f);  // the output layer learned
    for (const auto& t : after.tensors) {
      for (float v : t) EXPECT_TRUE(std::isfinite(v));
    }
  }
}

// A forward pass that overflows (finite weights and input, infinite output)
// gives an infinite loss: rejected, nothing changed.
TEST(Loss, ForwardOverflowIsANonFiniteLoss) {
  Mlp net(make_config({2, 1}, Activation::Tanh, Activation::Identity, Loss::MSE));
  State s = export_state(net);
  s.tensors[0] = {3e38f, 3e38f};
  import_state(net, s);
  const State before = export_state(net);
  const std::vector<float> x{1.0f, 1.0f};
  const float y = 0.0f;
  const StepResult r = net.train_step(x.data(), &y, nullptr);
  EXPECT_EQ(r.status, StepStatus::NonFiniteLoss);
  EXPECT_FALSE(std::isfinite(r.loss));
  EXPECT_EQ(export_state(net), before);
  EXPECT_EQ(net.rejected_steps(), 1u);
}

// Property test of the guard over hostile magnitudes: inputs, targets and
// learning rates spanning 40 orders of magnitude, every activation and
// optimizer. Whatever happens, a trained step leaves only finite values and a
// rejected one leaves the model byte-identical. (SGD has a fast path that
// proves finiteness from running bounds instead of checking; this is where a
// wrong bound would show.)
TEST(GuardFuzz, NeverStoresNonFiniteValuesAndRejectsAtomically) {
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  int trained = 0, rejected = 0;
  for (Activation hidden :
       {Activation::Tanh, Activation::Relu, Activation::Sigmoid, Activation::Identity}) {
    for (int variant = 0; variant < 6; ++variant) {
      const bool bce = variant % 2 == 0;
      Config c = make_config({5, 6, 4, 2}, hidden, bce ? Activation::Sigmoid : Activation::Identity,
                             bce ? Loss::BCE : Loss::MSE);
      c.optimizer = variant / 2 == 2 ? Optimizer::Adam : Optimizer::SGD;
      c.momentum = variant / 2 == 1 ? 0.9f : 0.0f;
      c.weight_decay = variant % 3 == 0 ? 0.01f : 0.0f;
      c.clip_norm = variant % 4 == 1 ? std::optional<float>(1.0f) : std::nullopt;
      Mlp net(c);
      for (int step = 0; step < 300; ++step) {
        const float x_scale = std::pow(10.0f, -2.0f + 27.0f * u(rng));
        const float y_scale = bce ? 1.0f : std::pow(10.0f, 20.0f * u(rng));
        net.set_learning_rate(std::pow(10.0f, -3.0f + 15.0f * u(rng)));
        std::vector<float> x(5), y(2);
        for (auto& v : x) v = normal(rng) * x_scale;
        for (auto& v : y) v = bce ? (u(rng) < 0.5f ? 1.0f : 0.0f) : normal(rng) * y_scale;
        const State before = export_state(net);
        const auto steps = net.steps(), rejects = net.rejected_steps();
        const StepResult r = net.train_step(x.data(), y.data(), nullptr);
        const State after = export_state(net);
        if (r.status == StepStatus::Trained) {
          ++trained;
          ASSERT_EQ(net.steps(), steps + 1);
          for (const auto& t : after.tensors) {
            for (float v : t) ASSERT_TRUE(std::isfinite(v)) << to_string(hidden) << " " << variant;
          }
        } else {
          ++rejected;
          ASSERT_NE(r.status, StepStatus::NonFiniteInput);
          ASSERT_EQ(net.rejected_steps(), rejects + 1);
          ASSERT_TRUE(after == before) << to_string(hidden) << " " << variant << " step " << step;
        }
      }
    }
  }
  // Both outcomes were exercised often, or the test proved nothing.
  EXPECT_GT(trained, 1000);
  EXPECT_GT(rejected, 1000);
}

// The SGD fast path (bounds prove the update finite) and the checked slow
// path must compute the same update. Mlp `slow` carries weights of 1e19
// on input 0, which is always 0: they change no sum (0 * 1e19 == 0), but
// their bound keeps every step of `slow` on the checked path.
TEST(GuardPaths, FastAndCheckedSgdUpdatesAreIdentical) {
  for (float momentum : {0.0f, 0.9f}) {
    Config c = make_config({4, 8, 3, 1}, Activation::Relu, Activation::Identity, Loss::MSE);
    c.momentum = momentum;
    c.weight_decay = 0.01f;
    c.clip_norm = 2.0f;
    c.learning_rate = 0.05f;
    Mlp fast(c), slow(c);
    State s = export_state(fast);
    for (std::size_t o = 0; o < 8; ++o) s.tensors[0][o] = 0.25f;  // row of input 0
    import_state(fast, s);
    // 1e19: still above the fast path's 1e18 limit after 200 steps of decay.
    for (std::size_t o = 0; o < 8; ++o) s.tensors[0][o] = 1e19f;
    import_state(slow, s);
    std::mt19937 rng(8);
    for (int step = 0; step < 200; ++step) {
      auto x = random_vector(4, rng);
      x[0] = 0.0f;
      const float y = x[1] - x[2] * x[3];
      ASSERT_EQ(fast.train_step(x.data(), &y, nullptr).status, StepStatus::Trained);
      ASSERT_EQ(slow.train_step(x.data(), &y, nullptr).status, StepStatus::Trained);
    }
    const State a = export_state(fast), b = export_state(slow);
    for (std::size_t t = 0; t < a.tensors.size(); ++t) {
      const bool first_weights = t % 6 == 0;  // layers.0.weight of each buffer (3 layers)
      for (std::size_t i = first_weights ? 8 : 0; i < a.tensors[t].size(); ++i) {
        ASSERT_EQ(a.tensors[t][i], b.tensors[t][i]) << "momentum " << momentum << " t " << t;
      }
    }
    EXPECT_NE(a.tensors[2], export_state(Mlp(c)).tensors[2]);  // it did train
  }
}

// ------------------------------------------------------------ sparse steps

// With plain SGD a sparse example is the dense example with zeros elsewhere:
// inactive rows get a zero gradient, and zero terms add nothing to sums.
TEST(Sparse, PlainSgdEqualsDenseOnScatteredVector) {
  for (std::optional<float> clip : {std::optional<float>(), std::optional<float>(0.5f)}) {
    Config c = make_config({200, 8, 4, 1});
    c.learning_rate = 0.2f;
    c.clip_norm = clip;
    c.seed = 9;
    Mlp dense(c), sparse(c);
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> pick(0, 199);
    for (int step = 0; step < 200; ++step) {
      std::vector<std::int32_t> idx;
      while (idx.size() < 6) {
        const int i = pick(rng);
        if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
      }
      if (step % 2 == 0) std::sort(idx.begin(), idx.end());  // both orders are valid
      const auto val = random_vector(idx.size(), rng, -2.0f, 2.0f);
      std::vector<float> x(200, 0.0f);
      for (std::size_t j = 0; j < idx.size(); ++j) x[idx[j]] = val[j];
      const float y = step % 3 == 0 ? 1.0f : 0.0f;
      float pd = 0, ps = 0;
      const auto rd = dense.train_step(x.data(), &y, &pd);
      const auto rs = sparse.train_step_sparse(idx.data(), val.data(), idx.size(), &y, &ps);
      ASSERT_EQ(rs.status, StepStatus::Trained);
      ASSERT_NEAR(rs.loss, rd.loss, 1e-5f) << "step " << step;
      ASSERT_NEAR(ps, pd, 1e-6f) << "step " << step;
    }
    const State a = export_state(dense), b = export_state(sparse);
    for (std::size_t t = 0; t < a.tensors.size(); ++t) {
      for (std::size_t i = 0; i < a.tensors[t].size(); ++i) {
        ASSERT_NEAR(a.tensors[t][i], b.tensors[t][i], 1e-5f)
            << "clip " << clip.value_or(0.0f) << " t " << t;
      }
    }
    // predict_sparse agrees with predict on the scattered vector.
    ForwardScratch scratch;
    const std::int32_t idx[] = {5, 17, 150};
    const float val[] = {0.5f, -1.0f, 2.0f};
    std::vector<float> x(200, 0.0f);
    x[5] = 0.5f;
    x[17] = -1.0f;
    x[150] = 2.0f;
    float p1 = 0, p2 = 0;
    sparse.predict(x.data(), &p1, scratch);
    sparse.predict_sparse(idx, val, 3, &p2, scratch);
    EXPECT_NEAR(p1, p2, 1e-6f);
  }
}

// With Adam, momentum or weight decay the sparse update is lazy: rows of the
// first weight matrix that were never active keep their initial weights and
// zero optimizer state, although a dense step would decay / move them.
TEST(Sparse, LazyUpdateLeavesInactiveRowsUntouched) {
  for (int variant = 0; variant < 3; ++variant) {
    Config c = make_config({50, 4, 1});
    if (variant == 0) c.optimizer = Optimizer::Adam;
    if (variant == 1) c.momentum = 0.9f;
    if (variant == 2) c.weight_decay = 0.1f;
    Mlp net(c);
    const State s0 = export_state(net);
    std::mt19937 rng(2);
    for (int step = 0; step < 30; ++step) {
      const std::int32_t idx[] = {1, 7 + step % 3, 20};
      const auto val = random_vector(3, rng);
      const float y = 1.0f;
      ASSERT_EQ(net.train_step_sparse(idx, val.data(), 3, &y, nullptr).status, StepStatus::Trained);
    }
    const State s1 = export_state(net);
    const std::size_t out = 4;
    for (std::size_t row = 0; row < 50; ++row) {
      const bool active = row == 1 || (row >= 7 && row <= 9) || row == 20;
      for (std::size_t o = 0; o < out; ++o) {
        for (std::size_t t = 0; t < s1.tensors.size(); t += 4) {  // layers.0.weight of each buffer
          const float w0 = s0.tensors[t][row * out + o], w1 = s1.tensors[t][row * out + o];
          if (active) {
            EXPECT_NE(w0, w1) << "variant " << variant << " row " << row << " buffer " << t;
          } else {
            EXPECT_EQ(w0, w1) << "variant " << variant << " row " << row << " buffer " << t;
          }
        }
      }
    }
    // The other layers are dense and were all trained.
    EXPECT_NE(s0.tensors[1], s1.tensors[1]);
    EXPECT_NE(s0.tensors[2], s1.tensors[2]);
  }
}

// -------------------------------------------------------------- state I/O

TEST(State, ExportImportRoundTrip) {
  for (Optimizer opt : {Optimizer::SGD, Optimizer::Adam}) {
    Config c = make_config({6, 5, 2});
    c.optimizer = opt;
    c.momentum = opt == Optimizer::SGD ? 0.8f : 0.0f;
    c.seed = 1;
    Mlp a(c);
    std::mt19937 rng(4);
    for (int i = 0; i < 25; ++i) {
      const auto x = random_vector(6, rng);
      const std::vector<float> y{1.0f, 0.0f};
      a.train_step(x.data(), y.data(), nullptr);
    }
    Config other = c;
    other.seed = 99;
    Mlp b(other);
    ASSERT_FALSE(export_state(a) == export_state(b));
    import_state(b, export_state(a));
    b.set_counters(a.steps(), a.rejected_steps());  // Adam's bias correction reads steps
    EXPECT_EQ(export_state(a), export_state(b));
    // Identical continuation: predictions and further training match bit for bit.
    for (int i = 0; i < 10; ++i) {
      const auto x = random_vector(6, rng);
      const std::vector<float> y{0.0f, 1.0f};
      std::vector<float> pa(2), pb(2);
      const auto ra = a.train_step(x.data(), y.data(), pa.data());
      const auto rb = b.train_step(x.data(), y.data(), pb.data());
      EXPECT_EQ(pa, pb);
      EXPECT_EQ(ra.loss, rb.loss);
    }
    EXPECT_EQ(export_state(a), export_state(b));
  }
}

TEST(State, ImportOfNonFiniteValuesThrowsAndChangesNothing) {
  Config c = make_config({3, 4, 1});
  c.optimizer = Optimizer::Adam;
  Mlp net(c);
  const float x[] = {0.1f, 0.2f, 0.3f}, y = 1.0f;
  net.train_step(x, &y, nullptr);
  const State before = export_state(net);
  const auto layout = net.state_layout();
  for (std::size_t t = 0; t < layout.size(); ++t) {
    for (float bad : {kNaN, kInf, -kInf}) {
      State s = before;
      for (auto& v : s.tensors[0]) v += 1.0f;  // a valid change earlier in the list
      s.tensors[t].back() = bad;
      try {
        import_state(net, s);
        ADD_FAILURE() << "no exception for " << layout[t].name;
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(layout[t].name), std::string::npos) << e.what();
      }
      EXPECT_EQ(export_state(net), before) << layout[t].name;
    }
  }
  std::vector<const float*> too_few(layout.size() - 1, before.tensors[0].data());
  EXPECT_THROW(net.import_state(too_few), std::invalid_argument);
  EXPECT_EQ(export_state(net), before);
}

TEST(State, SetLearningRateValidates) {
  Mlp net(make_config({2, 1}));
  net.set_learning_rate(0.25f);
  EXPECT_EQ(net.learning_rate(), 0.25f);
  for (float bad : {0.0f, -1.0f, kNaN, kInf}) {
    expect_invalid([&] { net.set_learning_rate(bad); }, "learning_rate");
  }
  EXPECT_EQ(net.learning_rate(), 0.25f);
}

// import_state / apply_delta by name: the one check of a state's layout.
TEST(State, NamedTensorsAreCheckedAgainstTheLayout) {
  Mlp net(make_config({3, 2, 1}));
  const auto layout = net.state_layout();
  const State before = export_state(net);
  std::vector<NamedTensor> named;
  for (std::size_t t = 0; t < layout.size(); ++t) {
    named.push_back({layout[t].name, layout[t].shape, before.tensors[t].data()});
  }
  auto expect_message = [&](const std::function<void()>& f, const std::string& text) {
    try {
      f();
      ADD_FAILURE() << "no exception, expected: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), text);
    }
    EXPECT_EQ(export_state(net), before);
  };
  auto missing = named;
  missing.erase(missing.begin() + 1);
  expect_message([&] { net.import_state(missing); }, "state: missing tensor 'layers.0.bias'");
  auto misshapen = named;
  misshapen[0].shape = {2, 3};
  expect_message([&] { net.import_state(misshapen); },
                 "state: tensor 'layers.0.weight' has shape (2, 3), expected (3, 2)");
  expect_message([&] { net.import_state(named, {"extra"}); },
                 "state: unexpected tensor 'extra' for this network's configuration");
  auto extra = named;
  extra.push_back({"optimizer.momentum.layers.0.weight", {3, 2}, before.tensors[0].data()});
  expect_message([&] { net.import_state(extra); },
                 "state: unexpected tensor 'optimizer.momentum.layers.0.weight' for this "
                 "network's configuration");
  expect_message([&] { net.apply_delta(misshapen, 1.0f); },
                 "delta: tensor 'layers.0.weight' has shape (2, 3), expected the parameter's "
                 "shape");
  expect_message([&] { net.apply_delta(named, 1.0f, {"x"}); },
                 "delta: expected exactly the 4 parameter tensors (layers.*.weight and "
                 "layers.*.bias)");
  EXPECT_NO_THROW(net.import_state(named));
  EXPECT_EQ(export_state(net), before);
  std::vector<std::vector<float>> zeros;
  for (const auto& t : layout) zeros.emplace_back(t.size, 0.0f);
  std::vector<NamedTensor> delta;
  for (std::size_t t = 0; t < layout.size(); ++t) {
    delta.push_back({layout[t].name, layout[t].shape, zeros[t].data()});
  }
  EXPECT_NO_THROW(net.apply_delta(delta, 2.0f));
  EXPECT_EQ(export_state(net), before);
}

// ----------------------------------------------------------- sample weights

// A weighted SGD step with lr = 1 moves every parameter by minus the gradient
// of weight * (loss + wd/2 * ||weights||^2): the weight scales the loss's
// gradient (central differences, as above) and the weight decay alike.
TEST_P(FiniteDifference, WeightedSgdStepFollowsTheWeightedGradient) {
  const GradCase& gc = GetParam();
  Config c = make_config(gc.layers, gc.hidden, gc.output, gc.loss);
  c.learning_rate = 1.0f;
  c.weight_decay = 0.05f;
  c.seed = 4;
  const float weight = 0.37f;
  Mlp net(c);
  std::mt19937 rng(12);
  const auto x = random_vector(net.n_inputs(), rng);
  auto y = random_vector(net.n_outputs(), rng, 0.0f, 1.0f);
  if (gc.loss == Loss::BCE) {
    for (auto& t : y) t = t > 0.5f ? 1.0f : 0.0f;
  }
  const State before = export_state(net);
  const double unweighted = loss_of(net, x, y);
  const StepResult r = net.train_step(x.data(), y.data(), nullptr, weight);
  ASSERT_EQ(r.status, StepStatus::Trained);
  EXPECT_NEAR(r.loss, weight * unweighted, 1e-5);  // the returned loss is weighted
  const State after = export_state(net);

  Mlp probe(c);
  double max_grad = 0;
  for (std::size_t t = 0; t < before.tensors.size(); ++t) {
    const bool is_weight = t % 2 == 0;
    for (std::size_t i = 0; i < before.tensors[t].size(); ++i) {
      State s = before;
      const float w = before.tensors[t][i];
      const float h = 0x1.0p-8f;
      s.tensors[t][i] = w + h;
      const double up = double{s.tensors[t][i]} - w;
      import_state(probe, s);
      const double l_up = loss_of(probe, x, y);
      s.tensors[t][i] = w - h;
      const double down = double{w} - s.tensors[t][i];
      import_state(probe, s);
      const double l_down = loss_of(probe, x, y);
      const double numeric =
          weight * ((l_up - l_down) / (up + down) + (is_weight ? c.weight_decay * w : 0.0));
      const double analytic = -(double{after.tensors[t][i]} - w);
      max_grad = std::max(max_grad, std::fabs(numeric));
      EXPECT_NEAR(analytic, numeric, 2e-4 + 2e-3 * std::fabs(numeric))
          << gc.name << " tensor " << net.state_layout()[t].name << "[" << i << "]";
    }
  }
  EXPECT_GT(max_grad, 1e-3);
}

// For SGD without momentum or clipping, one step with weight k is one step
// with learning rate k * lr: bit for bit when k is a power of two (the
// scaling is then exact), dense and sparse, weight decay included.
TEST(Weights, PowerOfTwoWeightEqualsScaledLearningRateExactly) {
  for (const float k : {2.0f, 0.5f, 4.0f}) {
    for (const bool sparse : {false, true}) {
      Config c = make_config({6, 5, 3, 1});
      c.learning_rate = 0.1f;
      c.weight_decay = 0.01f;
      c.seed = 21;
      Config scaled = c;
      scaled.learning_rate = k * c.learning_rate;
      Mlp weighted(c), faster(scaled);
      std::mt19937 rng(3);
      for (int step = 0; step < 50; ++step) {
        const auto x = random_vector(6, rng, -2.0f, 2.0f);
        const float y = x[0] + x[1] > 0.0f ? 1.0f : 0.0f;
        const std::int32_t idx[] = {1, 4};
        const float val[] = {x[1], x[4]};
        const StepResult a = sparse ? weighted.train_step_sparse(idx, val, 2, &y, nullptr, k)
                                    : weighted.train_step(x.data(), &y, nullptr, k);
        const StepResult b = sparse ? faster.train_step_sparse(idx, val, 2, &y, nullptr)
                                    : faster.train_step(x.data(), &y, nullptr);
        ASSERT_EQ(a.status, StepStatus::Trained);
        ASSERT_EQ(b.status, StepStatus::Trained);
        ASSERT_DOUBLE_EQ(a.loss, k * b.loss);
      }
      EXPECT_TRUE(export_state(weighted) == export_state(faster)) << "k " << k << " " << sparse;
    }
  }
}

// Weight 1 is the unweighted step, bit for bit, for every optimizer.
TEST(Weights, WeightOneIsTheDefault) {
  for (const Optimizer opt : {Optimizer::SGD, Optimizer::Adam}) {
    Config c = make_config({4, 6, 1});
    c.optimizer = opt;
    c.weight_decay = 0.02f;
    Mlp a(c), b(c);
    std::mt19937 rng(8);
    for (int step = 0; step < 30; ++step) {
      const auto x = random_vector(4, rng);
      const float y = step % 2 ? 1.0f : 0.0f;
      ASSERT_EQ(a.train_step(x.data(), &y, nullptr).loss,
                b.train_step(x.data(), &y, nullptr, 1.0f).loss);
    }
    EXPECT_TRUE(export_state(a) == export_state(b));
  }
}

// A weight-0 example is an accepted step that writes nothing: no parameter,
// no optimizer buffer (a zero gradient would still move them under weight
// decay, momentum or Adam), no version; the counter and the prediction are
// reported as for any step.
TEST_P(Guard, WeightZeroChangesNothingButTheStepCounter) {
  Mlp net = make();
  const std::vector<float> x{0.1f, -0.4f, 0.3f, 0.8f};
  const std::int32_t idx[] = {0, 3};
  const float val[] = {0.5f, -1.0f};
  const float y = 0.7f;
  for (const bool sparse : {false, true}) {
    for (const float zero : {0.0f, -0.0f}) {
      const State before = export_state(net);
      const auto steps = net.steps(), rejected = net.rejected_steps(), version = net.version();
      ForwardScratch scratch;
      float expected = 0.0f, pred = 123.0f;
      if (sparse) {
        net.predict_sparse(idx, val, 2, &expected, scratch);
      } else {
        net.predict(x.data(), &expected, scratch);
      }
      const StepResult r = sparse ? net.train_step_sparse(idx, val, 2, &y, &pred, zero)
                                  : net.train_step(x.data(), &y, &pred, zero);
      EXPECT_EQ(r.status, StepStatus::Trained);
      EXPECT_EQ(r.loss, 0.0);
      EXPECT_EQ(pred, expected);
      EXPECT_TRUE(export_state(net) == before);
      EXPECT_EQ(net.steps(), steps + 1);
      EXPECT_EQ(net.rejected_steps(), rejected);
      EXPECT_EQ(net.version(), version);
    }
  }
}

// A NaN, infinite or negative weight is refused like a non-finite input.
TEST_P(Guard, BadWeightChangesNothing) {
  Mlp net = make();
  const std::vector<float> x{0.1f, 0.2f, 0.3f, 0.4f};
  const std::int32_t idx[] = {1, 2};
  const float val[] = {1.0f, -0.5f};
  const float y = 0.5f;
  for (const float bad : {kNaN, kInf, -kInf, -1.0f, -1e-30f}) {
    float pred = 123.0f;
    expect_rejected(
        net, [&] { return net.train_step(x.data(), &y, &pred, bad); }, StepStatus::NonFiniteInput);
    EXPECT_TRUE(std::isnan(pred));
    expect_rejected(
        net, [&] { return net.train_step_sparse(idx, val, 2, &y, nullptr, bad); },
        StepStatus::NonFiniteInput);
  }
}

// The guard under hostile weights (1e-30 .. 1e30, 0) with weight decay: the
// weight enters the fast path's bounds through the gradient and the decay,
// so a wrong bound would store a non-finite value here.
TEST(GuardFuzz, HostileWeightsNeverStoreNonFiniteValues) {
  std::mt19937 rng(77);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  int trained = 0, rejected = 0;
  for (int variant = 0; variant < 6; ++variant) {
    const bool bce = variant % 2 == 0;
    Config c =
        make_config({5, 6, 2}, Activation::Tanh, bce ? Activation::Sigmoid : Activation::Identity,
                    bce ? Loss::BCE : Loss::MSE);
    c.optimizer = variant / 2 == 2 ? Optimizer::Adam : Optimizer::SGD;
    c.momentum = variant / 2 == 1 ? 0.9f : 0.0f;
    c.weight_decay = 0.5f;
    Mlp net(c);
    for (int step = 0; step < 300; ++step) {
      const float weight = step % 10 == 0 ? 0.0f : std::pow(10.0f, -30.0f + 60.0f * u(rng));
      std::vector<float> x(5), y(2);
      for (auto& v : x) v = normal(rng) * 3.0f;
      for (auto& v : y) v = bce ? (u(rng) < 0.5f ? 1.0f : 0.0f) : normal(rng) * 10.0f;
      const State before = export_state(net);
      const auto rejects = net.rejected_steps();
      const StepResult r = net.train_step(x.data(), y.data(), nullptr, weight);
      const State after = export_state(net);
      if (r.status == StepStatus::Trained) {
        ++trained;
        ASSERT_TRUE(std::isfinite(r.loss));
        for (const auto& t : after.tensors) {
          for (float v : t) ASSERT_TRUE(std::isfinite(v)) << variant << " step " << step;
        }
      } else {
        ++rejected;
        ASSERT_NE(r.status, StepStatus::NonFiniteInput);
        ASSERT_EQ(net.rejected_steps(), rejects + 1);
        ASSERT_TRUE(after == before) << variant << " step " << step;
      }
    }
  }
  EXPECT_GT(trained, 300);
  EXPECT_GT(rejected, 100);
}

TEST(State, ShapeTextIsTheOneShapeFormat) {
  EXPECT_EQ(shape_text({}), "()");
  EXPECT_EQ(shape_text({4}), "(4,)");
  EXPECT_EQ(shape_text({-1, 4}), "(n, 4)");
  EXPECT_EQ(shape_text({2, 3, 5}), "(2, 3, 5)");
}

}  // namespace
}  // namespace livelearn
