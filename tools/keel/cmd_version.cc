// `keel version`: version and build facts, for bug reports.
#include <fmt/format.h>

#include "keel/common/build_info.h"
#include "tools/keel/command.h"

namespace keel::cli {
namespace {

Command MakeVersion(CLI::App* parent) {
  CLI::App* app = parent->add_subcommand("version", "Print keel's version and build facts");
  return {app, [] {
            namespace b = build_info;
            fmt::print(
                "keel {}\ncommit: {}\nbuild: {}\ncompiler: {}\nsanitizers: {}\n"
                "cuda: {}\npython: {}\n",
                b::kVersion, b::kGitCommit, b::kBuildType, b::kCompiler,
                *b::kSanitize ? b::kSanitize : "none",
                b::kWithCuda ? "built in (driver loaded at run time)" : "not built",
                b::kWithPython ? b::kPython : "not built");
            return kExitOk;
          }};
}
KEEL_REGISTER_COMMAND(MakeVersion);

}  // namespace
}  // namespace keel::cli
