// Status implementation: code names, errno mapping, and the aborts for misuse of StatusOr.
#include "keel/common/status.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace keel {

std::string StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN_CODE(" + std::to_string(static_cast<int>(code)) + ")";
}

Status::Status(StatusCode code, std::string message)
    : code_(code), message_(code == StatusCode::kOk ? std::string() : std::move(message)) {}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return StatusCodeName(code_) + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

#define KEEL_DEFINE_ERROR_(Name, Code) \
  Status Name(std::string message) { return Status(StatusCode::Code, std::move(message)); }
KEEL_DEFINE_ERROR_(CancelledError, kCancelled)
KEEL_DEFINE_ERROR_(UnknownError, kUnknown)
KEEL_DEFINE_ERROR_(InvalidArgumentError, kInvalidArgument)
KEEL_DEFINE_ERROR_(DeadlineExceededError, kDeadlineExceeded)
KEEL_DEFINE_ERROR_(NotFoundError, kNotFound)
KEEL_DEFINE_ERROR_(AlreadyExistsError, kAlreadyExists)
KEEL_DEFINE_ERROR_(PermissionDeniedError, kPermissionDenied)
KEEL_DEFINE_ERROR_(ResourceExhaustedError, kResourceExhausted)
KEEL_DEFINE_ERROR_(FailedPreconditionError, kFailedPrecondition)
KEEL_DEFINE_ERROR_(AbortedError, kAborted)
KEEL_DEFINE_ERROR_(OutOfRangeError, kOutOfRange)
KEEL_DEFINE_ERROR_(UnimplementedError, kUnimplemented)
KEEL_DEFINE_ERROR_(InternalError, kInternal)
KEEL_DEFINE_ERROR_(UnavailableError, kUnavailable)
KEEL_DEFINE_ERROR_(DataLossError, kDataLoss)
KEEL_DEFINE_ERROR_(UnauthenticatedError, kUnauthenticated)
#undef KEEL_DEFINE_ERROR_

Status ErrnoError(int err, std::string_view what) {
  StatusCode code = StatusCode::kInternal;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      code = StatusCode::kNotFound;
      break;
    case EACCES:
    case EPERM:
      code = StatusCode::kPermissionDenied;
      break;
    case EEXIST:
      code = StatusCode::kAlreadyExists;
      break;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
      code = StatusCode::kInvalidArgument;
      break;
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      code = StatusCode::kResourceExhausted;
      break;
    case EAGAIN:
    case EINTR:
    case ECONNREFUSED:
    case ECONNRESET:
    case EADDRINUSE:
      code = StatusCode::kUnavailable;
      break;
    case ETIMEDOUT:
      code = StatusCode::kDeadlineExceeded;
      break;
    default:
      break;
  }
  char buf[256];
  const char* text = strerror_r(err, buf, sizeof(buf));  // GNU variant: returns the string
  return Status(code, std::string(what) + ": " + text);
}

namespace internal {
void DieBadStatusOrAccess(const Status& status) {
  std::fprintf(stderr, "keel: value() of a StatusOr holding an error: %s\n",
               status.ToString().c_str());
  std::abort();
}
void DieOkStatusInStatusOr() {
  std::fprintf(stderr, "keel: StatusOr constructed from an OK Status (needs a value)\n");
  std::abort();
}
}  // namespace internal

}  // namespace keel
