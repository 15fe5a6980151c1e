// Mlp: construction, the training step (its parts in order), prediction and
// state. The arithmetic lives in the force-inlined kernels (cpp/src/kernels/),
// so each runtime-dispatch clone of the entry points gets its own vector code.
#include "livelearn/mlp.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels/activation.hpp"
#include "kernels/affine.hpp"
#include "kernels/backprop.hpp"
#include "kernels/clip.hpp"
#include "kernels/finite.hpp"
#include "kernels/guard.hpp"
#include "kernels/loss.hpp"
#include "kernels/optimizer.hpp"
#include "kernels/rng.hpp"
#include "kernels/simd.hpp"

namespace livelearn {

using namespace kernels;

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

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += shape[i] < 0 ? std::string("n") : std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

bool runtime_dispatch() { return LIVELEARN_RUNTIME_DISPATCH != 0; }

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kNaNd = std::numeric_limits<double>::quiet_NaN();

}  // namespace

Mlp::Mlp(const Config& config) : config_(config) {
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
  own_params_.assign(offset, 0.0f);
  acts_.assign(act, 0.0f);
  deltas_.assign(act, 0.0f);
  if (config_.optimizer == Optimizer::Adam) {
    own_m_.assign(offset, 0.0f);
    own_v_.assign(offset, 0.0f);
  } else if (config_.momentum > 0.0f) {
    own_m_.assign(offset, 0.0f);
  }
  params_ = {own_params_.data(), own_params_.size()};
  opt_m_ = {own_m_.empty() ? nullptr : own_m_.data(), own_m_.size()};
  opt_v_ = {own_v_.empty() ? nullptr : own_v_.data(), own_v_.size()};
  if (config_.running_bias) {
    bias_n_.assign(n_outputs(), config_.bias_prior);
    bias_next_.assign(2 * n_outputs(), 0.0f);
  }
  init_weights();
}

Mlp::Mlp(const Mlp& o)
    : config_(o.config_),
      layers_(o.layers_),
      own_params_(o.params_.begin(), o.params_.end()),
      own_m_(o.opt_m_.begin(), o.opt_m_.end()),
      own_v_(o.opt_v_.begin(), o.opt_v_.end()),
      acts_(o.acts_),
      act_off_(o.act_off_),
      deltas_(o.deltas_),
      own_ctr_(*o.ctr_),
      bias_n_(o.bias_n_),
      bias_next_(o.bias_next_) {
  params_ = {own_params_.data(), own_params_.size()};
  opt_m_ = {own_m_.empty() ? nullptr : own_m_.data(), own_m_.size()};
  opt_v_ = {own_v_.empty() ? nullptr : own_v_.data(), own_v_.size()};
}

std::size_t Mlp::n_buffers_of(const Config& config) {
  if (config.optimizer == Optimizer::Adam) return 3;
  return config.momentum > 0.0f ? 2 : 1;
}

std::size_t Mlp::n_parameters_of(const Config& config) {
  std::size_t n = 0;
  for (std::size_t l = 0; l + 1 < config.layers.size(); ++l) {
    n += static_cast<std::size_t>(config.layers[l]) *
             static_cast<std::size_t>(config.layers[l + 1]) +
         static_cast<std::size_t>(config.layers[l + 1]);
  }
  return n;
}

Mlp::Mlp(const Config& config, const ExternalState& ext, bool initialise) : Mlp(config) {
  // Built as an owning model first (the same layout and fresh weights), then
  // moved onto the external buffers.
  const std::size_t n = own_params_.size();
  const std::size_t n_bufs = n_buffers_of(config_);
  if (config_.running_bias) {
    throw std::invalid_argument("running_bias: not supported by a shared model (share=...) yet");
  }
  if (!ext.params || !ext.counters || !ext.journal || !ext.ranges || !ext.saved ||
      (n_bufs >= 2 && !ext.m) || (n_bufs >= 3 && !ext.v) || ext.max_ranges < n_inputs() + 1) {
    throw std::invalid_argument("external state: a buffer is missing or too small");
  }
  if (initialise) {
    std::memcpy(ext.params, own_params_.data(), n * sizeof(float));
    if (ext.m && n_bufs >= 2) std::memset(ext.m, 0, n * sizeof(float));
    if (ext.v && n_bufs >= 3) std::memset(ext.v, 0, n * sizeof(float));
    *ext.counters = own_ctr_;
    *ext.journal = StepJournal{0, 0, 0, own_ctr_};
  }
  params_ = {ext.params, n};
  opt_m_ = {n_bufs >= 2 ? ext.m : nullptr, n_bufs >= 2 ? n : 0};
  opt_v_ = {n_bufs >= 3 ? ext.v : nullptr, n_bufs >= 3 ? n : 0};
  ctr_ = ext.counters;
  journal_ = ext.journal;
  journal_ranges_ = ext.ranges;
  journal_max_ranges_ = ext.max_ranges;
  journal_saved_ = ext.saved;
  std::vector<float>().swap(own_params_);
  std::vector<float>().swap(own_m_);
  std::vector<float>().swap(own_v_);
}

void Mlp::init_weights() {
  // Glorot/Xavier uniform before tanh, sigmoid and identity; He (Kaiming)
  // uniform before relu. Biases start at zero.
  kernels::Rng rng(config_.seed);
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

// The journal (shared model only). The compiler barriers keep the record's
// stores before `active = 1` and the write's stores after it: a process
// killed anywhere leaves either no write or a complete record of one.
void Mlp::journal_begin(const std::uint64_t* ranges, std::size_t n_ranges) {
  const std::size_t n_bufs = 1 + (opt_m_.empty() ? 0 : 1) + (opt_v_.empty() ? 0 : 1);
  float* const bufs[3] = {params_.data(), opt_m_.data(), opt_v_.data()};
  float* out = journal_saved_;
  for (std::size_t b = 0; b < n_bufs; ++b) {
    for (std::size_t r = 0; r < n_ranges; ++r) {
      std::memcpy(out, bufs[b] + ranges[2 * r], ranges[2 * r + 1] * sizeof(float));
      out += ranges[2 * r + 1];
    }
  }
  if (ranges != journal_ranges_) {
    std::memcpy(journal_ranges_, ranges, 2 * n_ranges * sizeof(std::uint64_t));
  }
  journal_->n_buffers = static_cast<std::uint32_t>(n_bufs);
  journal_->n_ranges = n_ranges;
  journal_->saved = *ctr_;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  journal_->active = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

void Mlp::journal_full() {
  if (!journal_) return;
  journal_ranges_[0] = 0;
  journal_ranges_[1] = params_.size();
  journal_begin(journal_ranges_, 1);
}

void Mlp::journal_restore() {
  float* const bufs[3] = {params_.data(), opt_m_.data(), opt_v_.data()};
  const float* in = journal_saved_;
  for (std::size_t b = 0; b < journal_->n_buffers; ++b) {
    for (std::size_t r = 0; r < journal_->n_ranges; ++r) {
      std::memcpy(bufs[b] + journal_ranges_[2 * r], in, journal_ranges_[2 * r + 1] * sizeof(float));
      in += journal_ranges_[2 * r + 1];
    }
  }
  *ctr_ = journal_->saved;
}

void Mlp::journal_end() {
  if (!journal_) return;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  journal_->active = 0;
}

void Mlp::poison_for_test() {
  if (!journal_) throw std::logic_error("poison_for_test: not a shared model");
  journal_full();
  params_.data()[0] = kNaN;
}

// One training step. Each part below is force-inlined into the dispatch
// clones of train_step / train_step_sparse.
template <bool Sparse>
LL_INLINE StepResult Mlp::step(const float* x, const std::int32_t* idx, std::size_t nnz,
                               const float* y, float* prediction, float weight) {
  const std::size_t x_len = Sparse ? nnz : n_inputs();
  const StepStatus input = check_example(x, x_len, y, weight);
  if (input != StepStatus::Trained) return rejected(input, kNaNd, prediction);

  forward<Sparse>(x, idx, nnz);
  const OutputGradient out =
      output_gradient(config_.loss, config_.output_activation, acts_.data() + act_off_.back(), y,
                      n_outputs(), prediction, deltas_.data() + act_off_.back(), weight);
  if (!out.finite) return rejected(StepStatus::NonFiniteLoss, out.loss, nullptr);
  // A zero gradient would still move parameters under weight decay, momentum
  // or Adam: a weight-0 example writes nothing instead.
  if (weight == 0.0f) return trained_unchanged(out.loss);

  if (!bias_n_.empty() && !stage_running_bias(y, weight)) {
    return rejected(StepStatus::NonFiniteUpdate, out.loss, nullptr);
  }
  float amax = 1.0f;  // bound on |hidden activation|
  const float dmax = backward(out.dmax, amax);
  const StepResult r = update<Sparse>(x, idx, x_len, amax, dmax, out.loss, weight);
  if (!bias_n_.empty() && r.status == StepStatus::Trained) commit_running_bias();
  return r;
}

// running_bias: the output biases and N after this example (into
// bias_next_), from the output logits of the forward pass; false if one
// would not be finite. Writes nothing else.
bool Mlp::stage_running_bias(const float* y, float weight) {
  constexpr double kMaxBiasStep = 1.0;  // bce: the most one step moves a bias, in logits
  constexpr double kTiny = 1e-12;
  const double kMaxLogit = std::log((1.0 - kTiny) / kTiny);
  const std::size_t k = n_outputs();
  const float* z = acts_.data() + act_off_.back();
  const float* b = params_.data() + layers_.back().b;
  const double w = static_cast<double>(weight);
  const bool sigmoid_out = config_.output_activation == Activation::Sigmoid;
  bool ok = true;
  for (std::size_t o = 0; o < k; ++o) {
    const double n_seen =
        std::min(static_cast<double>(bias_n_[o]) + w, static_cast<double>(config_.bias_window));
    const double zo = static_cast<double>(z[o]), t = static_cast<double>(y[o]);
    double step;
    if (config_.loss == Loss::BCE) {
      // logit(clamp(p)) is the clamped logit itself: one log a step, not two.
      const double p = 1.0 / (1.0 + std::exp(-zo));
      const double q = std::clamp(p + w * (t - p) / n_seen, kTiny, 1.0 - kTiny);
      step = std::log(q / (1.0 - q)) - std::clamp(zo, -kMaxLogit, kMaxLogit);
      step = std::clamp(step, -kMaxBiasStep, kMaxBiasStep);
    } else {
      const double pred = sigmoid_out ? 1.0 / (1.0 + std::exp(-zo)) : zo;
      step = w * (t - pred) / n_seen;
    }
    const float nb = static_cast<float>(static_cast<double>(b[o]) + step);
    const float nn = static_cast<float>(n_seen);
    ok &= std::isfinite(nb) && std::isfinite(nn);
    bias_next_[o] = nb;
    bias_next_[k + o] = nn;
  }
  return ok;
}

// Replaces the gradient step of the output biases by the staged running mean.
void Mlp::commit_running_bias() {
  const std::size_t k = n_outputs();
  float* b = params_.data() + layers_.back().b;
  double bound = ctr_->w_bound;
  for (std::size_t o = 0; o < k; ++o) {
    b[o] = bias_next_[o];
    bias_n_[o] = bias_next_[k + o];
    bound = std::max(bound, static_cast<double>(std::fabs(b[o])));
  }
  ctr_->w_bound = bound;
}

// Non-finite x or y, a weight that is not finite and >= 0, or (BCE) a target
// outside [0, 1]: nothing is computed. BCE reads the target as a
// probability: outside [0, 1] its loss is unbounded below and training on it
// would only wreck the weights.
LL_INLINE StepStatus Mlp::check_example(const float* x, std::size_t x_len, const float* y,
                                        float weight) const {
  const std::size_t k = n_outputs();
  const bool bad_weight = !(weight >= 0.0f && weight <= std::numeric_limits<float>::max());
  if (any_not_finite(x, x_len) | any_not_finite(y, k) | bad_weight) {
    return StepStatus::NonFiniteInput;
  }
  if (config_.loss == Loss::BCE && any_outside_unit(y, k)) return StepStatus::TargetOutOfRange;
  return StepStatus::Trained;
}

// Forward pass; every layer's activation is kept for the backward pass.
template <bool Sparse>
LL_INLINE void Mlp::forward(const float* x, const std::int32_t* idx, std::size_t nnz) {
  const std::size_t L = layers_.size();
  const float* P = params_.data();
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
}

// Backward pass through the hidden layers with the old weights. Returns the
// bound on |delta| over every layer (sum |delta| >= max |delta|, starting
// from the output's); amax becomes a bound on |hidden activation| (tanh and
// sigmoid outputs lie in [-1, 1]; relu/identity ones are measured).
LL_INLINE float Mlp::backward(float dmax_out, float& amax) {
  const Activation hidden = config_.hidden_activation;
  const std::size_t L = layers_.size();
  float dmax = dmax_out;
  backward_pass<false>(hidden, layers_.data(), L, act_off_.data(), params_.data(), acts_.data(),
                       deltas_.data(), amax, dmax);
  // Saturated tanh/sigmoid units (huge weights) may have turned s * 0 into
  // NaN although their gradient is exactly 0: redo the pass exactly (rare).
  if (not_finite(dmax) && (hidden == Activation::Tanh || hidden == Activation::Sigmoid)) {
    amax = 1.0f;
    dmax = dmax_out;
    exact_backward_pass(hidden, layers_.data(), L, act_off_.data(), params_.data(), acts_.data(),
                        deltas_.data(), amax, dmax);
  }
  return dmax;
}

// Clip, then the optimizer's update through the non-finite guard
// (kernels/guard.hpp): written directly when provably finite (SGD with
// moderate bounds), else saved, written, verified and restored on failure.
template <bool Sparse>
LL_INLINE StepResult Mlp::update(const float* x, const std::int32_t* idx, std::size_t x_len,
                                 float amax, float dmax, double loss, float weight) {
  const std::size_t L = layers_.size();
  // The L2 term is part of the example's gradient: weighted like the loss.
  const float wd = config_.weight_decay * weight;
  const float scale = config_.clip_norm
                          ? clip_scale(*config_.clip_norm, layers_.data(), L, act_off_.data(), x,
                                       x_len, acts_.data(), deltas_.data())
                          : 1.0f;
  const UpdateView u{params_.data(),
                     opt_m_.empty() ? nullptr : opt_m_.data(),
                     opt_v_.empty() ? nullptr : opt_v_.data(),
                     deltas_.data(),
                     acts_.data(),
                     act_off_.data(),
                     layers_.data(),
                     L,
                     x,
                     idx,
                     x_len,
                     scale,
                     wd,
                     make_hyper(config_, ctr_->steps + 1)};

  if (journal_) {  // shared model: every write journaled, then verified
    if (!journaled_update<Sparse>(u)) return rejected(StepStatus::NonFiniteUpdate, loss, nullptr);
    return trained(loss);
  }
  float xmax = 0.0f;  // sum |x| >= max |x| (may overflow to inf: then the slow path)
  for (std::size_t j = 0; j < x_len; ++j) xmax = track_abs(xmax, x[j]);
  const double g = gradient_bound(scale, xmax, amax, dmax);
  const Bounds next =
      sgd_bounds_after({ctr_->w_bound, ctr_->m_bound}, g, wd, config_, u.M != nullptr);
  if (config_.optimizer == Optimizer::SGD && provably_finite(next)) {
    kernels::update<Sparse>(config_.optimizer, u);
    ctr_->w_bound = next.w;
    ctr_->m_bound = next.m;
    return trained(loss);
  }
  if (!checked_update<Sparse>(config_.optimizer, u, params_.size(), backup_)) {
    return rejected(StepStatus::NonFiniteUpdate, loss, nullptr);
  }
  // The bounds grew large (or Adam): re-measure them exactly, so SGD returns
  // to the fast path as soon as the weights allow.
  if (config_.optimizer == Optimizer::SGD) rescan_bounds();
  return trained(loss);
}

// The shared model's update: the touched ranges saved into the journal, the
// update written, every touched value checked, restored if one is not finite.
template <bool Sparse, class View>
LL_INLINE bool Mlp::journaled_update(const View& u) {
  auto& ranges = range_scratch_;
  ranges.clear();
  for_each_touched<Sparse>(u, params_.size(), [&](std::size_t off, std::size_t len) {
    ranges.push_back(off);
    ranges.push_back(len);
  });
  journal_begin(ranges.data(), ranges.size() / 2);
  kernels::update<Sparse>(config_.optimizer, u);
  float* const bufs[3] = {u.P, u.M, u.V};
  int bad = 0;
  for (std::size_t b = 0; b < journal_->n_buffers; ++b) {
    for (std::size_t r = 0; r < ranges.size(); r += 2) {
      bad |= any_not_finite(bufs[b] + ranges[r], ranges[r + 1]);
    }
  }
  if (bad) journal_restore();
  return !bad;
}

// A rejected step changes nothing but rejected_steps; a prediction not made
// yet (input rejected) reads NaN.
LL_INLINE StepResult Mlp::rejected(StepStatus why, double loss, float* prediction) {
  ++ctr_->rejected_steps;
  if (prediction) std::fill(prediction, prediction + n_outputs(), kNaN);
  return {loss, why};
}

LL_INLINE StepResult Mlp::trained(double loss) {
  ++ctr_->steps;
  ++ctr_->version;
  return {loss, StepStatus::Trained};
}

// An accepted step that changed no parameter (weight 0): counted, no version.
LL_INLINE StepResult Mlp::trained_unchanged(double loss) {
  ++ctr_->steps;
  return {loss, StepStatus::Trained};
}

LL_CLONES StepResult Mlp::train_step(const float* x, const float* y, float* prediction,
                                     float weight) {
  const StepResult r = step<false>(x, nullptr, 0, y, prediction, weight);
  journal_end();
  return r;
}

LL_CLONES StepResult Mlp::train_step_sparse(const std::int32_t* indices, const float* values,
                                            std::size_t nnz, const float* y, float* prediction,
                                            float weight) {
  const StepResult r = step<true>(values, indices, nnz, y, prediction, weight);
  journal_end();
  return r;
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

LL_CLONES void Mlp::predict(const float* x, float* out, ForwardScratch& scratch) const {
  forward_only<false>(config_, layers_, params_.data(), x, nullptr, 0, out, scratch);
}

LL_CLONES void Mlp::predict_sparse(const std::int32_t* indices, const float* values,
                                   std::size_t nnz, float* out, ForwardScratch& scratch) const {
  forward_only<true>(config_, layers_, params_.data(), values, indices, nnz, out, scratch);
}

void Mlp::rescan_bounds() {
  float w = 0.0f, m = 0.0f;
  for (float v : params_) w = std::max(w, std::fabs(v));
  for (float v : opt_m_) m = std::max(m, std::fabs(v));
  ctr_->w_bound = w;
  ctr_->m_bound = m;
}

void Mlp::set_counters(std::uint64_t steps, std::uint64_t rejected_steps) {
  ctr_->steps = steps;
  ctr_->rejected_steps = rejected_steps;
}

void Mlp::set_learning_rate(float lr) {
  if (!(std::isfinite(lr) && lr > 0.0f)) {
    throw std::invalid_argument("learning_rate: must be finite and > 0");
  }
  config_.learning_rate = lr;
}

std::vector<TensorInfo> Mlp::state_layout() const {
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
  if (!bias_n_.empty()) {
    out.push_back({"optimizer.bias.N", {static_cast<std::int64_t>(n_outputs())}, n_outputs()});
  }
  return out;
}

// The tensors of state_layout() are consecutive slices of these buffers.
std::vector<const float*> Mlp::buffers() const {
  std::vector<const float*> out{params_.data()};
  if (!opt_m_.empty()) out.push_back(opt_m_.data());
  if (!opt_v_.empty()) out.push_back(opt_v_.data());
  return out;
}

std::vector<float*> Mlp::buffers() {
  std::vector<float*> out{params_.data()};
  if (!opt_m_.empty()) out.push_back(opt_m_.data());
  if (!opt_v_.empty()) out.push_back(opt_v_.data());
  return out;
}

void Mlp::export_state(const std::vector<float*>& destinations) const {
  const auto layout = state_layout();
  if (destinations.size() != layout.size()) {
    throw std::invalid_argument("export_state: expected " + std::to_string(layout.size()) +
                                " destinations");
  }
  const auto bufs = buffers();
  const std::size_t per_buffer = 2 * layers_.size();
  std::size_t offset = 0;
  const std::size_t n_buffered = bufs.size() * per_buffer;  // then optimizer.bias.N
  for (std::size_t t = 0; t < n_buffered; ++t) {
    if (t % per_buffer == 0) offset = 0;
    std::memcpy(destinations[t], bufs[t / per_buffer] + offset, layout[t].size * sizeof(float));
    offset += layout[t].size;
  }
  if (!bias_n_.empty()) {
    std::memcpy(destinations[n_buffered], bias_n_.data(), bias_n_.size() * sizeof(float));
  }
}

namespace {

// Finds each expected tensor among `given` by name, checking its shape: the
// sources in the order of `expected`. `what` prefixes every message.
std::vector<const float*> match_layout(const std::vector<TensorInfo>& expected,
                                       const std::vector<NamedTensor>& given, const char* what,
                                       bool name_expected_shape) {
  std::vector<const float*> sources;
  for (const auto& t : expected) {
    const auto it = std::find_if(given.begin(), given.end(),
                                 [&](const NamedTensor& g) { return g.name == t.name; });
    if (it == given.end()) {
      throw std::invalid_argument(std::string(what) + ": missing tensor '" + t.name + "'");
    }
    if (it->shape != t.shape) {
      throw std::invalid_argument(
          std::string(what) + ": tensor '" + t.name + "' has shape " + shape_text(it->shape) +
          ", expected " + (name_expected_shape ? shape_text(t.shape) : "the parameter's shape"));
    }
    sources.push_back(it->data);
  }
  return sources;
}

}  // namespace

void Mlp::import_state(const std::vector<NamedTensor>& tensors,
                       const std::vector<std::string>& other_names) {
  const auto layout = state_layout();
  const auto sources = match_layout(layout, tensors, "state", true);
  if (!other_names.empty()) {
    throw std::invalid_argument("state: unexpected tensor '" + other_names.front() +
                                "' for this network's configuration");
  }
  for (const auto& t : tensors) {
    const bool known = std::any_of(layout.begin(), layout.end(),
                                   [&](const TensorInfo& info) { return info.name == t.name; });
    if (!known) {
      throw std::invalid_argument("state: unexpected tensor '" + t.name +
                                  "' for this network's configuration");
    }
  }
  import_state(sources);
}

void Mlp::import_state(const std::vector<const float*>& sources) {
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
  const std::size_t n_buffered = bufs.size() * per_buffer;  // then optimizer.bias.N
  if (!bias_n_.empty()) {
    const float* n = sources[n_buffered];
    for (std::size_t o = 0; o < bias_n_.size(); ++o) {
      if (!(n[o] > 0.0f)) {
        throw std::invalid_argument("state: tensor 'optimizer.bias.N' must be > 0");
      }
    }
  }
  std::size_t offset = 0;
  journal_full();
  for (std::size_t t = 0; t < n_buffered; ++t) {
    if (t % per_buffer == 0) offset = 0;
    std::memcpy(bufs[t / per_buffer] + offset, sources[t], layout[t].size * sizeof(float));
    offset += layout[t].size;
  }
  if (!bias_n_.empty()) {
    std::memcpy(bias_n_.data(), sources[n_buffered], bias_n_.size() * sizeof(float));
  }
  rescan_bounds();
  ++ctr_->version;
  journal_end();
}

void Mlp::apply_delta(const std::vector<NamedTensor>& deltas, float weight,
                      const std::vector<std::string>& other_names) {
  auto parameters = state_layout();
  parameters.resize(2 * layers_.size());  // weights and biases come first
  const auto sources = match_layout(parameters, deltas, "delta", false);
  if (deltas.size() != parameters.size() || !other_names.empty()) {
    throw std::invalid_argument("delta: expected exactly the " + std::to_string(parameters.size()) +
                                " parameter tensors (layers.*.weight and layers.*.bias)");
  }
  apply_delta(sources, weight);
}

void Mlp::apply_delta(const std::vector<const float*>& deltas, float weight) {
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
  journal_full();
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
    journal_end();
    throw std::invalid_argument("delta: applying it would make a parameter non-finite");
  }
  rescan_bounds();
  ++ctr_->version;
  journal_end();
}

}  // namespace livelearn
