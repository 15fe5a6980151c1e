// Accuracy of the vectorisable activations against libm, evaluated in double
// so the reference itself contributes no error. Two code paths are covered:
// the inline header as compiled into this test, and the library's own
// (possibly FMA / AVX-512 dispatched) build, reached through a 1-1-1 network
// whose hidden unit computes exactly fast_tanh(x) (or fast_sigmoid(x)).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <vector>

#include "livelearn/activations.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn {

// Readable test names in gtest output (found by ADL, hence outside the
// anonymous namespace).
static void PrintTo(Activation a, std::ostream* os) { *os << to_string(a); }

namespace {

// The bound documented in activations.hpp.
constexpr double kTanhBound = 4e-7;
// sigmoid = 0.5 + 0.5 * tanh(x / 2): halves the tanh error; the scalings by
// 0.5 are exact and the final add rounds by at most half an ulp of a value in
// [0.5, 1], 2^-25.
constexpr double kSigmoidBound = 0.5 * kTanhBound + 0x1.0p-25;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// [-20, 20] in steps of 2^-16 (2.6M points) plus both signs of every power
// of two down to the smallest subnormal: dense where the rational form is
// least accurate (|x| in [2, 8]) and covering the tiny range exactly.
std::vector<float> sweep_points() {
  std::vector<float> xs;
  for (std::int64_t i = -20 * 65536; i <= 20 * 65536; ++i) {
    xs.push_back(static_cast<float>(std::ldexp(static_cast<double>(i), -16)));
  }
  for (int e = -149; e <= 4; ++e) {
    xs.push_back(std::ldexp(1.0f, e));
    xs.push_back(-std::ldexp(1.0f, e));
  }
  xs.push_back(std::numeric_limits<float>::max());
  xs.push_back(-std::numeric_limits<float>::max());
  return xs;
}

struct MaxError {
  double err = 0.0;
  float at = 0.0f;
  void add(double e, float x) {
    if (e > err) {
      err = e;
      at = x;
    }
  }
};

TEST(FastTanh, WithinDocumentedBoundOfLibm) {
  MaxError m;
  for (float x : sweep_points()) m.add(std::fabs(fast_tanh(x) - std::tanh(double{x})), x);
  EXPECT_LE(m.err, kTanhBound) << "worst x = " << m.at;
}

TEST(FastTanh, SpecialValues) {
  EXPECT_EQ(fast_tanh(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(fast_tanh(-0.0f)));
  // Past the clamp the approximation returns its value at the clamp, within
  // the bound of the true +-1.
  EXPECT_NEAR(fast_tanh(kInf), 1.0f, kTanhBound);
  EXPECT_NEAR(fast_tanh(-kInf), -1.0f, kTanhBound);
  EXPECT_NEAR(fast_tanh(std::numeric_limits<float>::max()), 1.0f, kTanhBound);
  EXPECT_TRUE(std::isnan(fast_tanh(kNaN)));
  EXPECT_TRUE(std::isnan(fast_tanh(-kNaN)));
  // Tiny inputs: tanh(x) == x to float precision; the sign must survive.
  for (float x : {1e-30f, 1e-20f, 1e-10f, 3e-4f}) {
    EXPECT_NEAR(fast_tanh(x), x, 1e-6 * x) << x;
    EXPECT_NEAR(fast_tanh(-x), -x, 1e-6 * x) << x;
  }
  // Subnormals may flush towards zero (the bound is absolute) but keep their sign.
  const float sub = std::numeric_limits<float>::denorm_min();
  EXPECT_FALSE(std::signbit(fast_tanh(sub)));
  EXPECT_TRUE(std::signbit(fast_tanh(-sub)));
  EXPECT_LE(std::fabs(fast_tanh(sub)), 2 * sub);
}

TEST(FastTanh, OddAndBounded) {
  for (float x : sweep_points()) {
    const float t = fast_tanh(x);
    ASSERT_EQ(t, -fast_tanh(-x)) << x;  // the formula is odd: no sign bias
    ASSERT_LE(std::fabs(t), 1.0f) << x;
  }
}

TEST(FastSigmoid, WithinBoundOfExactLogistic) {
  MaxError m;
  for (float x : sweep_points()) m.add(std::fabs(fast_sigmoid(x) - ref_sigmoid(x)), x);
  EXPECT_LE(m.err, kSigmoidBound) << "worst x = " << m.at;
}

// Independent of the tanh bound: fast_sigmoid must add no error of its own
// beyond half of fast_tanh's plus the final rounding.
TEST(FastSigmoid, ErrorIsHalfTheTanhErrorPlusRounding) {
  for (float x : sweep_points()) {
    const double tanh_err = std::fabs(fast_tanh(0.5f * x) - std::tanh(0.5 * double{x}));
    const double sig_err = std::fabs(fast_sigmoid(x) - ref_sigmoid(x));
    ASSERT_LE(sig_err, 0.5 * tanh_err + 0x1.0p-24) << x;
  }
}

TEST(FastSigmoid, SpecialValues) {
  EXPECT_EQ(fast_sigmoid(0.0f), 0.5f);
  EXPECT_NEAR(fast_sigmoid(kInf), 1.0f, kSigmoidBound);
  EXPECT_NEAR(fast_sigmoid(-kInf), 0.0f, kSigmoidBound);
  EXPECT_TRUE(std::isnan(fast_sigmoid(kNaN)));
}

TEST(ExactSigmoid, MonotoneAndInUnitInterval) {
  float prev = 0.0f;
  for (std::int64_t i = -200 * 1024; i <= 200 * 1024; ++i) {
    const float x = static_cast<float>(i) / 1024.0f;
    const float s = exact_sigmoid(x);
    ASSERT_GE(s, 0.0f) << x;
    ASSERT_LE(s, 1.0f) << x;
    ASSERT_GE(s, prev) << x;
    prev = s;
  }
  EXPECT_EQ(exact_sigmoid(0.0f), 0.5f);
  EXPECT_EQ(exact_sigmoid(kInf), 1.0f);
  EXPECT_EQ(exact_sigmoid(-kInf), 0.0f);
  EXPECT_TRUE(std::isnan(exact_sigmoid(kNaN)));
}

// exact_sigmoid exists for the relative accuracy of small probabilities,
// which 0.5 + 0.5 * tanh cannot give.
TEST(ExactSigmoid, RelativeAccuracyInTheTails) {
  for (float x = -80.0f; x <= 80.0f; x += 0.25f) {
    const double ref = ref_sigmoid(x);
    ASSERT_NEAR(exact_sigmoid(x), ref, 4e-7 * ref) << x;
  }
}

// The library's compiled activation (dispatched clone) through a 1-1-1 net:
// W1 = 1, b1 = 0, identity output with W2 = 1, b2 = 0, so predict(x) is the
// hidden activation of x exactly (x * 1 + 0 and a * 1 + 0 are exact).
class LibraryActivation : public ::testing::TestWithParam<Activation> {};

TEST_P(LibraryActivation, MatchesLibmWithinBound) {
  Config c;
  c.layers = {1, 1, 1};
  c.hidden_activation = GetParam();
  c.output_activation = Activation::Identity;
  c.loss = Loss::MSE;
  Mlp net(c);
  const float one = 1.0f, zero = 0.0f;
  net.import_state({&one, &zero, &one, &zero});
  ForwardScratch scratch;
  const bool is_tanh = GetParam() == Activation::Tanh;
  MaxError m;
  for (float x : sweep_points()) {
    float out = 0.0f;
    net.predict(&x, &out, scratch);
    const double ref = is_tanh ? std::tanh(double{x}) : ref_sigmoid(x);
    m.add(std::fabs(out - ref), x);
  }
  EXPECT_LE(m.err, is_tanh ? kTanhBound : kSigmoidBound) << "worst x = " << m.at;
}

INSTANTIATE_TEST_SUITE_P(Hidden, LibraryActivation,
                         ::testing::Values(Activation::Tanh, Activation::Sigmoid),
                         [](const auto& p) { return std::string(to_string(p.param)); });

}  // namespace
}  // namespace livelearn
