// An in-process job master: MasterService + Diagnostics on a gRPC server. Used by
// `keel master` and by `keel run` without --master (the embedded, single-machine default).
#pragma once

#include <memory>
#include <string>

#include "keel/master/master_service.h"
#include "keel/master/status_http.h"
#include "keel/rpc/diagnostics_service.h"
#include "keel/rpc/server.h"

namespace keel::cli {

struct RunningMaster {
  std::string token;
  std::unique_ptr<master::MasterService> service;
  std::unique_ptr<rpc::DiagnosticsService> diagnostics;
  std::unique_ptr<master::StatusHttpServer> http;  // when http_port >= 0
  std::unique_ptr<rpc::Server> server;             // declared last: shut down first
};

// Starts a master for `options` on `listen` ("0.0.0.0:PORT"), with the HTTP endpoints on
// http_port when it is >= 0 (0: any free port). An empty token is replaced by a generated one.
StatusOr<RunningMaster> StartMaster(const master::JobOptions& options, const std::string& listen,
                                    int http_port, std::string token, const rpc::TlsOptions& tls);

}  // namespace keel::cli
