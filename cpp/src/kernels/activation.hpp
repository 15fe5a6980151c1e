// Hidden activations applied to a layer in place, and their derivatives for
// the backward pass (the scalar functions are in livelearn/activations.hpp).
#pragma once

#include <cstddef>

#include "kernels/simd.hpp"
#include "livelearn/activations.hpp"
#include "livelearn/config.hpp"

namespace livelearn::kernels {

template <class W>
LL_INLINE void activate(Activation act, float* __restrict a, std::size_t n_rt) {
  const std::size_t n = W::get(n_rt);
  switch (act) {
    case Activation::Tanh:
      LL_SIMD
      for (std::size_t i = 0; i < n; ++i) a[i] = fast_tanh(a[i]);
      break;
    case Activation::Sigmoid:
      LL_SIMD
      for (std::size_t i = 0; i < n; ++i) a[i] = fast_sigmoid(a[i]);
      break;
    case Activation::Relu:
      LL_SIMD  // `a < 0 ? 0 : a` keeps NaN, unlike max(a, 0)
          for (std::size_t i = 0; i < n; ++i) a[i] = a[i] < 0.0f ? 0.0f : a[i];
      break;
    case Activation::Identity:
      break;
  }
}

// s * act'(a), from the activation's output a. With Exact, a unit whose
// derivative is exactly zero (saturated tanh or sigmoid, like an inactive
// relu) passes no gradient even when s overflowed: 0, not inf * 0 = NaN.
// That costs a select per unit, so the backward pass only takes it when the
// plain one produced a non-finite delta.
template <Activation Act, bool Exact>
LL_INLINE float derivative_times(float s, float a) {
  if constexpr (Act == Activation::Tanh || Act == Activation::Sigmoid) {
    const float g = Act == Activation::Tanh ? 1.0f - a * a : a * (1.0f - a);
    if constexpr (Exact) return g == 0.0f ? 0.0f : s * g;
    return s * g;
  }
  if constexpr (Act == Activation::Relu) return a > 0.0f ? s : 0.0f;
  return s;
}

}  // namespace livelearn::kernels
