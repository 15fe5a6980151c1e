// The exceptions the Python module raises beyond pybind11's own translation
// (std::invalid_argument -> ValueError, py::type_error -> TypeError, ...).
#pragma once

#include <stdexcept>

#include "livelearn/mlp.hpp"

namespace livelearn::bindings {

// Raised (as livelearn.StepRejected, a ValueError) when train_step refuses a step.
struct StepRejected : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws StepRejected naming the status and the loss.
[[noreturn]] void raise_rejected(StepStatus s, double loss);

}  // namespace livelearn::bindings
