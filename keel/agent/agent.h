// Agent: `keel agent` — one per node. Joins the job at the master, watches it (pushed
// snapshots, not polling), runs this node's workers for every round it is admitted to,
// reports failures and success, heartbeats, and exits with the job.
//
// Exit codes: 0 the job succeeded; 1 the job failed, or the master was unreachable for
// longer than master_timeout (workers are stopped first in every case).
// Thread-safety: Run() is called once, from one thread; it owns the helper threads it starts.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"
#include "keel/rpc/tls.h"

namespace keel::agent {

struct AgentOptions {
  // The master, HOST:PORT.
  std::string master;
  std::string token;
  rpc::TlsOptions tls;
  // Workers on this node.
  int nproc = 1;
  // The worker command line (e.g. {"/usr/bin/python3", "train.py", "--lr", "0.1"}).
  std::vector<std::string> command;
  // Address other nodes reach this node at (MASTER_ADDR when it is group rank 0). Empty: the
  // local address of the route to the master.
  std::string address;
  // Directory for per-rank logs (rank-<R>.log); empty keeps output on the terminal only.
  std::string log_dir;
  Duration heartbeat_interval = std::chrono::seconds(2);
  // Give up after the master has been unreachable this long.
  Duration master_timeout = std::chrono::seconds(60);
  // SIGTERM-to-SIGKILL grace when stopping workers.
  Duration stop_grace = std::chrono::seconds(5);
  // keel.ckpt retention for the workers (KEEL_CKPT_KEEP_LAST): committed steps to keep, 0 all;
  // -1 leaves it to the training script (default 3).
  int keep_last = -1;
  // When set and it becomes non-zero (a signal number), the agent stops its workers
  // (SIGTERM, grace, SIGKILL), leaves the job and returns 128 + that number. Borrowed; the
  // caller (keel's signal thread) writes it.
  const std::atomic<int>* stop_signal = nullptr;

  Status Validate() const;
};

// Runs the agent until the job ends; returns the process exit code.
int RunAgent(const AgentOptions& options);

}  // namespace keel::agent
