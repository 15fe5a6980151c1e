// Python <-> C++ conversion for the bindings: arrays to float32/int32/int64
// C-contiguous buffers (no copy when they already are), Python numbers to
// floats, shapes to text. Conversions and type/shape checks of arguments
// only; the core validates values and tensor layouts.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "livelearn/encoder.hpp"
#include "livelearn/mlp.hpp"

namespace livelearn::bindings {

namespace py = pybind11;

[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

inline std::string type_name(py::handle obj) {
  return std::string(py::str(py::type::of(obj).attr("__name__")));
}

// forcecast: ensure() converts any numeric dtype; check_() still demands the
// exact dtype and layout, so matching arrays pass through without a copy.
constexpr int kCast = py::array::c_style | py::array::forcecast;
using F32 = py::array_t<float, kCast>;
using I32 = py::array_t<std::int32_t, kCast>;
using I64 = py::array_t<std::int64_t, kCast>;

// ---- shapes ---------------------------------------------------------------

inline std::vector<std::int64_t> shape_of(const py::array& a) {
  return std::vector<std::int64_t>(a.shape(), a.shape() + a.ndim());
}

// The one shape format (livelearn::shape_text): "(4,)", "(n, 4)".
inline std::string shape_text(const py::array& a) { return livelearn::shape_text(shape_of(a)); }
inline std::string shape_text(std::initializer_list<py::ssize_t> shape) {
  return livelearn::shape_text(std::vector<std::int64_t>(shape.begin(), shape.end()));
}

// -1 in `shape` matches any length.
inline bool has_shape(const py::array& a, std::initializer_list<py::ssize_t> shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t i = 0;
  for (auto s : shape) {
    if (s >= 0 && a.shape(i) != s) return false;
    ++i;
  }
  return true;
}

// The message is only built on failure: this runs on every call.
inline void expect_shape(const py::array& a, std::initializer_list<py::ssize_t> shape,
                         const char* name) {
  if (!has_shape(a, shape)) {
    value_error(std::string(name) + ": expected shape " + shape_text(shape) + ", got " +
                shape_text(a));
  }
}

// ---- arrays ---------------------------------------------------------------

template <class Arr>
Arr converted(const py::array& arr, const char* name) {
  Arr out = Arr::ensure(arr);
  if (!out)
    type_error(std::string(name) + ": cannot convert dtype " + std::string(py::str(arr.dtype())));
  return out;
}

// Any array-like of real numbers (bools included); anything else: TypeError.
inline py::array as_numeric_array(py::handle obj, const char* name) {
  py::array arr = py::array::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    type_error(std::string(name) + ": expected an array of numbers, got " + type_name(obj));
  }
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b') {
    type_error(std::string(name) + ": expected real numbers, got dtype " +
               std::string(py::str(arr.dtype())));
  }
  return arr;
}

// float32, C-contiguous; a matching array passes through without a copy.
inline F32 as_f32(py::handle obj, const char* name) {
  if (F32::check_(obj)) return py::reinterpret_borrow<F32>(obj);
  return converted<F32>(as_numeric_array(obj, name), name);
}

// Integers only, range-checked through int64 before narrowing (no silent
// wrap-around).
template <class Int, class Arr>
Arr as_int(py::handle obj, const char* name) {
  if (Arr::check_(obj)) return py::reinterpret_borrow<Arr>(obj);
  py::array arr = as_numeric_array(obj, name);
  const char kind = arr.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    type_error(std::string(name) + ": expected integers, got dtype " +
               std::string(py::str(arr.dtype())));
  }
  auto wide = converted<I64>(arr, name);
  const std::int64_t* p = wide.data();
  for (py::ssize_t i = 0; i < wide.size(); ++i) {
    if (p[i] < std::numeric_limits<Int>::min() || p[i] > std::numeric_limits<Int>::max()) {
      value_error(std::string(name) + ": value " + std::to_string(p[i]) + " does not fit");
    }
  }
  return converted<Arr>(wide, name);
}

// ---- numbers --------------------------------------------------------------

// numpy.bool_ is not a Python bool but must not pass as a number either.
inline bool is_bool(py::handle h) {
  if (PyBool_Check(h.ptr())) return true;
  const std::string name = type_name(h);
  return name == "bool_" || name == "bool";
}

// Python ints and numpy integer scalars (anything with __index__), not bools.
inline bool is_integer(py::handle h) { return !is_bool(h) && PyIndex_Check(h.ptr()); }

// Which objects count as numbers: config arguments take Python and numpy
// reals; setters and weights anything with __float__ (not a Python bool).
enum class Accept { Reals, FloatLike };

inline bool is_number(py::handle h, Accept accept) {
  if (accept == Accept::FloatLike) {
    return !PyBool_Check(h.ptr()) && (PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr()) ||
                                      PyObject_HasAttrString(h.ptr(), "__float__"));
  }
  if (is_bool(h)) return false;
  if (PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr())) return true;
  py::object numpy = py::module_::import("numpy");
  return py::isinstance(h, numpy.attr("floating")) || py::isinstance(h, numpy.attr("integer"));
}

inline void require_number(py::handle h, const char* name, Accept accept) {
  if (!is_number(h, accept)) {
    type_error(std::string(name) + ": expected a number, got " + type_name(h));
  }
}

enum class Overflow { Raise, Infinity };

// The one number parser: a Python real (float, int, numpy scalar, anything
// with __float__ or __index__; the caller checks the type) to a double. A
// value beyond the double range, such as the int 10**400, either raises
// ValueError "<name>: out of float32 range" or becomes +-inf, as the float
// 1e400 would.
inline double to_double(py::handle obj, const char* name, Overflow overflow) {
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

// A finite float32 value (setters, weights).
inline float to_finite_float(py::handle obj, const char* name) {
  require_number(obj, name, Accept::FloatLike);
  const double v = to_double(obj, name, Overflow::Raise);
  if (!std::isfinite(v))
    value_error(std::string(name) + ": must be finite, got " + std::to_string(v));
  if (std::fabs(v) > std::numeric_limits<float>::max()) {
    value_error(std::string(name) + ": out of float32 range");
  }
  return static_cast<float>(v);
}

// ---- interactions ---------------------------------------------------------

// How read_interactions fills an InteractionBatch.
struct ReadOptions {
  bool context_items = true;      // every context entry (else only whether it is non-empty)
  bool float_text = false;        // the category text of float context values
  double utc_offset = 0.0;        // local = timestamp + utc_offset, unless `local` is given
  const double* local = nullptr;  // per-row local seconds (a timezone with DST)
};

// A Python int as decimal text (int.__repr__, so IntEnum and friends read as
// numbers); false (error cleared) if Python cannot (beyond its digit limit).
inline bool int_text(PyObject* obj, std::string& out, double* number) {
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  if (!overflow) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.assign(buf, r.ptr);
    if (number) *number = static_cast<double>(v);
    return true;
  }
  if (number) return false;  // numbers beyond int64: the reference path decides
  PyObject* text = PyLong_Type.tp_repr(obj);
  if (text == nullptr) {
    PyErr_Clear();
    return false;
  }
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(text, &n);
  if (p) out.assign(p, static_cast<std::size_t>(n));
  Py_DECREF(text);
  if (!p) PyErr_Clear();
  return p != nullptr;
}

// UTF-8 of a str (subclasses read as their str value); false (error cleared)
// for lone surrogates: the reference path raises UnicodeEncodeError.
inline bool str_text(PyObject* obj, std::string_view& out) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(obj, &n);
  if (p == nullptr) {
    PyErr_Clear();
    return false;
  }
  out = std::string_view(p, static_cast<std::size_t>(n));
  return true;
}

// An action type or user id as its token text: str, or an int's decimal.
inline bool token_text(PyObject* obj, InteractionBatch& batch, InteractionBatch::Span& span,
                       std::string& scratch) {
  if (PyUnicode_Check(obj)) {
    std::string_view text;
    if (!str_text(obj, text)) return false;
    span = batch.add(text);
    return true;
  }
  if (PyLong_Check(obj) && !PyBool_Check(obj)) {
    if (!int_text(obj, scratch, nullptr)) return false;
    span = batch.add(scratch);
    return true;
  }
  return false;
}

// A float's category text: an integral value as its int's decimal (3.0 is 3),
// else repr().
inline bool float_text(PyObject* obj, double v, std::string& out) {
  if (std::nearbyint(v) == v && std::fabs(v) < 9.2e18) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    out.assign(buf, r.ptr);
    return true;
  }
  PyObject* as_int = nullptr;
  if (std::nearbyint(v) == v) {
    as_int = PyLong_FromDouble(v);
    if (as_int == nullptr) {
      PyErr_Clear();
      return false;
    }
  }
  PyObject* text = as_int ? PyLong_Type.tp_repr(as_int) : PyFloat_Type.tp_repr(obj);
  Py_XDECREF(as_int);
  if (text == nullptr) {
    PyErr_Clear();
    return false;
  }
  std::string_view view;
  const bool ok = str_text(text, view);
  if (ok) out.assign(view.data(), view.size());
  Py_DECREF(text);
  return ok;
}

inline PyObject* interned(const char* name) {
  PyObject* s = PyUnicode_InternFromString(name);
  if (s == nullptr) throw py::error_already_set();
  return s;  // kept for the life of the process
}

// One pass over the fields of each interaction (objects with action_type,
// timestamp, user_id and context, normally InteractionData) into `batch`,
// under the GIL. False: some value is not of the types InteractionData holds
// (or a str cannot be encoded); the caller then runs the Python reference
// path, which raises the error it always raised.
inline bool read_interactions(py::handle items, InteractionBatch& batch,
                              const ReadOptions& options) {
  static PyObject* const kAction = interned("action_type");
  static PyObject* const kTimestamp = interned("timestamp");
  static PyObject* const kUser = interned("user_id");
  static PyObject* const kContext = interned("context");
  batch.clear();
  py::object seq = py::reinterpret_steal<py::object>(
      PySequence_Fast(items.ptr(), "expected a sequence of interactions"));
  if (!seq) throw py::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  PyObject** objs = PySequence_Fast_ITEMS(seq.ptr());
  batch.rows.resize(static_cast<std::size_t>(n));
  std::string scratch;
  auto attr = [](PyObject* obj, PyObject* name) {
    PyObject* v = PyObject_GetAttr(obj, name);
    if (v == nullptr) PyErr_Clear();
    return py::reinterpret_steal<py::object>(v);
  };
  for (Py_ssize_t r = 0; r < n; ++r) {
    PyObject* it = objs[r];
    InteractionBatch::Row& row = batch.rows[static_cast<std::size_t>(r)];
    py::object action = attr(it, kAction), ts = attr(it, kTimestamp), user = attr(it, kUser),
               ctx = attr(it, kContext);
    if (!action || !ts || !user || !ctx) return false;
    if (!PyUnicode_Check(action.ptr())) return false;
    if (!token_text(action.ptr(), batch, row.action, scratch)) return false;
    if (!token_text(user.ptr(), batch, row.user, scratch)) return false;
    if (!PyFloat_Check(ts.ptr())) return false;
    row.local = options.local ? options.local[r] : PyFloat_AS_DOUBLE(ts.ptr()) + options.utc_offset;
    row.ctx_begin = row.ctx_end = batch.items.size();
    if (ctx.is_none()) continue;
    if (!options.context_items) {
      const int truth = PyObject_IsTrue(ctx.ptr());
      if (truth < 0) {
        PyErr_Clear();
        return false;
      }
      row.has_context = truth != 0;
      continue;
    }
    py::object pairs = py::reinterpret_steal<py::object>(PyMapping_Items(ctx.ptr()));
    if (!pairs || !PyList_Check(pairs.ptr())) {
      PyErr_Clear();
      return false;
    }
    const Py_ssize_t m = PyList_GET_SIZE(pairs.ptr());
    row.has_context = m > 0;
    for (Py_ssize_t j = 0; j < m; ++j) {
      PyObject* pair = PyList_GET_ITEM(pairs.ptr(), j);
      if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) return false;
      PyObject* key = PyTuple_GET_ITEM(pair, 0);
      PyObject* value = PyTuple_GET_ITEM(pair, 1);
      if (!PyUnicode_Check(key)) return false;
      std::string_view key_text;
      if (!str_text(key, key_text)) return false;
      InteractionBatch::Item item;
      item.key = batch.add(key_text);
      if (value == Py_None) {
        item.kind = InteractionBatch::Kind::None;
      } else if (PyBool_Check(value)) {
        item.kind = InteractionBatch::Kind::Bool;
        item.number = value == Py_True ? 1.0 : 0.0;
        item.text = batch.add(value == Py_True ? "true" : "false");
        item.has_text = true;
      } else if (PyLong_Check(value)) {
        item.kind = InteractionBatch::Kind::Int;
        if (!int_text(value, scratch, &item.number)) return false;
        item.text = batch.add(scratch);
        item.has_text = true;
      } else if (PyFloat_Check(value)) {
        item.kind = InteractionBatch::Kind::Float;
        item.number = PyFloat_AS_DOUBLE(value);
        if (options.float_text && std::isfinite(item.number)) {
          if (!float_text(value, item.number, scratch)) return false;
          item.text = batch.add(scratch);
          item.has_text = true;
        } else if (options.float_text) {
          return false;
        }
      } else if (PyUnicode_Check(value)) {
        std::string_view text;
        if (!str_text(value, text)) return false;
        item.kind = InteractionBatch::Kind::Str;
        item.text = batch.add(text);
        item.has_text = true;
      } else {
        return false;
      }
      batch.items.push_back(item);
    }
    row.ctx_end = batch.items.size();
  }
  return true;
}

// A numpy array's data copied from a vector (the GIL held).
template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
  return out;
}

}  // namespace livelearn::bindings
