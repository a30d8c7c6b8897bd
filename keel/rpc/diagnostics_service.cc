// DiagnosticsService: Ping echoes the payload with the server's version and time.
#include "keel/rpc/diagnostics_service.h"

#include "keel/common/build_info.h"
#include "keel/common/clock.h"

namespace keel::rpc {

grpc::Status DiagnosticsService::Ping(grpc::ServerContext* context, const PingRequest* request,
                                      PingResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  response->set_payload(request->payload());
  response->set_server_version(build_info::kVersion);
  response->set_server_time_unix_nanos(Clock::Real()->WallNowNanos());
  return grpc::Status::OK;
}

}  // namespace keel::rpc
