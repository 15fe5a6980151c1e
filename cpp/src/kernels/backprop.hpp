// The backward pass through the hidden layers: each layer's deltas (dLoss/dz)
// from those of the layer above, with the weights before the update, while
// tracking the bounds the non-finite guard needs.
#pragma once

#include <cstddef>
#include <type_traits>

#include "kernels/activation.hpp"
#include "kernels/finite.hpp"
#include "kernels/simd.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn::kernels {

// da[i] = (sum_o W[i][o] d[o]) * act'(a[i]), applied as each scalar is
// produced, while tracking bounds on |a| and |da| for the non-finite guard.
template <class Wd, Activation Act, bool Exact>
LL_INLINE void backprop(const float* __restrict W, std::size_t in, std::size_t out_rt,
                        const float* __restrict d, const float* __restrict a, float* __restrict da,
                        float& amax, float& dmax) {
  const std::size_t out = Wd::get(out_rt);
  for (std::size_t i = 0; i < in; ++i) {
    const float* w = W + i * out;
    float s = 0.0f;
    LL_SIMD_SUM
    for (std::size_t o = 0; o < out; ++o) s += w[o] * d[o];
    const float v = derivative_times<Act, Exact>(s, a[i]);
    da[i] = v;
    if constexpr (Act == Activation::Relu || Act == Activation::Identity) {
      amax = track_abs(amax, a[i]);
    }
    dmax = track_abs(dmax, v);
  }
}

// Every hidden layer, top down: one activation dispatch, then width dispatch.
template <bool Exact>
LL_INLINE void backward_pass(Activation hidden, const LayerSpan* layers, std::size_t L,
                             const std::size_t* act_off, const float* P, const float* A,
                             float* deltas, float& amax, float& dmax) {
  for (std::size_t l = L - 1; l >= 1; --l) {
    const LayerSpan& layer = layers[l];
    float* d_in = deltas + act_off[l - 1];
    with_width(layer.out, [&](auto width) LL_LAMBDA {
      using Wd = decltype(width);
      const float* d = deltas + act_off[l];
      const float* a = A + act_off[l - 1];
      auto run = [&](auto act) LL_LAMBDA {
        backprop<Wd, decltype(act)::value, Exact>(P + layer.w, layer.in, layer.out, d, a, d_in,
                                                  amax, dmax);
      };
      switch (hidden) {
        case Activation::Tanh:
          return run(std::integral_constant<Activation, Activation::Tanh>{});
        case Activation::Sigmoid:
          return run(std::integral_constant<Activation, Activation::Sigmoid>{});
        case Activation::Relu:
          return run(std::integral_constant<Activation, Activation::Relu>{});
        case Activation::Identity:
          return run(std::integral_constant<Activation, Activation::Identity>{});
      }
    });
  }
}

// The exact redo (derivative_times<.., true>), out of line: it almost never runs.
__attribute__((noinline, cold)) inline void exact_backward_pass(
    Activation hidden, const LayerSpan* layers, std::size_t L, const std::size_t* act_off,
    const float* P, const float* A, float* deltas, float& amax, float& dmax) {
  backward_pass<true>(hidden, layers, L, act_off, P, A, deltas, amax, dmax);
}

}  // namespace livelearn::kernels
