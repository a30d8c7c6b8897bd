// Logging back end: one spdlog logger over a distributing sink, so capture and file sinks can
// be added or removed while other threads log.
#include "keel/common/logging.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace keel::log {
namespace {

constexpr const char* kPattern = "[%Y-%m-%d %H:%M:%S.%e] [%L] [%P] [%s:%#] %v";

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

Level InitialLevel() {
  const char* env = std::getenv("KEEL_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return Level::kInfo;
  StatusOr<Level> level = ParseLevel(env);
  return level.ok() ? *level : Level::kInfo;
}

struct State {
  std::atomic<Level> level{InitialLevel()};
  std::shared_ptr<spdlog::sinks::dist_sink_mt> dist =
      std::make_shared<spdlog::sinks::dist_sink_mt>();
  std::shared_ptr<spdlog::sinks::sink> stderr_sink =
      std::make_shared<spdlog::sinks::stderr_sink_mt>();
  std::unique_ptr<spdlog::logger> logger;

  State() {
    stderr_sink->set_pattern(kPattern);
    dist->add_sink(stderr_sink);
    logger = std::make_unique<spdlog::logger>("keel", dist);
    logger->set_level(spdlog::level::trace);  // filtering happens in Enabled()
    logger->flush_on(spdlog::level::trace);   // crash-safe: nothing sits in a buffer
  }
};

State& GetState() {
  static State* state = new State();  // never destroyed: logging works during exit
  return *state;
}

}  // namespace

StatusOr<Level> ParseLevel(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (lower == "trace") return Level::kTrace;
  if (lower == "debug") return Level::kDebug;
  if (lower == "info") return Level::kInfo;
  if (lower == "warn" || lower == "warning") return Level::kWarn;
  if (lower == "error") return Level::kError;
  if (lower == "off") return Level::kOff;
  return InvalidArgumentError("unknown log level '" + std::string(name) +
                              "' (expected trace, debug, info, warn, error or off)");
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kOff:
      return "off";
  }
  return "?";
}

void SetLevel(Level level) { GetState().level.store(level, std::memory_order_relaxed); }
Level GetLevel() { return GetState().level.load(std::memory_order_relaxed); }
bool Enabled(Level level) {
  Level current = GetLevel();
  return current != Level::kOff && level != Level::kOff && level >= current;
}

Status AddFileSink(const std::string& path) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
    sink->set_pattern(kPattern);
    GetState().dist->add_sink(std::move(sink));
  } catch (const spdlog::spdlog_ex& e) {
    return InvalidArgumentError("cannot open log file '" + path + "': " + e.what());
  }
  return OkStatus();
}

namespace {

// Appends formatted lines to a string; Text() reads it under the sink's own mutex.
class StringSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string Text() {
    std::lock_guard<std::mutex> lock(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    text_.append(formatted.data(), formatted.size());
  }
  void flush_() override {}

 private:
  std::string text_;
};

}  // namespace

struct ScopedCapture::Rep {
  std::shared_ptr<StringSink> sink = std::make_shared<StringSink>();
};

ScopedCapture::ScopedCapture() : rep_(std::make_unique<Rep>()) {
  State& state = GetState();
  rep_->sink->set_pattern(kPattern);
  state.dist->remove_sink(state.stderr_sink);
  state.dist->add_sink(rep_->sink);
}

ScopedCapture::~ScopedCapture() {
  State& state = GetState();
  state.dist->remove_sink(rep_->sink);
  state.dist->add_sink(state.stderr_sink);
}

std::string ScopedCapture::Text() const { return rep_->sink->Text(); }

namespace internal {

void Emit(Level level, const char* file, int line, std::string_view message) {
  GetState().logger->log(spdlog::source_loc{file, line, ""}, ToSpd(level), message);
}

void CheckFailed(const char* file, int line, const char* condition, std::string_view message) {
  std::string text = std::string("check failed: ") + condition;
  if (!message.empty()) text += std::string(": ") + std::string(message);
  GetState().logger->log(spdlog::source_loc{file, line, ""}, spdlog::level::critical, text);
  std::abort();
}

}  // namespace internal
}  // namespace keel::log
