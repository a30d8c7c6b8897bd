// `keel gpu` in builds without CUDA.
#include "tools/keel/gpu_info.h"

namespace keel::cli {

StatusOr<std::string> DescribeGpus() {
  return UnavailableError(
      "this keel was built without CUDA support (no CUDA toolkit found at build time; "
      "rebuild with -DKEEL_WITH_CUDA=ON)");
}

}  // namespace keel::cli
