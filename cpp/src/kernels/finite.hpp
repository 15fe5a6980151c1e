// Finiteness and range checks of the non-finite guard, written so they
// vectorise (one compare per value, OR-reductions in registers).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>

#include "kernels/simd.hpp"

namespace livelearn::kernels {

// True unless v is NaN or +-inf; written as one compare so it vectorises.
LL_INLINE int not_finite(float v) { return !(std::fabs(v) <= FLT_MAX); }

LL_INLINE int any_not_finite(const float* __restrict v, std::size_t n) {
  // Fixed-size blocks keep the OR-reduction in registers (a runtime-length
  // simd reduction spills its lanes to the stack).
  constexpr std::size_t B = 16;
  int bad = 0;
  std::size_t i = 0;
  for (; i + B <= n; i += B) {
    int block = 0;
    _Pragma("omp simd reduction(|:block)") for (std::size_t j = 0; j < B; ++j) block |=
        not_finite(v[i + j]);
    bad |= block;
  }
  for (; i < n; ++i) bad |= not_finite(v[i]);
  return bad;
}

// True if any (finite) v lies outside [0, 1]: a BCE target must be a probability.
LL_INLINE int any_outside_unit(const float* __restrict v, std::size_t n) {
  int bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= !(v[i] >= 0.0f && v[i] <= 1.0f);
  return bad;
}

// Running sum of |v|: NaN if any v is NaN, infinite if any is infinite (or
// if the sum overflows, which only sends a step down the guard's exact slow
// path), and an upper bound on max |v|. Two instructions per value.
LL_INLINE float track_abs(float acc, float v) { return acc + std::fabs(v); }

}  // namespace livelearn::kernels
