// Python <-> C++ conversion for the bindings: arrays to float32/int32/int64
// C-contiguous buffers (no copy when they already are), Python numbers to
// floats, shapes to text. Conversions and type/shape checks of arguments
// only; the core validates values and tensor layouts.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

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

}  // namespace livelearn::bindings
