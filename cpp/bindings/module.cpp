// The Python module livelearn._core: one register_* call per binding unit
// (register.hpp). Each unit converts arguments (convert.hpp), releases the
// GIL when the core says a call is costly, and leaves every rule on values
// and tensor layouts to the core (cpp/include/livelearn/).
#include <pybind11/pybind11.h>

#include "livelearn/mlp.hpp"
#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "livelearn native core: a thread-safe multi-layer perceptron (see livelearn.Network).";
  m.attr("RUNTIME_DISPATCH") = livelearn::runtime_dispatch();
  livelearn::bindings::register_errors(m);
  livelearn::bindings::register_network(m);
  livelearn::bindings::register_field_model(m);
  livelearn::bindings::register_hashed_encoder(m);
  livelearn::bindings::register_dense_encoder(m);
}
