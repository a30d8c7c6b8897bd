// StatusHttpServer: the master's HTTP endpoints for people and monitoring systems.
//
//   GET /healthz   "ok"
//   GET /metrics   Prometheus text format (job state, round, restarts, nodes by state,
//                  world size, global step, goodput, per-worker CPU and RSS)
//   GET /api/job   the job as JSON (the keel.rpc.JobStatus message: nodes, workers and pids,
//                  round, restarts, last failure, events)
// Anything else gets 404 (unknown path) or 405 (not GET) with a JSON error; the server keeps
// serving. The endpoints are read-only and carry no secret (the token is never shown).
// Thread-safety: thread-safe; requests are served on the server's own threads.
#pragma once

#include <memory>
#include <string>

#include "keel/common/status.h"
#include "keel/master/master_service.h"

namespace keel::master {

// The Prometheus rendering of a job (also used by tests).
std::string RenderJobMetrics(const rpc::JobStatus& status);

class StatusHttpServer {
 public:
  // Listens on host:port (port 0 picks a free one). `service` is borrowed.
  static StatusOr<std::unique_ptr<StatusHttpServer>> Start(const std::string& host, int port,
                                                           MasterService* service);
  ~StatusHttpServer();
  int port() const;

 private:
  struct Rep;
  explicit StatusHttpServer(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace keel::master
