// Status to Python exception mapping.
#include "status_exception.h"

#include <pybind11/pybind11.h>

namespace keel::python {

void ThrowIfError(const Status& status) {
  if (status.ok()) return;
  PyObject* type = PyExc_RuntimeError;
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition:
      type = PyExc_ValueError;
      break;
    case StatusCode::kNotFound:
      type = PyExc_FileNotFoundError;
      break;
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnauthenticated:
      type = PyExc_PermissionError;
      break;
    case StatusCode::kDeadlineExceeded:
      type = PyExc_TimeoutError;
      break;
    case StatusCode::kUnavailable:
      type = PyExc_ConnectionError;
      break;
    case StatusCode::kUnimplemented:
      type = PyExc_NotImplementedError;
      break;
    case StatusCode::kResourceExhausted:
      type = PyExc_MemoryError;
      break;
    default:
      break;
  }
  PyErr_SetString(type, status.message().c_str());
  throw pybind11::error_already_set();
}

}  // namespace keel::python
