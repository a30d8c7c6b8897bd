// keel::Status -> Python exception with the same message (STYLE.md rule 5).
//
//   INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION -> ValueError
//   NOT_FOUND -> FileNotFoundError      PERMISSION_DENIED, UNAUTHENTICATED -> PermissionError
//   DEADLINE_EXCEEDED -> TimeoutError   UNAVAILABLE -> ConnectionError
//   UNIMPLEMENTED -> NotImplementedError  RESOURCE_EXHAUSTED -> MemoryError
//   anything else -> RuntimeError
#pragma once

#include "keel/common/status.h"

namespace keel::python {

// Throws pybind11::error_already_set carrying the mapped exception if `status` is an error.
void ThrowIfError(const Status& status);

template <typename T>
T ValueOrThrow(StatusOr<T> s) {
  ThrowIfError(s.status());
  return std::move(s).value();
}

}  // namespace keel::python
