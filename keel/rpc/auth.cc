// Token generation and constant-time token checks.
#include "keel/rpc/auth.h"

#include <sys/random.h>

#include <cstdint>

#include "keel/common/logging.h"

namespace keel::rpc {
namespace {

// Compares without an early exit, so response time does not leak how much of a guess matched.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string GenerateToken() {
  uint8_t bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    KEEL_CHECK(n > 0 || errno == EINTR, "getrandom failed: errno {}", errno);
    if (n > 0) got += n;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (uint8_t b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  return token;
}

TokenAuth::TokenAuth(std::string token) : expected_("Bearer " + std::move(token)) {
  KEEL_CHECK(expected_.size() > 7, "TokenAuth needs a non-empty token");
}

grpc::Status TokenAuth::Check(const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kAuthMetadataKey);
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "no job token sent: pass --token or set KEEL_TOKEN");
  }
  if (!ConstantTimeEquals(std::string_view(it->second.data(), it->second.size()), expected_)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "wrong job token: use the token of this job's master");
  }
  return grpc::Status::OK;
}

}  // namespace keel::rpc
