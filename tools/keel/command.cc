// Subcommand registry storage.
#include "tools/keel/command.h"

namespace keel::cli {

std::vector<CommandFactory>& Registry() {
  static std::vector<CommandFactory>* factories = new std::vector<CommandFactory>();
  return *factories;
}

bool RegisterCommand(CommandFactory factory) {
  Registry().push_back(factory);
  return true;
}

}  // namespace keel::cli
