#include "livelearn/network.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "livelearn/activations.hpp"

// Runtime CPU dispatch: the hot entry points are compiled for AVX-512,
// AVX2+FMA and baseline x86-64, and the loader picks one (GCC ifunc). Helpers
// they call are force-inlined so each clone gets its own vector code.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(LIVELEARN_NO_DISPATCH)
#define LL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LL_CLONES
#endif
#define LL_INLINE inline __attribute__((always_inline))
#define LL_LAMBDA __attribute__((always_inline))
// Vectorise a reduction without -ffast-math (which would break the NaN guard).
#define LL_SIMD_OR _Pragma("omp simd reduction(|:bad)")
#define LL_SIMD_SUM _Pragma("omp simd reduction(+:s)")
#define LL_SIMD _Pragma("omp simd")

namespace livelearn {

const char* to_string(StepStatus s) {
  switch (s) {
    case StepStatus::Trained:
      return "trained";
    case StepStatus::NonFiniteInput:
      return "non-finite input";
    case StepStatus::NonFiniteLoss:
      return "non-finite loss";
    case StepStatus::NonFiniteUpdate:
      return "non-finite gradient or update";
    case StepStatus::TargetOutOfRange:
      return "target outside [0, 1] for bce";
  }
  return "?";
}

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kNaNd = std::numeric_limits<double>::quiet_NaN();

// Layer widths known at compile time let the compiler keep whole rows in
// registers and reduce in-register; common widths get their own code and
// anything else takes the runtime-sized path.
template <std::size_t N>
struct Fixed {
  static constexpr std::size_t get(std::size_t) { return N; }
};
struct Dynamic {
  static std::size_t get(std::size_t n) { return n; }
};

template <class F>
LL_INLINE void with_width(std::size_t n, F&& f) {
  switch (n) {
    case 1:
      f(Fixed<1>{});
      return;
    case 8:
      f(Fixed<8>{});
      return;
    case 16:
      f(Fixed<16>{});
      return;
    case 32:
      f(Fixed<32>{});
      return;
    case 64:
      f(Fixed<64>{});
      return;
    default:
      f(Dynamic{});
      return;
  }
}

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

// z = b + x @ W, W input-major (in x out).
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

// Running sum of |v|: NaN if any v is NaN, infinite if any is infinite (or
// if the sum overflows, which only sends a step down the guard's exact slow
// path), and an upper bound on max |v|. Two instructions per value.
LL_INLINE float track_abs(float acc, float v) { return acc + std::fabs(v); }

// s * act'(a). With Exact, a unit whose derivative is exactly zero (saturated
// tanh or sigmoid, like an inactive relu) passes no gradient even when s
// overflowed: 0, not inf * 0 = NaN. That costs a select per unit, so the
// backward pass only takes it when the plain one produced a non-finite delta.
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

// In double: squares of large finite floats must not overflow the clip norm.
LL_INLINE double sum_squares(const float* v, std::size_t n) {
  double s = 0.0;
  LL_SIMD_SUM
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return s;
}

enum class UpdateKind { Sgd, Momentum, Adam };

struct Hyper {
  float lr, mu, b1, b2, c1, c2, lr_t, eps_t;
};

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

// xoshiro256** seeded through splitmix64: a portable, deterministic stream
// (std:: distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& s : s_) {
      seed += 0x9E3779B97F4A7C15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      s = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [-1, 1).
  float symmetric() { return static_cast<float>(next() >> 40) * 0x1.0p-23f - 1.0f; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Everything one step's weight update needs, gathered so the update can be a
// plain (force-inlined) function rather than a lambda, which GCC would not
// compile per dispatch clone.
struct UpdateView {
  float* P;
  float* M;
  float* V;
  const float* deltas;
  const float* acts;
  const std::size_t* act_off;
  const LayerSpan* layers;
  std::size_t n_layers;
  const float* x;
  const std::int32_t* idx;
  std::size_t x_len;
  float scale;
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

// Backward pass through the hidden layers, all with the old weights: each
// layer's deltas from those of the layer above, tracking the guard's bounds.
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

// The exact redo of derivative_times, out of line: it almost never runs.
__attribute__((noinline, cold)) void exact_backward_pass(Activation hidden, const LayerSpan* layers,
                                                         std::size_t L, const std::size_t* act_off,
                                                         const float* P, const float* A,
                                                         float* deltas, float& amax, float& dmax) {
  backward_pass<true>(hidden, layers, L, act_off, P, A, deltas, amax, dmax);
}

}  // namespace

Network::Network(const Config& config) : config_(config) {
  config_.validate();
  const auto& sizes = config_.layers;
  std::size_t offset = 0, act = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    LayerSpan layer{static_cast<std::size_t>(sizes[l]), static_cast<std::size_t>(sizes[l + 1]), 0,
                    0};
    layer.w = offset;
    offset += layer.in * layer.out;
    layer.b = offset;
    offset += layer.out;
    layers_.push_back(layer);
    act_off_.push_back(act);
    act += layer.out;
  }
  params_.assign(offset, 0.0f);
  acts_.assign(act, 0.0f);
  deltas_.assign(act, 0.0f);
  if (config_.optimizer == Optimizer::Adam) {
    opt_m_.assign(offset, 0.0f);
    opt_v_.assign(offset, 0.0f);
  } else if (config_.momentum > 0.0f) {
    opt_m_.assign(offset, 0.0f);
  }

  // Glorot/Xavier uniform before tanh, sigmoid and identity; He (Kaiming)
  // uniform before relu. Biases start at zero.
  Rng rng(config_.seed);
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const LayerSpan& layer = layers_[l];
    const bool last = l + 1 == layers_.size();
    const Activation act_after = last ? config_.output_activation : config_.hidden_activation;
    const double fan_in = static_cast<double>(layer.in), fan_out = static_cast<double>(layer.out);
    const double bound = act_after == Activation::Relu ? std::sqrt(6.0 / fan_in)
                                                       : std::sqrt(6.0 / (fan_in + fan_out));
    float* W = params_.data() + layer.w;
    for (std::size_t i = 0; i < layer.in * layer.out; ++i) {
      W[i] = static_cast<float>(bound * rng.symmetric());
    }
  }
  rescan_bounds();
}

template <bool Sparse>
LL_INLINE StepResult Network::step(const float* x, const std::int32_t* idx, std::size_t nnz,
                                   const float* y, float* prediction) {
  const std::size_t L = layers_.size();
  const std::size_t k = n_outputs();
  const LayerSpan& first = layers_.front();
  const std::size_t x_len = Sparse ? nnz : first.in;

  if (any_not_finite(x, x_len) | any_not_finite(y, k)) {
    ++rejected_steps_;
    if (prediction) std::fill(prediction, prediction + k, kNaN);
    return {kNaNd, StepStatus::NonFiniteInput};
  }
  // BCE reads the target as a probability: outside [0, 1] its loss is
  // unbounded below and training on it would only wreck the weights.
  if (config_.loss == Loss::BCE && any_outside_unit(y, k)) {
    ++rejected_steps_;
    if (prediction) std::fill(prediction, prediction + k, kNaN);
    return {kNaNd, StepStatus::TargetOutOfRange};
  }

  // Forward pass; every layer's activation is kept for the backward pass.
  float* P = params_.data();
  float* A = acts_.data();
  for (std::size_t l = 0; l < L; ++l) {
    const LayerSpan& layer = layers_[l];
    float* z = A + act_off_[l];
    with_width(layer.out, [&](auto width) LL_LAMBDA {
      using Wd = decltype(width);
      if (l == 0) {
        if constexpr (Sparse) {
          sparse_affine<Wd>(idx, x, nnz, P + layer.w, P + layer.b, layer.out, z);
        } else {
          dense_affine<Wd>(x, layer.in, P + layer.w, P + layer.b, layer.out, z);
        }
      } else {
        dense_affine<Wd>(A + act_off_[l - 1], layer.in, P + layer.w, P + layer.b, layer.out, z);
      }
      if (l + 1 < L) activate<Wd>(config_.hidden_activation, z, layer.out);
    });
  }

  // Loss (mean over outputs) and dLoss/dlogit of the output layer. The loss
  // is summed in double: with large (finite) weights |p - t| may exceed 1.8e19,
  // whose square overflows a float although the gradient 2 (p - t) does not.
  const float* logit = A + act_off_[L - 1];
  float* d_out = deltas_.data() + act_off_[L - 1];
  const float inv_k = 1.0f / static_cast<float>(k);
  const bool sigmoid_out = config_.output_activation == Activation::Sigmoid;
  double loss = 0.0;
  int bad_delta = 0;
  for (std::size_t o = 0; o < k; ++o) {
    const float z = logit[o], t = y[o];
    // e = exp(-|z|) serves both the stable sigmoid and the stable BCE.
    const float e = sigmoid_out ? std::exp(-std::fabs(z)) : 0.0f;
    const float p = sigmoid_out ? (z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e)) : z;
    if (prediction) prediction[o] = p;
    if (config_.loss == Loss::BCE) {
      // max(z, 0) - z t + log(1 + exp(-|z|)): stable for any z. With t in
      // [0, 1] one term is at most |z| + log 2, finite in float; only the
      // sum over the outputs needs the double.
      loss += static_cast<double>(std::max(z, 0.0f) - z * t + std::log1p(e));
      d_out[o] = (p - t) * inv_k;
    } else {
      const float diff = p - t;  // inf beyond FLT_MAX: then so is d_out
      loss += static_cast<double>(diff) * diff;
      d_out[o] = 2.0f * diff * inv_k * (sigmoid_out ? p * (1.0f - p) : 1.0f);
    }
    bad_delta |= not_finite(d_out[o]);
  }
  loss *= static_cast<double>(inv_k);
  float dmax = 0.0f;  // sum |delta| over every layer >= max |delta|
  for (std::size_t o = 0; o < k; ++o) dmax = track_abs(dmax, d_out[o]);
  // A non-finite output gradient (|p - t| near FLT_MAX) counts as the loss's
  // failure too: nothing downstream of it could be finite.
  if (!std::isfinite(loss) || bad_delta) {
    ++rejected_steps_;
    return {loss, StepStatus::NonFiniteLoss};
  }

  // Backward pass through the hidden layers, all with the old weights.
  // tanh and sigmoid outputs lie in [-1, 1]; relu/identity ones are measured.
  float amax = 1.0f;  // bound on |hidden activation|
  const float dmax_out = dmax;
  const Activation hidden = config_.hidden_activation;
  backward_pass<false>(hidden, layers_.data(), L, act_off_.data(), P, A, deltas_.data(), amax,
                       dmax);
  // Saturated tanh/sigmoid units (huge weights) may have turned s * 0 into
  // NaN although their gradient is exactly 0: redo the pass exactly (rare).
  if (not_finite(dmax) && (hidden == Activation::Tanh || hidden == Activation::Sigmoid)) {
    amax = 1.0f;
    dmax = dmax_out;
    exact_backward_pass(hidden, layers_.data(), L, act_off_.data(), P, A, deltas_.data(), amax,
                        dmax);
  }

  // Global gradient-norm clipping. Weight gradients are outer products, so
  // ||a (x) d||^2 = ||a||^2 ||d||^2 and the norm costs O(units), not O(weights).
  float scale = 1.0f;
  if (config_.clip_norm > 0.0f) {
    double norm2 = 0.0;
    for (std::size_t l = 0; l < L; ++l) {
      const LayerSpan& layer = layers_[l];
      const double d2 = sum_squares(deltas_.data() + act_off_[l], layer.out);
      const double a2 = l == 0 ? sum_squares(x, x_len) : sum_squares(A + act_off_[l - 1], layer.in);
      norm2 += a2 * d2 + d2;
    }
    const double coef = config_.clip_norm / (std::sqrt(norm2) + 1e-6);
    if (coef < 1.0) scale = static_cast<float>(coef);
  }

  Hyper h{};
  h.lr = config_.learning_rate;
  h.mu = config_.momentum;
  if (config_.optimizer == Optimizer::Adam) {
    const double t = static_cast<double>(steps_ + 1);
    const double bc1 = 1.0 - std::pow(static_cast<double>(config_.beta1), t);
    const double bc2 = 1.0 - std::pow(static_cast<double>(config_.beta2), t);
    h.b1 = config_.beta1;
    h.b2 = config_.beta2;
    h.c1 = 1.0f - config_.beta1;
    h.c2 = 1.0f - config_.beta2;
    h.lr_t = static_cast<float>(config_.learning_rate * std::sqrt(bc2) / bc1);
    h.eps_t = static_cast<float>(config_.epsilon * std::sqrt(bc2));
  }

  // Two passes over the same arithmetic: check that every new value is
  // finite, then write. A rejected step leaves the model byte-identical.
  UpdateView u{P,
               opt_m_.empty() ? nullptr : opt_m_.data(),
               opt_v_.empty() ? nullptr : opt_v_.data(),
               deltas_.data(),
               A,
               act_off_.data(),
               layers_.data(),
               L,
               x,
               idx,
               x_len,
               scale,
               config_.weight_decay,
               h};
  // The non-finite guard. Every gradient is scale * a_i * d_o (+ wd * w), so
  // with finite inputs, activations and deltas bounded by xmax, amax and
  // dmax, and running upper bounds on |w| and |velocity|, the new values of an
  // SGD step are provably finite while the new bounds stay below kSafe: the
  // update is then written directly, at a cost of O(units), not O(weights).
  // Otherwise (Adam, or bounds too large) the touched values are saved,
  // updated, verified and restored on failure. Either way a rejected step
  // leaves the model byte-identical.
  float xmax = 0.0f;  // sum |x| >= max |x| (may overflow to inf: then the slow path)
  for (std::size_t j = 0; j < x_len; ++j) xmax = track_abs(xmax, x[j]);
  double factor = 1.0;  // max(1, xmax, amax), keeping a NaN
  for (const float v : {xmax, amax}) {
    if (!(v <= factor)) factor = v;
  }
  const double g = static_cast<double>(scale) * factor * static_cast<double>(dmax);
  const double lr = config_.learning_rate, wd = config_.weight_decay;
  double new_w_bound = w_bound_, new_m_bound = m_bound_;
  if (u.M) {  // SGD momentum: m' = mu m + g + wd w;  w' = w - lr m'
    new_m_bound = config_.momentum * m_bound_ + g + wd * w_bound_;
    new_w_bound = w_bound_ + lr * new_m_bound;
  } else {  // w' = (1 - lr wd) w - lr g
    new_w_bound = w_bound_ * std::max(1.0, std::fabs(1.0 - lr * wd)) + lr * g;
  }
  constexpr double kSafe = 1e18;  // squares stay far below FLT_MAX (3.4e38)
  if (config_.optimizer == Optimizer::SGD && new_w_bound < kSafe && new_m_bound < kSafe) {
    // (a NaN in xmax, amax or dmax makes the comparisons false: slow path)
    if (u.M) {
      update_all<UpdateKind::Momentum, Sparse>(u);
    } else {
      update_all<UpdateKind::Sgd, Sparse>(u);
    }
    w_bound_ = new_w_bound;
    m_bound_ = new_m_bound;
    ++steps_;
    ++version_;
    return {loss, StepStatus::Trained};
  }

  float* const bufs[3] = {u.P, u.M, u.V};
  const std::size_t total = params_.size();
  std::size_t saved = 0;
  for_each_touched<Sparse>(u, total, [&](std::size_t, std::size_t len) LL_LAMBDA { saved += len; });
  const std::size_t n_bufs = u.V ? 3 : (u.M ? 2 : 1);
  if (backup_.size() < saved * n_bufs) backup_.resize(saved * n_bufs);
  float* out = backup_.data();
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
      std::memcpy(out, bufs[b] + off, len * sizeof(float));
      out += len;
    });
  }
  if (config_.optimizer == Optimizer::Adam) {
    update_all<UpdateKind::Adam, Sparse>(u);
  } else if (u.M) {
    update_all<UpdateKind::Momentum, Sparse>(u);
  } else {
    update_all<UpdateKind::Sgd, Sparse>(u);
  }
  int bad = 0;
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
      bad |= any_not_finite(bufs[b] + off, len);
    });
  }
  if (bad) {
    const float* in = backup_.data();
    for (std::size_t b = 0; b < n_bufs; ++b) {
      for_each_touched<Sparse>(u, total, [&](std::size_t off, std::size_t len) LL_LAMBDA {
        std::memcpy(bufs[b] + off, in, len * sizeof(float));
        in += len;
      });
    }
    ++rejected_steps_;
    return {loss, StepStatus::NonFiniteUpdate};
  }
  // The bounds grew large (or Adam): re-measure them exactly, so SGD returns
  // to the fast path as soon as the weights allow.
  if (config_.optimizer == Optimizer::SGD) rescan_bounds();
  ++steps_;
  ++version_;
  return {loss, StepStatus::Trained};
}

LL_CLONES StepResult Network::train_step(const float* x, const float* y, float* prediction) {
  return step<false>(x, nullptr, 0, y, prediction);
}

LL_CLONES StepResult Network::train_step_sparse(const std::int32_t* indices, const float* values,
                                                std::size_t nnz, const float* y,
                                                float* prediction) {
  return step<true>(values, indices, nnz, y, prediction);
}

namespace {

// Forward pass into ping-pong scratch buffers; `out` gets the final outputs.
template <bool Sparse, class Layers>
LL_INLINE void forward_only(const Config& cfg, const Layers& layers, const float* P, const float* x,
                            const std::int32_t* idx, std::size_t nnz, float* out,
                            ForwardScratch& s) {
  std::size_t width = 0;
  for (const auto& layer : layers) width = std::max(width, layer.out);
  if (s.a.size() < width) s.a.resize(width);
  if (s.b.size() < width) s.b.resize(width);
  const float* in = x;
  const std::size_t L = layers.size();
  for (std::size_t l = 0; l < L; ++l) {
    const auto& layer = layers[l];
    float* z = (l % 2 == 0) ? s.a.data() : s.b.data();
    with_width(layer.out, [&](auto width) LL_LAMBDA {
      using Wd = decltype(width);
      if (l == 0 && Sparse) {
        sparse_affine<Wd>(idx, x, nnz, P + layer.w, P + layer.b, layer.out, z);
      } else {
        dense_affine<Wd>(in, layer.in, P + layer.w, P + layer.b, layer.out, z);
      }
      if (l + 1 < L) activate<Wd>(cfg.hidden_activation, z, layer.out);
    });
    in = z;
  }
  const std::size_t k = layers.back().out;
  for (std::size_t o = 0; o < k; ++o) {
    out[o] = cfg.output_activation == Activation::Sigmoid ? exact_sigmoid(in[o]) : in[o];
  }
}

}  // namespace

LL_CLONES void Network::predict(const float* x, float* out, ForwardScratch& scratch) const {
  forward_only<false>(config_, layers_, params_.data(), x, nullptr, 0, out, scratch);
}

LL_CLONES void Network::predict_sparse(const std::int32_t* indices, const float* values,
                                       std::size_t nnz, float* out, ForwardScratch& scratch) const {
  forward_only<true>(config_, layers_, params_.data(), values, indices, nnz, out, scratch);
}

void Network::rescan_bounds() {
  float w = 0.0f, m = 0.0f;
  for (float v : params_) w = std::max(w, std::fabs(v));
  for (float v : opt_m_) m = std::max(m, std::fabs(v));
  w_bound_ = w;
  m_bound_ = m;
}

void Network::set_counters(std::uint64_t steps, std::uint64_t rejected_steps) {
  steps_ = steps;
  rejected_steps_ = rejected_steps;
}

void Network::set_learning_rate(float lr) {
  if (!(std::isfinite(lr) && lr > 0.0f)) {
    throw std::invalid_argument("learning_rate: must be finite and > 0");
  }
  config_.learning_rate = lr;
}

std::vector<TensorInfo> Network::state_layout() const {
  std::vector<std::string> prefixes{""};
  if (config_.optimizer == Optimizer::Adam) {
    prefixes = {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};
  } else if (!opt_m_.empty()) {
    prefixes = {"", "optimizer.momentum."};
  }
  std::vector<TensorInfo> out;
  for (const auto& prefix : prefixes) {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const LayerSpan& layer = layers_[l];
      const std::string base = prefix + "layers." + std::to_string(l) + ".";
      out.push_back({base + "weight",
                     {static_cast<std::int64_t>(layer.in), static_cast<std::int64_t>(layer.out)},
                     layer.in * layer.out});
      out.push_back({base + "bias", {static_cast<std::int64_t>(layer.out)}, layer.out});
    }
  }
  return out;
}

// The tensors of state_layout() are consecutive slices of these buffers.
std::vector<const float*> Network::buffers() const {
  std::vector<const float*> out{params_.data()};
  if (!opt_m_.empty()) out.push_back(opt_m_.data());
  if (!opt_v_.empty()) out.push_back(opt_v_.data());
  return out;
}

std::vector<float*> Network::buffers() {
  std::vector<float*> out{params_.data()};
  if (!opt_m_.empty()) out.push_back(opt_m_.data());
  if (!opt_v_.empty()) out.push_back(opt_v_.data());
  return out;
}

void Network::export_state(const std::vector<float*>& destinations) const {
  const auto layout = state_layout();
  if (destinations.size() != layout.size()) {
    throw std::invalid_argument("export_state: expected " + std::to_string(layout.size()) +
                                " destinations");
  }
  const auto bufs = buffers();
  const std::size_t per_buffer = 2 * layers_.size();
  std::size_t offset = 0;
  for (std::size_t t = 0; t < layout.size(); ++t) {
    if (t % per_buffer == 0) offset = 0;
    std::memcpy(destinations[t], bufs[t / per_buffer] + offset, layout[t].size * sizeof(float));
    offset += layout[t].size;
  }
}

void Network::import_state(const std::vector<const float*>& sources) {
  const auto layout = state_layout();
  if (sources.size() != layout.size()) {
    throw std::invalid_argument("state: expected " + std::to_string(layout.size()) + " tensors");
  }
  for (std::size_t t = 0; t < layout.size(); ++t) {
    if (any_not_finite(sources[t], layout[t].size)) {
      throw std::invalid_argument("state: tensor '" + layout[t].name +
                                  "' holds NaN or infinite values");
    }
  }
  const auto bufs = buffers();
  const std::size_t per_buffer = 2 * layers_.size();
  std::size_t offset = 0;
  for (std::size_t t = 0; t < layout.size(); ++t) {
    if (t % per_buffer == 0) offset = 0;
    std::memcpy(bufs[t / per_buffer] + offset, sources[t], layout[t].size * sizeof(float));
    offset += layout[t].size;
  }
  rescan_bounds();
  ++version_;
}

void Network::apply_delta(const std::vector<const float*>& deltas, float weight) {
  const auto layout = state_layout();
  const std::size_t n_tensors = 2 * layers_.size();
  if (deltas.size() != n_tensors) {
    throw std::invalid_argument("delta: expected " + std::to_string(n_tensors) + " tensors");
  }
  if (!std::isfinite(weight)) throw std::invalid_argument("weight: must be finite");
  for (std::size_t t = 0; t < n_tensors; ++t) {
    if (any_not_finite(deltas[t], layout[t].size)) {
      throw std::invalid_argument("delta: tensor '" + layout[t].name +
                                  "' holds NaN or infinite values");
    }
  }
  backup_.assign(params_.begin(), params_.end());
  std::size_t offset = 0;
  for (std::size_t t = 0; t < n_tensors; ++t) {
    float* p = params_.data() + offset;
    const float* d = deltas[t];
    for (std::size_t i = 0; i < layout[t].size; ++i) p[i] += weight * d[i];
    offset += layout[t].size;
  }
  if (any_not_finite(params_.data(), params_.size())) {
    std::copy(backup_.begin(), backup_.begin() + static_cast<std::ptrdiff_t>(params_.size()),
              params_.begin());
    throw std::invalid_argument("delta: applying it would make a parameter non-finite");
  }
  rescan_bounds();
  ++version_;
}

}  // namespace livelearn
