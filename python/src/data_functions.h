// Registers keel._C's data-sharding bindings (IndexPermutation, ShardClient, LocalShards).
#pragma once

#include <pybind11/pybind11.h>

namespace keel::python {
void BindDataFunctions(pybind11::module_& m);
}  // namespace keel::python
