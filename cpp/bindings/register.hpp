// One registration function per binding unit; module.cpp calls them in order.
#pragma once

#include <pybind11/pybind11.h>

namespace livelearn::bindings {

void register_errors(pybind11::module_& m);          // errors.cpp: StepRejected
void register_network(pybind11::module_& m);         // network.cpp: Network, STATUS_NAMES
void register_field_model(pybind11::module_& m);     // field_model.cpp: FieldModel
void register_hashed_encoder(pybind11::module_& m);  // hashed_encoder.cpp: HashedEncoder
void register_dense_encoder(pybind11::module_& m);   // dense_encoder.cpp: DenseEncoder
// A new binding unit declares its register_* function here, lives in its own
// cpp/bindings/<name>.cpp (added to _core in CMakeLists.txt) and is called
// from module.cpp.

}  // namespace livelearn::bindings
