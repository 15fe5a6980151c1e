// The loss of one example (mean over the outputs, times the example's
// weight) and its gradient at the output layer's logits, from which the
// backward pass starts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/finite.hpp"
#include "kernels/simd.hpp"
#include "livelearn/config.hpp"

namespace livelearn::kernels {

struct OutputGradient {
  double loss;  // in double: a finite gradient can come with a loss beyond FLT_MAX
  float dmax;   // sum |d_out| >= max |d_out|, the guard's first delta bound
  bool finite;  // false if the loss or a gradient is NaN/inf: reject the step
};

// Fills d_out[k] = weight * dLoss/dlogit and, if not null, prediction[k]
// with the output made before the update. The example's weight is folded
// into the 1/k of the mean, so weight 1 costs nothing; weight 0 with an
// infinite loss or gradient gives NaN, rejected as weight 1 would be. The
// loss is summed in double: with large (finite) parameters |p - t| may
// exceed 1.8e19, whose square overflows a float although the gradient
// 2 (p - t) does not.
LL_INLINE OutputGradient output_gradient(Loss kind, Activation output, const float* logit,
                                         const float* y, std::size_t k, float* prediction,
                                         float* d_out, float weight) {
  const float inv_k = 1.0f / static_cast<float>(k);
  const float scale = inv_k * weight;  // the gradient's factor
  const bool sigmoid_out = output == Activation::Sigmoid;
  double loss = 0.0;
  int bad_delta = 0;
  for (std::size_t o = 0; o < k; ++o) {
    const float z = logit[o], t = y[o];
    // e = exp(-|z|) serves both the stable sigmoid and the stable BCE.
    const float e = sigmoid_out ? std::exp(-std::fabs(z)) : 0.0f;
    const float p = sigmoid_out ? (z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e)) : z;
    if (prediction) prediction[o] = p;
    if (kind == Loss::BCE) {
      // max(z, 0) - z t + log(1 + exp(-|z|)): stable for any z. With t in
      // [0, 1] one term is at most |z| + log 2, finite in float; only the
      // sum over the outputs needs the double.
      loss += static_cast<double>(std::max(z, 0.0f) - z * t + std::log1p(e));
      d_out[o] = (p - t) * scale;
    } else {
      const float diff = p - t;  // inf beyond FLT_MAX: then so is d_out
      loss += static_cast<double>(diff) * diff;
      d_out[o] = 2.0f * diff * scale * (sigmoid_out ? p * (1.0f - p) : 1.0f);
    }
    bad_delta |= not_finite(d_out[o]);
  }
  loss *= static_cast<double>(inv_k) * static_cast<double>(weight);
  float dmax = 0.0f;
  for (std::size_t o = 0; o < k; ++o) dmax = track_abs(dmax, d_out[o]);
  // A non-finite output gradient (|p - t| near FLT_MAX) counts as the loss's
  // failure too: nothing downstream of it could be finite.
  return {loss, dmax, std::isfinite(loss) && !bad_delta};
}

}  // namespace livelearn::kernels
