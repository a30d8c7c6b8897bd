// `keel master`: the job master for multi-machine jobs. Exits 0 when the job succeeds, 1 when
// it fails, after every agent has read the outcome (or a short grace).
#include <fmt/format.h>

#include "keel/common/logging.h"
#include "keel/common/subprocess.h"
#include "tools/keel/command.h"
#include "tools/keel/master_runner.h"
#include "tools/keel/stop_signals.h"
#include "tools/keel/train_flags.h"

namespace keel::cli {
namespace {

Command MakeMaster(CLI::App* parent) {
  CLI::App* app = parent->add_subcommand("master", "Run the master of an elastic training job");
  auto flags = std::make_shared<JobFlags>();  // shared with the run callback below
  flags->Add(app, /*master_port_flag=*/true);
  return {app, [flags] {
            StatusOr<master::JobOptions> options = flags->ToJobOptions();
            if (!options.ok()) {
              fmt::print(stderr, "keel master: error: {}\n", options.status().message());
              return kExitUsage;
            }
            // Ctrl-C / SIGTERM fail the job, so every agent stops its workers and exits.
            std::atomic<master::MasterService*> live{nullptr};
            StopSignals signals([&live](int sig) {
              if (master::MasterService* s = live.load()) {
                s->Abort("the master received " + SignalName(sig));
              }
            });
            const bool generated = flags->token.empty();
            StatusOr<RunningMaster> m =
                StartMaster(*options, fmt::format("0.0.0.0:{}", flags->port), flags->http_port,
                            flags->token, flags->tls);
            if (!m.ok()) {
              fmt::print(stderr, "keel master: error: {}\n", m.status().message());
              return kExitFailure;
            }
            live = m->service.get();
            if (signals.received() != 0) {
              m->service->Abort("the master received " + SignalName(signals.received()));
            }
            fmt::print("keel master: job '{}' listening on port {}\n", options->job_name,
                       m->server->port());
            if (m->http) fmt::print("keel master: http on port {}\n", m->http->port());
            if (generated) fmt::print("keel master: token {}\n", m->token);
            std::fflush(stdout);
            master::Snapshot end = m->service->WaitForEnd();
            m->service->WaitForWatchersToLeave(std::chrono::seconds(5));
            live = nullptr;
            const bool ok = end.state == master::JobState::kSucceeded;
            fmt::print(ok ? stdout : stderr, "keel master: {}\n", end.message);
            return ok ? kExitOk : kExitFailure;
          }};
}
KEEL_REGISTER_COMMAND(MakeMaster);

}  // namespace
}  // namespace keel::cli
