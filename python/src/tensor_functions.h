// Registers keel._C's tensor functions (tensor_info, tensor_sum, fill_, arange).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindTensorFunctions(pybind11::module_& m);
}  // namespace keel::python
