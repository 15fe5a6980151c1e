// Network: the thread-safe trainer over Mlp (mlp.hpp), the class the Python
// module exposes. Training steps take the lock exclusively, one step at a
// time, so a concurrent predict waits for at most one step; predictions share
// the lock with each other, and a waiting training step goes before newly
// arriving predictions (RwLock prefers writers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "livelearn/mlp.hpp"
#include "livelearn/rwlock.hpp"
#include "livelearn/shared_segment.hpp"

namespace livelearn {

struct Counters {
  std::uint64_t steps;
  std::uint64_t rejected_steps;
};

// Compressed sparse rows: row r holds indices[indptr[r] .. indptr[r+1]).
struct CsrView {
  std::size_t rows;
  const std::int64_t* indptr;
  const std::int32_t* indices;
  const float* values;
};

// Options of a shared model (Network(config, share)).
struct ShareOptions {
  std::string name;
  double lock_timeout_s = 10.0;
  double attach_timeout_s = 5.0;
};

class Network {
 public:
  explicit Network(const Config& config);
  // The model of share `share.name`: created (fresh weights) if no live
  // process holds it, else attached; its weights, optimizer state, counters
  // and version live in shared memory (SharedSegment) and every lock below
  // is the segment's robust mutex (readers included). Throws ShareError.
  Network(const Config& config, const ShareOptions& share);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Null for a process-local model.
  const SharedSegment* share() const { return segment_.get(); }
  SharedSegment* share() { return segment_.get(); }
  // See SharedSegment::release (no-op for a local model).
  void release_share() {
    if (segment_) segment_->release();
  }
  // The configuration text two shared models must agree on.
  static std::string share_text(const Config& config);
  // Test hook: takes the lock, journals the state, writes a NaN into the
  // first parameter (as a half-written step), then holds the lock for
  // `seconds` before undoing it all. Kill the process meanwhile to test
  // recovery. Throws std::logic_error on a local model.
  void hold_lock_for_test(double seconds, bool poison);

  const Config& config() const { return mlp_.config(); }
  std::size_t n_inputs() const { return mlp_.n_inputs(); }
  std::size_t n_outputs() const { return mlp_.n_outputs(); }
  std::size_t n_parameters() const { return mlp_.n_parameters(); }

  // `weight`: the example's weight (see Mlp::train_step); a NaN, infinite
  // or negative one rejects the step as NonFiniteInput.
  StepResult train_step(const float* x, const float* y, float* prediction, float weight = 1.0f);
  StepResult train_step_sparse(const std::int32_t* indices, const float* values, std::size_t nnz,
                               const float* y, float* prediction, float weight = 1.0f);
  // n steps in order, the lock taken per step. Outputs may be null; a
  // rejected row's loss is NaN and its status says why. steps[r] receives
  // the step counter right after row r's update, read under the same lock
  // (so it is exact while other threads train), or 0 if the row was rejected.
  // weights (n values, may be null: all 1) weigh each row as in train_step;
  // a bad weight rejects its row only, as NonFiniteInput.
  void train_batch(std::size_t n, const float* X, const float* Y, double* losses,
                   float* predictions, StepStatus* status, std::uint64_t* steps = nullptr,
                   const float* weights = nullptr);
  void train_batch_sparse(const CsrView& csr, const float* Y, double* losses, float* predictions,
                          StepStatus* status, std::uint64_t* steps = nullptr,
                          const float* weights = nullptr);
  void predict(std::size_t n, const float* X, float* out) const;
  void predict_sparse(const CsrView& csr, float* out) const;

  // Whether a call is costly: long enough that a caller holding a lock of
  // its own (the Python GIL) should let other threads run meanwhile. Counts
  // the call's multiply-adds plus one training step it may wait for on this
  // network's lock; see kCostlyWork in network.cpp. Batch training calls
  // are always costly.
  bool costly_step() const;
  bool costly_sparse_step(std::size_t nnz) const;
  bool costly_predict(std::size_t rows) const;
  bool costly_predict_sparse(std::size_t rows, std::size_t nnz) const;

  // Throws std::invalid_argument unless indptr starts at 0, never decreases,
  // and every row's indices are in range and unique. Call before training.
  void validate_csr(const CsrView& csr) const;
  void validate_sparse_row(const std::int32_t* indices, std::size_t nnz) const;

  Counters counters() const;
  void set_counters(const Counters& c);
  float learning_rate() const;
  void set_learning_rate(float lr);

  std::vector<TensorInfo> state_layout() const { return mlp_.state_layout(); }
  // One consistent snapshot (a step boundary) of every tensor and the counters.
  Counters export_state(const std::vector<float*>& destinations) const;
  // See Mlp::import_state, the one check of a state's layout.
  void import_state(const std::vector<NamedTensor>& tensors,
                    const std::vector<std::string>& other_names, const Counters& counters);
  void import_state(const std::vector<const float*>& sources, const Counters& counters);
  // See Mlp::apply_delta; one atomic change between two training steps.
  void apply_delta(const std::vector<NamedTensor>& deltas, float weight,
                   const std::vector<std::string>& other_names);
  void apply_delta(const std::vector<const float*>& deltas, float weight);
  std::uint64_t version() const;

 private:
  // The model lock: the local RwLock, or the shared segment's robust mutex
  // (shared and exclusive are then one lock). A BasicLockable and
  // SharedLockable for std::unique_lock / std::shared_lock.
  class ModelLock {
   public:
    void lock() {
      if (segment) {
        segment->lock();
      } else {
        local.lock();
      }
    }
    void unlock() {
      if (segment) {
        segment->unlock();
      } else {
        local.unlock();
      }
    }
    void lock_shared() {
      if (segment) {
        segment->lock();
      } else {
        local.lock_shared();
      }
    }
    void unlock_shared() {
      if (segment) {
        segment->unlock();
      } else {
        local.unlock_shared();
      }
    }
    RwLock local;
    SharedSegment* segment = nullptr;
  };

  std::unique_ptr<SharedSegment> segment_;  // before mlp_: the Mlp points into it
  Mlp mlp_;
  mutable ModelLock mutex_;
};

}  // namespace livelearn
