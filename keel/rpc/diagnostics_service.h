// DiagnosticsService: the keel.rpc.Diagnostics gRPC service (Ping), hosted by every keel
// server so clients can check reachability, version and token before real work.
// Thread-safety: thread-safe (stateless apart from the immutable TokenAuth).
#pragma once

#include "keel/rpc/auth.h"
#include "keel/rpc/keel.grpc.pb.h"

namespace keel::rpc {

class DiagnosticsService final : public Diagnostics::Service {
 public:
  explicit DiagnosticsService(TokenAuth auth) : auth_(std::move(auth)) {}
  grpc::Status Ping(grpc::ServerContext* context, const PingRequest* request,
                    PingResponse* response) override;

 private:
  TokenAuth auth_;
};

}  // namespace keel::rpc
