#include "errors.hpp"

#include <cstdio>
#include <string>

#include "livelearn/shared_segment.hpp"
#include "register.hpp"

namespace livelearn::bindings {

void raise_rejected(StepStatus s, double loss) {
  char text[32];
  std::snprintf(text, sizeof text, "%.7g", loss);  // 1e+77, not 78 digits
  throw StepRejected("step rejected: " + std::string(to_string(s)) + " (loss " + text +
                     "); the model is unchanged");
}

void register_errors(pybind11::module_& m) {
  pybind11::register_exception<StepRejected>(m, "StepRejected", PyExc_ValueError);
  pybind11::register_exception<ShareError>(m, "ShareError", PyExc_RuntimeError);
}

}  // namespace livelearn::bindings
