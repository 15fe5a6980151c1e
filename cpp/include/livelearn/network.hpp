// A multi-layer perceptron trained one example at a time. Not thread-safe on
// its own: Trainer (trainer.hpp) adds the locking.
//
// Layout: every weight matrix is stored input-major, W[i][o] at i * out + o
// (y = x @ W + b). A dense forward pass is then a sequence of contiguous
// axpy's, and a sparse input touches only the rows of its active indices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "livelearn/config.hpp"

namespace livelearn {

enum class StepStatus : std::uint8_t {
  Trained = 0,
  NonFiniteInput = 1,    // x or y held NaN/inf: nothing computed
  NonFiniteLoss = 2,     // the loss (double) or its gradient at the output is NaN/inf
  NonFiniteUpdate = 3,   // a gradient, optimizer buffer or new weight would not be finite
  TargetOutOfRange = 4,  // loss BCE and a target outside [0, 1]: nothing computed
};
const char* to_string(StepStatus s);

struct StepResult {
  double loss;  // in double: a finite gradient can come with a loss beyond FLT_MAX
  StepStatus status;
};

// Describes one exported tensor: name, shape and element count.
struct TensorInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t size;
};

// One dense layer: in x out weights (input-major) and out biases, stored at
// offsets w and b of the parameter buffer (and of each optimizer buffer).
struct LayerSpan {
  std::size_t in, out;
  std::size_t w, b;
};

// Scratch space for a forward pass; one per concurrent reader.
struct ForwardScratch {
  std::vector<float> a;
  std::vector<float> b;
};

class Network {
 public:
  explicit Network(const Config& config);

  const Config& config() const { return config_; }
  std::size_t n_inputs() const { return static_cast<std::size_t>(config_.layers.front()); }
  std::size_t n_outputs() const { return static_cast<std::size_t>(config_.layers.back()); }
  std::size_t n_parameters() const { return params_.size(); }
  std::size_t n_layers() const { return layers_.size(); }

  // One supervised step on a dense example: forward, loss, backward, update.
  // `prediction` (n_outputs floats, may be null) receives the output made
  // before the update (all NaN if the input or target was rejected). A
  // rejected step changes nothing but rejected_steps.
  StepResult train_step(const float* x, const float* y, float* prediction);
  // Same for a sparse example: `nnz` (index, value) pairs, indices unique and
  // in range (Trainer validates). Only the active rows of the first weight
  // matrix are read or updated (lazy weight decay / optimizer state there).
  StepResult train_step_sparse(const std::int32_t* indices, const float* values, std::size_t nnz,
                               const float* y, float* prediction);

  void predict(const float* x, float* out, ForwardScratch& scratch) const;
  void predict_sparse(const std::int32_t* indices, const float* values, std::size_t nnz, float* out,
                      ForwardScratch& scratch) const;

  std::uint64_t steps() const { return steps_; }
  std::uint64_t rejected_steps() const { return rejected_steps_; }
  void set_counters(std::uint64_t steps, std::uint64_t rejected_steps);

  float learning_rate() const { return config_.learning_rate; }
  void set_learning_rate(float lr);

  // Every parameter and optimizer buffer, in a fixed order.
  std::vector<TensorInfo> state_layout() const;
  void export_state(const std::vector<float*>& destinations) const;
  // Sources must match state_layout(); throws std::invalid_argument (and
  // changes nothing) if any value is not finite.
  void import_state(const std::vector<const float*>& sources);

  // Adds weight * delta to every parameter: `deltas` holds one array per
  // parameter tensor, in the order of the first 2 * n_layers() entries of
  // state_layout() (weights and biases; optimizer buffers are left alone).
  // Throws std::invalid_argument, changing nothing, if weight or a delta is
  // not finite or a new parameter would not be.
  void apply_delta(const std::vector<const float*>& deltas, float weight);

  // Counts every change of the parameters: accepted steps, imports, deltas.
  std::uint64_t version() const { return version_; }

 private:
  template <bool Sparse>
  StepResult step(const float* x, const std::int32_t* idx, std::size_t nnz, const float* y,
                  float* prediction);
  void rescan_bounds();
  std::vector<float*> buffers();
  std::vector<const float*> buffers() const;

  Config config_;
  std::vector<LayerSpan> layers_;
  std::vector<float> params_;
  std::vector<float> opt_m_;  // momentum velocity, or Adam first moment
  std::vector<float> opt_v_;  // Adam second moment
  std::vector<float> acts_;   // activations of every layer, input excluded
  std::vector<std::size_t> act_off_;
  std::vector<float> deltas_;  // dLoss/dz of every non-input layer
  std::vector<float> backup_;  // what a step overwrites, restored if it fails
  // Upper bounds on max |parameter| and max |momentum| (the guard's fast path).
  double w_bound_ = 0.0;
  double m_bound_ = 0.0;
  std::uint64_t steps_ = 0;
  std::uint64_t version_ = 0;
  std::uint64_t rejected_steps_ = 0;
};

}  // namespace livelearn
