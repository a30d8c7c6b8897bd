// Registers keel._C's optimizer step (keel::optim kernels on CPU tensors, in place).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindOptimFunctions(pybind11::module_& m);
}  // namespace keel::python
