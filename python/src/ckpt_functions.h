// Registers keel._C's checkpoint-file functions (write_safetensors, read_safetensors).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindCkptFunctions(pybind11::module_& m);
}  // namespace keel::python
