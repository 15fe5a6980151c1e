// The affine kernels z = b + x @ W of a dense layer, W input-major (in x out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/simd.hpp"

namespace livelearn::kernels {

template <class Wd>
LL_INLINE void dense_affine(const float* __restrict x, std::size_t in, const float* __restrict W,
                            const float* __restrict b, std::size_t out_rt, float* __restrict z) {
  const std::size_t out = Wd::get(out_rt);
  if constexpr (std::is_same_v<Wd, Fixed<1>>) {
    // A single output is a dot product: four partial sums break the
    // dependency chain of a sequential sum.
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    std::size_t i = 0;
    for (; i + 4 <= in; i += 4) {
      s0 += x[i] * W[i];
      s1 += x[i + 1] * W[i + 1];
      s2 += x[i + 2] * W[i + 2];
      s3 += x[i + 3] * W[i + 3];
    }
    for (; i < in; ++i) s0 += x[i] * W[i];
    z[0] = b[0] + ((s0 + s1) + (s2 + s3));
    return;
  }
  std::memcpy(z, b, out * sizeof(float));
  for (std::size_t i = 0; i < in; ++i) {
    const float xi = x[i];
    const float* w = W + i * out;
    LL_SIMD
    for (std::size_t o = 0; o < out; ++o) z[o] += xi * w[o];
  }
}

// The same for a sparse input: only the rows of its nnz active indices.
template <class Wd>
LL_INLINE void sparse_affine(const std::int32_t* __restrict idx, const float* __restrict val,
                             std::size_t nnz, const float* __restrict W, const float* __restrict b,
                             std::size_t out_rt, float* __restrict z) {
  const std::size_t out = Wd::get(out_rt);
  std::memcpy(z, b, out * sizeof(float));
  for (std::size_t k = 0; k < nnz; ++k) {
    const float xi = val[k];
    const float* w = W + static_cast<std::size_t>(idx[k]) * out;
    LL_SIMD
    for (std::size_t o = 0; o < out; ++o) z[o] += xi * w[o];
  }
}

}  // namespace livelearn::kernels
