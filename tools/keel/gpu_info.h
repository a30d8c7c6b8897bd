// What `keel gpu` reports: implemented by gpu_info_cuda.cc in CUDA builds and by
// gpu_info_none.cc otherwise (CMake picks one; no #ifdef).
#pragma once

#include <string>

#include "keel/common/status.h"

namespace keel::cli {

// A human-readable list of the driver and devices, or why there are none.
StatusOr<std::string> DescribeGpus();

}  // namespace keel::cli
