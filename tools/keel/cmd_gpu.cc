// `keel gpu`: the CUDA driver and devices this machine has, as keel sees them.
#include <fmt/format.h>

#include "tools/keel/command.h"
#include "tools/keel/gpu_info.h"

namespace keel::cli {
namespace {

Command MakeGpu(CLI::App* parent) {
  CLI::App* app = parent->add_subcommand("gpu", "List the CUDA driver and GPUs keel can use");
  return {app, [] {
            StatusOr<std::string> text = DescribeGpus();
            if (!text.ok()) {
              fmt::print(stderr, "keel gpu: {}\n", text.status().message());
              return kExitFailure;
            }
            fmt::print("{}", *text);
            return kExitOk;
          }};
}
KEEL_REGISTER_COMMAND(MakeGpu);

}  // namespace
}  // namespace keel::cli
