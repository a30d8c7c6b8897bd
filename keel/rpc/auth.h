// Job-token authentication for keel's gRPC services.
//
// Clients send "authorization: Bearer <token>" metadata on every call (Channel::NewContext
// does it). Every server handler starts with
//
//   if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
//
// A call without the token gets UNAUTHENTICATED, one with a wrong token PERMISSION_DENIED;
// either way the handler returns before touching any state. Thread-safety: TokenAuth is
// immutable after construction and safe to share.
#pragma once

#include <grpcpp/server_context.h>

#include <string>

namespace keel::rpc {

inline constexpr char kAuthMetadataKey[] = "authorization";

// 32 random bytes from the kernel, hex-encoded (64 characters).
std::string GenerateToken();

class TokenAuth {
 public:
  // `token` must not be empty.
  explicit TokenAuth(std::string token);
  grpc::Status Check(const grpc::ServerContextBase& context) const;  // sync or callback

 private:
  std::string expected_;  // "Bearer <token>"
};

}  // namespace keel::rpc
