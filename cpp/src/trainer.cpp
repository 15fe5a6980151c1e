#include "livelearn/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

namespace livelearn {
namespace {

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

Trainer::Trainer(const Config& config) : net_(config) {}

StepResult Trainer::train_step(const float* x, const float* y, float* prediction) {
  std::unique_lock lock(mutex_);
  return net_.train_step(x, y, prediction);
}

StepResult Trainer::train_step_sparse(const std::int32_t* indices, const float* values,
                                      std::size_t nnz, const float* y, float* prediction) {
  validate_sparse_row(indices, nnz);
  std::unique_lock lock(mutex_);
  return net_.train_step_sparse(indices, values, nnz, y, prediction);
}

void Trainer::train_batch(std::size_t n, const float* X, const float* Y, double* losses,
                          float* predictions, StepStatus* status, std::uint64_t* steps) {
  const std::size_t in = net_.n_inputs(), k = net_.n_outputs();
  for (std::size_t r = 0; r < n; ++r) {
    StepResult res;
    {
      std::unique_lock lock(mutex_);  // per step: a reader waits for one step at most
      res = net_.train_step(X + r * in, Y + r * k, predictions ? predictions + r * k : nullptr);
      if (steps) steps[r] = res.status == StepStatus::Trained ? net_.steps() : 0;
    }
    if (losses) losses[r] = res.status == StepStatus::Trained ? res.loss : kNaN;
    if (status) status[r] = res.status;
  }
}

void Trainer::train_batch_sparse(const CsrView& csr, const float* Y, double* losses,
                                 float* predictions, StepStatus* status, std::uint64_t* steps) {
  validate_csr(csr);
  const std::size_t k = net_.n_outputs();
  for (std::size_t r = 0; r < csr.rows; ++r) {
    const std::int64_t begin = csr.indptr[r], end = csr.indptr[r + 1];
    StepResult res;
    {
      std::unique_lock lock(mutex_);
      res = net_.train_step_sparse(csr.indices + begin, csr.values + begin,
                                   static_cast<std::size_t>(end - begin), Y + r * k,
                                   predictions ? predictions + r * k : nullptr);
      if (steps) steps[r] = res.status == StepStatus::Trained ? net_.steps() : 0;
    }
    if (losses) losses[r] = res.status == StepStatus::Trained ? res.loss : kNaN;
    if (status) status[r] = res.status;
  }
}

void Trainer::predict(std::size_t n, const float* X, float* out) const {
  const std::size_t in = net_.n_inputs(), k = net_.n_outputs();
  ForwardScratch& scratch = thread_scratch();
  for (std::size_t r = 0; r < n; ++r) {
    check_finite_row(X + r * in, in, r, "X");
    std::shared_lock lock(mutex_);
    net_.predict(X + r * in, out + r * k, scratch);
  }
}

void Trainer::predict_sparse(const CsrView& csr, float* out) const {
  validate_csr(csr);
  const std::size_t k = net_.n_outputs();
  ForwardScratch& scratch = thread_scratch();
  for (std::size_t r = 0; r < csr.rows; ++r) {
    const std::int64_t begin = csr.indptr[r], end = csr.indptr[r + 1];
    const std::size_t nnz = static_cast<std::size_t>(end - begin);
    check_finite_row(csr.values + begin, nnz, r, "values");
    std::shared_lock lock(mutex_);
    net_.predict_sparse(csr.indices + begin, csr.values + begin, nnz, out + r * k, scratch);
  }
}

void Trainer::validate_sparse_row(const std::int32_t* indices, std::size_t nnz) const {
  const auto n_in = static_cast<std::int64_t>(net_.n_inputs());
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

void Trainer::validate_csr(const CsrView& csr) const {
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

Counters Trainer::counters() const {
  std::shared_lock lock(mutex_);
  return {net_.steps(), net_.rejected_steps()};
}

void Trainer::set_counters(const Counters& c) {
  std::unique_lock lock(mutex_);
  net_.set_counters(c.steps, c.rejected_steps);
}

float Trainer::learning_rate() const {
  std::shared_lock lock(mutex_);
  return net_.learning_rate();
}

void Trainer::set_learning_rate(float lr) {
  std::unique_lock lock(mutex_);
  net_.set_learning_rate(lr);
}

Counters Trainer::export_state(const std::vector<float*>& destinations) const {
  std::shared_lock lock(mutex_);
  net_.export_state(destinations);
  return {net_.steps(), net_.rejected_steps()};
}

void Trainer::import_state(const std::vector<const float*>& sources, const Counters& counters) {
  std::unique_lock lock(mutex_);
  net_.import_state(sources);  // validates before writing anything
  net_.set_counters(counters.steps, counters.rejected_steps);
}

void Trainer::apply_delta(const std::vector<const float*>& deltas, float weight) {
  std::unique_lock lock(mutex_);
  net_.apply_delta(deltas, weight);
}

std::uint64_t Trainer::version() const {
  std::shared_lock lock(mutex_);
  return net_.version();
}

}  // namespace livelearn
