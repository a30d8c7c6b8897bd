// StopSignals: turns SIGINT, SIGTERM and SIGHUP into a value a command can poll, instead of
// dying on the spot. Construct it in main's thread before any other thread starts (it blocks
// the signals process-wide; children get a clean mask from keel/common/subprocess). A
// dedicated thread waits for them with sigwait. Thread-safety: received() is thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace keel::cli {

class StopSignals {
 public:
  // `on_signal` (optional) runs on the signal thread after received() is set.
  explicit StopSignals(std::function<void(int)> on_signal = {});
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // 0 until a signal arrives, then its number.
  const std::atomic<int>& received() const { return received_; }

 private:
  std::atomic<int> received_{0};
  std::function<void(int)> on_signal_;
  std::thread thread_;
};

}  // namespace keel::cli
