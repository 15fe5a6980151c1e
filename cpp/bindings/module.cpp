// The one binding unit: numpy <-> C++ conversion, GIL release around every
// call that computes, and error translation. No arithmetic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "livelearn/trainer.hpp"

namespace py = pybind11;
using namespace livelearn;

void register_field_model(py::module_& m);  // cpp/bindings/field_model.cpp

namespace {

[[noreturn]] void type_error(const std::string& msg);
[[noreturn]] void value_error(const std::string& msg);

// forcecast: ensure() converts any numeric dtype; check_() still demands the
// exact dtype and layout, so matching arrays pass through without a copy.
constexpr int kCast = py::array::c_style | py::array::forcecast;
using F32 = py::array_t<float, kCast>;
using I32 = py::array_t<std::int32_t, kCast>;
using I64 = py::array_t<std::int64_t, kCast>;

template <class Arr>
Arr converted(const py::array& arr, const char* name) {
  Arr out = Arr::ensure(arr);
  if (!out)
    type_error(std::string(name) + ": cannot convert dtype " + std::string(py::str(arr.dtype())));
  return out;
}

// Raised (as livelearn.StepRejected, a ValueError) when train_step refuses a step.
struct StepRejected : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
  }
  return s + ")";
}

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

py::array as_numeric_array(py::handle obj, const char* name) {
  py::array arr = py::array::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    type_error(std::string(name) + ": expected an array of numbers, got " +
               std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b') {
    type_error(std::string(name) + ": expected real numbers, got dtype " +
               std::string(py::str(arr.dtype())));
  }
  return arr;
}

// float32, C-contiguous; a matching array passes through without a copy.
F32 as_f32(py::handle obj, const char* name) {
  if (F32::check_(obj)) return py::reinterpret_borrow<F32>(obj);
  return converted<F32>(as_numeric_array(obj, name), name);
}

template <class Int, class Arr>
Arr as_int(py::handle obj, const char* name) {
  if (Arr::check_(obj)) return py::reinterpret_borrow<Arr>(obj);
  py::array arr = as_numeric_array(obj, name);
  const char kind = arr.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    type_error(std::string(name) + ": expected integers, got dtype " +
               std::string(py::str(arr.dtype())));
  }
  // Range-check through int64 before narrowing (no silent wrap-around).
  auto wide = converted<I64>(arr, name);
  const std::int64_t* p = wide.data();
  for (py::ssize_t i = 0; i < wide.size(); ++i) {
    if (p[i] < std::numeric_limits<Int>::min() || p[i] > std::numeric_limits<Int>::max()) {
      value_error(std::string(name) + ": value " + std::to_string(p[i]) + " does not fit");
    }
  }
  return converted<Arr>(wide, name);
}

// "(4,)", "(n, 4)": -1 stands for any length.
std::string shape_text(std::initializer_list<py::ssize_t> shape) {
  std::string s = "(";
  std::size_t i = 0;
  for (auto d : shape) {
    s += d < 0 ? std::string("n") : std::to_string(d);
    if (shape.size() == 1 || ++i < shape.size()) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

bool has_shape(const py::array& a, std::initializer_list<py::ssize_t> shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t i = 0;
  for (auto s : shape) {
    if (s >= 0 && a.shape(i) != s) return false;
    ++i;
  }
  return true;
}

// The message is only built on failure: this runs on every call.
void expect_shape(const py::array& a, std::initializer_list<py::ssize_t> shape, const char* name) {
  if (!has_shape(a, shape)) {
    value_error(std::string(name) + ": expected shape " + shape_text(shape) + ", got " +
                shape_str(a));
  }
}

// numpy.bool_ is not a Python bool but must not pass as a number either.
bool is_bool(py::handle h) {
  return PyBool_Check(h.ptr()) ||
         std::string(py::str(py::type::of(h).attr("__name__"))) == "bool_" ||
         std::string(py::str(py::type::of(h).attr("__name__"))) == "bool";
}

// Python ints and numpy integer scalars (anything with __index__), not bools.
bool is_integer(py::handle h) { return !is_bool(h) && PyIndex_Check(h.ptr()); }

// numpy floating and integer scalars.
bool is_numpy_real(py::handle h) {
  if (is_bool(h)) return false;
  py::object numpy = py::module_::import("numpy");
  return py::isinstance(h, numpy.attr("floating")) || py::isinstance(h, numpy.attr("integer"));
}

enum class Overflow { Raise, Infinity };

// The one conversion of a Python real (float, int, numpy scalar, anything with
// __float__ or __index__; the caller checks the type) to a double. A value
// beyond the double range, such as the int 10**400, either raises ValueError
// "<name>: out of float32 range" or becomes +-inf, as the float 1e400 would.
double to_double(py::handle obj, const char* name, Overflow overflow) {
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) throw py::error_already_set();
    PyErr_Clear();
    if (overflow == Overflow::Raise) value_error(std::string(name) + ": out of float32 range");
    py::int_ zero(0);
    const int negative = PyObject_RichCompareBool(obj.ptr(), zero.ptr(), Py_LT);
    if (negative < 0) throw py::error_already_set();
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  }
  return v;
}

float to_float(py::handle obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !(PyFloat_Check(obj.ptr()) || PyLong_Check(obj.ptr()) ||
                                   PyObject_HasAttrString(obj.ptr(), "__float__"))) {
    type_error(std::string(name) + ": expected a number, got " +
               std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  const double v = to_double(obj, name, Overflow::Raise);
  if (!std::isfinite(v))
    value_error(std::string(name) + ": must be finite, got " + std::to_string(v));
  if (std::fabs(v) > std::numeric_limits<float>::max())
    value_error(std::string(name) + ": out of float32 range");
  return static_cast<float>(v);
}

struct Labels {
  F32 owner;
  const float* data;
  float scalar;
};

// One example's target: a Python number (single output) or a 1-D array of k.
Labels target_of(py::handle y, std::size_t k) {
  if (PyFloat_Check(y.ptr()) || (PyLong_Check(y.ptr()) && !PyBool_Check(y.ptr()))) {
    if (k != 1) value_error("y: expected shape (" + std::to_string(k) + ",), got a scalar");
    // Too large for a double (10**400) or a float: inf, rejected as non-finite input.
    return {F32(), nullptr, static_cast<float>(to_double(y, "y", Overflow::Infinity))};
  }
  F32 arr = as_f32(y, "y");
  if (arr.ndim() == 0 && k == 1) return {arr, arr.data(), 0.0f};
  expect_shape(arr, {static_cast<py::ssize_t>(k)}, "y");
  return {arr, arr.data(), 0.0f};
}

F32 batch_targets(py::handle Y, std::size_t n, std::size_t k) {
  F32 arr = as_f32(Y, "Y");
  const auto N = static_cast<py::ssize_t>(n), K = static_cast<py::ssize_t>(k);
  if (k == 1 && arr.ndim() == 1) {
    expect_shape(arr, {N}, "Y");
  } else {
    expect_shape(arr, {N, K}, "Y");
  }
  return arr;
}

struct Csr {
  I64 indptr;
  I32 indices;
  F32 values;
  CsrView view;
};

Csr as_csr(py::handle indptr, py::handle indices, py::handle values) {
  Csr c{as_int<std::int64_t, I64>(indptr, "indptr"),
        as_int<std::int32_t, I32>(indices, "indices"),
        as_f32(values, "values"),
        {}};
  if (c.indptr.ndim() != 1 || c.indptr.size() < 1) value_error("indptr: expected shape (n + 1,)");
  if (c.indices.ndim() != 1)
    value_error("indices: expected a 1-D array, got " + shape_str(c.indices));
  if (c.values.ndim() != 1 || c.values.size() != c.indices.size()) {
    value_error("values: expected shape (" + std::to_string(c.indices.size()) +
                ",) like indices, got " + shape_str(c.values));
  }
  const std::int64_t last = c.indptr.data()[c.indptr.size() - 1];
  if (last != c.indices.size()) {
    value_error("indptr: last entry must equal len(indices) = " + std::to_string(c.indices.size()) +
                ", got " + std::to_string(last));
  }
  c.view = {static_cast<std::size_t>(c.indptr.size() - 1), c.indptr.data(), c.indices.data(),
            c.values.data()};
  return c;
}

// Releasing the GIL costs ~50 ns, and taking it back waits for whichever
// thread took it meanwhile: behind a busy Engine dispatcher or producer that
// is a stretch of their Python work (p99 of a one-row predict while an engine
// trains: 130-300 us with the release, 5-8 us without). So the one-example and
// predict calls keep the GIL when their arithmetic, plus at most one training
// step they may wait for on the network's lock, is under this many
// multiply-adds (~8 us); longer calls, and every batch training call, release it.
constexpr double kKeepGilBelow = 32768.0;

// Holds py::gil_scoped_release only when the call is worth releasing for.
class ReleaseGilIf {
 public:
  explicit ReleaseGilIf(bool costly) {
    if (costly) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

class PyNetwork {
 public:
  PyNetwork(const Config& cfg, bool clip_set) : trainer_(cfg), clip_set_(clip_set) {
    const auto& layers = trainer_.config().layers;
    first_width_ = static_cast<double>(layers[1]);
    const double first_weights = static_cast<double>(layers[0]) * first_width_;
    row_work_ = static_cast<double>(trainer_.n_parameters());
    sparse_row_base_ = row_work_ - first_weights;
  }

  // Multiply-adds of one training step (forward, backward, update: ~3 passes
  // over the weights) plus one more the call may wait for, and of a forward
  // pass per row; `active` is the first layer's active inputs per row when sparse.
  double step_work(double row) const { return 6.0 * row; }
  double dense_row() const { return row_work_; }
  double sparse_row(double active) const { return sparse_row_base_ + active * first_width_; }
  bool costly_step(double row) const { return step_work(row) >= kKeepGilBelow; }
  bool costly_predict(double rows, double row) const {
    return rows * row + 3.0 * row >= kKeepGilBelow;
  }

  Trainer& trainer() { return trainer_; }
  const Trainer& trainer() const { return trainer_; }
  std::size_t n_in() const { return trainer_.n_inputs(); }
  std::size_t n_out() const { return trainer_.n_outputs(); }
  bool clip_set() const { return clip_set_; }

 private:
  Trainer trainer_;
  bool clip_set_;
  double first_width_, row_work_, sparse_row_base_;
};

[[noreturn]] void raise_rejected(StepStatus s, double loss) {
  char text[32];
  std::snprintf(text, sizeof text, "%.7g", loss);  // 1e+77, not 78 digits
  throw StepRejected("step rejected: " + std::string(to_string(s)) + " (loss " + text +
                     "); the model is unchanged");
}

py::tuple detailed(std::size_t n, std::size_t k,
                   const std::function<void(double*, float*, StepStatus*)>& run) {
  py::array_t<double> losses(static_cast<py::ssize_t>(n));
  py::array_t<float> preds({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
  py::array_t<std::uint8_t> status(static_cast<py::ssize_t>(n));
  double* l = losses.mutable_data();
  float* p = preds.mutable_data();
  auto* s = reinterpret_cast<StepStatus*>(status.mutable_data());
  {
    py::gil_scoped_release release;
    run(l, p, s);
  }
  return py::make_tuple(losses, preds, status);
}

Config make_config(py::handle layers, const std::string& activation, const std::string& output,
                   const std::string& loss, const std::string& optimizer, py::handle learning_rate,
                   py::handle momentum, py::handle weight_decay, py::handle clip_norm,
                   py::handle seed, py::handle beta1, py::handle beta2, py::handle epsilon) {
  Config c;
  if (!PySequence_Check(layers.ptr()) || PyUnicode_Check(layers.ptr())) {
    type_error("layers: expected a sequence of ints such as [4, 16, 8, 1]");
  }
  c.layers.clear();
  for (py::handle item : py::reinterpret_borrow<py::sequence>(layers)) {
    if (!is_integer(item)) {
      type_error("layers: expected ints, got " +
                 std::string(py::str(py::type::of(item).attr("__name__"))));
    }
    const long long v =
        py::cast<long long>(py::reinterpret_steal<py::object>(PyNumber_Index(item.ptr())));
    if (PyErr_Occurred() || v < 0 || v > std::numeric_limits<int>::max()) {
      PyErr_Clear();
      value_error("layers: every layer needs between 1 and 2^31 - 1 units");
    }
    c.layers.push_back(static_cast<int>(v));
  }
  c.hidden_activation = parse_activation(activation, "activation");
  c.output_activation = parse_activation(output, "output");
  c.loss = parse_loss(loss);
  c.optimizer = parse_optimizer(optimizer);
  auto number = [](py::handle h, const char* name) -> float {
    if (is_bool(h) || !(PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr()) || is_numpy_real(h))) {
      type_error(std::string(name) + ": expected a number, got " +
                 std::string(py::str(py::type::of(h).attr("__name__"))));
    }
    return static_cast<float>(to_double(h, name, Overflow::Raise));
  };
  c.learning_rate = number(learning_rate, "learning_rate");
  c.momentum = number(momentum, "momentum");
  c.weight_decay = number(weight_decay, "weight_decay");
  if (!clip_norm.is_none()) {
    c.clip_norm = number(clip_norm, "clip_norm");
    if (!(c.clip_norm > 0.0f))
      value_error("clip_norm: must be finite and > 0 (or None to disable)");
  }
  c.beta1 = number(beta1, "beta1");
  c.beta2 = number(beta2, "beta2");
  c.epsilon = number(epsilon, "epsilon");
  if (!is_integer(seed)) type_error("seed: expected an int");
  py::object seed_int = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
  const unsigned long long s = PyLong_AsUnsignedLongLong(seed_int.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    value_error("seed: must be an int in [0, 2^64)");
  }
  c.seed = s;
  c.validate();
  return c;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "livelearn native core: a thread-safe multi-layer perceptron (see livelearn.Network).";
  py::register_exception<StepRejected>(m, "StepRejected", PyExc_ValueError);
  // Indexed by the status codes of train_batch_detailed (StepStatus values).
  m.attr("STATUS_NAMES") =
      py::make_tuple(to_string(StepStatus::Trained), to_string(StepStatus::NonFiniteInput),
                     to_string(StepStatus::NonFiniteLoss), to_string(StepStatus::NonFiniteUpdate),
                     to_string(StepStatus::TargetOutOfRange));
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(LIVELEARN_NO_DISPATCH)
  m.attr("RUNTIME_DISPATCH") = true;
#else
  m.attr("RUNTIME_DISPATCH") = false;
#endif

  register_field_model(m);

  py::class_<PyNetwork>(m, "Network")
      .def(py::init([](py::handle layers, const std::string& activation, const std::string& output,
                       const std::string& loss, const std::string& optimizer,
                       py::handle learning_rate, py::handle momentum, py::handle weight_decay,
                       py::handle clip_norm, py::handle seed, py::handle beta1, py::handle beta2,
                       py::handle epsilon) {
             Config c = make_config(layers, activation, output, loss, optimizer, learning_rate,
                                    momentum, weight_decay, clip_norm, seed, beta1, beta2, epsilon);
             return new PyNetwork(c, !clip_norm.is_none());
           }),
           py::arg("layers") = std::vector<int>{4, 16, 8, 1}, py::arg("activation") = "tanh",
           py::arg("output") = "sigmoid", py::arg("loss") = "bce", py::arg("optimizer") = "sgd",
           py::arg("learning_rate") = 0.05, py::arg("momentum") = 0.0,
           py::arg("weight_decay") = 0.0, py::arg("clip_norm") = py::none(), py::arg("seed") = 0,
           py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("epsilon") = 1e-8)
      .def(
          "train_step",
          [](PyNetwork& self, py::handle x, py::handle y) {
            F32 xa = as_f32(x, "x");
            const auto n_in = static_cast<py::ssize_t>(self.n_in());
            expect_shape(xa, {n_in}, "x");
            Labels t = target_of(y, self.n_out());
            const float* yp = t.data ? t.data : &t.scalar;
            StepResult r;
            {
              ReleaseGilIf release(self.costly_step(self.dense_row()));
              r = self.trainer().train_step(xa.data(), yp, nullptr);
            }
            if (r.status != StepStatus::Trained) raise_rejected(r.status, r.loss);
            return r.loss;
          },
          py::arg("x"), py::arg("y"))
      .def(
          "train_step_sparse",
          [](PyNetwork& self, py::handle indices, py::handle values, py::handle y) {
            I32 idx = as_int<std::int32_t, I32>(indices, "indices");
            F32 val = as_f32(values, "values");
            if (idx.ndim() != 1)
              value_error("indices: expected a 1-D array, got " + shape_str(idx));
            expect_shape(val, {idx.size()}, "values");
            Labels t = target_of(y, self.n_out());
            const float* yp = t.data ? t.data : &t.scalar;
            StepResult r;
            {
              ReleaseGilIf release(
                  self.costly_step(self.sparse_row(static_cast<double>(idx.size()))));
              r = self.trainer().train_step_sparse(
                  idx.data(), val.data(), static_cast<std::size_t>(idx.size()), yp, nullptr);
            }
            if (r.status != StepStatus::Trained) raise_rejected(r.status, r.loss);
            return r.loss;
          },
          py::arg("indices"), py::arg("values"), py::arg("y"))
      .def(
          "train_batch",
          [](PyNetwork& self, py::handle X, py::handle Y) {
            F32 xa = as_f32(X, "X");
            const auto n_in = static_cast<py::ssize_t>(self.n_in());
            expect_shape(xa, {-1, n_in}, "X");
            const auto n = static_cast<std::size_t>(xa.shape(0));
            F32 ya = batch_targets(Y, n, self.n_out());
            py::array_t<double> losses(static_cast<py::ssize_t>(n));
            double* l = losses.mutable_data();
            {
              py::gil_scoped_release release;
              self.trainer().train_batch(n, xa.data(), ya.data(), l, nullptr, nullptr);
            }
            return losses;
          },
          py::arg("X"), py::arg("Y"))
      .def(
          "train_batch_sparse",
          [](PyNetwork& self, py::handle indptr, py::handle indices, py::handle values,
             py::handle Y) {
            Csr c = as_csr(indptr, indices, values);
            F32 ya = batch_targets(Y, c.view.rows, self.n_out());
            py::array_t<double> losses(static_cast<py::ssize_t>(c.view.rows));
            double* l = losses.mutable_data();
            {
              py::gil_scoped_release release;
              self.trainer().train_batch_sparse(c.view, ya.data(), l, nullptr, nullptr);
            }
            return losses;
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("Y"))
      .def(
          "train_batch_detailed",
          [](PyNetwork& self, py::handle X, py::handle Y) {
            F32 xa = as_f32(X, "X");
            const auto n_in = static_cast<py::ssize_t>(self.n_in());
            expect_shape(xa, {-1, n_in}, "X");
            const auto n = static_cast<std::size_t>(xa.shape(0));
            F32 ya = batch_targets(Y, n, self.n_out());
            return detailed(n, self.n_out(), [&](double* l, float* p, StepStatus* s) {
              self.trainer().train_batch(n, xa.data(), ya.data(), l, p, s);
            });
          },
          py::arg("X"), py::arg("Y"))
      .def(
          "train_batch_sparse_detailed",
          [](PyNetwork& self, py::handle indptr, py::handle indices, py::handle values,
             py::handle Y) {
            Csr c = as_csr(indptr, indices, values);
            F32 ya = batch_targets(Y, c.view.rows, self.n_out());
            return detailed(c.view.rows, self.n_out(), [&](double* l, float* p, StepStatus* s) {
              self.trainer().train_batch_sparse(c.view, ya.data(), l, p, s);
            });
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("Y"))
      .def(
          "predict",
          [](const PyNetwork& self, py::handle X) {
            F32 xa = as_f32(X, "X");
            const auto n_in = static_cast<py::ssize_t>(self.n_in());
            const auto k = static_cast<py::ssize_t>(self.n_out());
            const bool single = xa.ndim() == 1;
            if (!has_shape(xa, {n_in}) && !has_shape(xa, {-1, n_in})) {
              value_error("X: expected shape " + shape_text({-1, n_in}) + " or " +
                          shape_text({n_in}) + ", got " + shape_str(xa));
            }
            const py::ssize_t n = single ? 1 : xa.shape(0);
            py::array_t<float> out = single ? py::array_t<float>(k) : py::array_t<float>({n, k});
            float* o = out.mutable_data();
            {
              ReleaseGilIf release(self.costly_predict(static_cast<double>(n), self.dense_row()));
              self.trainer().predict(static_cast<std::size_t>(n), xa.data(), o);
            }
            return out;
          },
          py::arg("X"))
      .def(
          "predict_sparse",
          [](const PyNetwork& self, py::handle indptr, py::handle indices, py::handle values) {
            Csr c = as_csr(indptr, indices, values);
            py::array_t<float> out(
                {static_cast<py::ssize_t>(c.view.rows), static_cast<py::ssize_t>(self.n_out())});
            float* o = out.mutable_data();
            {
              const double rows = static_cast<double>(c.view.rows);
              const double active = static_cast<double>(c.indices.size()) / std::max(rows, 1.0);
              ReleaseGilIf release(self.costly_predict(rows, self.sparse_row(active)));
              self.trainer().predict_sparse(c.view, o);
            }
            return out;
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"))
      .def("_state_layout",
           [](const PyNetwork& self) {
             py::list out;
             for (const auto& t : self.trainer().state_layout()) {
               out.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape))));
             }
             return out;
           })
      .def("get_state",
           [](const PyNetwork& self) {
             const auto layout = self.trainer().state_layout();
             std::vector<py::array_t<float>> arrays;
             std::vector<float*> dest;
             for (const auto& t : layout) {
               arrays.emplace_back(std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
               dest.push_back(arrays.back().mutable_data());
             }
             Counters c;
             {
               py::gil_scoped_release release;
               c = self.trainer().export_state(dest);
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
          [](PyNetwork& self, py::handle state_obj) {
            if (!PyDict_Check(state_obj.ptr()))
              type_error("state: expected a dict of arrays (from get_state())");
            auto state = py::reinterpret_borrow<py::dict>(state_obj);
            const auto layout = self.trainer().state_layout();
            std::vector<F32> keep;
            std::vector<const float*> src;
            for (const auto& t : layout) {
              if (!state.contains(t.name)) value_error("state: missing tensor '" + t.name + "'");
              py::handle v = state[py::str(t.name)];
              py::array a = as_numeric_array(v, t.name.c_str());
              if (a.dtype().kind() != 'f')
                type_error("state: tensor '" + t.name + "' must be floating point");
              std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
              if (shape != std::vector<py::ssize_t>(t.shape.begin(), t.shape.end())) {
                std::string expected = "(";
                for (std::size_t i = 0; i < t.shape.size(); ++i)
                  expected += (i ? ", " : "") + std::to_string(t.shape[i]);
                value_error("state: tensor '" + t.name + "' has shape " + shape_str(a) +
                            ", expected " + expected + (t.shape.size() == 1 ? ",)" : ")"));
              }
              keep.push_back(converted<F32>(a, t.name.c_str()));
              src.push_back(keep.back().data());
            }
            Counters c{};
            const char* names[] = {"counters.steps", "counters.rejected_steps"};
            std::uint64_t* fields[] = {&c.steps, &c.rejected_steps};
            for (int i = 0; i < 2; ++i) {
              if (!state.contains(names[i]))
                value_error(std::string("state: missing counter '") + names[i] + "'");
              py::array a = as_numeric_array(state[names[i]], names[i]);
              if (a.size() != 1 || (a.dtype().kind() != 'i' && a.dtype().kind() != 'u')) {
                value_error(std::string("state: counter '") + names[i] + "' must be one integer");
              }
              const auto v = py::cast<long long>(a.attr("item")());
              if (v < 0) value_error(std::string("state: counter '") + names[i] + "' is negative");
              *fields[i] = static_cast<std::uint64_t>(v);
            }
            std::size_t expected_keys = layout.size() + 2;
            if (py::len(state) != expected_keys) {
              for (auto item : state) {
                const auto key = py::cast<std::string>(py::str(item.first));
                bool known = key == names[0] || key == names[1];
                for (const auto& t : layout) known |= key == t.name;
                if (!known)
                  value_error("state: unexpected tensor '" + key +
                              "' for this network's configuration");
              }
            }
            py::gil_scoped_release release;
            self.trainer().import_state(src, c);
          },
          py::arg("state"))
      .def(
          "apply_delta",
          [](PyNetwork& self, py::handle delta_obj, py::handle weight_obj) {
            if (!PyDict_Check(delta_obj.ptr())) {
              type_error("delta: expected a dict of arrays (from delta_since())");
            }
            auto delta = py::reinterpret_borrow<py::dict>(delta_obj);
            const float weight = to_float(weight_obj, "weight");
            const auto layout = self.trainer().state_layout();
            std::vector<F32> keep;
            std::vector<const float*> src;
            std::size_t expected = 0;
            for (const auto& t : layout) {
              if (t.name.rfind("optimizer.", 0) == 0) break;  // parameters come first
              ++expected;
              if (!delta.contains(t.name)) value_error("delta: missing tensor '" + t.name + "'");
              py::array a = as_numeric_array(delta[py::str(t.name)], t.name.c_str());
              std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
              if (shape != std::vector<py::ssize_t>(t.shape.begin(), t.shape.end())) {
                value_error("delta: tensor '" + t.name + "' has shape " + shape_str(a) +
                            ", expected the parameter's shape");
              }
              keep.push_back(converted<F32>(a, t.name.c_str()));
              src.push_back(keep.back().data());
            }
            if (py::len(delta) != expected) {
              value_error("delta: expected exactly the " + std::to_string(expected) +
                          " parameter tensors (layers.*.weight and layers.*.bias)");
            }
            py::gil_scoped_release release;
            self.trainer().apply_delta(src, weight);
          },
          py::arg("delta"), py::arg("weight") = 1.0)
      .def_property_readonly("version", [](const PyNetwork& s) { return s.trainer().version(); })
      .def_property_readonly("steps",
                             [](const PyNetwork& s) { return s.trainer().counters().steps; })
      .def_property_readonly(
          "rejected_steps",
          [](const PyNetwork& s) { return s.trainer().counters().rejected_steps; })
      .def_property_readonly("n_inputs", &PyNetwork::n_in)
      .def_property_readonly("n_outputs", &PyNetwork::n_out)
      .def_property_readonly("n_parameters",
                             [](const PyNetwork& s) { return s.trainer().n_parameters(); })
      .def_property_readonly("layers",
                             [](const PyNetwork& s) { return s.trainer().config().layers; })
      .def_property_readonly(
          "activation",
          [](const PyNetwork& s) { return to_string(s.trainer().config().hidden_activation); })
      .def_property_readonly(
          "output",
          [](const PyNetwork& s) { return to_string(s.trainer().config().output_activation); })
      .def_property_readonly(
          "loss", [](const PyNetwork& s) { return to_string(s.trainer().config().loss); })
      .def_property_readonly(
          "optimizer", [](const PyNetwork& s) { return to_string(s.trainer().config().optimizer); })
      .def_property(
          "learning_rate",
          [](const PyNetwork& s) { return static_cast<double>(s.trainer().learning_rate()); },
          [](PyNetwork& s, py::handle lr) {
            s.trainer().set_learning_rate(to_float(lr, "learning_rate"));
          })
      .def_property_readonly(
          "momentum",
          [](const PyNetwork& s) { return static_cast<double>(s.trainer().config().momentum); })
      .def_property_readonly(
          "weight_decay",
          [](const PyNetwork& s) { return static_cast<double>(s.trainer().config().weight_decay); })
      .def_property_readonly(
          "clip_norm",
          [](const PyNetwork& s) -> py::object {
            if (!s.clip_set()) return py::none();
            return py::float_(static_cast<double>(s.trainer().config().clip_norm));
          })
      .def_property_readonly("seed", [](const PyNetwork& s) { return s.trainer().config().seed; })
      .def_property_readonly(
          "beta1",
          [](const PyNetwork& s) { return static_cast<double>(s.trainer().config().beta1); })
      .def_property_readonly(
          "beta2",
          [](const PyNetwork& s) { return static_cast<double>(s.trainer().config().beta2); })
      .def_property_readonly("epsilon", [](const PyNetwork& s) {
        return static_cast<double>(s.trainer().config().epsilon);
      });
}
