// In-process master start-up.
#include "tools/keel/master_runner.h"

#include "keel/rpc/auth.h"

namespace keel::cli {

StatusOr<RunningMaster> StartMaster(const master::JobOptions& options, const std::string& listen,
                                    int http_port, std::string token, const rpc::TlsOptions& tls) {
  RunningMaster m;
  m.token = token.empty() ? rpc::GenerateToken() : std::move(token);
  m.service = std::make_unique<master::MasterService>(options, m.token);
  m.diagnostics = std::make_unique<rpc::DiagnosticsService>(rpc::TokenAuth(m.token));
  if (http_port >= 0) {
    KEEL_ASSIGN_OR_RETURN(m.http,
                          master::StatusHttpServer::Start("0.0.0.0", http_port, m.service.get()));
  }
  KEEL_ASSIGN_OR_RETURN(m.server, rpc::Server::Start({.listen = listen, .tls = tls},
                                                     {m.service.get(), m.diagnostics.get()}));
  return m;
}

}  // namespace keel::cli
