// The optimizers (SGD, SGD with momentum, Adam) as one weight update over
// every layer: row by row, gradient g = alpha * d + wd * w formed on the fly.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/simd.hpp"
#include "livelearn/config.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn::kernels {

enum class UpdateKind { Sgd, Momentum, Adam };

// Hyper-parameters of one step; Adam's bias corrections folded into lr_t, eps_t.
struct Hyper {
  float lr, mu, b1, b2, c1, c2, lr_t, eps_t;
};

// For the step that will make the counter `step` (1-based).
inline Hyper make_hyper(const Config& c, std::uint64_t step) {
  Hyper h{};
  h.lr = c.learning_rate;
  h.mu = c.momentum;
  if (c.optimizer == Optimizer::Adam) {
    const double t = static_cast<double>(step);
    const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), t);
    const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), t);
    h.b1 = c.beta1;
    h.b2 = c.beta2;
    h.c1 = 1.0f - c.beta1;
    h.c2 = 1.0f - c.beta2;
    h.lr_t = static_cast<float>(c.learning_rate * std::sqrt(bc2) / bc1);
    h.eps_t = static_cast<float>(c.epsilon * std::sqrt(bc2));
  }
  return h;
}

// One row of parameters w (with optimizer rows m, v) receives the gradient
// g = alpha * d + wd * w. Pure element-wise work, so it vectorises.
template <UpdateKind K, class Wd>
LL_INLINE void update_row(float* __restrict w, float* __restrict m, float* __restrict v,
                          const float* __restrict d, std::size_t n_rt, float alpha, float wd,
                          const Hyper& h) {
  const std::size_t n = Wd::get(n_rt);
  if constexpr (K == UpdateKind::Sgd) {
    LL_SIMD
    for (std::size_t o = 0; o < n; ++o) w[o] -= h.lr * (alpha * d[o] + wd * w[o]);
  } else if constexpr (K == UpdateKind::Momentum) {
    LL_SIMD
    for (std::size_t o = 0; o < n; ++o) {
      m[o] = h.mu * m[o] + (alpha * d[o] + wd * w[o]);
      w[o] -= h.lr * m[o];
    }
  } else {
    LL_SIMD
    for (std::size_t o = 0; o < n; ++o) {
      const float g = alpha * d[o] + wd * w[o];
      m[o] = h.b1 * m[o] + h.c1 * g;
      v[o] = h.b2 * v[o] + h.c2 * (g * g);
      w[o] -= h.lr_t * m[o] / (std::sqrt(v[o]) + h.eps_t);
    }
  }
}

// Everything one step's weight update needs, gathered so the update can be a
// plain (force-inlined) function rather than a lambda, which GCC would not
// compile per dispatch clone.
struct UpdateView {
  float* P;  // parameters
  float* M;  // momentum velocity or Adam first moment; null without
  float* V;  // Adam second moment; null without
  const float* deltas;
  const float* acts;
  const std::size_t* act_off;
  const LayerSpan* layers;
  std::size_t n_layers;
  const float* x;
  const std::int32_t* idx;  // sparse: the active inputs; dense: null
  std::size_t x_len;
  float scale;  // gradient-norm clip factor
  float wd;
  Hyper h;
};

template <UpdateKind K, bool Sparse>
LL_INLINE void update_all(const UpdateView& u) {
  for (std::size_t l = 0; l < u.n_layers; ++l) {
    const LayerSpan& layer = u.layers[l];
    with_width(layer.out, [&](auto width) LL_LAMBDA {
      using Wd = decltype(width);
      const float* d = u.deltas + u.act_off[l];
      const std::size_t out = layer.out;
      const float* a = l == 0 ? u.x : u.acts + u.act_off[l - 1];
      const std::size_t rows = l == 0 ? u.x_len : layer.in;
      for (std::size_t j = 0; j < rows; ++j) {
        const std::size_t i = (Sparse && l == 0) ? static_cast<std::size_t>(u.idx[j]) : j;
        const std::size_t off = layer.w + i * out;
        update_row<K, Wd>(u.P + off, u.M ? u.M + off : nullptr, u.V ? u.V + off : nullptr, d, out,
                          u.scale * a[j], u.wd, u.h);
      }
      update_row<K, Wd>(u.P + layer.b, u.M ? u.M + layer.b : nullptr, u.V ? u.V + layer.b : nullptr,
                        d, out, u.scale, 0.0f, u.h);
    });
  }
}

// The update of the configured optimizer.
template <bool Sparse>
LL_INLINE void update(Optimizer optimizer, const UpdateView& u) {
  if (optimizer == Optimizer::Adam) {
    update_all<UpdateKind::Adam, Sparse>(u);
  } else if (u.M) {
    update_all<UpdateKind::Momentum, Sparse>(u);
  } else {
    update_all<UpdateKind::Sgd, Sparse>(u);
  }
}

}  // namespace livelearn::kernels
