// Flags shared by `keel master`, `keel agent` and `keel run`, and their translation into
// JobOptions / AgentOptions. Each validation error names its flag.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "keel/agent/agent.h"
#include "keel/common/status.h"
#include "keel/master/job_controller.h"
#include "keel/rpc/tls.h"

namespace keel::cli {

struct JobFlags {
  std::string job = "keel-job";
  std::string nnodes = "1";
  int node_unit = 1;
  int max_restarts = 3;
  double rdzv_last_call = 3;
  double rdzv_timeout = 600;
  double heartbeat_timeout = 15;
  double shard_timeout = 1800;
  int port = 0;
  int http_port = -1;  // -1: no HTTP endpoints
  std::string token;
  rpc::TlsOptions tls;

  void Add(CLI::App* app, bool master_port_flag);
  StatusOr<master::JobOptions> ToJobOptions() const;
};

struct AgentFlags {
  std::string master;
  int nproc_per_node = 1;
  std::string address;
  std::string log_dir;
  double heartbeat_interval = 2;
  double master_timeout = 60;
  double stop_grace = 5;
  int keep_last = -1;
  std::string python;
  bool no_python = false;

  void Add(CLI::App* app);
  // `rest`: the training command as typed (script and its arguments, or a program with
  // --no-python). Token and TLS come from the job flags.
  StatusOr<agent::AgentOptions> ToAgentOptions(std::vector<std::string> rest,
                                               const std::string& token,
                                               const rpc::TlsOptions& tls) const;
};

// Parses "N" or "MIN:MAX".
StatusOr<std::pair<int, int>> ParseNodeRange(const std::string& text);

}  // namespace keel::cli
