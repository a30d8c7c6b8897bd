// TLS settings shared by keel's gRPC clients and servers (--tls-cert/--tls-key/--tls-ca).
//
// Server: cert + key enable TLS; adding ca requires and verifies client certificates (mTLS).
// Client: ca verifies the server (else the system roots); cert + key present a client
// certificate. All files are PEM. Thread-safety: a plain value.
#pragma once

#include <string>

#include "keel/common/status.h"

namespace keel::rpc {

struct TlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
  // cert and key come together. `for_server`: a server needs both.
  Status Validate(bool for_server) const;
};

// Reads a PEM file whole; the error names the flag-like `what` and the path.
StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& what);

}  // namespace keel::rpc
