// Registers keel._C.EmbeddingTable (keel::embed::Table over CPU tensors).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindEmbedFunctions(pybind11::module_& m);
}  // namespace keel::python
