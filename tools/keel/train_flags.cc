// Shared training flags (see train_flags.h).
#include "tools/keel/train_flags.h"

#include <charconv>

#include "keel/common/build_info.h"

namespace keel::cli {
namespace {

Duration Secs(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

StatusOr<int> ParsePositiveInt(const std::string& text) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1) {
    return InvalidArgumentError("'" + text + "' is not a positive integer");
  }
  return v;
}

}  // namespace

StatusOr<std::pair<int, int>> ParseNodeRange(const std::string& text) {
  size_t colon = text.find(':');
  auto min = ParsePositiveInt(text.substr(0, colon));
  auto max = colon == std::string::npos ? min : ParsePositiveInt(text.substr(colon + 1));
  if (!min.ok() || !max.ok()) {
    return InvalidArgumentError("--nnodes '" + text + "': expected N or MIN:MAX (positive)");
  }
  if (*max < *min) {
    return InvalidArgumentError("--nnodes '" + text + "': maximum is below minimum");
  }
  return std::make_pair(*min, *max);
}

void JobFlags::Add(CLI::App* app, bool master_port_flag) {
  app->add_option("--job", job, "Job name (TORCHELASTIC_RUN_ID)")->capture_default_str();
  app->add_option("--nnodes", nnodes, "Nodes: N or MIN:MAX")->capture_default_str();
  app->add_option("--node-unit", node_unit, "Admit nodes in multiples of this")
      ->capture_default_str();
  app->add_option("--max-restarts", max_restarts, "Worker failures tolerated before the job fails")
      ->capture_default_str();
  app->add_option("--rdzv-last-call", rdzv_last_call,
                  "Seconds with no new join before a round with >= MIN nodes forms")
      ->capture_default_str();
  app->add_option("--rdzv-timeout", rdzv_timeout,
                  "Seconds to wait for MIN nodes before the job fails")
      ->capture_default_str();
  app->add_option("--heartbeat-timeout", heartbeat_timeout,
                  "Seconds without a heartbeat before a node is dropped")
      ->capture_default_str();
  app->add_option("--shard-timeout", shard_timeout,
                  "Seconds a worker may hold a data shard before it goes back to the queue")
      ->capture_default_str();
  if (master_port_flag) {
    app->add_option("--port", port, "Master port (0: any free port)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
  }
  app->add_option("--http-port", http_port,
                  "Serve /healthz, /metrics and /api/job on this port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app->add_option("--token", token, "Job token (default: generated)")->envname("KEEL_TOKEN");
  app->add_option("--tls-cert", tls.cert_file, "TLS certificate (PEM)");
  app->add_option("--tls-key", tls.key_file, "TLS private key (PEM)");
  app->add_option("--tls-ca", tls.ca_file, "TLS CA to verify peers (PEM)");
}

StatusOr<master::JobOptions> JobFlags::ToJobOptions() const {
  KEEL_ASSIGN_OR_RETURN(auto range, ParseNodeRange(nnodes));
  master::JobOptions o{.job_name = job,
                       .min_nodes = range.first,
                       .max_nodes = range.second,
                       .node_unit = node_unit,
                       .last_call = Secs(rdzv_last_call),
                       .rdzv_timeout = Secs(rdzv_timeout),
                       .heartbeat_timeout = Secs(heartbeat_timeout),
                       .max_restarts = max_restarts,
                       .shard_timeout = Secs(shard_timeout)};
  KEEL_RETURN_IF_ERROR(o.Validate());
  return o;
}

void AgentFlags::Add(CLI::App* app) {
  app->add_option("--nproc-per-node,--nproc_per_node", nproc_per_node, "Workers on this node")
      ->capture_default_str();
  app->add_option("--address", address,
                  "Address other nodes reach this one at (default: route to the master)");
  app->add_option("--log-dir", log_dir, "Keep each rank's output in DIR/rank-<R>.log");
  app->add_option("--heartbeat-interval", heartbeat_interval, "Seconds between heartbeats")
      ->capture_default_str();
  app->add_option("--master-timeout", master_timeout,
                  "Seconds the master may be unreachable before the agent gives up")
      ->capture_default_str();
  app->add_option("--stop-grace", stop_grace,
                  "Seconds between SIGTERM and SIGKILL when stopping workers")
      ->capture_default_str();
  app->add_option("--python", python,
                  std::string("Interpreter for the script (default ") + build_info::kPython + ")");
  app->add_flag("--no-python", no_python, "Run the command as a program, not a Python script");
  app->add_option("--keep-last", keep_last,
                  "keel.ckpt: committed checkpoint steps to keep, 0 keeps all (default: the "
                  "script's Checkpointer setting, 3)");
}

StatusOr<agent::AgentOptions> AgentFlags::ToAgentOptions(std::vector<std::string> rest,
                                                         const std::string& token,
                                                         const rpc::TlsOptions& tls) const {
  if (rest.empty()) return InvalidArgumentError("no training script given (keel run ... train.py)");
  if (rest.front().starts_with("-")) {
    return InvalidArgumentError("unknown flag '" + rest.front() + "' (see --help)");
  }
  agent::AgentOptions o;
  o.master = master;
  o.token = token;
  o.tls = tls;
  o.nproc = nproc_per_node;
  o.address = address;
  o.log_dir = log_dir;
  o.heartbeat_interval = Secs(heartbeat_interval);
  o.master_timeout = Secs(master_timeout);
  o.stop_grace = Secs(stop_grace);
  o.keep_last = keep_last;
  if (!no_python) o.command.push_back(python.empty() ? build_info::kPython : python);
  o.command.insert(o.command.end(), rest.begin(), rest.end());
  if (nproc_per_node < 1) return InvalidArgumentError("--nproc-per-node must be >= 1");
  if (heartbeat_interval <= 0) return InvalidArgumentError("--heartbeat-interval must be > 0");
  if (master_timeout <= 0) return InvalidArgumentError("--master-timeout must be > 0");
  if (stop_grace < 0) return InvalidArgumentError("--stop-grace must be >= 0");
  if (keep_last < -1) return InvalidArgumentError("--keep-last must be >= 0");
  return o;
}

}  // namespace keel::cli
