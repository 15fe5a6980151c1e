// Binding of livelearn::Network (the locked trainer) as livelearn._core.Network:
// argument conversion, the GIL released when the core says a call is costly,
// and the Python names of config and state. No rule on values lives here.
#include "livelearn/network.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convert.hpp"
#include "errors.hpp"
#include "register.hpp"

namespace livelearn::bindings {
namespace {

// Holds py::gil_scoped_release only when the call is costly (Network::costly_*).
class ReleaseGilIf {
 public:
  explicit ReleaseGilIf(bool costly) {
    if (costly) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

// One example's target: a Python number (single output) or a 1-D array of k.
struct Target {
  std::optional<F32> array;  // none for a Python number
  float scalar;
  const float* data() const { return array ? array->data() : &scalar; }
};

Target target_of(py::handle y, std::size_t k) {
  if (PyFloat_Check(y.ptr()) || (PyLong_Check(y.ptr()) && !PyBool_Check(y.ptr()))) {
    if (k != 1) value_error("y: expected shape (" + std::to_string(k) + ",), got a scalar");
    // Too large for a double (10**400) or a float: inf, rejected as non-finite input.
    return {std::nullopt, static_cast<float>(to_double(y, "y", Overflow::Infinity))};
  }
  F32 arr = as_f32(y, "y");
  if (!(arr.ndim() == 0 && k == 1)) expect_shape(arr, {static_cast<py::ssize_t>(k)}, "y");
  return {std::move(arr), 0.0f};
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

// An example's weight as a float: a Python float on the fast path, else any
// real number; beyond the float range +-inf. The core judges the value
// (Mlp::check_example: NaN, inf and negative weights are rejected).
float step_weight(py::handle w) {
  double v;
  if (PyFloat_CheckExact(w.ptr())) {
    v = PyFloat_AS_DOUBLE(w.ptr());
  } else {
    require_number(w, "weight", Accept::Reals);
    v = to_double(w, "weight", Overflow::Infinity);
  }
  if (std::fabs(v) > std::numeric_limits<float>::max() && std::isfinite(v)) {
    return v > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  }
  return static_cast<float>(v);
}

// A batch's optional weights: None (all 1) or n float32-convertible values.
std::optional<F32> batch_weights(py::handle weights, std::size_t n) {
  if (weights.is_none()) return std::nullopt;
  F32 arr = as_f32(weights, "weights");
  expect_shape(arr, {static_cast<py::ssize_t>(n)}, "weights");
  return arr;
}

const float* data_or_null(const std::optional<F32>& a) { return a ? a->data() : nullptr; }

F32 batch_inputs(py::handle X, const Network& net) {
  F32 xa = as_f32(X, "X");
  expect_shape(xa, {-1, static_cast<py::ssize_t>(net.n_inputs())}, "X");
  return xa;
}

struct Csr {
  I64 indptr;
  I32 indices;
  F32 values;
  CsrView view;
};

// The arrays' shapes and indptr's end; Network::validate_csr checks the rest.
Csr as_csr(py::handle indptr, py::handle indices, py::handle values) {
  Csr c{as_int<std::int64_t, I64>(indptr, "indptr"),
        as_int<std::int32_t, I32>(indices, "indices"),
        as_f32(values, "values"),
        {}};
  if (c.indptr.ndim() != 1 || c.indptr.size() < 1) value_error("indptr: expected shape (n + 1,)");
  if (c.indices.ndim() != 1) {
    value_error("indices: expected a 1-D array, got " + shape_text(c.indices));
  }
  if (c.values.ndim() != 1 || c.values.size() != c.indices.size()) {
    value_error("values: expected shape (" + std::to_string(c.indices.size()) +
                ",) like indices, got " + shape_text(c.values));
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

// (losses, predictions, statuses), plus each row's step number (int64, 0 for
// a rejected row) when return_steps is set.
py::tuple detailed(std::size_t n, std::size_t k, bool return_steps,
                   const std::function<void(double*, float*, StepStatus*, std::uint64_t*)>& run) {
  static_assert(sizeof(std::int64_t) == sizeof(std::uint64_t));
  py::array_t<double> losses(static_cast<py::ssize_t>(n));
  py::array_t<float> preds({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
  py::array_t<std::uint8_t> status(static_cast<py::ssize_t>(n));
  py::array_t<std::int64_t> steps(static_cast<py::ssize_t>(return_steps ? n : 0));
  double* l = losses.mutable_data();
  float* p = preds.mutable_data();
  auto* s = reinterpret_cast<StepStatus*>(status.mutable_data());
  // Step counters stay far below 2^63: the int64 array holds them unchanged.
  auto* st = return_steps ? reinterpret_cast<std::uint64_t*>(steps.mutable_data()) : nullptr;
  {
    py::gil_scoped_release release;
    run(l, p, s, st);
  }
  if (return_steps) return py::make_tuple(losses, preds, status, steps);
  return py::make_tuple(losses, preds, status);
}

// Python's constructor arguments to a core Config (Config::validate checks values).
Config make_config(py::handle layers, const std::string& activation, const std::string& output,
                   const std::string& loss, const std::string& optimizer, py::handle learning_rate,
                   py::handle momentum, py::handle weight_decay, py::handle clip_norm,
                   py::handle seed, py::handle beta1, py::handle beta2, py::handle epsilon,
                   py::handle running_bias) {
  Config c;
  if (!PySequence_Check(layers.ptr()) || PyUnicode_Check(layers.ptr())) {
    type_error("layers: expected a sequence of ints such as [4, 16, 8, 1]");
  }
  c.layers.clear();
  for (py::handle item : py::reinterpret_borrow<py::sequence>(layers)) {
    if (!is_integer(item)) type_error("layers: expected ints, got " + type_name(item));
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
  auto number = [](py::handle h, const char* name) {
    require_number(h, name, Accept::Reals);
    return static_cast<float>(to_double(h, name, Overflow::Raise));
  };
  c.learning_rate = number(learning_rate, "learning_rate");
  c.momentum = number(momentum, "momentum");
  c.weight_decay = number(weight_decay, "weight_decay");
  if (!clip_norm.is_none()) c.clip_norm = number(clip_norm, "clip_norm");
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
  if (!py::isinstance<py::bool_>(running_bias)) {
    type_error("running_bias: expected a bool, got " + type_name(running_bias));
  }
  c.running_bias = running_bias.cast<bool>();
  c.validate();
  return c;
}

// A dict's entries as the core's named tensors: each key naming one of
// `known` converted to float32 (`check` may refuse its dtype first), every
// other key passed by name only, for the core to judge (Mlp::import_state,
// Mlp::apply_delta hold the layout rules).
struct Tensors {
  std::vector<F32> keep;  // owns converted copies
  std::vector<NamedTensor> named;
  std::vector<std::string> others;
};

Tensors named_tensors(const py::dict& d, const std::vector<TensorInfo>& known,
                      const std::vector<std::string>& skip,
                      const std::function<void(const py::array&, const std::string&)>& check) {
  Tensors out;
  out.keep.reserve(known.size());
  for (const auto& t : known) {
    if (!d.contains(t.name)) continue;
    py::array a = as_numeric_array(d[py::str(t.name)], t.name.c_str());
    check(a, t.name);
    out.keep.push_back(converted<F32>(a, t.name.c_str()));
    out.named.push_back({t.name, shape_of(a), out.keep.back().data()});
  }
  for (auto item : d) {
    const bool str_key = PyUnicode_Check(item.first.ptr());
    const auto key = py::cast<std::string>(py::str(item.first));
    bool mapped = false;
    for (const auto& t : known) mapped |= str_key && key == t.name;
    for (const auto& s : skip) mapped |= str_key && key == s;
    if (!mapped) out.others.push_back(key);
  }
  return out;
}

constexpr const char* kCounterNames[] = {"counters.steps", "counters.rejected_steps"};

Counters counters_of(const py::dict& state) {
  Counters c{};
  std::uint64_t* fields[] = {&c.steps, &c.rejected_steps};
  for (int i = 0; i < 2; ++i) {
    const char* name = kCounterNames[i];
    if (!state.contains(name)) value_error(std::string("state: missing counter '") + name + "'");
    py::array a = as_numeric_array(state[name], name);
    if (a.size() != 1 || (a.dtype().kind() != 'i' && a.dtype().kind() != 'u')) {
      value_error(std::string("state: counter '") + name + "' must be one integer");
    }
    const auto v = py::cast<long long>(a.attr("item")());
    if (v < 0) value_error(std::string("state: counter '") + name + "' is negative");
    *fields[i] = static_cast<std::uint64_t>(v);
  }
  return c;
}

py::dict get_state(const Network& net) {
  const auto layout = net.state_layout();
  std::vector<py::array_t<float>> arrays;
  std::vector<float*> dest;
  for (const auto& t : layout) {
    arrays.emplace_back(std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
    dest.push_back(arrays.back().mutable_data());
  }
  Counters c;
  {
    py::gil_scoped_release release;
    c = net.export_state(dest);
  }
  py::dict state;
  for (std::size_t i = 0; i < layout.size(); ++i) state[py::str(layout[i].name)] = arrays[i];
  py::array_t<std::int64_t> steps(std::vector<py::ssize_t>{});
  py::array_t<std::int64_t> rejected(std::vector<py::ssize_t>{});
  *steps.mutable_data() = static_cast<std::int64_t>(c.steps);
  *rejected.mutable_data() = static_cast<std::int64_t>(c.rejected_steps);
  state[kCounterNames[0]] = steps;
  state[kCounterNames[1]] = rejected;
  return state;
}

void set_state(Network& net, py::handle state_obj) {
  if (!PyDict_Check(state_obj.ptr()))
    type_error("state: expected a dict of arrays (from get_state())");
  auto state = py::reinterpret_borrow<py::dict>(state_obj);
  Tensors t = named_tensors(state, net.state_layout(), {kCounterNames[0], kCounterNames[1]},
                            [](const py::array& a, const std::string& name) {
                              if (a.dtype().kind() != 'f') {
                                type_error("state: tensor '" + name + "' must be floating point");
                              }
                            });
  const Counters c = counters_of(state);
  py::gil_scoped_release release;
  net.import_state(t.named, t.others, c);
}

void apply_delta(Network& net, py::handle delta_obj, py::handle weight_obj) {
  if (!PyDict_Check(delta_obj.ptr()))
    type_error("delta: expected a dict of arrays (from delta_since())");
  auto delta = py::reinterpret_borrow<py::dict>(delta_obj);
  const float weight = to_finite_float(weight_obj, "weight");
  auto parameters = net.state_layout();
  parameters.resize(2 * (net.config().layers.size() - 1));  // weights and biases come first
  Tensors t = named_tensors(delta, parameters, {}, [](const py::array&, const std::string&) {});
  py::gil_scoped_release release;
  net.apply_delta(t.named, weight, t.others);
}

}  // namespace

void register_network(py::module_& m) {
  // Indexed by the status codes of train_batch_detailed (StepStatus values).
  m.attr("STATUS_NAMES") =
      py::make_tuple(to_string(StepStatus::Trained), to_string(StepStatus::NonFiniteInput),
                     to_string(StepStatus::NonFiniteLoss), to_string(StepStatus::NonFiniteUpdate),
                     to_string(StepStatus::TargetOutOfRange));

  using Self = Network;
  py::class_<Network>(m, "Network")
      .def(py::init([](py::handle layers, const std::string& activation, const std::string& output,
                       const std::string& loss, const std::string& optimizer,
                       py::handle learning_rate, py::handle momentum, py::handle weight_decay,
                       py::handle clip_norm, py::handle seed, py::handle beta1, py::handle beta2,
                       py::handle epsilon, py::handle share, py::handle share_timeout,
                       py::handle running_bias) {
             Config config =
                 make_config(layers, activation, output, loss, optimizer, learning_rate, momentum,
                             weight_decay, clip_norm, seed, beta1, beta2, epsilon, running_bias);
             if (share.is_none()) return new Network(config);
             if (!py::isinstance<py::str>(share)) {
               throw py::type_error(
                   "share: expected a str or None, got " +
                   std::string(py::str(py::type::handle_of(share).attr("__name__"))));
             }
             ShareOptions options;
             options.name = share.cast<std::string>();
             options.lock_timeout_s = to_finite_float(share_timeout, "share_timeout");
             if (!(options.lock_timeout_s > 0)) value_error("share_timeout: must be > 0");
             py::gil_scoped_release release;  // attaching may wait for the creator
             return new Network(config, options);
           }),
           py::arg("layers") = std::vector<int>{4, 16, 8, 1}, py::arg("activation") = "tanh",
           py::arg("output") = "sigmoid", py::arg("loss") = "bce", py::arg("optimizer") = "sgd",
           py::arg("learning_rate") = 0.05, py::arg("momentum") = 0.0,
           py::arg("weight_decay") = 0.0, py::arg("clip_norm") = py::none(), py::arg("seed") = 0,
           py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("epsilon") = 1e-8,
           py::kw_only(), py::arg("share") = py::none(), py::arg("share_timeout") = 10.0,
           py::arg("running_bias") = false)
      .def(
          "train_step",
          [](Self& self, py::handle x, py::handle y, py::handle weight) {
            F32 xa = as_f32(x, "x");
            expect_shape(xa, {static_cast<py::ssize_t>(self.n_inputs())}, "x");
            const Target t = target_of(y, self.n_outputs());
            const float w = step_weight(weight);
            StepResult r;
            {
              ReleaseGilIf release(self.costly_step());
              r = self.train_step(xa.data(), t.data(), nullptr, w);
            }
            if (r.status != StepStatus::Trained) raise_rejected(r.status, r.loss);
            return r.loss;
          },
          py::arg("x"), py::arg("y"), py::arg("weight") = 1.0)
      .def(
          "train_step_sparse",
          [](Self& self, py::handle indices, py::handle values, py::handle y, py::handle weight) {
            I32 idx = as_int<std::int32_t, I32>(indices, "indices");
            F32 val = as_f32(values, "values");
            if (idx.ndim() != 1)
              value_error("indices: expected a 1-D array, got " + shape_text(idx));
            expect_shape(val, {idx.size()}, "values");
            const Target t = target_of(y, self.n_outputs());
            const float w = step_weight(weight);
            const auto nnz = static_cast<std::size_t>(idx.size());
            StepResult r;
            {
              ReleaseGilIf release(self.costly_sparse_step(nnz));
              r = self.train_step_sparse(idx.data(), val.data(), nnz, t.data(), nullptr, w);
            }
            if (r.status != StepStatus::Trained) raise_rejected(r.status, r.loss);
            return r.loss;
          },
          py::arg("indices"), py::arg("values"), py::arg("y"), py::arg("weight") = 1.0)
      .def(
          "train_batch",
          [](Self& self, py::handle X, py::handle Y, py::handle weights) {
            F32 xa = batch_inputs(X, self);
            const auto n = static_cast<std::size_t>(xa.shape(0));
            F32 ya = batch_targets(Y, n, self.n_outputs());
            const std::optional<F32> wa = batch_weights(weights, n);
            py::array_t<double> losses(static_cast<py::ssize_t>(n));
            double* l = losses.mutable_data();
            {
              py::gil_scoped_release release;
              self.train_batch(n, xa.data(), ya.data(), l, nullptr, nullptr, nullptr,
                               data_or_null(wa));
            }
            return losses;
          },
          py::arg("X"), py::arg("Y"), py::kw_only(), py::arg("weights") = py::none())
      .def(
          "train_batch_sparse",
          [](Self& self, py::handle indptr, py::handle indices, py::handle values, py::handle Y,
             py::handle weights) {
            Csr c = as_csr(indptr, indices, values);
            F32 ya = batch_targets(Y, c.view.rows, self.n_outputs());
            const std::optional<F32> wa = batch_weights(weights, c.view.rows);
            py::array_t<double> losses(static_cast<py::ssize_t>(c.view.rows));
            double* l = losses.mutable_data();
            {
              py::gil_scoped_release release;
              self.train_batch_sparse(c.view, ya.data(), l, nullptr, nullptr, nullptr,
                                      data_or_null(wa));
            }
            return losses;
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("Y"), py::kw_only(),
          py::arg("weights") = py::none())
      .def(
          "train_batch_detailed",
          [](Self& self, py::handle X, py::handle Y, py::handle weights, bool return_steps) {
            F32 xa = batch_inputs(X, self);
            const auto n = static_cast<std::size_t>(xa.shape(0));
            F32 ya = batch_targets(Y, n, self.n_outputs());
            const std::optional<F32> wa = batch_weights(weights, n);
            return detailed(n, self.n_outputs(), return_steps,
                            [&](double* l, float* p, StepStatus* s, std::uint64_t* st) {
                              self.train_batch(n, xa.data(), ya.data(), l, p, s, st,
                                               data_or_null(wa));
                            });
          },
          py::arg("X"), py::arg("Y"), py::kw_only(), py::arg("weights") = py::none(),
          py::arg("return_steps").noconvert() = false)
      .def(
          "train_batch_sparse_detailed",
          [](Self& self, py::handle indptr, py::handle indices, py::handle values, py::handle Y,
             py::handle weights, bool return_steps) {
            Csr c = as_csr(indptr, indices, values);
            F32 ya = batch_targets(Y, c.view.rows, self.n_outputs());
            const std::optional<F32> wa = batch_weights(weights, c.view.rows);
            return detailed(c.view.rows, self.n_outputs(), return_steps,
                            [&](double* l, float* p, StepStatus* s, std::uint64_t* st) {
                              self.train_batch_sparse(c.view, ya.data(), l, p, s, st,
                                                      data_or_null(wa));
                            });
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("Y"), py::kw_only(),
          py::arg("weights") = py::none(), py::arg("return_steps").noconvert() = false)
      .def(
          "predict",
          [](const Self& self, py::handle X) {
            F32 xa = as_f32(X, "X");
            const auto n_in = static_cast<py::ssize_t>(self.n_inputs());
            const auto k = static_cast<py::ssize_t>(self.n_outputs());
            const bool single = xa.ndim() == 1;
            if (!has_shape(xa, {n_in}) && !has_shape(xa, {-1, n_in})) {
              value_error("X: expected shape " + shape_text({-1, n_in}) + " or " +
                          shape_text({n_in}) + ", got " + shape_text(xa));
            }
            const py::ssize_t n = single ? 1 : xa.shape(0);
            py::array_t<float> out = single ? py::array_t<float>(k) : py::array_t<float>({n, k});
            float* o = out.mutable_data();
            {
              ReleaseGilIf release(self.costly_predict(static_cast<std::size_t>(n)));
              self.predict(static_cast<std::size_t>(n), xa.data(), o);
            }
            return out;
          },
          py::arg("X"))
      .def(
          "predict_sparse",
          [](const Self& self, py::handle indptr, py::handle indices, py::handle values) {
            Csr c = as_csr(indptr, indices, values);
            py::array_t<float> out({static_cast<py::ssize_t>(c.view.rows),
                                    static_cast<py::ssize_t>(self.n_outputs())});
            float* o = out.mutable_data();
            {
              ReleaseGilIf release(self.costly_predict_sparse(
                  c.view.rows, static_cast<std::size_t>(c.indices.size())));
              self.predict_sparse(c.view, o);
            }
            return out;
          },
          py::arg("indptr"), py::arg("indices"), py::arg("values"))
      .def("_state_layout",
           [](const Self& self) {
             py::list out;
             for (const auto& t : self.state_layout()) {
               out.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape))));
             }
             return out;
           })
      .def("get_state", &get_state)
      .def("set_state", &set_state, py::arg("state"))
      .def("apply_delta", &apply_delta, py::arg("delta"), py::arg("weight") = 1.0)
      .def_property_readonly("version", [](const Self& s) { return s.version(); })
      .def_property_readonly("share",
                             [](const Self& s) -> py::object {
                               if (!s.share()) return py::none();
                               return py::str(s.share()->name());
                             })
      .def_property_readonly("share_info",
                             [](const Self& s) -> py::object {
                               const SharedSegment* seg = s.share();
                               if (!seg) return py::none();
                               std::size_t processes;
                               std::uint64_t repairs;
                               {
                                 py::gil_scoped_release release;  // takes the segment's lock
                                 processes = seg->processes();
                                 repairs = seg->repairs();
                               }
                               py::dict d;
                               d["name"] = seg->name();
                               d["path"] = SharedSegment::path_of(seg->name());
                               d["created"] = seg->created();
                               d["recovered"] = seg->recovered();
                               d["rebuilt"] = seg->rebuilt();
                               d["processes"] = processes;
                               d["repairs"] = repairs;
                               d["lock_owner"] = static_cast<long>(seg->lock_owner());
                               d["released"] = seg->released();
                               return d;
                             })
      .def_property_readonly("share_lock_owner",
                             [](const Self& s) -> long {
                               return s.share() ? static_cast<long>(s.share()->lock_owner()) : 0;
                             })
      .def("release_share",
           [](Self& s) {
             py::gil_scoped_release release;
             s.release_share();
           })
      .def("claim_autosave",
           [](Self& s) {
             if (!s.share()) return true;
             py::gil_scoped_release release;
             return s.share()->claim_autosave();
           })
      .def(
          "_hold_lock_for_test",
          [](Self& s, double seconds, bool poison) {
            py::gil_scoped_release release;
            s.hold_lock_for_test(seconds, poison);
          },
          py::arg("seconds"), py::arg("poison") = false)
      .def_property_readonly("steps", [](const Self& s) { return s.counters().steps; })
      .def_property_readonly("rejected_steps",
                             [](const Self& s) { return s.counters().rejected_steps; })
      .def_property_readonly("n_inputs", &Network::n_inputs)
      .def_property_readonly("n_outputs", &Network::n_outputs)
      .def_property_readonly("n_parameters", &Network::n_parameters)
      .def_property_readonly("layers", [](const Self& s) { return s.config().layers; })
      .def_property_readonly("activation",
                             [](const Self& s) { return to_string(s.config().hidden_activation); })
      .def_property_readonly("output",
                             [](const Self& s) { return to_string(s.config().output_activation); })
      .def_property_readonly("loss", [](const Self& s) { return to_string(s.config().loss); })
      .def_property_readonly("optimizer",
                             [](const Self& s) { return to_string(s.config().optimizer); })
      .def_property(
          "learning_rate", [](const Self& s) { return static_cast<double>(s.learning_rate()); },
          [](Self& s, py::handle lr) { s.set_learning_rate(to_finite_float(lr, "learning_rate")); })
      .def_property_readonly("running_bias", [](const Self& s) { return s.config().running_bias; })
      .def_property_readonly("momentum",
                             [](const Self& s) { return static_cast<double>(s.config().momentum); })
      .def_property_readonly(
          "weight_decay",
          [](const Self& s) { return static_cast<double>(s.config().weight_decay); })
      .def_property_readonly("clip_norm",
                             [](const Self& s) -> py::object {
                               const auto& clip = s.config().clip_norm;
                               if (!clip) return py::none();
                               return py::float_(static_cast<double>(*clip));
                             })
      .def_property_readonly("seed", [](const Self& s) { return s.config().seed; })
      .def_property_readonly("beta1",
                             [](const Self& s) { return static_cast<double>(s.config().beta1); })
      .def_property_readonly("beta2",
                             [](const Self& s) { return static_cast<double>(s.config().beta2); })
      .def_property_readonly("epsilon",
                             [](const Self& s) { return static_cast<double>(s.config().epsilon); });
}

}  // namespace livelearn::bindings
