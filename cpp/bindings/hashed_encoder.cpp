// Binding of livelearn::HashedEncoder as livelearn._core.HashedEncoder (used
// by livelearn.features.HashedFeatureEncoder) and of stable_hash64. The
// interactions are read in one pass under the GIL (convert.hpp), encoded
// with the GIL released for large batches, and returned as numpy arrays.
// None instead of arrays: some value needs the Python reference path.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convert.hpp"
#include "livelearn/encoder.hpp"
#include "livelearn/hashing.hpp"
#include "register.hpp"

namespace livelearn::bindings {
namespace {

// Batches at least this large release the GIL while they are encoded; one
// row is cheaper than the hand-over.
constexpr std::size_t kReleaseRows = 64;

using F64 = py::array_t<double, kCast>;

ReadOptions options_for(const HashedEncoder& enc, std::optional<double> utc_offset,
                        const std::optional<F64>& local, std::size_t n) {
  ReadOptions options;
  options.float_text = enc.needs_float_text();
  if (local) {
    if (local->ndim() != 1 || static_cast<std::size_t>(local->shape(0)) != n) {
      value_error("local: expected shape " + shape_text({static_cast<py::ssize_t>(n)}) + ", got " +
                  shape_text(*local));
    }
    options.local = local->data();
  } else if (utc_offset) {
    options.utc_offset = *utc_offset;
  } else {
    value_error("local: required when the encoder has no fixed utc_offset");
  }
  return options;
}

template <class Out, class Fn>
bool encode(const InteractionBatch& batch, Out& out, Fn fn) {
  if (batch.rows.size() >= kReleaseRows) {
    py::gil_scoped_release release;
    return fn(batch, out);
  }
  return fn(batch, out);
}

struct Bound {
  HashedEncoder encoder;
  std::optional<double> utc_offset;
};

std::size_t length_of(py::handle items) {
  const Py_ssize_t n = PyObject_Length(items.ptr());
  if (n < 0) throw py::error_already_set();
  return static_cast<std::size_t>(n);
}

py::object sparse_many(const Bound& self, py::handle items, std::optional<F64> local) {
  InteractionBatch batch;  // per call: reading may run Python code (a Mapping's items())
  CsrOut out;
  const ReadOptions options = options_for(self.encoder, self.utc_offset, local, length_of(items));
  if (!read_interactions(items, batch, options)) return py::none();
  const bool ok = encode(batch, out, [&](const InteractionBatch& b, CsrOut& o) {
    return self.encoder.encode_sparse(b, o);
  });
  if (!ok) return py::none();
  return py::make_tuple(to_array(out.indptr), to_array(out.indices), to_array(out.values));
}

py::object sparse_one(const Bound& self, py::handle item, std::optional<double> local) {
  InteractionBatch batch;  // per call: reading may run Python code (a Mapping's items())
  CsrOut out;
  ReadOptions options;
  options.float_text = self.encoder.needs_float_text();
  double local_value = 0.0;
  if (local) {
    local_value = *local;
    options.local = &local_value;
  } else if (self.utc_offset) {
    options.utc_offset = *self.utc_offset;
  } else {
    value_error("local: required when the encoder has no fixed utc_offset");
  }
  py::tuple one = py::make_tuple(item);
  if (!read_interactions(one, batch, options)) return py::none();
  if (!self.encoder.encode_sparse(batch, out)) return py::none();
  return py::make_tuple(to_array(out.indices), to_array(out.values));
}

py::object fields_many(const Bound& self, py::handle items, std::optional<F64> local) {
  InteractionBatch batch;  // per call: reading may run Python code (a Mapping's items())
  FieldsOut out;
  const ReadOptions options = options_for(self.encoder, self.utc_offset, local, length_of(items));
  if (!read_interactions(items, batch, options)) return py::none();
  const bool ok = encode(batch, out, [&](const InteractionBatch& b, FieldsOut& o) {
    return self.encoder.encode_fields(b, o);
  });
  if (!ok) return py::none();
  const auto n = static_cast<py::ssize_t>(batch.rows.size());
  const auto k = static_cast<py::ssize_t>(self.encoder.n_dense());
  py::array_t<float> dense({n, k});
  if (!out.dense.empty()) {
    std::memcpy(dense.mutable_data(), out.dense.data(), out.dense.size() * sizeof(float));
  }
  py::array_t<float> values(static_cast<py::ssize_t>(out.indices.size()));
  std::fill_n(values.mutable_data(), values.size(), 1.0f);
  return py::make_tuple(to_array(out.indptr), to_array(out.indices), std::move(values),
                        to_array(out.fields), std::move(dense));
}

std::uint64_t hash_of(py::handle data) {
  if (PyUnicode_Check(data.ptr())) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(data.ptr(), &n);
    if (p == nullptr) throw py::error_already_set();  // lone surrogates: UnicodeEncodeError
    return stable_hash64(p, static_cast<std::size_t>(n));
  }
  if (PyBytes_Check(data.ptr())) {
    return stable_hash64(PyBytes_AS_STRING(data.ptr()),
                         static_cast<std::size_t>(PyBytes_GET_SIZE(data.ptr())));
  }
  type_error("stable_hash64: expected str or bytes, got " + type_name(data));
}

}  // namespace

void register_hashed_encoder(py::module_& m) {
  m.attr("HASH_NAME") = kHashName;
  m.def("stable_hash64", &hash_of, py::arg("data"),
        "BLAKE2b-64 (digest_size=8, little-endian) of a str's UTF-8 or of bytes.");
  py::class_<Bound>(m, "HashedEncoder",
                    "The arithmetic of HashedFeatureEncoder (see livelearn.features).")
      .def(py::init([](std::int64_t n_buckets, bool action, bool user, bool time, bool bias,
                       std::optional<std::vector<std::string>> context_keys,
                       std::vector<std::string> numeric_keys,
                       std::vector<std::pair<std::string, std::string>> crosses,
                       std::optional<double> utc_offset) {
             HashedEncoderConfig config;
             config.n_buckets = n_buckets;
             config.action = action;
             config.user = user;
             config.time = time;
             config.bias = bias;
             config.open_context = !context_keys.has_value();
             if (context_keys) config.context_keys = std::move(*context_keys);
             config.numeric_keys = std::move(numeric_keys);
             config.crosses = std::move(crosses);
             try {
               return new Bound{HashedEncoder(std::move(config)), utc_offset};
             } catch (const std::invalid_argument& e) {
               value_error(e.what());
             }
           }),
           py::kw_only(), py::arg("n_buckets"), py::arg("action"), py::arg("user"), py::arg("time"),
           py::arg("bias"), py::arg("context_keys"), py::arg("numeric_keys"), py::arg("crosses"),
           py::arg("utc_offset"))
      .def_property_readonly("n_inputs", [](const Bound& b) { return b.encoder.n_inputs(); })
      .def_property_readonly("n_dense", [](const Bound& b) { return b.encoder.n_dense(); })
      .def("encode_sparse_many", &sparse_many, py::arg("interactions"),
           py::arg("local") = py::none())
      .def("encode_sparse", &sparse_one, py::arg("interaction"), py::arg("local") = py::none())
      .def("encode_fields_many", &fields_many, py::arg("interactions"),
           py::arg("local") = py::none());
}

}  // namespace livelearn::bindings
