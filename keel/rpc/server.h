// Server: starts a gRPC server for keel services on one address, plaintext or TLS.
//
//   DiagnosticsService diag(TokenAuth(token));
//   KEEL_ASSIGN_OR_RETURN(auto server, Server::Start({.listen = "0.0.0.0:0"}, {&diag}));
//   int port = server->port();   // the port actually bound (useful with :0)
//
// Ownership: services are borrowed and must outlive the server. The destructor shuts the
// server down (in-flight calls get a short grace period). Thread-safety: Shutdown may be
// called from any thread, once.
#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/status.h"
#include "keel/rpc/tls.h"

namespace keel::rpc {

struct ServerOptions {
  // "host:port"; port 0 picks a free port.
  std::string listen = "0.0.0.0:0";
  TlsOptions tls;
};

class Server {
 public:
  static StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                 const std::vector<grpc::Service*>& services);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  // Stops accepting calls; waits up to `grace` for in-flight ones, then cancels them.
  void Shutdown(Duration grace = std::chrono::seconds(1));

 private:
  Server(std::unique_ptr<grpc::Server> server, int port)
      : server_(std::move(server)), port_(port) {}
  std::unique_ptr<grpc::Server> server_;
  int port_;
  bool shut_down_ = false;
};

}  // namespace keel::rpc
