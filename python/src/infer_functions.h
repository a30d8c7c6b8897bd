// Registers keel._C's inference bindings (GGUF writing, LLaMA sessions).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindInferFunctions(pybind11::module_& m);
}  // namespace keel::python
