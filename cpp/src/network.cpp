#include "livelearn/network.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace livelearn {
namespace {

// The cost model of costly(), in multiply-adds. Releasing the GIL costs
// ~50 ns, and taking it back waits for whichever thread took it meanwhile:
// behind a busy Engine dispatcher or producer that is a stretch of their
// Python work (p99 of a one-row predict while an engine trains: 130-300 us
// with the release, 6-9 us without). Measured at commit d9e9167
// (benchmarks/engine_bench.py, benchmarks/results/engine.json) on a shared
// 2-vCPU AMD EPYC VM at 2.45 GHz, where kCostlyWork is about 8 us.
constexpr double kCostlyWork = 32768.0;
// A training step is about three passes over the weights: forward, backward
// and the update; a call may also wait for one step of another thread.
constexpr double kStepPasses = 3.0;

// Per-thread scratch so concurrent readers never share buffers and, once a
// thread has warmed up, predict allocates nothing.
// A rejected row's loss is reported as NaN, whatever the guard saw.
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

ForwardScratch& thread_scratch() {
  thread_local ForwardScratch scratch;
  return scratch;
}

std::vector<std::int32_t>& thread_index_scratch() {
  thread_local std::vector<std::int32_t> scratch;
  return scratch;
}

void check_finite_row(const float* x, std::size_t n, std::size_t row, const char* what) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      throw std::invalid_argument(std::string(what) + ": row " + std::to_string(row) +
                                  " holds NaN or infinite values");
    }
  }
}

}  // namespace

Network::Network(const Config& config) : mlp_(config) {}

namespace {

std::unique_ptr<SharedSegment> open_segment(const Config& config, const ShareOptions& share) {
  config.validate();
  SharedSegment::Options o;
  o.name = share.name;
  o.config_text = Network::share_text(config);
  o.n_parameters = Mlp::n_parameters_of(config);
  o.n_buffers = Mlp::n_buffers_of(config);
  o.max_ranges = static_cast<std::size_t>(config.layers.front()) + 1;
  o.lock_timeout_s = share.lock_timeout_s;
  o.attach_timeout_s = share.attach_timeout_s;
  return SharedSegment::open(o);
}

// The shortest decimal that reads back as the same float.
std::string exact(float v) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

std::string Network::share_text(const Config& c) {
  std::string layers;
  for (std::size_t i = 0; i < c.layers.size(); ++i) {
    layers += (i ? ", " : "") + std::to_string(c.layers[i]);
  }
  return "layers=[" + layers + "] activation=" + to_string(c.hidden_activation) +
         " output=" + to_string(c.output_activation) + " loss=" + to_string(c.loss) +
         " optimizer=" + to_string(c.optimizer) + " learning_rate=" + exact(c.learning_rate) +
         " momentum=" + exact(c.momentum) + " weight_decay=" + exact(c.weight_decay) +
         " clip_norm=" + (c.clip_norm ? exact(*c.clip_norm) : std::string("none")) +
         " beta1=" + exact(c.beta1) + " beta2=" + exact(c.beta2) + " epsilon=" + exact(c.epsilon) +
         " seed=" + std::to_string(c.seed);
}

Network::Network(const Config& config, const ShareOptions& share)
    : segment_(open_segment(config, share)),
      mlp_(config, segment_->external(), segment_->created()) {
  if (segment_->created()) segment_->publish();
  mutex_.segment = segment_.get();
}

Network::~Network() = default;

void Network::hold_lock_for_test(double seconds, bool poison) {
  if (!segment_) throw std::logic_error("hold_lock_for_test: not a shared model");
  std::unique_lock lock(mutex_);
  if (poison) mlp_.poison_for_test();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  if (poison) segment_->repair();
}

namespace {

// Multiply-adds of one forward pass: every weight once, or for a sparse row
// only the first layer's active rows.
double dense_row_work(const Mlp& m) { return static_cast<double>(m.n_parameters()); }
double sparse_row_work(const Mlp& m, double active) {
  const auto& layers = m.config().layers;
  const double first_width = static_cast<double>(layers[1]);
  const double first_weights = static_cast<double>(layers[0]) * first_width;
  return (dense_row_work(m) - first_weights) + active * first_width;
}
// A step, plus one more it may wait for.
bool costly_step_of(double row) { return 2.0 * kStepPasses * row >= kCostlyWork; }
// The rows, plus one training step it may wait for.
bool costly_predict_of(double rows, double row) {
  return rows * row + kStepPasses * row >= kCostlyWork;
}

}  // namespace

bool Network::costly_step() const { return costly_step_of(dense_row_work(mlp_)); }

bool Network::costly_sparse_step(std::size_t nnz) const {
  return costly_step_of(sparse_row_work(mlp_, static_cast<double>(nnz)));
}

bool Network::costly_predict(std::size_t rows) const {
  return costly_predict_of(static_cast<double>(rows), dense_row_work(mlp_));
}

bool Network::costly_predict_sparse(std::size_t rows, std::size_t nnz) const {
  const double r = static_cast<double>(rows);
  return costly_predict_of(r, sparse_row_work(mlp_, static_cast<double>(nnz) / std::max(r, 1.0)));
}

StepResult Network::train_step(const float* x, const float* y, float* prediction, float weight) {
  std::unique_lock lock(mutex_);
  return mlp_.train_step(x, y, prediction, weight);
}

StepResult Network::train_step_sparse(const std::int32_t* indices, const float* values,
                                      std::size_t nnz, const float* y, float* prediction,
                                      float weight) {
  validate_sparse_row(indices, nnz);
  std::unique_lock lock(mutex_);
  return mlp_.train_step_sparse(indices, values, nnz, y, prediction, weight);
}

void Network::train_batch(std::size_t n, const float* X, const float* Y, double* losses,
                          float* predictions, StepStatus* status, std::uint64_t* steps,
                          const float* weights) {
  const std::size_t in = mlp_.n_inputs(), k = mlp_.n_outputs();
  for (std::size_t r = 0; r < n; ++r) {
    StepResult res;
    {
      std::unique_lock lock(mutex_);  // per step: a reader waits for one step at most
      res = mlp_.train_step(X + r * in, Y + r * k, predictions ? predictions + r * k : nullptr,
                            weights ? weights[r] : 1.0f);
      if (steps) steps[r] = res.status == StepStatus::Trained ? mlp_.steps() : 0;
    }
    if (losses) losses[r] = res.status == StepStatus::Trained ? res.loss : kNaN;
    if (status) status[r] = res.status;
  }
}

void Network::train_batch_sparse(const CsrView& csr, const float* Y, double* losses,
                                 float* predictions, StepStatus* status, std::uint64_t* steps,
                                 const float* weights) {
  validate_csr(csr);
  const std::size_t k = mlp_.n_outputs();
  for (std::size_t r = 0; r < csr.rows; ++r) {
    const std::int64_t begin = csr.indptr[r], end = csr.indptr[r + 1];
    StepResult res;
    {
      std::unique_lock lock(mutex_);
      res = mlp_.train_step_sparse(
          csr.indices + begin, csr.values + begin, static_cast<std::size_t>(end - begin), Y + r * k,
          predictions ? predictions + r * k : nullptr, weights ? weights[r] : 1.0f);
      if (steps) steps[r] = res.status == StepStatus::Trained ? mlp_.steps() : 0;
    }
    if (losses) losses[r] = res.status == StepStatus::Trained ? res.loss : kNaN;
    if (status) status[r] = res.status;
  }
}

void Network::predict(std::size_t n, const float* X, float* out) const {
  const std::size_t in = mlp_.n_inputs(), k = mlp_.n_outputs();
  ForwardScratch& scratch = thread_scratch();
  for (std::size_t r = 0; r < n; ++r) {
    check_finite_row(X + r * in, in, r, "X");
    std::shared_lock lock(mutex_);
    mlp_.predict(X + r * in, out + r * k, scratch);
  }
}

void Network::predict_sparse(const CsrView& csr, float* out) const {
  validate_csr(csr);
  const std::size_t k = mlp_.n_outputs();
  ForwardScratch& scratch = thread_scratch();
  for (std::size_t r = 0; r < csr.rows; ++r) {
    const std::int64_t begin = csr.indptr[r], end = csr.indptr[r + 1];
    const std::size_t nnz = static_cast<std::size_t>(end - begin);
    check_finite_row(csr.values + begin, nnz, r, "values");
    std::shared_lock lock(mutex_);
    mlp_.predict_sparse(csr.indices + begin, csr.values + begin, nnz, out + r * k, scratch);
  }
}

void Network::validate_sparse_row(const std::int32_t* indices, std::size_t nnz) const {
  const auto n_in = static_cast<std::int64_t>(mlp_.n_inputs());
  for (std::size_t j = 0; j < nnz; ++j) {
    if (indices[j] < 0 || indices[j] >= n_in) {
      throw std::invalid_argument("indices: " + std::to_string(indices[j]) +
                                  " is out of range for " + std::to_string(n_in) + " inputs");
    }
  }
  // Duplicates would be applied twice by the lazy sparse update: reject them.
  bool sorted = true;
  for (std::size_t j = 1; j < nnz; ++j) sorted &= indices[j - 1] < indices[j];
  if (sorted) return;
  auto& tmp = thread_index_scratch();
  tmp.assign(indices, indices + nnz);
  std::sort(tmp.begin(), tmp.end());
  if (std::adjacent_find(tmp.begin(), tmp.end()) != tmp.end()) {
    throw std::invalid_argument("indices: duplicate index " +
                                std::to_string(*std::adjacent_find(tmp.begin(), tmp.end())) +
                                " in one example (sum the values of repeated features)");
  }
}

void Network::validate_csr(const CsrView& csr) const {
  if (csr.indptr[0] != 0) throw std::invalid_argument("indptr: must start at 0");
  for (std::size_t r = 0; r < csr.rows; ++r) {
    if (csr.indptr[r + 1] < csr.indptr[r]) {
      throw std::invalid_argument("indptr: must be non-decreasing (row " + std::to_string(r) + ")");
    }
  }
  for (std::size_t r = 0; r < csr.rows; ++r) {
    validate_sparse_row(csr.indices + csr.indptr[r],
                        static_cast<std::size_t>(csr.indptr[r + 1] - csr.indptr[r]));
  }
}

Counters Network::counters() const {
  std::shared_lock lock(mutex_);
  return {mlp_.steps(), mlp_.rejected_steps()};
}

void Network::set_counters(const Counters& c) {
  std::unique_lock lock(mutex_);
  mlp_.set_counters(c.steps, c.rejected_steps);
}

float Network::learning_rate() const {
  std::shared_lock lock(mutex_);
  return mlp_.learning_rate();
}

void Network::set_learning_rate(float lr) {
  if (segment_) {
    throw ShareError("share '" + segment_->name() +
                     "': the learning rate of a shared model is part of its configuration "
                     "(every process must use the same); create the share with it instead");
  }
  std::unique_lock lock(mutex_);
  mlp_.set_learning_rate(lr);
}

Counters Network::export_state(const std::vector<float*>& destinations) const {
  std::shared_lock lock(mutex_);
  mlp_.export_state(destinations);
  return {mlp_.steps(), mlp_.rejected_steps()};
}

void Network::import_state(const std::vector<NamedTensor>& tensors,
                           const std::vector<std::string>& other_names, const Counters& counters) {
  std::unique_lock lock(mutex_);
  mlp_.import_state(tensors, other_names);  // validates before writing anything
  mlp_.set_counters(counters.steps, counters.rejected_steps);
}

void Network::import_state(const std::vector<const float*>& sources, const Counters& counters) {
  std::unique_lock lock(mutex_);
  mlp_.import_state(sources);  // validates before writing anything
  mlp_.set_counters(counters.steps, counters.rejected_steps);
}

void Network::apply_delta(const std::vector<NamedTensor>& deltas, float weight,
                          const std::vector<std::string>& other_names) {
  std::unique_lock lock(mutex_);
  mlp_.apply_delta(deltas, weight, other_names);
}

void Network::apply_delta(const std::vector<const float*>& deltas, float weight) {
  std::unique_lock lock(mutex_);
  mlp_.apply_delta(deltas, weight);
}

std::uint64_t Network::version() const {
  std::shared_lock lock(mutex_);
  return mlp_.version();
}

}  // namespace livelearn
