// Subcommand registry of the `keel` command.
//
// Each subcommand lives in its own cmd_*.cc file in this folder and registers itself:
//
//   Command MakeVersion(CLI::App* parent) {
//     CLI::App* app = parent->add_subcommand("version", "Print version and build facts");
//     return {app, [] { ...; return 0; }};
//   }
//   KEEL_REGISTER_COMMAND(MakeVersion);
//
// main() parses the whole command line first, then runs the selected command's `run`, so
// global flags (--log-level) take effect before any command starts. Exit codes: 0 success,
// 1 the command failed, 2 bad usage (unknown flag, bad value, missing argument).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace keel::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  CLI::App* app;             // the subcommand, owned by the parent app
  std::function<int()> run;  // called after a successful parse if this subcommand was chosen
  // For commands that end in a program to run (`keel run [flags] train.py args`): main()
  // stops flag parsing at the first word that is not one of the command's flags or their
  // values (or after a `--`) and stores that word and everything after it here, untouched.
  std::vector<std::string>* trailing = nullptr;
};

// Index of the first argv element, after `start`, that begins `app`'s trailing command
// line: a `--` (the index after it is used) or the first word that is not a flag of `app`
// or a flag's value. Returns argc when there is none. Sets *skip_separator for a `--`.
int FindTrailingStart(const CLI::App& app, int argc, char** argv, int start, bool* skip_separator);

using CommandFactory = Command (*)(CLI::App* parent);

// All registered factories, in registration order.
std::vector<CommandFactory>& Registry();
bool RegisterCommand(CommandFactory factory);

}  // namespace keel::cli

// `factory` is pasted into a name, so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define KEEL_REGISTER_COMMAND(factory)                           \
  [[maybe_unused]] static const bool keel_registered_##factory = \
      ::keel::cli::RegisterCommand(&factory)
// NOLINTEND(bugprone-macro-parentheses)
