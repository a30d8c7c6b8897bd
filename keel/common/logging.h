// Logging facade: levels, fmt-style messages, and KEEL_CHECK for programmer errors.
//
//   KEEL_LOG(Info, "agent {} joined round {}", node_id, round);
//   KEEL_CHECK(index < size, "index {} out of {}", index, size);   // aborts if false
//
// Output goes to stderr as "[time] [L] [pid] [file:line] message". The level starts from the
// KEEL_LOG_LEVEL environment variable (trace|debug|info|warn|error|off; default info), and
// can be changed with SetLevel. spdlog is the back end; it never appears in this header.
// Thread-safety: every function here is thread-safe.
#pragma once

#include <fmt/format.h>

#include <memory>
#include <string>
#include <string_view>

#include "keel/common/status.h"

namespace keel::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace", "debug", "info", "warn"/"warning", "error", "off" (any case).
StatusOr<Level> ParseLevel(std::string_view name);
std::string_view LevelName(Level level);

void SetLevel(Level level);
Level GetLevel();
bool Enabled(Level level);

// Also writes every log line to `path` (appending). Fails if the file cannot be opened.
Status AddFileSink(const std::string& path);

// While alive, log lines go into an in-memory buffer instead of stderr (for tests).
class ScopedCapture {
 public:
  ScopedCapture();
  ~ScopedCapture();
  ScopedCapture(const ScopedCapture&) = delete;
  ScopedCapture& operator=(const ScopedCapture&) = delete;
  std::string Text() const;

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

namespace internal {
void Emit(Level level, const char* file, int line, std::string_view message);
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              std::string_view message = {});
}  // namespace internal

}  // namespace keel::log

#define KEEL_LOG(level, ...)                                                        \
  do {                                                                              \
    if (::keel::log::Enabled(::keel::log::Level::k##level)) {                       \
      ::keel::log::internal::Emit(::keel::log::Level::k##level, __FILE__, __LINE__, \
                                  ::fmt::format(__VA_ARGS__));                      \
    }                                                                               \
  } while (false)

// Aborts with file, line, condition and optional fmt message when `cond` is false. For
// programmer errors only: input from outside (files, requests, flags) gets a Status instead.
#define KEEL_CHECK(cond, ...)                                                             \
  do {                                                                                    \
    if (!(cond)) [[unlikely]] {                                                           \
      ::keel::log::internal::CheckFailed(__FILE__, __LINE__,                              \
                                         #cond __VA_OPT__(, ::fmt::format(__VA_ARGS__))); \
    }                                                                                     \
  } while (false)
