// `keel agent` and `keel run`: run this node's workers for a job. `keel run` without --master
// also starts the job's master in-process (the single-machine default, like torchrun
// --standalone).
#include <fmt/format.h>

#include "keel/common/logging.h"
#include "tools/keel/command.h"
#include "tools/keel/master_runner.h"
#include "tools/keel/stop_signals.h"
#include "tools/keel/train_flags.h"

namespace keel::cli {
namespace {

struct TrainFlags {
  JobFlags job;
  AgentFlags agent;
  std::vector<std::string> command;  // the program and its arguments (see Command::trailing)
};

int RunTraining(const char* name, const TrainFlags& f, bool embedded_allowed) {
  std::vector<std::string> rest = f.command;
  const bool embedded = f.agent.master.empty();
  if (embedded && !embedded_allowed) {
    fmt::print(stderr, "keel {}: error: --master HOST:PORT is required\n", name);
    return kExitUsage;
  }
  // `keel agent -- python3 train.py` names its program; `keel run train.py` runs a script
  // with keel's Python. A bare `*.py` after `keel agent` still gets the interpreter.
  AgentFlags agent_flags = f.agent;
  if (!embedded_allowed) {
    agent_flags.no_python =
        agent_flags.no_python || (!rest.empty() && !rest.front().ends_with(".py"));
  }
  StatusOr<agent::AgentOptions> options =
      agent_flags.ToAgentOptions(std::move(rest), f.job.token, f.job.tls);
  if (!options.ok()) {
    fmt::print(stderr, "keel {}: error: {}\n", name, options.status().message());
    return kExitUsage;
  }
  // Ctrl-C / SIGTERM: stop the workers gracefully and leave, instead of dying on the spot.
  StopSignals signals;
  options->stop_signal = &signals.received();
  if (!embedded) return agent::RunAgent(*options);

  StatusOr<master::JobOptions> job = f.job.ToJobOptions();
  if (!job.ok()) {
    fmt::print(stderr, "keel {}: error: {}\n", name, job.status().message());
    return kExitUsage;
  }
  StatusOr<RunningMaster> m = StartMaster(*job, fmt::format("0.0.0.0:{}", f.job.port),
                                          f.job.http_port, f.job.token, f.job.tls);
  if (!m.ok()) {
    fmt::print(stderr, "keel {}: error: {}\n", name, m.status().message());
    return kExitFailure;
  }
  options->master = fmt::format("127.0.0.1:{}", m->server->port());
  options->token = m->token;
  if (!f.job.tls.enabled()) options->tls = {};
  if (m->http) KEEL_LOG(Info, "status on http://127.0.0.1:{}/api/job", m->http->port());
  if (job->max_nodes > 1) {
    KEEL_LOG(Info,
             "master for job '{}' on port {}; add nodes with: keel agent --master "
             "<this host>:{} --token {} ...",
             job->job_name, m->server->port(), m->server->port(), m->token);
  }
  int code = agent::RunAgent(*options);
  m->service->WaitForWatchersToLeave(std::chrono::seconds(5));
  return code;
}

Command MakeTrainCommand(CLI::App* parent, const char* name, const char* help,
                         bool embedded_allowed) {
  CLI::App* app = parent->add_subcommand(name, help);
  auto flags = std::make_shared<TrainFlags>();  // shared with the run callback below
  app->add_option("--master", flags->agent.master,
                  embedded_allowed ? "Join the job master at HOST:PORT (default: start one here)"
                                   : "The job master, HOST:PORT");
  flags->agent.Add(app);
  flags->job.Add(app, /*master_port_flag=*/embedded_allowed);
  return {app,
          [name, flags, embedded_allowed] { return RunTraining(name, *flags, embedded_allowed); },
          &flags->command};
}

Command MakeRun(CLI::App* parent) {
  return MakeTrainCommand(parent, "run",
                          "Run a training script elastically (like torchrun): keel run "
                          "[flags] train.py [args]",
                          /*embedded_allowed=*/true);
}
KEEL_REGISTER_COMMAND(MakeRun);

Command MakeAgent(CLI::App* parent) {
  return MakeTrainCommand(parent, "agent",
                          "Run this node's workers for a job: keel agent --master HOST:PORT "
                          "[flags] -- python3 train.py [args]",
                          /*embedded_allowed=*/false);
}
KEEL_REGISTER_COMMAND(MakeAgent);

}  // namespace
}  // namespace keel::cli
