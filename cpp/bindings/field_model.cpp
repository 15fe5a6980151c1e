// Binding of livelearn::FieldModel as livelearn._core.FieldModel: numpy <->
// C++ conversion with the GIL held, the GIL released around the arithmetic.
// Validation of structure (indices, fields, layouts) happens in the core.
#include "livelearn/field_model.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "register.hpp"

namespace py = pybind11;

namespace livelearn {
namespace {

constexpr int kCast = py::array::c_style | py::array::forcecast;
using F32 = py::array_t<float, kCast>;
using I64 = py::array_t<std::int64_t, kCast>;
using I32 = py::array_t<std::int32_t, kCast>;

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

std::string type_name(py::handle h) { return py::str(py::type::of(h).attr("__name__")); }

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array numeric(py::handle obj, const char* name) {
  py::array arr = py::array::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    type_error(std::string(name) + ": expected an array of numbers, got " + type_name(obj));
  }
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    type_error(std::string(name) + ": expected real numbers, got dtype " +
               std::string(py::str(arr.dtype())));
  return arr;
}

F32 f32(py::handle obj, const char* name) {
  if (F32::check_(obj)) return py::reinterpret_borrow<F32>(obj);
  return F32::ensure(numeric(obj, name));
}

// Integers only; int64 first so that nothing wraps silently when narrowing.
I64 i64(py::handle obj, const char* name) {
  if (I64::check_(obj)) return py::reinterpret_borrow<I64>(obj);
  py::array arr = numeric(obj, name);
  const char kind = arr.dtype().kind();
  if (kind != 'i' && kind != 'u')
    type_error(std::string(name) + ": expected integers, got dtype " +
               std::string(py::str(arr.dtype())));
  if (kind == 'u' && arr.dtype().itemsize() == 8) {
    auto big = py::array_t<std::uint64_t, kCast>::ensure(arr);
    for (py::ssize_t i = 0; i < big.size(); ++i)
      if (big.data()[i] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        value_error(std::string(name) + "[" + std::to_string(i) + "]: does not fit in int64");
  }
  return I64::ensure(arr);
}

I32 fields_i32(py::handle obj, std::int32_t n_fields) {
  I64 wide = i64(obj, "fields");
  for (py::ssize_t i = 0; i < wide.size(); ++i) {
    const std::int64_t f = wide.data()[i];
    if (f < 0 || f >= n_fields)
      value_error("fields[" + std::to_string(i) + "] = " + std::to_string(f) +
                  " is outside [0, n_fields = " + std::to_string(n_fields) + ")");
  }
  return I32::ensure(wide);
}

void expect_1d(const py::array& a, py::ssize_t n, const char* name, const char* like) {
  if (a.ndim() != 1 || (n >= 0 && a.shape(0) != n))
    value_error(std::string(name) + ": expected shape (" +
                (n >= 0 ? std::to_string(n) : std::string("n")) + ",)" + like + ", got " +
                shape_str(a));
}

double number(py::handle h, const char* name) {
  if (PyBool_Check(h.ptr()) || !(PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr()) ||
                                 PyObject_HasAttrString(h.ptr(), "__float__")))
    type_error(std::string(name) + ": expected a number, got " + type_name(h));
  const double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    value_error(std::string(name) + ": out of float range");
  }
  return v;
}

float config_float(py::handle h, const char* name) {
  const double v = number(h, name);
  if (std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max())
    value_error(std::string(name) + ": out of float32 range");
  return static_cast<float>(v);
}

// A target or a weight: non-finite values pass (the step reports them).
float step_float(py::handle h, const char* name) {
  const double v = number(h, name);
  if (std::fabs(v) > std::numeric_limits<float>::max())
    return static_cast<float>(v > 0 ? INFINITY : (v < 0 ? -INFINITY : v));
  return static_cast<float>(v);
}

bool flag(py::handle h, const char* name) {
  if (!PyBool_Check(h.ptr()) && !py::isinstance<py::bool_>(h))
    type_error(std::string(name) + ": expected a bool, got " + type_name(h));
  return h.ptr() == Py_True;
}

long long integer(py::handle h, const char* name, long long lo, long long hi) {
  if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
    type_error(std::string(name) + ": expected an int, got " + type_name(h));
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  if (overflow || v < lo || v > hi)
    value_error(std::string(name) + ": must be an int in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
  return v;
}

// The arrays of one CSR batch, converted and kept alive for the call.
struct Batch {
  I64 indptr, indices;
  F32 values, dense;
  I32 fields;
  FieldCsr csr;
};

Batch as_batch(const FieldModel& m, py::handle indptr, py::handle indices, py::handle values,
               py::handle fields, py::handle dense) {
  Batch b;
  b.indptr = i64(indptr, "indptr");
  if (b.indptr.ndim() != 1 || b.indptr.size() < 1) value_error("indptr: expected shape (n + 1,)");
  b.indices = i64(indices, "indices");
  expect_1d(b.indices, -1, "indices", "");
  b.values = f32(values, "values");
  expect_1d(b.values, b.indices.size(), "values", " like indices");
  b.fields = fields_i32(fields, m.config().n_fields);
  expect_1d(b.fields, b.indices.size(), "fields", " like indices");
  const std::int64_t last = b.indptr.data()[b.indptr.size() - 1];
  if (last != b.indices.size())
    value_error("indptr: last entry must equal len(indices) = " + std::to_string(b.indices.size()) +
                ", got " + std::to_string(last));
  const auto rows = static_cast<py::ssize_t>(b.indptr.size() - 1);
  const auto nd = static_cast<py::ssize_t>(m.config().n_dense);
  const float* dense_ptr = nullptr;
  if (nd > 0 || !dense.is_none()) {
    if (dense.is_none()) value_error("dense: expected shape (n, " + std::to_string(nd) + ")");
    b.dense = f32(dense, "dense");
    const bool empty_ok = nd == 0 && b.dense.size() == 0;
    if (!empty_ok && (b.dense.ndim() != 2 || b.dense.shape(0) != rows || b.dense.shape(1) != nd))
      value_error("dense: expected shape (" + std::to_string(rows) + ", " + std::to_string(nd) +
                  "), got " + shape_str(b.dense));
    if (nd > 0) dense_ptr = b.dense.data();
  }
  b.csr = {static_cast<std::size_t>(rows),
           b.indptr.data(),
           b.indices.data(),
           b.values.data(),
           b.fields.data(),
           dense_ptr};
  return b;
}

struct Single {
  I64 indices;
  F32 values, dense;
  I32 fields;
  FieldRow row;
};

Single as_single(const FieldModel& m, py::handle indices, py::handle values, py::handle fields,
                 py::handle dense) {
  Single s;
  s.indices = i64(indices, "indices");
  expect_1d(s.indices, -1, "indices", "");
  s.values = f32(values, "values");
  expect_1d(s.values, s.indices.size(), "values", " like indices");
  s.fields = fields_i32(fields, m.config().n_fields);
  expect_1d(s.fields, s.indices.size(), "fields", " like indices");
  const auto nd = static_cast<py::ssize_t>(m.config().n_dense);
  const float* dense_ptr = nullptr;
  if (nd > 0 || !dense.is_none()) {
    if (dense.is_none()) value_error("dense: expected shape (" + std::to_string(nd) + ",)");
    s.dense = f32(dense, "dense");
    if (!(nd == 0 && s.dense.size() == 0)) expect_1d(s.dense, nd, "dense", "");
    if (nd > 0) dense_ptr = s.dense.data();
  }
  s.row = {s.indices.data(), s.values.data(), s.fields.data(),
           static_cast<std::size_t>(s.indices.size()), dense_ptr};
  return s;
}

// Work of one step in multiply-adds (forward + backward + update); below
// kKeepGil the GIL hand-over costs more than it frees (see module.cpp).
constexpr double kKeepGil = 32768.0;
double row_work(const FieldModel& m, double active) {
  const auto& c = m.config();
  const double mlp = static_cast<double>(m.n_parameters()) -
                     static_cast<double>(c.n_buckets) * (1.0 + c.embedding_dim) -
                     static_cast<double>(c.n_dense) - 1.0;
  return active * (1.0 + c.embedding_dim) + mlp;
}

class ReleaseIf {
 public:
  explicit ReleaseIf(bool costly) {
    if (costly) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

std::vector<FieldTensorView> views_of(py::handle obj, const char* what, bool floating_only,
                                      std::vector<F32>& keep, py::dict* rest) {
  if (!PyDict_Check(obj.ptr())) type_error(std::string(what) + ": expected a dict of arrays");
  std::vector<FieldTensorView> views;
  for (auto item : py::reinterpret_borrow<py::dict>(obj)) {
    const std::string name = py::str(item.first);
    if (rest && name.rfind("counters.", 0) == 0) {
      (*rest)[item.first] = item.second;
      continue;
    }
    py::array a = numeric(item.second, name.c_str());
    if (floating_only && a.dtype().kind() != 'f')
      type_error(std::string(what) + ": tensor '" + name + "' must be floating point");
    keep.push_back(F32::ensure(a));
    std::vector<std::int64_t> shape(a.shape(), a.shape() + a.ndim());
    views.push_back({name, shape, keep.back().data()});
  }
  return views;
}

std::uint64_t counter(const py::dict& d, const char* name) {
  if (!d.contains(name)) value_error(std::string("state: missing counter '") + name + "'");
  py::array a = numeric(d[name], name);
  if (a.size() != 1 || (a.dtype().kind() != 'i' && a.dtype().kind() != 'u'))
    value_error(std::string("state: counter '") + name + "' must be one integer");
  const auto v = py::cast<long long>(a.attr("item")());
  if (v < 0) value_error(std::string("state: counter '") + name + "' is negative");
  return static_cast<std::uint64_t>(v);
}

}  // namespace
}  // namespace livelearn

void livelearn::bindings::register_field_model(py::module_& m) {
  using namespace livelearn;
  py::class_<FieldModel>(m, "FieldModel",
                         "Field-aware sparse model: wide + FM + optional MLP (DeepFM).")
      .def(
          py::init([](py::handle n_buckets, py::handle n_fields, py::handle embedding_dim,
                      py::handle n_dense, py::handle hidden_layers, const std::string& activation,
                      const std::string& loss, const std::string& optimizer,
                      py::handle learning_rate, py::handle embedding_learning_rate,
                      py::handle mlp_learning_rate, py::handle bias_learning_rate, py::handle l1,
                      py::handle l2, py::handle embedding_l2, py::handle ftrl_beta,
                      py::handle initial_accumulator, py::handle epsilon, py::handle init_std,
                      py::handle bias_init, py::handle seed, py::handle dense_factors,
                      py::handle running_bias, py::handle bias_prior, py::handle bias_window) {
            FieldConfig c;
            c.n_buckets =
                integer(n_buckets, "n_buckets", 1, std::numeric_limits<std::int64_t>::max());
            c.n_fields = static_cast<int>(integer(n_fields, "n_fields", 1, 1 << 20));
            c.embedding_dim = static_cast<int>(integer(embedding_dim, "embedding_dim", 1, 1 << 16));
            c.n_dense = static_cast<int>(integer(n_dense, "n_dense", 0, 1 << 24));
            if (!PySequence_Check(hidden_layers.ptr()) || PyUnicode_Check(hidden_layers.ptr()))
              type_error("hidden_layers: expected a sequence of ints such as (32, 16)");
            for (py::handle w : py::reinterpret_borrow<py::sequence>(hidden_layers))
              c.hidden_layers.push_back(static_cast<int>(integer(w, "hidden_layers", 1, 1 << 20)));
            c.activation = parse_field_activation(activation);
            c.loss = parse_field_loss(loss);
            c.optimizer = parse_field_optimizer(optimizer);
            c.learning_rate = config_float(learning_rate, "learning_rate");
            c.embedding_learning_rate =
                config_float(embedding_learning_rate, "embedding_learning_rate");
            c.mlp_learning_rate = config_float(mlp_learning_rate, "mlp_learning_rate");
            c.bias_learning_rate = config_float(bias_learning_rate, "bias_learning_rate");
            c.l1 = config_float(l1, "l1");
            c.l2 = config_float(l2, "l2");
            c.embedding_l2 = config_float(embedding_l2, "embedding_l2");
            c.ftrl_beta = config_float(ftrl_beta, "ftrl_beta");
            c.initial_accumulator = config_float(initial_accumulator, "initial_accumulator");
            c.epsilon = config_float(epsilon, "epsilon");
            c.init_std = config_float(init_std, "init_std");
            c.bias_init = config_float(bias_init, "bias_init");
            if (PyBool_Check(seed.ptr()) || !PyIndex_Check(seed.ptr()))
              type_error("seed: expected an int");
            py::object s = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
            const unsigned long long sv = PyLong_AsUnsignedLongLong(s.ptr());
            if (PyErr_Occurred()) {
              PyErr_Clear();
              value_error("seed: must be an int in [0, 2^64)");
            }
            c.seed = sv;
            c.dense_factors = flag(dense_factors, "dense_factors");
            c.running_bias = flag(running_bias, "running_bias");
            c.bias_prior = config_float(bias_prior, "bias_prior");
            c.bias_window = config_float(bias_window, "bias_window");
            return new FieldModel(c);
          }),
          py::arg("n_buckets"), py::arg("n_fields"), py::arg("embedding_dim") = 8,
          py::arg("n_dense") = 0, py::arg("hidden_layers") = py::tuple(),
          py::arg("activation") = "relu", py::arg("loss") = "bce", py::arg("optimizer") = "adagrad",
          py::arg("learning_rate") = 0.1, py::arg("embedding_learning_rate") = 0.2,
          py::arg("mlp_learning_rate") = 0.02, py::arg("bias_learning_rate") = 1.0,
          py::arg("l1") = 0.0, py::arg("l2") = 0.02, py::arg("embedding_l2") = 0.01,
          py::arg("ftrl_beta") = 1.0, py::arg("initial_accumulator") = 0.1,
          py::arg("epsilon") = 1e-8, py::arg("init_std") = 0.05, py::arg("bias_init") = 0.0,
          py::arg("seed") = 0, py::arg("dense_factors") = false, py::arg("running_bias") = true,
          py::arg("bias_prior") = 2.0, py::arg("bias_window") = 100000.0)
      .def(
          "train_batch",
          [](FieldModel& self, py::handle indptr, py::handle indices, py::handle values,
             py::handle fields, py::handle dense, py::handle Y, py::handle weights) {
            Batch b = as_batch(self, indptr, indices, values, fields, dense);
            const auto n = static_cast<py::ssize_t>(b.csr.rows);
            F32 y = f32(Y, "Y");
            expect_1d(y, n, "Y", "");
            F32 w;
            if (!weights.is_none()) {
              w = f32(weights, "weights");
              expect_1d(w, n, "weights", "");
            }
            py::array_t<double> losses(n);
            py::array_t<float> preds(n);
            py::array_t<std::uint8_t> status(n);
            py::array_t<std::int64_t> steps(n);
            double* l = losses.mutable_data();
            float* p = preds.mutable_data();
            std::uint8_t* s = status.mutable_data();
            std::int64_t* st = steps.mutable_data();
            {
              py::gil_scoped_release release;
              self.train_batch(b.csr, y.data(), weights.is_none() ? nullptr : w.data(), l, p, s,
                               st);
            }
            return py::make_tuple(losses, preds, status, steps);
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("fields"),
          py::arg("dense"), py::arg("Y"), py::arg("weights") = py::none(),
          "n steps in order; returns (losses f64, predictions f32 made before each update, "
          "statuses u8, steps int64: 1-based, 0 when rejected).")
      .def(
          "train_step",
          [](FieldModel& self, py::handle indices, py::handle values, py::handle fields,
             py::handle dense, py::handle y, py::handle weight) {
            Single s = as_single(self, indices, values, fields, dense);
            const float yv = step_float(y, "y"), wv = step_float(weight, "weight");
            FieldStepResult r;
            {
              ReleaseIf release(3.0 * row_work(self, static_cast<double>(s.row.nnz)) >= kKeepGil);
              r = self.train_step(s.row, yv, wv);
            }
            return py::make_tuple(r.loss, static_cast<double>(r.prediction),
                                  static_cast<int>(r.status), static_cast<std::int64_t>(r.step));
          },
          py::arg("indices"), py::arg("values"), py::arg("fields"), py::arg("dense") = py::none(),
          py::arg("y") = 0.0, py::arg("weight") = 1.0,
          "One step; returns (loss, prediction before the update, status, step).")
      .def(
          "predict_batch",
          [](const FieldModel& self, py::handle indptr, py::handle indices, py::handle values,
             py::handle fields, py::handle dense) {
            Batch b = as_batch(self, indptr, indices, values, fields, dense);
            py::array_t<float> out(static_cast<py::ssize_t>(b.csr.rows));
            float* o = out.mutable_data();
            {
              const double rows = static_cast<double>(b.csr.rows);
              const double active = static_cast<double>(b.indices.size());
              ReleaseIf release(rows * row_work(self, active / std::max(rows, 1.0)) >= kKeepGil);
              self.predict_batch(b.csr, o);
            }
            return out;
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("fields"),
          py::arg("dense") = py::none())
      .def(
          "predict",
          [](const FieldModel& self, py::handle indices, py::handle values, py::handle fields,
             py::handle dense) {
            Single s = as_single(self, indices, values, fields, dense);
            float p;
            {
              ReleaseIf release(row_work(self, static_cast<double>(s.row.nnz)) >= kKeepGil);
              p = self.predict(s.row);
            }
            return static_cast<double>(p);
          },
          py::arg("indices"), py::arg("values"), py::arg("fields"), py::arg("dense") = py::none())
      .def("_state_layout",
           [](const FieldModel& self) {
             py::list out;
             for (const auto& t : self.state_layout())
               out.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape))));
             return out;
           })
      .def("get_state",
           [](const FieldModel& self) {
             const auto& layout = self.state_layout();
             std::vector<py::array_t<float>> arrays;
             std::vector<float*> dest;
             for (const auto& t : layout) {
               arrays.emplace_back(std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
               dest.push_back(arrays.back().mutable_data());
             }
             FieldCounters c;
             {
               py::gil_scoped_release release;
               c = self.export_state(dest);
             }
             py::dict state;
             for (std::size_t i = 0; i < layout.size(); ++i)
               state[py::str(layout[i].name)] = arrays[i];
             py::array_t<std::int64_t> steps(std::vector<py::ssize_t>{});
             py::array_t<std::int64_t> rejected(std::vector<py::ssize_t>{});
             *steps.mutable_data() = static_cast<std::int64_t>(c.steps);
             *rejected.mutable_data() = static_cast<std::int64_t>(c.rejected_steps);
             state["counters.steps"] = steps;
             state["counters.rejected_steps"] = rejected;
             return state;
           })
      .def(
          "set_state",
          [](FieldModel& self, py::handle state) {
            std::vector<F32> keep;
            py::dict counters;
            auto views = views_of(state, "state", true, keep, &counters);
            const FieldCounters c{counter(counters, "counters.steps"),
                                  counter(counters, "counters.rejected_steps")};
            if (py::len(counters) != 2)
              value_error(
                  "state: unexpected counter (expected counters.steps and "
                  "counters.rejected_steps)");
            py::gil_scoped_release release;
            self.import_state(views, c);
          },
          py::arg("state"))
      .def(
          "apply_delta",
          [](FieldModel& self, py::handle delta, py::handle weight) {
            std::vector<F32> keep;
            auto views = views_of(delta, "delta", false, keep, nullptr);
            const float w = step_float(weight, "weight");
            py::gil_scoped_release release;
            self.apply_delta(views, w);
          },
          py::arg("delta"), py::arg("weight") = 1.0,
          "Adds weight * delta to every parameter tensor (names as in get_state, no optimizer.*).")
      .def("get_config",
           [](const FieldModel& self) {
             const FieldConfig& c = self.config();
             py::dict d;
             d["n_buckets"] = c.n_buckets;
             d["n_fields"] = c.n_fields;
             d["embedding_dim"] = c.embedding_dim;
             d["n_dense"] = c.n_dense;
             d["hidden_layers"] = py::tuple(py::cast(c.hidden_layers));
             d["activation"] = to_string(c.activation);
             d["loss"] = to_string(c.loss);
             d["optimizer"] = to_string(c.optimizer);
             d["learning_rate"] = static_cast<double>(c.learning_rate);
             d["embedding_learning_rate"] = static_cast<double>(c.embedding_learning_rate);
             d["mlp_learning_rate"] = static_cast<double>(c.mlp_learning_rate);
             d["bias_learning_rate"] = static_cast<double>(c.bias_learning_rate);
             d["l1"] = static_cast<double>(c.l1);
             d["l2"] = static_cast<double>(c.l2);
             d["embedding_l2"] = static_cast<double>(c.embedding_l2);
             d["ftrl_beta"] = static_cast<double>(c.ftrl_beta);
             d["initial_accumulator"] = static_cast<double>(c.initial_accumulator);
             d["epsilon"] = static_cast<double>(c.epsilon);
             d["init_std"] = static_cast<double>(c.init_std);
             d["bias_init"] = static_cast<double>(c.bias_init);
             d["seed"] = c.seed;
             d["dense_factors"] = c.dense_factors;
             d["running_bias"] = c.running_bias;
             d["bias_prior"] = static_cast<double>(c.bias_prior);
             d["bias_window"] = static_cast<double>(c.bias_window);
             return d;
           })
      .def_property_readonly("steps", [](const FieldModel& s) { return s.counters().steps; })
      .def_property_readonly("rejected_steps",
                             [](const FieldModel& s) { return s.counters().rejected_steps; })
      .def_property_readonly("version", &FieldModel::version)
      .def_property_readonly("n_parameters", &FieldModel::n_parameters)
      .def_property_readonly("n_buckets", [](const FieldModel& s) { return s.config().n_buckets; })
      .def_property_readonly("n_fields", [](const FieldModel& s) { return s.config().n_fields; })
      .def_property_readonly("n_dense", [](const FieldModel& s) { return s.config().n_dense; });
}
