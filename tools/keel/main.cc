// The `keel` command: global flags, subcommand dispatch, and exit codes (see command.h).
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "keel/common/build_info.h"
#include "keel/common/logging.h"
#include "tools/keel/command.h"

int main(int argc, char** argv) {
  namespace build_info = keel::build_info;
  namespace cli = keel::cli;
  namespace log = keel::log;
  CLI::App app{
      "keel: elastic training, optimizers, LLM inference, embedding store and GPU "
      "memory tools.",
      "keel"};
  bool show_version = false;
  app.add_flag("--version", show_version, "Print keel's version and exit");
  app.require_subcommand(0, 1);
  app.fallthrough();  // global flags may also follow the subcommand
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "Log level: trace, debug, info, warn, error, off")
      ->envname("KEEL_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"},
                            CLI::ignore_case));

  std::vector<cli::Command> commands;
  for (cli::CommandFactory factory : cli::Registry()) commands.push_back(factory(&app));

  // A command that runs a program takes everything from the program on verbatim: split it off
  // before CLI11 sees it (keel's own flags stay before it and are fully checked).
  int parse_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    for (cli::Command& command : commands) {
      if (command.trailing == nullptr || command.app->get_name() != argv[i]) continue;
      bool separator = false;
      parse_argc = cli::FindTrailingStart(*command.app, argc, argv, i + 1, &separator);
      command.trailing->assign(argv + parse_argc + (separator ? 1 : 0), argv + argc);
    }
    break;  // the first bare word is the subcommand
  }

  try {
    app.parse(parse_argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    // A bare word where a command should be is a mistyped command, not a stray argument.
    std::vector<std::string> extras = app.remaining();
    bool no_command = app.get_subcommands().empty();
    if (no_command && !extras.empty() && !extras.front().starts_with("-")) {
      std::cerr << "keel: error: unknown command '" << extras.front() << "'\n";
    } else {
      std::cerr << "keel: error: " << e.what() << "\n";
    }
    std::cerr << "Run 'keel --help' for usage.\n";
    return cli::kExitUsage;
  } catch (const CLI::ParseError& e) {
    std::cerr << "keel: error: " << e.what() << "\nRun 'keel --help' for usage.\n";
    return cli::kExitUsage;
  }
  if (show_version) {
    std::cout << "keel " << build_info::kVersion << "\n";
    return cli::kExitOk;
  }
  log::SetLevel(*log::ParseLevel(log_level));  // validated by IsMember above

  for (cli::Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  std::cerr << "keel: error: no command given\n\n" << app.help();
  return cli::kExitUsage;
}
