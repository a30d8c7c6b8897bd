// Channel: the client side of every keel RPC — a gRPC channel to one server plus the job
// token and a default deadline.
//
//   ChannelOptions o{.target = "master:7077", .token = token};
//   KEEL_ASSIGN_OR_RETURN(auto channel, Channel::Create(o));
//   auto stub = Diagnostics::NewStub(channel->grpc_channel());
//   auto ctx = channel->NewContext();          // token + default deadline
//   grpc::Status s = stub->Ping(ctx.get(), request, &response);
//   KEEL_RETURN_IF_ERROR(FromGrpc(s));
//
// Thread-safety: a Channel is thread-safe; share one per server. Each call needs its own
// context from NewContext.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <optional>
#include <string>

#include "keel/common/clock.h"
#include "keel/common/status.h"
#include "keel/rpc/tls.h"

namespace keel::rpc {

struct ChannelOptions {
  // "host:port" (or any gRPC target URI).
  std::string target;
  // The job token sent with every call. Empty sends none (the server will refuse).
  std::string token;
  // Plaintext unless set.
  TlsOptions tls;
  // Deadline for calls that do not give their own.
  Duration default_timeout = std::chrono::seconds(10);
};

class Channel {
 public:
  static StatusOr<std::unique_ptr<Channel>> Create(const ChannelOptions& options);

  // For generated stubs. shared_ptr because that is what gRPC's stubs take.
  const std::shared_ptr<grpc::Channel>& grpc_channel() const { return channel_; }
  // A fresh context for one call: carries the token, with a deadline `timeout` from now
  // (the default timeout when not given).
  std::unique_ptr<grpc::ClientContext> NewContext(std::optional<Duration> timeout = {}) const;
  // Blocks until the channel is connected; UNAVAILABLE naming the target if not in `timeout`.
  Status WaitForConnected(Duration timeout) const;
  const std::string& target() const { return options_.target; }

 private:
  Channel(ChannelOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)), channel_(std::move(channel)) {}
  ChannelOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace keel::rpc
