// Allocation traces: keel's on-disk record of a program's allocations and frees
// (docs/formats/alloc-trace.md), parsed strictly and written back.
//
//   KEEL_ASSIGN_OR_RETURN(keel::mem::Trace t, keel::mem::ReadTrace("bench/traces/gpt.trace.gz"));
//   for (const keel::mem::TraceEvent& e : t.events) { ... }
//   KEEL_RETURN_IF_ERROR(keel::mem::WriteTrace(t, "/tmp/copy.trace.gz"));
//
// A trace is a header line, `#` comment lines (free text; `# key: value` by convention) and
// events: `a TIME_US ID BYTES STREAM` (alloc) and `f TIME_US ID` (free). Files whose names end
// in ".gz" are gzip-compressed; reading accepts plain or gzip data under any name.
// Errors: InvalidArgument naming "file:line" and what was wrong for malformed content, DataLoss
// for a corrupt or truncated gzip stream, NotFound / Internal for I/O failures.
// Thread-safety: free functions over values; no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/status.h"

namespace keel::mem {

inline constexpr std::string_view kTraceMagic = "keel-alloc-trace";
inline constexpr int kTraceVersion = 1;
// Limits the parser enforces (documented in docs/formats/alloc-trace.md).
inline constexpr uint64_t kTraceMaxBytes = 1ull << 50;  // one allocation: 1 PiB
inline constexpr int kTraceMaxStream = 1 << 20;
inline constexpr size_t kTraceMaxLine = 4096;

struct TraceEvent {
  enum class Kind : uint8_t { kAlloc, kFree };
  Kind kind = Kind::kAlloc;
  uint64_t time_us = 0;  // microseconds since the trace's start, non-decreasing
  uint64_t id = 0;       // names one live block; may be reused after its free
  uint64_t bytes = 0;    // alloc only: requested bytes, > 0
  int stream = 0;        // alloc only: stream (CUDA) or thread index (CPU recorder)

  friend bool operator==(const TraceEvent&, const TraceEvent&) = default;
};

struct Trace {
  std::vector<std::string> comments;  // comment lines without the leading "# "
  std::vector<TraceEvent> events;
};

// Facts about a trace computed in one pass (no allocator involved).
struct TraceSummary {
  uint64_t allocs = 0, frees = 0;
  uint64_t peak_live_bytes = 0;  // max over time of the sum of live requested bytes
  uint64_t live_at_end = 0;      // blocks never freed
  uint64_t max_alloc_bytes = 0;
  uint64_t duration_us = 0;
  int streams = 0;  // distinct stream values
};

// Parses trace text. `name` is used in error messages ("name:line: ...").
StatusOr<Trace> ParseTrace(std::string_view text, std::string_view name);
// Reads a file (plain or gzip) and parses it.
StatusOr<Trace> ReadTrace(const std::string& path);
// The text form of a trace (header, comments, events). Validates the events first
// (same rules as ParseTrace); InvalidArgument names the event index.
StatusOr<std::string> FormatTrace(const Trace& trace);
// Writes FormatTrace's text to `path`, gzip-compressed when it ends in ".gz". The file is
// written to "path.tmp" and renamed, so a reader never sees half a trace.
Status WriteTrace(const Trace& trace, const std::string& path);

TraceSummary Summarize(const Trace& trace);

}  // namespace keel::mem
