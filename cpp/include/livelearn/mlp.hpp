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

// The counters and guard bounds of a model: kept inside the Mlp, or in shared
// memory (shared_segment.hpp) when several processes train one model.
struct MlpCounters {
  std::uint64_t steps;
  std::uint64_t version;
  std::uint64_t rejected_steps;
  double w_bound;  // upper bound on max |parameter| (the guard's fast path)
  double m_bound;  // upper bound on max |momentum|
};

// The undo record of the write in progress, for a model in shared memory: a
// process killed mid-step leaves `active` set, and whoever takes the lock next
// copies the saved values back (SharedSegment::repair), so a dead process's
// half step is rolled back exactly. Plain data: it lives in the segment.
struct StepJournal {
  std::uint32_t active;     // 1 while a write is in progress
  std::uint32_t n_buffers;  // how many of params, m, v the ranges cover
  std::uint64_t n_ranges;   // (offset, length) pairs in ExternalState::ranges
  MlpCounters saved;        // the counters before the write
};

// Where an Mlp keeps its state when it does not own it (a shared segment):
// parameter and optimizer buffers of n_parameters() floats each (m, v null
// when the optimizer has none), the counters and the undo journal, whose
// `ranges` hold up to max_ranges (offset, length) pairs and `saved` up to
// n_buffers * n_parameters() floats.
struct ExternalState {
  float* params;
  float* m;
  float* v;
  MlpCounters* counters;
  StepJournal* journal;
  std::uint64_t* ranges;
  std::size_t max_ranges;
  float* saved;
};

// A view of a float buffer the Mlp either owns or borrows.
struct FloatSpan {
  float* p = nullptr;
  std::size_t n = 0;
  float* data() const { return p; }
  std::size_t size() const { return n; }
  bool empty() const { return n == 0; }
  float* begin() const { return p; }
  float* end() const { return p + n; }
};

// Scratch space for a forward pass; one per concurrent reader.
struct ForwardScratch {
  std::vector<float> a;
  std::vector<float> b;
};

class Mlp {
 public:
  explicit Mlp(const Config& config);
  // A model whose parameters, optimizer state and counters live in `ext`
  // (shared memory). With `initialise` the fresh weights (and zero
  // counters) are written there; without, the state already there is used.
  // Every write is journaled into ext.journal first (see StepJournal).
  Mlp(const Config& config, const ExternalState& ext, bool initialise);
  // A copy owns its state (a copy of a shared model is a local snapshot).
  Mlp(const Mlp& other);
  Mlp& operator=(const Mlp&) = delete;

  // How many buffers (parameters, then optimizer buffers) a configuration has.
  static std::size_t n_buffers_of(const Config& config);
  static std::size_t n_parameters_of(const Config& config);

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

  std::uint64_t steps() const { return ctr_->steps; }
  std::uint64_t rejected_steps() const { return ctr_->rejected_steps; }
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
  std::uint64_t version() const { return ctr_->version; }

  // Test hook of the shared model: journals the whole state, then writes a
  // NaN into the first parameter, as a step killed halfway could leave it
  // (the caller holds the lock and is then killed; see SharedSegment::repair).
  void poison_for_test();

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
  void init_weights();
  // The journal of the shared model (no-ops when journal_ is null).
  void journal_begin(const std::uint64_t* ranges, std::size_t n_ranges);
  void journal_full();
  void journal_restore();
  void journal_end();
  template <bool Sparse, class View>
  bool journaled_update(const View& u);
  std::vector<float*> buffers();
  std::vector<const float*> buffers() const;

  Config config_;
  std::vector<LayerSpan> layers_;
  std::vector<float> own_params_, own_m_, own_v_;  // empty when the state is external
  FloatSpan params_;
  FloatSpan opt_m_;          // momentum velocity, or Adam first moment
  FloatSpan opt_v_;          // Adam second moment
  std::vector<float> acts_;  // activations of every layer, input excluded
  std::vector<std::size_t> act_off_;
  std::vector<float> deltas_;  // dLoss/dz of every non-input layer
  std::vector<float> backup_;  // what a step overwrites, restored if it fails
  // Upper bounds on max |parameter| and max |momentum| (the guard's fast
  // path, kernels/guard.hpp).
  MlpCounters own_ctr_{0, 0, 0, 0.0, 0.0};
  MlpCounters* ctr_ = &own_ctr_;
  // Shared model only: the undo journal in the segment.
  StepJournal* journal_ = nullptr;
  std::uint64_t* journal_ranges_ = nullptr;
  std::size_t journal_max_ranges_ = 0;
  float* journal_saved_ = nullptr;
  std::vector<std::uint64_t> range_scratch_;
  // running_bias only (else empty): N per output, and a step's new output
  // biases and N, committed once the rest of the update is accepted.
  std::vector<float> bias_n_;
  std::vector<float> bias_next_;
  bool stage_running_bias(const float* y, float weight);
  void commit_running_bias();
};

}  // namespace livelearn
