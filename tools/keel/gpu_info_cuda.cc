// `keel gpu` in CUDA builds: asks the run-time-loaded driver.
#include <fmt/format.h>

#include "keel/cuda/driver.h"
#include "tools/keel/gpu_info.h"

namespace keel::cli {

StatusOr<std::string> DescribeGpus() {
  KEEL_ASSIGN_OR_RETURN(cuda::DriverInfo info, cuda::QueryDriver());
  std::string out = fmt::format("CUDA driver {}.{}, {} device(s)\n", info.version / 1000,
                                (info.version % 1000) / 10, info.devices.size());
  for (const cuda::DeviceInfo& d : info.devices) {
    out += fmt::format("  cuda:{}  {}  {:.1f} GiB  sm_{}{}\n", d.index, d.name,
                       d.total_memory_bytes / double(1 << 30), d.compute_capability_major,
                       d.compute_capability_minor);
  }
  return out;
}

}  // namespace keel::cli
