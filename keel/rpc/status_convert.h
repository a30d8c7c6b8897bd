// keel::Status <-> grpc::Status. The codes are numerically identical (see status.h).
// Thread-safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include "keel/common/status.h"

namespace keel::rpc {

Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const Status& status);

}  // namespace keel::rpc
