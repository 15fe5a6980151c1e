// A field-aware sparse model (wide + factorization machine + optional MLP,
// DeepFM / wide-and-deep style), trained by backprop one example at a time.
//
//   logit = bias + sum_i w[j_i] x_i + sum_d u_d dense_d            (wide)
//         + 1/2 sum_f [(sum_i v[j_i, f] x_i)^2 - sum_i v[j_i, f]^2 x_i^2]  (FM)
//         + mlp([pooled_0, ..., pooled_{F-1}, dense])              (deep, optional)
//   pooled_g = sum_{i in field g} v[j_i] x_i  (sum pooling, k floats per field)
//
// With dense_factors (off by default), each dense input d also has a factor vector
// u_d and joins the FM sums as an entry of value dense_d (as real-valued
// features do in Rendle's FM): a user's embedding times the time-of-day slots
// is then a per-user daily profile. The MLP still sees dense inputs raw.
//
// Entry i of an example is (index j_i in [0, n_buckets), value x_i, field g_i).
// One embedding table of n_buckets rows serves every field: the encoder salts
// each field into its own hash namespace ("user=42" and "item=42" hash apart),
// so this is exactly per-field tables that share one block of memory (a
// collision between fields is then the same event as a collision within one).
//
// Sparse parameters are updated lazily: a step reads and writes only the rows
// of its active indices (their L2 penalty too). Optimizers, per coordinate:
//   adagrad: G += g^2; w -= lr g / (sqrt(G) + eps)          (every part)
//   ftrl:    FTRL-Proximal (McMahan et al. 2013) on the wide weights and the
//            bias (L1 gives exact zeros); AdaGrad on embeddings and the MLP,
//            whose weights must stay dense to learn
//   sgd:     w -= lr g
// The output bias (adagrad, ftrl; running_bias, the default) is instead a
// running mean: each step moves the prediction a 1/N share of the way to the
// target, b += logit(p + w (y - p) / N) - logit(p) (bce; mse: b += w (y - z) / N),
// where N = bias_prior + the weight seen so far, capped at bias_window. Alone,
// this is exactly the running mean of the target (with bias_prior pseudo-events
// at sigmoid(bias_init)): the bias is at the running log-odds from the first
// event on, its noise shrinks like 1/n (AdaGrad's like 1/sqrt(n)), and past
// bias_window events it is a moving average that follows a drifting base rate.
// Under bce one step moves the bias at most 1 logit (an overconfident example
// cannot throw it far).
// Not thread-safe on its own beyond what the lock gives: every public method
// takes the model's reader/writer lock (a step exclusively, predictions shared).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "livelearn/rwlock.hpp"

namespace livelearn {

enum class FieldLoss : std::uint8_t { BCE, MSE };  // bce: sigmoid output; mse: identity
enum class FieldOptimizer : std::uint8_t { AdaGrad, FTRL, SGD };
enum class FieldActivation : std::uint8_t { Relu, Tanh };

// The same numeric codes as livelearn._core.STATUS_NAMES (the MLP's StepStatus).
enum class FieldStatus : std::uint8_t {
  Trained = 0,
  NonFiniteInput = 1,    // a value, dense input, target or weight is NaN/inf
  NonFiniteLoss = 2,     // the loss or its gradient at the logit is not finite
  NonFiniteUpdate = 3,   // a gradient, accumulator or new parameter is not finite
  TargetOutOfRange = 4,  // bce and a target outside [0, 1]
};

struct FieldConfig {
  std::int64_t n_buckets = 1 << 18;
  int n_fields = 1;
  int embedding_dim = 8;
  int n_dense = 0;
  std::vector<int> hidden_layers{};  // empty: no MLP
  FieldActivation activation = FieldActivation::Relu;
  FieldLoss loss = FieldLoss::BCE;
  FieldOptimizer optimizer = FieldOptimizer::AdaGrad;
  // Defaults chosen on many streams at once, none alone (benchmarks/quality.py
  // and the stream list in its results): simulators with a known click model
  // (sizes, ranks, signal strengths, a drift), the real 0.4 % click log whole
  // and per campaign, a rank-one preference task. The wide L2 of 0.02 was
  // chosen on all of them: it costs the simulators up to 1 point of the gap
  // and gains the real click logs 0.2-1 % of log loss (an embedding L2 of 0.02
  // cost an FM simulator 4 points: it stays 0.01). bias_learning_rate only
  // acts with running_bias off (the running bias needs no rate).
  float learning_rate = 0.1f;            // wide weights (FTRL: alpha)
  float embedding_learning_rate = 0.2f;  // embedding table
  float mlp_learning_rate = 0.02f;       // MLP weights and biases
  float bias_learning_rate = 1.0f;       // output bias (FTRL: its alpha)
  float l1 = 0.0f;                       // FTRL only: on the wide weights
  float l2 = 0.02f;                      // wide weights (lazy: active rows only)
  float embedding_l2 = 0.01f;            // embedding rows (lazy)
  float ftrl_beta = 1.0f;
  // AdaGrad's G before the first event. 0 makes a coordinate's first step
  // lr * sign(g) whatever |g|: on rare positives every negative would then
  // move each of its weights by a full lr. 0.1 (TensorFlow's default)
  // scales first steps with |g|.
  float initial_accumulator = 0.1f;
  float epsilon = 1e-8f;   // AdaGrad's denominator guard
  float init_std = 0.05f;  // embeddings ~ N(0, init_std^2)
  float bias_init = 0.0f;  // the output bias' starting logit
  std::uint64_t seed = 0;
  bool dense_factors = false;     // dense inputs join the FM (a factor vector each)
  bool running_bias = true;       // the output bias is a running mean (not under sgd)
  float bias_prior = 2.0f;        // running_bias: pseudo-events before the first one
  float bias_window = 100000.0f;  // running_bias: N stops growing here (a moving average)

  // Throws std::invalid_argument naming the offending parameter.
  void validate() const;
  bool uses_dense_factors() const { return dense_factors && n_dense > 0; }
  bool uses_running_bias() const { return running_bias && optimizer != FieldOptimizer::SGD; }
  std::size_t mlp_inputs() const {
    return static_cast<std::size_t>(n_fields) * static_cast<std::size_t>(embedding_dim) +
           static_cast<std::size_t>(n_dense);
  }
};

FieldLoss parse_field_loss(const std::string& name);
FieldOptimizer parse_field_optimizer(const std::string& name);
FieldActivation parse_field_activation(const std::string& name);
const char* to_string(FieldLoss v);
const char* to_string(FieldOptimizer v);
const char* to_string(FieldActivation v);
const char* to_string(FieldStatus v);

// One example: nnz entries (index, value, field) and n_dense floats (may be
// null when n_dense is 0). Repeated indices are allowed (their gradients add).
struct FieldRow {
  const std::int64_t* indices;
  const float* values;
  const std::int32_t* fields;
  std::size_t nnz;
  const float* dense;
};

// Compressed rows: row r holds entries indptr[r] .. indptr[r+1]; dense is
// rows x n_dense, row-major (null when n_dense is 0).
struct FieldCsr {
  std::size_t rows;
  const std::int64_t* indptr;
  const std::int64_t* indices;
  const float* values;
  const std::int32_t* fields;
  const float* dense;
  FieldRow row(std::size_t r, std::size_t n_dense) const {
    const auto b = static_cast<std::size_t>(indptr[r]);
    const auto e = static_cast<std::size_t>(indptr[r + 1]);
    return {indices + b, values + b, fields + b, e - b, dense ? dense + r * n_dense : nullptr};
  }
};

struct FieldStepResult {
  double loss;       // weight * loss, in double; NaN-free only when trained
  float prediction;  // made before the update (NaN if the input was rejected)
  FieldStatus status;
  std::uint64_t step;  // 1-based number of this accepted step; 0 when rejected
};

struct FieldTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t size;
};

// A named tensor handed in from outside (a checkpoint, a delta).
struct FieldTensorView {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data;
};

struct FieldCounters {
  std::uint64_t steps;
  std::uint64_t rejected_steps;
};

class FieldModel {
 public:
  explicit FieldModel(const FieldConfig& config);
  ~FieldModel();
  FieldModel(const FieldModel&) = delete;
  FieldModel& operator=(const FieldModel&) = delete;

  const FieldConfig& config() const { return config_; }
  std::size_t n_parameters() const { return n_parameters_; }

  // Throw std::invalid_argument (nothing changes) on a structural error: an
  // index outside [0, n_buckets), a field outside [0, n_fields), a bad
  // indptr, a missing dense block, a negative weight. Non-finite numbers are
  // not structural: the step reports them through its status.
  void validate_row(const FieldRow& row) const;
  void validate_csr(const FieldCsr& csr) const;

  // Validates, then one forward/backward/update under the write lock.
  FieldStepResult train_step(const FieldRow& row, float y, float weight = 1.0f);
  // Validates every row first, then n steps in order, the lock taken per
  // step. weights may be null (all 1); any output pointer may be null.
  void train_batch(const FieldCsr& csr, const float* y, const float* weights, double* losses,
                   float* predictions, std::uint8_t* status, std::int64_t* steps);
  // The output (probability for bce, value for mse); NaN for non-finite input.
  float predict(const FieldRow& row) const;
  void predict_batch(const FieldCsr& csr, float* out) const;
  // The logit in double (validates; NaN for non-finite input): what the
  // finite-difference gradient checks differentiate.
  double predict_logit(const FieldRow& row) const;

  // Parameters first (bias, wide.*, embedding, mlp.*), then "optimizer.*".
  const std::vector<FieldTensor>& state_layout() const { return layout_; }
  std::size_t n_parameter_tensors() const { return n_param_tensors_; }
  // One consistent snapshot (a step boundary) of every tensor and counter.
  FieldCounters export_state(const std::vector<float*>& destinations) const;
  // Throws std::invalid_argument (nothing changes) on a non-finite value or a
  // negative accumulator.
  void import_state(const std::vector<const float*>& sources, const FieldCounters& counters);
  // Adds weight * delta to every parameter tensor (the first
  // n_parameter_tensors() of the layout). Under FTRL the wide weights are a
  // function of (z, n): z is moved so that function gives the new weight.
  // Throws std::invalid_argument, changing nothing, if a delta, the weight or
  // a new parameter is not finite.
  void apply_delta(const std::vector<const float*>& deltas, float weight);

  // The same, by name: throws std::invalid_argument naming a missing,
  // unexpected or wrongly shaped tensor (the layout checks live here only).
  void import_state(const std::vector<FieldTensorView>& tensors, const FieldCounters& counters);
  void apply_delta(const std::vector<FieldTensorView>& deltas, float weight);

  FieldCounters counters() const;
  // Counts every change of the parameters: accepted steps, imports, deltas.
  std::uint64_t version() const;

  struct Scratch;  // per-call work space (defined in field_model.cpp)

 private:
  FieldStepResult step_locked(const FieldRow& row, float y, float weight, Scratch& s);
  double forward(const FieldRow& row, Scratch& s) const;  // the logit
  std::vector<const float*> match_layout(const std::vector<FieldTensorView>& views,
                                         std::size_t n_tensors, const char* what) const;
  float* add_tensor(const std::string& name, std::vector<std::int64_t> shape, float fill,
                    bool non_negative = false);

  FieldConfig config_;
  std::vector<FieldTensor> layout_;
  std::vector<std::vector<float>> data_;  // one buffer per layout_ entry
  std::vector<bool> non_negative_;        // accumulators: import refuses negatives
  std::size_t n_param_tensors_ = 0;
  std::size_t n_parameters_ = 0;

  // Views into data_ (stable: buffers are never resized after construction).
  float* bias_ = nullptr;
  float* wide_ = nullptr;
  float* wide_dense_ = nullptr;
  float* emb_ = nullptr;
  float* dense_emb_ = nullptr;  // n_dense x k (dense_factors)
  struct Layer {
    std::size_t in, out;
    float *w, *b;    // parameters
    float *wa, *ba;  // AdaGrad accumulators (null under sgd)
  };
  std::vector<Layer> mlp_;
  std::vector<std::size_t> layer_in_;  // input width of every MLP layer
  // Optimizer slots: AdaGrad G, or FTRL z (slot a) and n (slot b).
  float *bias_a_ = nullptr, *bias_b_ = nullptr;
  float *wide_a_ = nullptr, *wide_b_ = nullptr;
  float *wide_dense_a_ = nullptr, *wide_dense_b_ = nullptr;
  float* emb_a_ = nullptr;
  float* dense_emb_a_ = nullptr;

  std::uint64_t steps_ = 0;
  std::uint64_t rejected_steps_ = 0;
  std::uint64_t version_ = 0;
  std::unique_ptr<Scratch> train_scratch_;  // used under the write lock only
  mutable RwLock mutex_;
};

}  // namespace livelearn
