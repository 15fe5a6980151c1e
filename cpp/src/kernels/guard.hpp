// The non-finite guard: a step is written only if every new parameter and
// optimizer value is finite; a rejected step leaves the model byte-identical.
//
// Fast path (SGD): every gradient is scale * a_i * d_o (+ wd * w), so with
// finite inputs, activations and deltas bounded by xmax, amax and dmax, and
// running upper bounds on |w| and |velocity|, the new values of an SGD step
// are provably finite while the new bounds stay below kSafeBound: the update
// is then written directly, at a cost of O(units), not O(weights).
// Slow path (Adam, or bounds too large): the touched values are saved,
// updated, verified and restored on failure.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/finite.hpp"
#include "kernels/optimizer.hpp"
#include "kernels/simd.hpp"
#include "livelearn/config.hpp"

namespace livelearn::kernels {

// Upper bounds on max |parameter| and max |momentum velocity|.
struct Bounds {
  double w, m;
};

// Squares of values below this stay far below FLT_MAX (3.4e38).
constexpr double kSafeBound = 1e18;

// Bound on any gradient entry: scale * max(1, xmax, amax) * dmax, where a NaN
// in xmax, amax or dmax propagates (and then fails provably_finite).
LL_INLINE double gradient_bound(float scale, float xmax, float amax, float dmax) {
  double factor = 1.0;  // max(1, xmax, amax), keeping a NaN
  for (const float v : {xmax, amax}) {
    if (!(v <= factor)) factor = v;
  }
  return static_cast<double>(scale) * factor * static_cast<double>(dmax);
}

// The bounds after an SGD step whose gradient entries are at most g, with
// the step's weight decay wd (the configured one times the example's weight).
LL_INLINE Bounds sgd_bounds_after(const Bounds& b, double g, double wd, const Config& c,
                                  bool momentum) {
  const double lr = c.learning_rate;
  Bounds next = b;
  if (momentum) {  // m' = mu m + g + wd w;  w' = w - lr m'
    next.m = c.momentum * b.m + g + wd * b.w;
    next.w = b.w + lr * next.m;
  } else {  // w' = (1 - lr wd) w - lr g
    next.w = b.w * std::max(1.0, std::fabs(1.0 - lr * wd)) + lr * g;
  }
  return next;
}

// False for a NaN bound too.
LL_INLINE bool provably_finite(const Bounds& b) { return b.w < kSafeBound && b.m < kSafeBound; }

// The parameter ranges a step writes: the whole buffer for a dense example;
// the active rows of the first weight matrix plus everything after it
// (first bias and all later layers, contiguous) for a sparse one.
template <bool Sparse, class F>
LL_INLINE void for_each_touched(const UpdateView& u, std::size_t total, F&& f) {
  if constexpr (Sparse) {
    const LayerSpan& first = u.layers[0];
    for (std::size_t j = 0; j < u.x_len; ++j) {
      f(first.w + static_cast<std::size_t>(u.idx[j]) * first.out, first.out);
    }
    f(first.b, total - first.b);
  } else {
    f(std::size_t{0}, total);
  }
}

// The slow path: saves what the update overwrites into `backup`, updates,
// checks every touched value and restores them all if one is not finite.
// Returns whether the update was kept. `total` is the parameter count.
template <bool Sparse>
LL_INLINE bool checked_update(Optimizer optimizer, const UpdateView& u, std::size_t total,
                              std::vector<float>& backup) {
  float* const bufs[3] = {u.P, u.M, u.V};
  std::size_t saved = 0;
  for_each_touched<Sparse>(u, total, [&](std::size_t, std::size_t len) LL_LAMBDA { saved += len; });
  const std::size_t n_bufs = u.V ? 3 : (u.M ? 2 : 1);
  if (backup.size() < saved * n_bufs) backup.resize(saved * n_bufs);
  float* out = backup.data();
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
      std::memcpy(out, bufs[b] + off, len * sizeof(float));
      out += len;
    });
  }
  update<Sparse>(optimizer, u);
  int bad = 0;
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
      bad |= any_not_finite(bufs[b] + off, len);
    });
  }
  if (!bad) return true;
  const float* in = backup.data();
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
      std::memcpy(bufs[b] + off, in, len * sizeof(float));
      in += len;
    });
  }
  return false;
}

}  // namespace livelearn::kernels
