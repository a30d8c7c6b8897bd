// Server: ServerBuilder setup for plaintext and (mutual) TLS.
#include "keel/rpc/server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "keel/common/logging.h"

namespace keel::rpc {

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                const std::vector<grpc::Service*>& services) {
  if (options.listen.empty()) return InvalidArgumentError("no listen address given (HOST:PORT)");
  KEEL_RETURN_IF_ERROR(options.tls.Validate(/*for_server=*/true));
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.tls.enabled()) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    KEEL_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(options.tls.cert_file, "--tls-cert"));
    KEEL_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(options.tls.key_file, "--tls-key"));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (!options.tls.ca_file.empty()) {
      KEEL_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls.ca_file, "--tls-ca"));
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, which lets a second server (say, a second master
  // started by mistake) bind the same port and silently take half the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(options.listen, creds, &port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return UnavailableError("cannot listen on '" + options.listen +
                            "' (address in use, not local, or malformed?)");
  }
  KEEL_LOG(Debug, "gRPC server listening on {} (port {}, {})", options.listen, port,
           options.tls.enabled() ? "TLS" : "plaintext");
  return std::unique_ptr<Server>(new Server(std::move(server), port));
}

Server::~Server() { Shutdown(std::chrono::milliseconds(200)); }

void Server::Shutdown(Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(grace));
  server_->Wait();
}

}  // namespace keel::rpc
