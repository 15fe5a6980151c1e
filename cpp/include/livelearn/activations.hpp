// Vectorisable activations. The library is built without -ffast-math (it would
// break the non-finite guard), so tanh is a branch-free rational approximation
// the compiler can vectorise. Accuracy bound (tested against libm in
// tests/test_activations.cpp): |fast_tanh(x) - tanh(x)| <= 4e-7 for every x
// (measured worst cases: 3.6e-7 near |x| = 5.9 without FMA, 2.7e-7 at the clamp).
#pragma once

#include <cmath>

namespace livelearn {

// Rational minimax approximation on [-7.9053, 7.9053] (Eigen's float tanh
// coefficients); beyond it the value at the clamp, 0.99999976, is within the
// bound of tanh(x). NaN in, NaN out.
inline float fast_tanh(float x) {
  constexpr float clamp = 7.90531110763549805f;
  // Comparisons with NaN are false, so these selects keep a NaN input.
  float c = x > clamp ? clamp : x;
  c = c < -clamp ? -clamp : c;
  const float x2 = c * c;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = c * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  // For |x| < 4e-4 tanh(x) == x in float; the rational form is also exact
  // enough there, so no tiny-value branch is needed.
  return p / q;
}

// sigmoid(x) = (1 + tanh(x/2)) / 2: absolute error <= 2.1e-7, vectorisable.
inline float fast_sigmoid(float x) { return 0.5f + 0.5f * fast_tanh(0.5f * x); }

// Exact logistic for outputs (probabilities near 0 need relative accuracy).
inline float exact_sigmoid(float z) {
  if (z >= 0.0f) return 1.0f / (1.0f + std::exp(-z));
  const float e = std::exp(z);
  return e / (1.0f + e);
}

}  // namespace livelearn
