// Subcommand registry storage.
#include "tools/keel/command.h"

namespace keel::cli {

std::vector<CommandFactory>& Registry() {
  static std::vector<CommandFactory>* factories = new std::vector<CommandFactory>();
  return *factories;
}

int FindTrailingStart(const CLI::App& app, int argc, char** argv, int start, bool* skip_separator) {
  *skip_separator = false;
  for (int i = start; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      *skip_separator = true;
      return i;
    }
    if (arg.size() < 2 || arg[0] != '-') return i;
    if (arg.find('=') != std::string::npos) continue;  // --flag=value
    const CLI::Option* opt = app.get_option_no_throw(arg);
    // Unknown flags stay on keel's side, so CLI11 reports them (exit 2).
    if (opt != nullptr && opt->get_expected_min() > 0) ++i;  // skip the flag's value
  }
  return argc;
}

bool RegisterCommand(CommandFactory factory) {
  Registry().push_back(factory);
  return true;
}

}  // namespace keel::cli
