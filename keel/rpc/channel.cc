// Channel: gRPC channel creation (plaintext or TLS) and per-call contexts with the token.
#include "keel/rpc/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "keel/rpc/auth.h"

namespace keel::rpc {
namespace {

std::chrono::system_clock::time_point DeadlineIn(Duration timeout) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout);
}

}  // namespace

StatusOr<std::unique_ptr<Channel>> Channel::Create(const ChannelOptions& options) {
  if (options.target.empty()) return InvalidArgumentError("no server address given (HOST:PORT)");
  if (options.default_timeout <= Duration::zero()) {
    return InvalidArgumentError("RPC timeout must be positive");
  }
  KEEL_RETURN_IF_ERROR(options.tls.Validate(/*for_server=*/false));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls.enabled()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls.ca_file.empty()) {
      KEEL_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls.ca_file, "--tls-ca"));
    }
    if (!options.tls.cert_file.empty()) {
      KEEL_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(options.tls.cert_file, "--tls-cert"));
      KEEL_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls.key_file, "--tls-key"));
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  // Reconnect quickly after a server restart: recovery time matters more than backoff politeness.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = grpc::CreateCustomChannel(options.target, creds, args);
  if (channel == nullptr) {
    return InvalidArgumentError("cannot create a channel to '" + options.target + "'");
  }
  return std::unique_ptr<Channel>(new Channel(options, std::move(channel)));
}

std::unique_ptr<grpc::ClientContext> Channel::NewContext(std::optional<Duration> timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(DeadlineIn(timeout.value_or(options_.default_timeout)));
  if (!options_.token.empty()) context->AddMetadata(kAuthMetadataKey, "Bearer " + options_.token);
  return context;
}

Status Channel::WaitForConnected(Duration timeout) const {
  if (!channel_->WaitForConnected(DeadlineIn(timeout))) {
    return UnavailableError(
        "cannot connect to '" + options_.target + "' within " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
        " ms");
  }
  return OkStatus();
}

}  // namespace keel::rpc
