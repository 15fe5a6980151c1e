// FieldModel: forward pass, backprop, per-coordinate optimizers, state.
//
// A step runs in three phases so that a rejected step changes nothing:
// (1) forward and backward with the old parameters, (2) every new parameter
// and accumulator value computed into a staging list and checked finite,
// (3) the staged values written. Repeated indices in one example are merged
// first, so each coordinate is staged (and its accumulator updated) once per
// step with its whole gradient. Arithmetic of one example is in double (the
// parameters are float): the cost is small next to memory traffic, and the
// gradient checks against finite differences become tight.
#include "livelearn/field_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <shared_mutex>
#include <stdexcept>
#include <string>

namespace livelearn {

namespace {

[[noreturn]] void invalid(const std::string& msg) { throw std::invalid_argument(msg); }

bool finite(double v) { return std::isfinite(v); }

bool all_finite(const float* p, std::size_t n) {
  // Summing 0 * x turns any NaN or inf into NaN; one branch per call.
  float acc = 0.0f;
  for (std::size_t i = 0; i < n; ++i) acc += 0.0f * p[i];
  return acc == 0.0f;
}

// splitmix64: a tiny, portable generator (std::normal_distribution differs
// between standard libraries; a saved seed must give the same model anywhere).
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {  // Box-Muller, one value per call (simple and deterministic)
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

enum class Rule : std::uint8_t { AdaGrad, FTRL, SGD };

// running_bias (bce): the most one step moves the bias, in logits.
constexpr double kMaxBiasStep = 1.0;

struct RuleParams {
  Rule rule;
  double lr, l1, l2, beta, eps;
};

// One coordinate's update. a/b: AdaGrad G (a), or FTRL z (a) and n (b).
// Writes the new values; the caller checks them finite before committing.
inline void update_coordinate(const RuleParams& r, double w, double a, double b, double g,
                              double& nw, double& na, double& nb) {
  switch (r.rule) {
    case Rule::AdaGrad: {
      const double gg = g + r.l2 * w;
      na = a + gg * gg;
      nb = b;
      nw = w - r.lr * gg / (std::sqrt(na) + r.eps);
      return;
    }
    case Rule::FTRL: {
      const double sigma = (std::sqrt(b + g * g) - std::sqrt(b)) / r.lr;
      na = a + g - sigma * w;
      nb = b + g * g;
      if (std::fabs(na) <= r.l1) {
        nw = 0.0;
      } else {
        const double sign = na > 0.0 ? 1.0 : -1.0;
        nw = -(na - sign * r.l1) / ((r.beta + std::sqrt(nb)) / r.lr + r.l2);
      }
      return;
    }
    case Rule::SGD:
      na = a;
      nb = b;
      nw = w - r.lr * (g + r.l2 * w);
      return;
  }
}

struct Staged {
  float* w;
  float* a;
  float* b;
  float nw, na, nb;
};

}  // namespace

struct FieldModel::Scratch {
  std::vector<double> e;  // pooled embeddings, n_fields x k (the MLP's first inputs)
  std::vector<double> s;  // sum over every entry of v x, k
  std::vector<double> h;  // inputs of every MLP layer, concatenated
  std::vector<std::size_t> h_off;
  std::vector<double> delta;  // dLoss/dz of the current layer
  std::vector<double> delta_in;
  std::vector<double> grad_e;  // dLoss/d pooled embeddings
  std::vector<std::uint32_t> order;
  std::vector<double> gv;  // one merged embedding-row gradient
  std::vector<Staged> staged;
  double logit_wide = 0.0;

  void size_for(const FieldConfig& c, const std::vector<std::size_t>& layer_in) {
    const std::size_t fk =
        static_cast<std::size_t>(c.n_fields) * static_cast<std::size_t>(c.embedding_dim);
    // resize, not assign: forward and step overwrite what they read.
    e.resize(fk);
    s.resize(static_cast<std::size_t>(c.embedding_dim));
    gv.resize(static_cast<std::size_t>(c.embedding_dim));
    grad_e.resize(fk);
    h_off.clear();
    std::size_t total = 0, widest = 1;
    for (std::size_t in : layer_in) {
      h_off.push_back(total);
      total += in;
      widest = std::max(widest, in);
    }
    h.resize(total);
    delta.resize(widest);
    delta_in.resize(widest);
  }
};

// ------------------------------------------------------------------ config

void FieldConfig::validate() const {
  auto positive = [](double v, const char* name) {
    if (!(v > 0.0) || !std::isfinite(v))
      invalid(std::string(name) + ": must be finite and > 0, got " + std::to_string(v));
  };
  auto non_negative = [](double v, const char* name) {
    if (!(v >= 0.0) || !std::isfinite(v))
      invalid(std::string(name) + ": must be finite and >= 0, got " + std::to_string(v));
  };
  if (n_buckets < 1) invalid("n_buckets: must be >= 1");
  if (n_fields < 1) invalid("n_fields: must be >= 1");
  if (embedding_dim < 1) invalid("embedding_dim: must be >= 1");
  if (n_dense < 0) invalid("n_dense: must be >= 0");
  // The table must be addressable: n_buckets * k floats, twice (accumulators).
  if (static_cast<double>(n_buckets) * embedding_dim > 4.0e9)
    invalid("n_buckets * embedding_dim: more than 4e9 embedding floats");
  for (int width : hidden_layers)
    if (width < 1) invalid("hidden_layers: every layer needs at least 1 unit");
  positive(learning_rate, "learning_rate");
  positive(embedding_learning_rate, "embedding_learning_rate");
  positive(mlp_learning_rate, "mlp_learning_rate");
  positive(bias_learning_rate, "bias_learning_rate");
  non_negative(l1, "l1");
  non_negative(l2, "l2");
  non_negative(embedding_l2, "embedding_l2");
  non_negative(ftrl_beta, "ftrl_beta");
  non_negative(initial_accumulator, "initial_accumulator");
  positive(epsilon, "epsilon");
  non_negative(init_std, "init_std");
  positive(bias_prior, "bias_prior");
  if (!(bias_window >= bias_prior) || !std::isfinite(bias_window))
    invalid("bias_window: must be finite and >= bias_prior, got " + std::to_string(bias_window));
  if (!std::isfinite(bias_init)) invalid("bias_init: must be finite");
}

FieldLoss parse_field_loss(const std::string& name) {
  if (name == "bce") return FieldLoss::BCE;
  if (name == "mse") return FieldLoss::MSE;
  invalid("loss: expected 'bce' or 'mse', got '" + name + "'");
}
FieldOptimizer parse_field_optimizer(const std::string& name) {
  if (name == "adagrad") return FieldOptimizer::AdaGrad;
  if (name == "ftrl") return FieldOptimizer::FTRL;
  if (name == "sgd") return FieldOptimizer::SGD;
  invalid("optimizer: expected 'adagrad', 'ftrl' or 'sgd', got '" + name + "'");
}
FieldActivation parse_field_activation(const std::string& name) {
  if (name == "relu") return FieldActivation::Relu;
  if (name == "tanh") return FieldActivation::Tanh;
  invalid("activation: expected 'relu' or 'tanh', got '" + name + "'");
}
const char* to_string(FieldLoss v) { return v == FieldLoss::BCE ? "bce" : "mse"; }
const char* to_string(FieldOptimizer v) {
  switch (v) {
    case FieldOptimizer::AdaGrad:
      return "adagrad";
    case FieldOptimizer::FTRL:
      return "ftrl";
    case FieldOptimizer::SGD:
      return "sgd";
  }
  return "?";
}
const char* to_string(FieldActivation v) { return v == FieldActivation::Relu ? "relu" : "tanh"; }
const char* to_string(FieldStatus v) {
  switch (v) {
    case FieldStatus::Trained:
      return "trained";
    case FieldStatus::NonFiniteInput:
      return "non-finite input";
    case FieldStatus::NonFiniteLoss:
      return "non-finite loss";
    case FieldStatus::NonFiniteUpdate:
      return "non-finite gradient or update";
    case FieldStatus::TargetOutOfRange:
      return "target outside [0, 1] for bce";
  }
  return "?";
}

// ------------------------------------------------------------ construction

float* FieldModel::add_tensor(const std::string& name, std::vector<std::int64_t> shape, float fill,
                              bool non_negative) {
  std::size_t size = 1;
  for (auto d : shape) size *= static_cast<std::size_t>(d);
  layout_.push_back({name, std::move(shape), size});
  data_.emplace_back(size, fill);
  non_negative_.push_back(non_negative);
  return data_.back().data();
}

FieldModel::FieldModel(const FieldConfig& config)
    : config_(config), train_scratch_(std::make_unique<Scratch>()) {
  config_.validate();
  const FieldConfig& c = config_;
  const auto nb = c.n_buckets;
  const auto k = static_cast<std::int64_t>(c.embedding_dim);
  // Reserve first: add_tensor's pointers must survive later push_backs of
  // data_ (moving a std::vector keeps its buffer, but be explicit).
  data_.reserve(16 + 4 * (c.hidden_layers.size() + 1));

  bias_ = add_tensor("bias", {1}, c.bias_init);
  wide_ = add_tensor("wide", {nb}, 0.0f);
  if (c.n_dense > 0) wide_dense_ = add_tensor("wide_dense", {c.n_dense}, 0.0f);
  emb_ = add_tensor("embedding", {nb, k}, 0.0f);
  if (c.uses_dense_factors()) dense_emb_ = add_tensor("dense_embedding", {c.n_dense, k}, 0.0f);
  std::vector<std::size_t> widths{c.mlp_inputs()};
  if (!c.hidden_layers.empty()) {
    for (int w : c.hidden_layers) widths.push_back(static_cast<std::size_t>(w));
    widths.push_back(1);
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      const auto in = static_cast<std::int64_t>(widths[l]);
      const auto out = static_cast<std::int64_t>(widths[l + 1]);
      Layer layer{widths[l], widths[l + 1], nullptr, nullptr, nullptr, nullptr};
      layer.w = add_tensor("mlp." + std::to_string(l) + ".weight", {in, out}, 0.0f);
      layer.b = add_tensor("mlp." + std::to_string(l) + ".bias", {out}, 0.0f);
      mlp_.push_back(layer);
    }
  }
  n_param_tensors_ = layout_.size();
  n_parameters_ = 0;
  for (const auto& t : layout_) n_parameters_ += t.size;

  // Optimizer slots, in the parameters' order.
  const bool sgd = c.optimizer == FieldOptimizer::SGD;
  const bool ftrl = c.optimizer == FieldOptimizer::FTRL;
  const float g0 = c.initial_accumulator;
  if (c.uses_running_bias()) {
    bias_a_ = add_tensor("optimizer.bias.N", {1}, c.bias_prior, true);
  } else if (ftrl) {
    // z such that the FTRL solution (no L1/L2 on the bias) is bias_init.
    bias_a_ =
        add_tensor("optimizer.bias.z", {1}, -c.bias_init * c.ftrl_beta / c.bias_learning_rate);
    bias_b_ = add_tensor("optimizer.bias.n", {1}, 0.0f, true);
  } else if (!sgd) {
    bias_a_ = add_tensor("optimizer.bias.G", {1}, g0, true);
  }
  if (ftrl) {
    wide_a_ = add_tensor("optimizer.wide.z", {nb}, 0.0f);
    wide_b_ = add_tensor("optimizer.wide.n", {nb}, 0.0f, true);
    if (c.n_dense > 0) {
      wide_dense_a_ = add_tensor("optimizer.wide_dense.z", {c.n_dense}, 0.0f);
      wide_dense_b_ = add_tensor("optimizer.wide_dense.n", {c.n_dense}, 0.0f, true);
    }
  } else if (!sgd) {
    wide_a_ = add_tensor("optimizer.wide.G", {nb}, g0, true);
    if (c.n_dense > 0) wide_dense_a_ = add_tensor("optimizer.wide_dense.G", {c.n_dense}, g0, true);
  }
  if (!sgd) {
    emb_a_ = add_tensor("optimizer.embedding.G", {nb, k}, g0, true);
    if (dense_emb_)
      dense_emb_a_ = add_tensor("optimizer.dense_embedding.G", {c.n_dense, k}, g0, true);
    for (std::size_t l = 0; l < mlp_.size(); ++l) {
      const auto in = static_cast<std::int64_t>(mlp_[l].in);
      const auto out = static_cast<std::int64_t>(mlp_[l].out);
      mlp_[l].wa =
          add_tensor("optimizer.mlp." + std::to_string(l) + ".weight.G", {in, out}, g0, true);
      mlp_[l].ba = add_tensor("optimizer.mlp." + std::to_string(l) + ".bias.G", {out}, g0, true);
    }
  }

  // Seeded init: embeddings small normal (not zero, else every FM gradient
  // is zero); hidden MLP layers Glorot-uniform; the MLP's output layer zero,
  // so a new model predicts sigmoid(bias_init) whatever its inputs.
  SplitMix rng{c.seed ^ 0x5DEECE66DULL};
  float* emb = emb_;
  const std::size_t n_emb = static_cast<std::size_t>(nb) * static_cast<std::size_t>(k);
  for (std::size_t i = 0; i < n_emb; ++i) emb[i] = static_cast<float>(c.init_std * rng.normal());
  for (std::size_t l = 0; l + 1 < mlp_.size(); ++l) {
    const double limit = std::sqrt(6.0 / static_cast<double>(mlp_[l].in + mlp_[l].out));
    for (std::size_t i = 0; i < mlp_[l].in * mlp_[l].out; ++i)
      mlp_[l].w[i] = static_cast<float>(limit * (2.0 * rng.uniform() - 1.0));
  }
  // Drawn last, so the other tensors start as they did before dense factors.
  if (dense_emb_) {
    const std::size_t n = static_cast<std::size_t>(c.n_dense) * static_cast<std::size_t>(k);
    for (std::size_t i = 0; i < n; ++i)
      dense_emb_[i] = static_cast<float>(c.init_std * rng.normal());
  }
  for (const auto& layer : mlp_) layer_in_.push_back(layer.in);
  train_scratch_->size_for(config_, layer_in_);
}

FieldModel::~FieldModel() = default;

// -------------------------------------------------------------- validation

void FieldModel::validate_row(const FieldRow& row) const {
  const auto nb = config_.n_buckets;
  for (std::size_t i = 0; i < row.nnz; ++i) {
    const std::int64_t j = row.indices[i];
    if (j < 0 || j >= nb) {
      invalid("indices[" + std::to_string(i) + "] = " + std::to_string(j) +
              " is outside [0, n_buckets = " + std::to_string(nb) + ")");
    }
    const std::int32_t f = row.fields[i];
    if (f < 0 || f >= config_.n_fields) {
      invalid("fields[" + std::to_string(i) + "] = " + std::to_string(f) +
              " is outside [0, n_fields = " + std::to_string(config_.n_fields) + ")");
    }
  }
  if (config_.n_dense > 0 && row.dense == nullptr) {
    invalid("dense: expected " + std::to_string(config_.n_dense) + " values, got none");
  }
}

void FieldModel::validate_csr(const FieldCsr& csr) const {
  if (csr.indptr[0] != 0) invalid("indptr: must start at 0");
  for (std::size_t r = 0; r < csr.rows; ++r) {
    if (csr.indptr[r + 1] < csr.indptr[r]) {
      invalid("indptr: decreases at row " + std::to_string(r) + " (" +
              std::to_string(csr.indptr[r]) + " -> " + std::to_string(csr.indptr[r + 1]) + ")");
    }
  }
  if (config_.n_dense > 0 && csr.dense == nullptr && csr.rows > 0) {
    invalid("dense: expected shape (n, " + std::to_string(config_.n_dense) + "), got none");
  }
  for (std::size_t r = 0; r < csr.rows; ++r) {
    try {
      validate_row(csr.row(r, static_cast<std::size_t>(config_.n_dense)));
    } catch (const std::invalid_argument& err) {
      // Name the row and the position in the flat arrays.
      const auto base = static_cast<std::size_t>(csr.indptr[r]);
      std::string msg = err.what();
      const auto open = msg.find('['), close = msg.find(']');
      if (open != std::string::npos && close != std::string::npos && close > open) {
        const std::size_t pos = std::stoul(msg.substr(open + 1, close - open - 1)) + base;
        msg = msg.substr(0, open + 1) + std::to_string(pos) + msg.substr(close);
      }
      invalid("row " + std::to_string(r) + ": " + msg);
    }
  }
}

// ----------------------------------------------------------------- forward

double FieldModel::forward(const FieldRow& row, Scratch& s) const {
  const std::size_t k = static_cast<std::size_t>(config_.embedding_dim);
  std::fill(s.e.begin(), s.e.end(), 0.0);
  std::fill(s.s.begin(), s.s.end(), 0.0);
  double wide = static_cast<double>(bias_[0]);
  double self = 0.0;  // sum_i sum_f v_if^2 x_i^2
  for (std::size_t i = 0; i < row.nnz; ++i) {
    const double x = static_cast<double>(row.values[i]);
    const float* v = emb_ + static_cast<std::size_t>(row.indices[i]) * k;
    double* e = s.e.data() + static_cast<std::size_t>(row.fields[i]) * k;
    wide += static_cast<double>(wide_[row.indices[i]]) * x;
    for (std::size_t f = 0; f < k; ++f) {
      const double vx = static_cast<double>(v[f]) * x;
      e[f] += vx;
      self += vx * vx;
    }
  }
  const std::size_t n_fields = static_cast<std::size_t>(config_.n_fields);
  for (std::size_t g = 0; g < n_fields; ++g)
    for (std::size_t f = 0; f < k; ++f) s.s[f] += s.e[g * k + f];
  if (dense_emb_) {  // dense inputs as FM entries of value dense_d
    for (std::size_t d = 0; d < static_cast<std::size_t>(config_.n_dense); ++d) {
      const double x = static_cast<double>(row.dense[d]);
      const float* u = dense_emb_ + d * k;
      for (std::size_t f = 0; f < k; ++f) {
        const double ux = static_cast<double>(u[f]) * x;
        s.s[f] += ux;
        self += ux * ux;
      }
    }
  }
  double square = 0.0;
  for (std::size_t f = 0; f < k; ++f) square += s.s[f] * s.s[f];
  const std::size_t nd = static_cast<std::size_t>(config_.n_dense);
  for (std::size_t d = 0; d < nd; ++d)
    wide += static_cast<double>(wide_dense_[d]) * static_cast<double>(row.dense[d]);
  double logit = wide + 0.5 * (square - self);
  s.logit_wide = wide;

  if (!mlp_.empty()) {
    double* h0 = s.h.data();
    std::copy(s.e.begin(), s.e.end(), h0);
    for (std::size_t d = 0; d < nd; ++d) h0[s.e.size() + d] = static_cast<double>(row.dense[d]);
    const bool relu = config_.activation == FieldActivation::Relu;
    for (std::size_t l = 0; l < mlp_.size(); ++l) {
      const Layer& L = mlp_[l];
      const double* in = s.h.data() + s.h_off[l];
      const bool last = l + 1 == mlp_.size();
      double* out = last ? &logit : s.h.data() + s.h_off[l + 1];
      if (last) {
        double z = static_cast<double>(L.b[0]);
        for (std::size_t i = 0; i < L.in; ++i) z += in[i] * static_cast<double>(L.w[i]);
        logit += z;
        break;
      }
      for (std::size_t o = 0; o < L.out; ++o) out[o] = static_cast<double>(L.b[o]);
      for (std::size_t i = 0; i < L.in; ++i) {
        const double xi = in[i];
        if (xi == 0.0) continue;  // relu zeros: skip their row
        const float* w = L.w + i * L.out;
        for (std::size_t o = 0; o < L.out; ++o) out[o] += xi * static_cast<double>(w[o]);
      }
      for (std::size_t o = 0; o < L.out; ++o)
        out[o] = relu ? std::max(out[o], 0.0) : std::tanh(out[o]);
    }
  }
  return logit;
}

namespace {
double output_of(FieldLoss loss, double logit) {
  if (loss == FieldLoss::MSE) return logit;
  return logit >= 0.0 ? 1.0 / (1.0 + std::exp(-logit)) : std::exp(logit) / (1.0 + std::exp(logit));
}
bool row_inputs_finite(const FieldRow& row, std::size_t n_dense) {
  return all_finite(row.values, row.nnz) && (n_dense == 0 || all_finite(row.dense, n_dense));
}
}  // namespace

// ------------------------------------------------------------------- step

FieldStepResult FieldModel::step_locked(const FieldRow& row, float y, float weight, Scratch& s) {
  const FieldConfig& c = config_;
  const std::size_t k = static_cast<std::size_t>(c.embedding_dim);
  const std::size_t nd = static_cast<std::size_t>(c.n_dense);
  const double nan = std::nan("");
  auto reject = [&](FieldStatus status, double loss, float pred) {
    ++rejected_steps_;
    return FieldStepResult{loss, pred, status, 0};
  };
  if (!row_inputs_finite(row, nd) || !std::isfinite(y) || !std::isfinite(weight))
    return reject(FieldStatus::NonFiniteInput, nan, static_cast<float>(nan));
  if (c.loss == FieldLoss::BCE && !(y >= 0.0f && y <= 1.0f))
    return reject(FieldStatus::TargetOutOfRange, nan, static_cast<float>(nan));

  const double z = forward(row, s);
  const double p = output_of(c.loss, z);
  const double t = static_cast<double>(y), wt = static_cast<double>(weight);
  double loss, d;
  if (c.loss == FieldLoss::BCE) {
    loss = wt * (std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))));
    d = wt * (p - t);
  } else {
    loss = wt * (z - t) * (z - t);
    d = 2.0 * wt * (z - t);
  }
  const auto pred = static_cast<float>(p);
  if (!finite(z) || !finite(loss) || !finite(d))
    return reject(FieldStatus::NonFiniteLoss, loss, pred);

  const bool sgd = c.optimizer == FieldOptimizer::SGD;
  const bool ftrl = c.optimizer == FieldOptimizer::FTRL;
  const Rule dense_rule = sgd ? Rule::SGD : Rule::AdaGrad;  // embeddings and MLP
  const Rule wide_rule = ftrl ? Rule::FTRL : dense_rule;
  const double eps = static_cast<double>(c.epsilon);
  const RuleParams bias_r{wide_rule, c.bias_learning_rate, 0.0, 0.0, c.ftrl_beta, eps};
  // The lazy L2 of AdaGrad/SGD is part of the example's gradient, so it is
  // weighted like the loss: a weight-0 example changes nothing. (FTRL's L2
  // is a term of its closed form, not of the gradient.)
  const double wide_l2 = ftrl ? c.l2 : c.l2 * wt;
  const RuleParams wide_r{wide_rule, c.learning_rate, c.l1, wide_l2, c.ftrl_beta, eps};
  const RuleParams emb_r{dense_rule, c.embedding_learning_rate, 0.0, c.embedding_l2 * wt, 0.0, eps};
  const RuleParams mlp_r{dense_rule, c.mlp_learning_rate, 0.0, 0.0, 0.0, eps};

  s.staged.clear();
  bool ok = true;
  auto stage = [&](const RuleParams& r, float* w, float* a, float* b, double g) {
    double nw = 0.0, na = 0.0, nb = 0.0;  // set by update_coordinate for every rule
    update_coordinate(r, static_cast<double>(*w), a ? static_cast<double>(*a) : 0.0,
                      b ? static_cast<double>(*b) : 0.0, g, nw, na, nb);
    const Staged st{
        w, a, b, static_cast<float>(nw), static_cast<float>(na), static_cast<float>(nb)};
    ok &= finite(g) && std::isfinite(st.nw) && std::isfinite(st.na) && std::isfinite(st.nb);
    s.staged.push_back(st);
  };

  // Backward through the MLP (old weights), ending in dLoss/d pooled embeddings.
  std::fill(s.grad_e.begin(), s.grad_e.end(), 0.0);
  if (!mlp_.empty()) {
    const bool relu = c.activation == FieldActivation::Relu;
    s.delta[0] = d;
    for (std::size_t l = mlp_.size(); l-- > 0;) {
      const Layer& L = mlp_[l];
      const double* in = s.h.data() + s.h_off[l];
      for (std::size_t i = 0; i < L.in; ++i) {
        const float* w = L.w + i * L.out;
        double back = 0.0;
        for (std::size_t o = 0; o < L.out; ++o) {
          back += static_cast<double>(w[o]) * s.delta[o];
          stage(mlp_r, L.w + i * L.out + o, L.wa ? L.wa + i * L.out + o : nullptr, nullptr,
                in[i] * s.delta[o]);
        }
        s.delta_in[i] = back;
      }
      for (std::size_t o = 0; o < L.out; ++o)
        stage(mlp_r, L.b + o, L.ba ? L.ba + o : nullptr, nullptr, s.delta[o]);
      if (l == 0) {
        for (std::size_t i = 0; i < s.grad_e.size(); ++i) s.grad_e[i] = s.delta_in[i];
      } else {
        // in[] is the previous layer's activation: relu' = [a > 0], tanh' = 1 - a^2.
        for (std::size_t i = 0; i < L.in; ++i)
          s.delta[i] = s.delta_in[i] * (relu ? (in[i] > 0.0 ? 1.0 : 0.0) : 1.0 - in[i] * in[i]);
      }
    }
  }

  if (c.uses_running_bias()) {
    // A running mean: move the prediction w / N of the way toward the target.
    const double n_seen =
        std::min(static_cast<double>(*bias_a_) + wt, static_cast<double>(c.bias_window));
    double step;
    if (c.loss == FieldLoss::BCE) {
      const double tiny = 1e-12;
      const double q = std::clamp(p + wt * (t - p) / n_seen, tiny, 1.0 - tiny);
      const double pc = std::clamp(p, tiny, 1.0 - tiny);
      step = std::log(q / (1.0 - q)) - std::log(pc / (1.0 - pc));
      step = std::clamp(step, -kMaxBiasStep, kMaxBiasStep);
    } else {
      step = wt * (t - z) / n_seen;
    }
    const double nw = static_cast<double>(*bias_) + step;
    const Staged st{bias_, bias_a_, nullptr, static_cast<float>(nw), static_cast<float>(n_seen),
                    0.0f};
    ok &= std::isfinite(st.nw) && std::isfinite(st.na);
    s.staged.push_back(st);
  } else {
    stage(bias_r, bias_, bias_a_, bias_b_, d);
  }
  if (dense_emb_) {
    // d/du_df of the FM term = x_d (s_f - u_df x_d), as for a sparse entry.
    for (std::size_t j = 0; j < nd; ++j) {
      const double x = static_cast<double>(row.dense[j]);
      float* u = dense_emb_ + j * k;
      float* ua = dense_emb_a_ ? dense_emb_a_ + j * k : nullptr;
      for (std::size_t f = 0; f < k; ++f)
        stage(emb_r, u + f, ua ? ua + f : nullptr, nullptr,
              d * x * (s.s[f] - static_cast<double>(u[f]) * x));
    }
  }
  for (std::size_t j = 0; j < nd; ++j) {
    stage(wide_r, wide_dense_ + j, wide_dense_a_ ? wide_dense_a_ + j : nullptr,
          wide_dense_b_ ? wide_dense_b_ + j : nullptr, d * static_cast<double>(row.dense[j]));
  }

  // Sparse part: entries grouped by index, so a repeated index gets one update.
  s.order.resize(row.nnz);
  std::iota(s.order.begin(), s.order.end(), 0u);
  std::sort(s.order.begin(), s.order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return row.indices[a] < row.indices[b] || (row.indices[a] == row.indices[b] && a < b);
  });
  for (std::size_t g = 0; g < row.nnz;) {
    const std::int64_t j = row.indices[s.order[g]];
    const float* v = emb_ + static_cast<std::size_t>(j) * k;
    double gw = 0.0;
    std::fill(s.gv.begin(), s.gv.end(), 0.0);
    std::size_t end = g;
    for (; end < row.nnz && row.indices[s.order[end]] == j; ++end) {
      const std::uint32_t i = s.order[end];
      const double x = static_cast<double>(row.values[i]);
      const double* ge = s.grad_e.data() + static_cast<std::size_t>(row.fields[i]) * k;
      gw += d * x;
      // d/dv_jf of 1/2 [(sum v x)^2 - sum v^2 x^2] = x (s_f - v_jf x), plus the MLP's share.
      for (std::size_t f = 0; f < k; ++f)
        s.gv[f] += d * x * (s.s[f] - static_cast<double>(v[f]) * x) + x * ge[f];
    }
    const auto ju = static_cast<std::size_t>(j);
    stage(wide_r, wide_ + ju, wide_a_ ? wide_a_ + ju : nullptr, wide_b_ ? wide_b_ + ju : nullptr,
          gw);
    float* vrow = emb_ + ju * k;
    float* arow = emb_a_ ? emb_a_ + ju * k : nullptr;
    for (std::size_t f = 0; f < k; ++f)
      stage(emb_r, vrow + f, arow ? arow + f : nullptr, nullptr, s.gv[f]);
    g = end;
  }
  if (!ok) return reject(FieldStatus::NonFiniteUpdate, loss, pred);

  for (const Staged& st : s.staged) {
    *st.w = st.nw;
    if (st.a) *st.a = st.na;
    if (st.b) *st.b = st.nb;
  }
  ++steps_;
  ++version_;
  return {loss, pred, FieldStatus::Trained, steps_};
}

FieldStepResult FieldModel::train_step(const FieldRow& row, float y, float weight) {
  validate_row(row);
  if (weight < 0.0f) invalid("weight: must be >= 0, got " + std::to_string(weight));
  std::unique_lock<RwLock> lock(mutex_);
  return step_locked(row, y, weight, *train_scratch_);
}

void FieldModel::train_batch(const FieldCsr& csr, const float* y, const float* weights,
                             double* losses, float* predictions, std::uint8_t* status,
                             std::int64_t* steps) {
  validate_csr(csr);
  if (weights) {
    for (std::size_t r = 0; r < csr.rows; ++r)
      if (weights[r] < 0.0f)
        invalid("weights[" + std::to_string(r) + "]: must be >= 0, got " +
                std::to_string(weights[r]));
  }
  const auto nd = static_cast<std::size_t>(config_.n_dense);
  for (std::size_t r = 0; r < csr.rows; ++r) {
    FieldStepResult res;
    {
      std::unique_lock<RwLock> lock(mutex_);
      res = step_locked(csr.row(r, nd), y[r], weights ? weights[r] : 1.0f, *train_scratch_);
    }
    if (losses) losses[r] = res.loss;
    if (predictions) predictions[r] = res.prediction;
    if (status) status[r] = static_cast<std::uint8_t>(res.status);
    if (steps) steps[r] = static_cast<std::int64_t>(res.step);
  }
}

namespace {
// One scratch per thread for predictions (sized on use; never shared).
FieldModel::Scratch& reader_scratch() {
  thread_local FieldModel::Scratch scratch;
  return scratch;
}
}  // namespace

double FieldModel::predict_logit(const FieldRow& row) const {
  validate_row(row);
  if (!row_inputs_finite(row, static_cast<std::size_t>(config_.n_dense))) return std::nan("");
  Scratch& s = reader_scratch();
  s.size_for(config_, layer_in_);
  std::shared_lock<RwLock> lock(mutex_);
  return forward(row, s);
}

float FieldModel::predict(const FieldRow& row) const {
  return static_cast<float>(output_of(config_.loss, predict_logit(row)));
}

void FieldModel::predict_batch(const FieldCsr& csr, float* out) const {
  validate_csr(csr);
  Scratch& s = reader_scratch();
  s.size_for(config_, layer_in_);
  const auto nd = static_cast<std::size_t>(config_.n_dense);
  for (std::size_t r = 0; r < csr.rows; ++r) {
    const FieldRow row = csr.row(r, nd);
    if (!row_inputs_finite(row, nd)) {
      out[r] = std::nanf("");
      continue;
    }
    std::shared_lock<RwLock> lock(mutex_);  // per row: a waiting step goes next
    out[r] = static_cast<float>(output_of(config_.loss, forward(row, s)));
  }
}

// ------------------------------------------------------------------- state

FieldCounters FieldModel::export_state(const std::vector<float*>& destinations) const {
  if (destinations.size() != layout_.size())
    invalid("state: expected " + std::to_string(layout_.size()) + " destinations");
  std::shared_lock<RwLock> lock(mutex_);
  for (std::size_t t = 0; t < layout_.size(); ++t)
    std::memcpy(destinations[t], data_[t].data(), layout_[t].size * sizeof(float));
  return {steps_, rejected_steps_};
}

void FieldModel::import_state(const std::vector<const float*>& sources,
                              const FieldCounters& counters) {
  if (sources.size() != layout_.size())
    invalid("state: expected " + std::to_string(layout_.size()) + " tensors");
  for (std::size_t t = 0; t < layout_.size(); ++t) {
    if (!all_finite(sources[t], layout_[t].size))
      invalid("state: tensor '" + layout_[t].name + "' holds NaN or infinite values");
    if (non_negative_[t]) {
      for (std::size_t i = 0; i < layout_[t].size; ++i)
        if (sources[t][i] < 0.0f)
          invalid("state: accumulator '" + layout_[t].name + "' holds a negative value");
    }
  }
  std::unique_lock<RwLock> lock(mutex_);
  for (std::size_t t = 0; t < layout_.size(); ++t)
    std::memcpy(data_[t].data(), sources[t], layout_[t].size * sizeof(float));
  steps_ = counters.steps;
  rejected_steps_ = counters.rejected_steps;
  ++version_;
}

void FieldModel::apply_delta(const std::vector<const float*>& deltas, float weight) {
  if (deltas.size() != n_param_tensors_)
    invalid("delta: expected " + std::to_string(n_param_tensors_) + " parameter tensors");
  if (!std::isfinite(weight)) invalid("weight: must be finite");
  for (std::size_t t = 0; t < n_param_tensors_; ++t) {
    if (!all_finite(deltas[t], layout_[t].size))
      invalid("delta: tensor '" + layout_[t].name + "' holds NaN or infinite values");
  }
  std::unique_lock<RwLock> lock(mutex_);
  // New values first (checked), then written: a failing delta changes nothing.
  std::vector<std::vector<float>> next(n_param_tensors_);
  for (std::size_t t = 0; t < n_param_tensors_; ++t) {
    next[t].resize(layout_[t].size);
    for (std::size_t i = 0; i < layout_[t].size; ++i)
      next[t][i] = data_[t][i] + weight * deltas[t][i];
    if (!all_finite(next[t].data(), next[t].size()))
      invalid("delta: applying it would make '" + layout_[t].name + "' non-finite");
  }
  // Under FTRL the wide weights (and bias) are a function of (z, n): move z
  // so that the closed form gives the new weight.
  struct Ftrl {
    float* w;
    float* z;
    const float* n;
    std::size_t size;
    double alpha, l1, l2;
  };
  std::vector<Ftrl> ftrl;
  if (config_.optimizer == FieldOptimizer::FTRL) {
    const FieldConfig& c = config_;
    if (!c.uses_running_bias())
      ftrl.push_back({bias_, bias_a_, bias_b_, 1, c.bias_learning_rate, 0.0, 0.0});
    ftrl.push_back({wide_, wide_a_, wide_b_, static_cast<std::size_t>(c.n_buckets), c.learning_rate,
                    c.l1, c.l2});
    if (c.n_dense > 0)
      ftrl.push_back({wide_dense_, wide_dense_a_, wide_dense_b_,
                      static_cast<std::size_t>(c.n_dense), c.learning_rate, c.l1, c.l2});
  }
  std::vector<std::vector<float>> next_z(ftrl.size());
  for (std::size_t f = 0; f < ftrl.size(); ++f) {
    const Ftrl& F = ftrl[f];
    std::size_t t = 0;
    while (data_[t].data() != F.w) ++t;
    next_z[f].assign(F.z, F.z + F.size);
    for (std::size_t i = 0; i < F.size; ++i) {
      const double w = next[t][i];
      const double den =
          (config_.ftrl_beta + std::sqrt(static_cast<double>(F.n[i]))) / F.alpha + F.l2;
      if (w == 0.0) {
        next_z[f][i] = static_cast<float>(std::clamp(static_cast<double>(F.z[i]), -F.l1, F.l1));
      } else {
        next_z[f][i] = static_cast<float>(-w * den - (w > 0.0 ? F.l1 : -F.l1));
      }
    }
    if (!all_finite(next_z[f].data(), next_z[f].size()))
      invalid("delta: applying it would make an FTRL accumulator non-finite");
  }
  for (std::size_t t = 0; t < n_param_tensors_; ++t) data_[t].swap(next[t]);
  for (std::size_t f = 0; f < ftrl.size(); ++f)
    std::memcpy(ftrl[f].z, next_z[f].data(), ftrl[f].size * sizeof(float));
  // data_[t].swap moved the parameter buffers: refresh the views.
  std::size_t t = 0;
  bias_ = data_[t++].data();
  wide_ = data_[t++].data();
  if (config_.n_dense > 0) wide_dense_ = data_[t++].data();
  emb_ = data_[t++].data();
  if (dense_emb_) dense_emb_ = data_[t++].data();
  for (auto& layer : mlp_) {
    layer.w = data_[t++].data();
    layer.b = data_[t++].data();
  }
  ++version_;
}

namespace {
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}
}  // namespace

std::vector<const float*> FieldModel::match_layout(const std::vector<FieldTensorView>& views,
                                                   std::size_t n_tensors, const char* what) const {
  std::vector<const float*> out(n_tensors, nullptr);
  for (const auto& v : views) {
    std::size_t t = 0;
    while (t < n_tensors && layout_[t].name != v.name) ++t;
    if (t == n_tensors) {
      invalid(std::string(what) + ": unexpected tensor '" + v.name +
              "' for this model's configuration");
    }
    if (out[t]) invalid(std::string(what) + ": tensor '" + v.name + "' given twice");
    if (v.shape != layout_[t].shape) {
      invalid(std::string(what) + ": tensor '" + v.name + "' has shape " + shape_text(v.shape) +
              ", expected " + shape_text(layout_[t].shape));
    }
    out[t] = v.data;
  }
  for (std::size_t t = 0; t < n_tensors; ++t)
    if (!out[t]) invalid(std::string(what) + ": missing tensor '" + layout_[t].name + "'");
  return out;
}

void FieldModel::import_state(const std::vector<FieldTensorView>& tensors,
                              const FieldCounters& counters) {
  import_state(match_layout(tensors, layout_.size(), "state"), counters);
}

void FieldModel::apply_delta(const std::vector<FieldTensorView>& deltas, float weight) {
  apply_delta(match_layout(deltas, n_param_tensors_, "delta"), weight);
}

FieldCounters FieldModel::counters() const {
  std::shared_lock<RwLock> lock(mutex_);
  return {steps_, rejected_steps_};
}

std::uint64_t FieldModel::version() const {
  std::shared_lock<RwLock> lock(mutex_);
  return version_;
}

}  // namespace livelearn
