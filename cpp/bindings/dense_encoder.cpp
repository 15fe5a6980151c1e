// Binding of livelearn::DenseEncoder as livelearn._core.DenseEncoder (used by
// livelearn.features.FeatureEncoder): one pass over the interactions under
// the GIL, then the 4 inputs per row. None: the Python reference path decides.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "convert.hpp"
#include "livelearn/encoder.hpp"
#include "register.hpp"

namespace livelearn::bindings {
namespace {

using F64 = py::array_t<double, kCast>;

struct Dense4 {
  DenseEncoder encoder;
  std::optional<double> utc_offset;
};

ReadOptions options_for(const Dense4& self, const double* local) {
  ReadOptions options;
  options.context_items = false;
  if (local) {
    options.local = local;
  } else if (self.utc_offset) {
    options.utc_offset = *self.utc_offset;
  } else {
    value_error("local: required when the encoder has no fixed utc_offset");
  }
  return options;
}

py::object encode_many(const Dense4& self, py::handle items, std::optional<F64> local) {
  InteractionBatch batch;  // per call: reading may run Python code (a Mapping's items())
  const Py_ssize_t n = PyObject_Length(items.ptr());
  if (n < 0) throw py::error_already_set();
  if (local && (local->ndim() != 1 || local->shape(0) != n)) {
    value_error("local: expected shape " + shape_text({n}) + ", got " + shape_text(*local));
  }
  if (!read_interactions(items, batch, options_for(self, local ? local->data() : nullptr))) {
    return py::none();
  }
  py::array_t<float> out({static_cast<py::ssize_t>(batch.rows.size()), py::ssize_t{4}});
  self.encoder.encode(batch, out.mutable_data());
  return std::move(out);
}

py::object encode_one(const Dense4& self, py::handle item, std::optional<double> local) {
  InteractionBatch batch;  // per call: reading may run Python code (a Mapping's items())
  double value = local.value_or(0.0);
  py::tuple one = py::make_tuple(item);
  if (!read_interactions(one, batch, options_for(self, local ? &value : nullptr))) {
    return py::none();
  }
  py::array_t<float> out(4);
  self.encoder.encode(batch, out.mutable_data());
  return std::move(out);
}

}  // namespace

void register_dense_encoder(py::module_& m) {
  py::class_<Dense4>(m, "DenseEncoder", "The arithmetic of FeatureEncoder (livelearn.features).")
      .def(py::init([](bool action, std::optional<double> utc_offset) {
             return new Dense4{DenseEncoder(action), utc_offset};
           }),
           py::kw_only(), py::arg("action"), py::arg("utc_offset"))
      .def("encode_many", &encode_many, py::arg("interactions"), py::arg("local") = py::none())
      .def("encode", &encode_one, py::arg("interaction"), py::arg("local") = py::none());
}

}  // namespace livelearn::bindings
