// Mlp: the math of a multi-layer perceptron trained one example at a time.
// Not thread-safe on its own: Network (network.hpp), the locked trainer,
// adds the locking.
//
// A step (Mlp::step in mlp.cpp) reads as its parts: check the example,
// forward (kernels/affine.hpp, kernels/activation.hpp), loss
// (kernels/loss.hpp), backward (kernels/backprop.hpp), clip
// (kernels/clip.hpp), then the optimizer's update (kernels/optimizer.hpp)
// through the non-finite guard (kernels/guard.hpp).
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
  NonFiniteInput = 1,    // x or y held NaN/inf, or the weight is NaN/inf/negative: nothing computed
  NonFiniteLoss = 2,     // the loss (double) or its gradient at the output is NaN/inf
  NonFiniteUpdate = 3,   // a gradient, optimizer buffer or new weight would not be finite
  TargetOutOfRange = 4,  // loss BCE and a target outside [0, 1]: nothing computed
};
const char* to_string(StepStatus s);

struct StepResult {
  // weight * loss, in double: a finite gradient can come with a loss beyond FLT_MAX
  double loss;
  StepStatus status;
};

// Describes one exported tensor: name, shape and element count.
struct TensorInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t size;
};

// A caller's tensor handed in by name (float32, C order, `shape` as the
// caller holds it): the core checks it against state_layout().
struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data;
};

// "(4,)", "(2, 3)", "()"; -1 is written "n" (any length): the one shape
// format of every message about shapes.
std::string shape_text(const std::vector<std::int64_t>& shape);

// Whether the hot entry points were compiled for several CPUs and picked at
// load time (kernels/simd.hpp).
bool runtime_dispatch();

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

class Mlp {
 public:
  explicit Mlp(const Config& config);

  const Config& config() const { return config_; }
  std::size_t n_inputs() const { return static_cast<std::size_t>(config_.layers.front()); }
  std::size_t n_outputs() const { return static_cast<std::size_t>(config_.layers.back()); }
  std::size_t n_parameters() const { return params_.size(); }
  std::size_t n_layers() const { return layers_.size(); }

  // One supervised step on a dense example: forward, loss, backward, update.
  // `prediction` (n_outputs floats, may be null) receives the output made
  // before the update (all NaN if the input or target was rejected). A
  // rejected step changes nothing but rejected_steps.
  //
  // `weight` (finite, >= 0; else NonFiniteInput) multiplies the example's
  // loss and its whole gradient, weight decay included (the L2 term is part
  // of the example's gradient) and is clipped with it: for SGD without
  // momentum or clipping a weight-k step is the step with learning rate
  // k * lr. The returned loss is weight * loss.
  // A weight-0 example counts as an accepted step (steps() grows, its status
  // is Trained, its loss 0) but writes no parameter or optimizer value and
  // leaves version() alone; as Adam's bias correction reads steps(), the
  // next Adam steps see the larger counter.
  StepResult train_step(const float* x, const float* y, float* prediction, float weight = 1.0f);
  // Same for a sparse example: `nnz` (index, value) pairs, indices unique and
  // in range (Network validates). Only the active rows of the first weight
  // matrix are read or updated (lazy weight decay / optimizer state there).
  StepResult train_step_sparse(const std::int32_t* indices, const float* values, std::size_t nnz,
                               const float* y, float* prediction, float weight = 1.0f);

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

  // The one check of a state's layout: every tensor of state_layout() by
  // name with its shape, none missing, no other (`other_names`: what else
  // the caller holds, unconverted), every value finite. Throws
  // std::invalid_argument naming the tensor ("state: ..."), changing nothing.
  void import_state(const std::vector<NamedTensor>& tensors,
                    const std::vector<std::string>& other_names = {});
  // The same with one source per tensor of state_layout(), in its order.
  void import_state(const std::vector<const float*>& sources);

  // Adds weight * delta to every parameter (weights and biases, the first
  // 2 * n_layers() entries of state_layout(); optimizer buffers are left
  // alone). Exactly those tensors, by name and shape; throws
  // std::invalid_argument ("delta: ..."), changing nothing, if one is
  // missing, misshapen or not finite, if there are others, if weight is not
  // finite, or if a new parameter would not be.
  void apply_delta(const std::vector<NamedTensor>& deltas, float weight,
                   const std::vector<std::string>& other_names = {});
  // The same with one array per parameter tensor, in state_layout() order.
  void apply_delta(const std::vector<const float*>& deltas, float weight);

  // Counts every change of the parameters: accepted steps, imports, deltas.
  std::uint64_t version() const { return version_; }

 private:
  // The parts of a training step, in order (mlp.cpp).
  template <bool Sparse>
  StepResult step(const float* x, const std::int32_t* idx, std::size_t nnz, const float* y,
                  float* prediction, float weight);
  StepStatus check_example(const float* x, std::size_t x_len, const float* y, float weight) const;
  template <bool Sparse>
  void forward(const float* x, const std::int32_t* idx, std::size_t nnz);
  float backward(float dmax_out, float& amax);
  template <bool Sparse>
  StepResult update(const float* x, const std::int32_t* idx, std::size_t x_len, float amax,
                    float dmax, double loss, float weight);
  StepResult rejected(StepStatus why, double loss, float* prediction);
  StepResult trained(double loss);
  StepResult trained_unchanged(double loss);

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
  // Upper bounds on max |parameter| and max |momentum| (the guard's fast
  // path, kernels/guard.hpp).
  double w_bound_ = 0.0;
  double m_bound_ = 0.0;
  std::uint64_t steps_ = 0;
  std::uint64_t version_ = 0;
  std::uint64_t rejected_steps_ = 0;
};

}  // namespace livelearn
