// WorkerGroup: the training processes of one node for one round — spawned with their
// environment, their output streamed with a rank prefix (and kept per rank in --log-dir),
// watched for exit, and stopped as a group.
//
// Each worker runs in its own process group and dies with the agent (Note [Children die
// with their parent] in keel/common/subprocess.h). Stop() sends SIGTERM to every worker's
// group, waits up to the grace period, then SIGKILLs what is left.
// Thread-safety: not thread-safe; the agent's main loop owns it. Output pumping happens on
// threads the group owns and joins.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/mutex.h"
#include "keel/common/status.h"
#include "keel/common/subprocess.h"

namespace keel::agent {

struct WorkerSpec {
  int local_rank = 0;
  int rank = 0;                  // global rank
  std::vector<std::string> env;  // the whole environment, KEY=VALUE
};

struct WorkerFailure {
  int local_rank = 0;
  int rank = 0;
  ExitStatus status;
  std::string stderr_tail;  // last lines of its stderr
};

struct WorkerStats {
  int rank = 0;
  int pid = 0;
  double cpu_seconds = 0;
  int64_t rss_bytes = 0;
};

class WorkerGroup {
 public:
  enum class Outcome { kRunning, kSucceeded, kFailed };

  // Starts one process per spec running `argv`. `log_dir` (optional) receives
  // rank-<R>.log per worker (appended, with a header per round).
  static StatusOr<std::unique_ptr<WorkerGroup>> Start(const std::vector<std::string>& argv,
                                                      const std::vector<WorkerSpec>& specs,
                                                      const std::string& log_dir, int64_t round);
  ~WorkerGroup();  // Stop(0)

  // kFailed (with the first failed worker in *failure) as soon as any worker exits non-zero
  // or by a signal; kSucceeded once all exited 0.
  Outcome Poll(WorkerFailure* failure);
  // Stops every worker still running: SIGTERM, up to `grace`, then SIGKILL.
  void Stop(Duration grace);
  std::vector<WorkerStats> Stats() const;
  std::vector<int> pids() const;

 private:
  struct Worker;
  WorkerGroup() = default;

  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace keel::agent
