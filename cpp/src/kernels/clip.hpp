// Global gradient-norm clipping at O(units), not O(weights): every weight
// gradient is an outer product a (x) d, so ||a (x) d||^2 = ||a||^2 ||d||^2.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/simd.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn::kernels {

// In double: squares of large finite floats must not overflow the norm.
LL_INLINE double sum_squares(const float* v, std::size_t n) {
  double s = 0.0;
  LL_SIMD_SUM
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return s;
}

// The factor (<= 1) that brings the gradient's global norm down to
// clip_norm; x is the (dense or sparse-active) input, A the hidden
// activations and deltas every layer's dLoss/dz.
LL_INLINE float clip_scale(float clip_norm, const LayerSpan* layers, std::size_t L,
                           const std::size_t* act_off, const float* x, std::size_t x_len,
                           const float* A, const float* deltas) {
  double norm2 = 0.0;
  for (std::size_t l = 0; l < L; ++l) {
    const LayerSpan& layer = layers[l];
    const double d2 = sum_squares(deltas + act_off[l], layer.out);
    const double a2 = l == 0 ? sum_squares(x, x_len) : sum_squares(A + act_off[l - 1], layer.in);
    norm2 += a2 * d2 + d2;
  }
  const double coef = clip_norm / (std::sqrt(norm2) + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

}  // namespace livelearn::kernels
