// Status and StatusOr<T>: keel's one error convention.
//
// Every fallible function returns a Status (success or a code plus a message) or a
// StatusOr<T> (a value or a non-OK Status). Both are [[nodiscard]]. The codes match gRPC's
// numerically, so keel/rpc converts without a table.
//
//   StatusOr<Config> Load(std::string_view path) {
//     KEEL_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     KEEL_RETURN_IF_ERROR(Validate(text));
//     return Config{...};
//   }
//
// Messages say what failed, with which input, and what to do. Add context on the way up with
// `status.WithContext("loading config 'x.json'")` -> "loading config 'x.json': <message>".
// Thread-safety: values; safe to copy across threads.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace keel {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "INVALID_ARGUMENT", ... (gRPC's spelling); "UNKNOWN_CODE(n)" for values outside the enum.
std::string StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "INVALID_ARGUMENT: message", or "OK".
  std::string ToString() const;
  // Same code, message prefixed with "context: ". OK stays OK.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }
  friend std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
Status CancelledError(std::string message);
Status UnknownError(std::string message);
Status InvalidArgumentError(std::string message);
Status DeadlineExceededError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status AbortedError(std::string message);
Status OutOfRangeError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);
Status UnauthenticatedError(std::string message);

// A Status from errno: "<what>: <strerror(err)>", with a code that fits the errno
// (ENOENT -> NOT_FOUND, EACCES -> PERMISSION_DENIED, ...).
Status ErrnoError(int err, std::string_view what);

namespace internal {
[[noreturn]] void DieBadStatusOrAccess(const Status& status);
[[noreturn]] void DieOkStatusInStatusOr();
}  // namespace internal

// Holds a T or a non-OK Status. Reading value() of an error is a programmer error (aborts);
// check ok() first or use KEEL_ASSIGN_OR_RETURN.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : rep_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(rep_).ok()) internal::DieOkStatusInStatusOr();
  }
  StatusOr(T value) : rep_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // Converting constructor (e.g. a string literal for StatusOr<std::string>). Constrained so
  // it never competes with the copy/move constructors.
  // NOLINTBEGIN(google-explicit-constructor,bugprone-forwarding-reference-overload)
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, Status> &&
           !std::is_same_v<std::decay_t<U>, StatusOr>) StatusOr(U&& value)
      : rep_(T(std::forward<U>(value))) {}
  // NOLINTEND(google-explicit-constructor,bugprone-forwarding-reference-overload)

  bool ok() const { return std::holds_alternative<T>(rep_); }
  Status status() const { return ok() ? OkStatus() : std::get<Status>(rep_); }

  T& value() & {
    Check();
    return std::get<T>(rep_);
  }
  const T& value() const& {
    Check();
    return std::get<T>(rep_);
  }
  T&& value() && {
    Check();
    return std::get<T>(std::move(rep_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? std::get<T>(rep_) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void Check() const {
    if (!ok()) internal::DieBadStatusOrAccess(std::get<Status>(rep_));
  }
  std::variant<Status, T> rep_;
};

namespace internal {
inline const Status& AsStatus(const Status& s) { return s; }
template <typename T>
Status AsStatus(const StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal

}  // namespace keel

#define KEEL_STATUS_CONCAT_INNER_(a, b) a##b
#define KEEL_STATUS_CONCAT_(a, b) KEEL_STATUS_CONCAT_INNER_(a, b)

// The macros below cannot parenthesise `lhs` (it may be a declaration such as `auto x`).
// NOLINTBEGIN(bugprone-macro-parentheses)

// Returns the Status (or a StatusOr's status) from the enclosing function if it is not OK.
#define KEEL_RETURN_IF_ERROR(expr)                                  \
  do {                                                              \
    ::keel::Status keel_status_ = ::keel::internal::AsStatus(expr); \
    if (!keel_status_.ok()) return keel_status_;                    \
  } while (false)

// KEEL_ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr expression; on error returns its
// Status, else assigns (or declares, e.g. `auto x`) lhs from the value.
#define KEEL_ASSIGN_OR_RETURN(lhs, expr) \
  KEEL_ASSIGN_OR_RETURN_IMPL_(KEEL_STATUS_CONCAT_(keel_statusor_, __COUNTER__), lhs, expr)
#define KEEL_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                                \
  if (!var.ok()) return var.status();               \
  lhs = std::move(var).value()
// NOLINTEND(bugprone-macro-parentheses)
