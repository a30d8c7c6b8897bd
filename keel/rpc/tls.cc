// TLS option validation and PEM file reading.
#include "keel/rpc/tls.h"

#include <cerrno>
#include <fstream>
#include <sstream>

namespace keel::rpc {

Status TlsOptions::Validate(bool for_server) const {
  if (cert_file.empty() != key_file.empty()) {
    return InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  if (for_server && enabled() && cert_file.empty()) {
    return InvalidArgumentError("a TLS server needs --tls-cert and --tls-key");
  }
  return OkStatus();
}

StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError(errno, "cannot read " + what + " '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgumentError(what + " '" + path + "' is not a PEM file (no -----BEGIN line)");
  }
  return text;
}

}  // namespace keel::rpc
