// Allocation-trace parsing and writing (trace.h, docs/formats/alloc-trace.md). The parser is
// strict: every line is either the header, a comment, a blank line or a well-formed event that
// is consistent with the events before it (time order, live ids), so the replayer can trust it.
#include "keel/mem/trace.h"

#include <fmt/format.h>
#include <zlib.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <set>
#include <unordered_map>

namespace keel::mem {
namespace {

// Checks events in order against the rules of the format; `where` names the event for errors.
class EventChecker {
 public:
  // Returns an empty string when `e` is valid after the events seen so far, else the reason.
  std::string Check(const TraceEvent& e) {
    if (e.time_us < last_time_) {
      return fmt::format("time {} us goes back (previous event at {} us)", e.time_us, last_time_);
    }
    last_time_ = e.time_us;
    if (e.kind == TraceEvent::Kind::kAlloc) {
      if (e.bytes == 0) return fmt::format("alloc of id {} has size 0", e.id);
      if (e.bytes > kTraceMaxBytes) {
        return fmt::format("alloc of id {} has size {} > the limit {}", e.id, e.bytes,
                           kTraceMaxBytes);
      }
      if (e.stream < 0 || e.stream > kTraceMaxStream) {
        return fmt::format("stream {} is outside 0..{}", e.stream, kTraceMaxStream);
      }
      if (!live_.emplace(e.id, e.bytes).second) {
        return fmt::format("id {} is allocated again while still live (free it first)", e.id);
      }
      return {};
    }
    if (live_.erase(e.id) == 0) return fmt::format("free of id {}, which is not live", e.id);
    return {};
  }

 private:
  uint64_t last_time_ = 0;
  std::unordered_map<uint64_t, uint64_t> live_;
};

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
bool ParseNumber(std::string_view s, T* out) {
  if (s.empty() || s[0] == '+' || s[0] == '-') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

Status LineError(std::string_view name, size_t line, std::string_view what) {
  return InvalidArgumentError(fmt::format("{}:{}: {}", name, line, what));
}

// Parses one event line into `e`; returns the reason on failure.
std::string ParseEvent(const std::vector<std::string_view>& f, TraceEvent* e) {
  const bool alloc = f[0] == "a";
  if (!alloc && f[0] != "f") {
    return fmt::format("unknown event '{}' (expected 'a' or 'f')", f[0].substr(0, 32));
  }
  const size_t want = alloc ? 5 : 3;
  if (f.size() != want) {
    return fmt::format("'{}' event has {} fields, expected {} ({})", f[0], f.size(), want,
                       alloc ? "a TIME_US ID BYTES STREAM" : "f TIME_US ID");
  }
  e->kind = alloc ? TraceEvent::Kind::kAlloc : TraceEvent::Kind::kFree;
  if (!ParseNumber(f[1], &e->time_us)) {
    return fmt::format("time '{}' is not a non-negative integer", f[1].substr(0, 32));
  }
  if (!ParseNumber(f[2], &e->id)) {
    return fmt::format("id '{}' is not a non-negative integer", f[2].substr(0, 32));
  }
  e->bytes = 0;
  e->stream = 0;
  if (alloc) {
    if (!ParseNumber(f[3], &e->bytes)) {
      return fmt::format("size '{}' is not a non-negative integer", f[3].substr(0, 32));
    }
    if (!ParseNumber(f[4], &e->stream)) {
      return fmt::format("stream '{}' is not a non-negative integer", f[4].substr(0, 32));
    }
  }
  return {};
}

Status CheckHeader(std::string_view line, std::string_view name) {
  const auto f = SplitFields(line);
  if (f.empty() || f[0] != kTraceMagic) {
    return LineError(name, 1,
                     fmt::format("not a keel allocation trace: the first line must be '{} {}'",
                                 kTraceMagic, kTraceVersion));
  }
  int version = 0;
  if (f.size() != 2 || !ParseNumber(f[1], &version)) {
    return LineError(name, 1,
                     fmt::format("malformed header; expected '{} {}'", kTraceMagic, kTraceVersion));
  }
  if (version != kTraceVersion) {
    return LineError(name, 1,
                     fmt::format("trace format version {} is not supported (this keel reads {})",
                                 version, kTraceVersion));
  }
  return OkStatus();
}

StatusOr<std::string> ReadAll(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError(fmt::format("trace '{}' does not exist or is not a file", path));
  }
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr) return InternalError(fmt::format("cannot open trace '{}'", path));
  std::string out;
  char buf[1 << 16];
  while (true) {
    const int n = gzread(gz, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, n);
      continue;
    }
    if (n == 0) break;
    int err = 0;
    std::string msg = gzerror(gz, &err);
    gzclose(gz);
    return DataLossError(fmt::format(
        "trace '{}': corrupt or truncated gzip data after {} bytes ({})", path, out.size(), msg));
  }
  int err = 0;
  const char* msg = gzerror(gz, &err);
  // zlib reports a gzip stream cut short as Z_BUF_ERROR once the input is exhausted.
  if (err != Z_OK && err != Z_STREAM_END) {
    std::string m = msg;
    gzclose(gz);
    return DataLossError(
        fmt::format("trace '{}': truncated gzip data after {} bytes ({})", path, out.size(), m));
  }
  if (gzclose(gz) != Z_OK) {
    return DataLossError(fmt::format("trace '{}': gzip stream ends early", path));
  }
  return out;
}

}  // namespace

StatusOr<Trace> ParseTrace(std::string_view text, std::string_view name) {
  Trace t;
  EventChecker checker;
  size_t line_no = 0, pos = 0;
  bool header = false;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kTraceMaxLine) {
      return LineError(name, line_no,
                       fmt::format("line is {} bytes long (limit {})", line.size(), kTraceMaxLine));
    }
    if (line.find('\0') != std::string_view::npos) {
      return LineError(name, line_no, "line contains a NUL byte (binary data?)");
    }
    if (!header) {
      KEEL_RETURN_IF_ERROR(CheckHeader(line, name));
      header = true;
      continue;
    }
    if (!line.empty() && line[0] == '#') {
      line.remove_prefix(1);
      if (!line.empty() && line[0] == ' ') line.remove_prefix(1);
      t.comments.emplace_back(line);
      continue;
    }
    const auto f = SplitFields(line);
    if (f.empty()) continue;
    TraceEvent e;
    std::string why = ParseEvent(f, &e);
    if (why.empty()) why = checker.Check(e);
    if (!why.empty()) return LineError(name, line_no, why);
    t.events.push_back(e);
  }
  if (!header) {
    return LineError(
        name, 1,
        fmt::format("empty file; a trace starts with '{} {}'", kTraceMagic, kTraceVersion));
  }
  return t;
}

StatusOr<Trace> ReadTrace(const std::string& path) {
  KEEL_ASSIGN_OR_RETURN(std::string text, ReadAll(path));
  return ParseTrace(text, path);
}

StatusOr<std::string> FormatTrace(const Trace& trace) {
  std::string out = fmt::format("{} {}\n", kTraceMagic, kTraceVersion);
  for (const std::string& c : trace.comments) {
    if (c.find('\n') != std::string::npos || c.size() + 2 > kTraceMaxLine) {
      return InvalidArgumentError("trace comment contains a newline or is too long");
    }
    out += fmt::format("# {}\n", c);
  }
  EventChecker checker;
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const TraceEvent& e = trace.events[i];
    if (std::string why = checker.Check(e); !why.empty()) {
      return InvalidArgumentError(fmt::format("trace event {}: {}", i, why));
    }
    if (e.kind == TraceEvent::Kind::kAlloc) {
      fmt::format_to(std::back_inserter(out), "a {} {} {} {}\n", e.time_us, e.id, e.bytes,
                     e.stream);
    } else {
      fmt::format_to(std::back_inserter(out), "f {} {}\n", e.time_us, e.id);
    }
  }
  return out;
}

Status WriteTrace(const Trace& trace, const std::string& path) {
  KEEL_ASSIGN_OR_RETURN(std::string text, FormatTrace(trace));
  const std::string tmp = path + ".tmp";
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  bool ok = false;
  if (gz) {
    gzFile f = gzopen(tmp.c_str(), "wb9");
    if (f == nullptr) return InternalError(fmt::format("cannot create '{}'", tmp));
    ok = gzwrite(f, text.data(), static_cast<unsigned>(text.size())) ==
         static_cast<int>(text.size());
    ok = (gzclose(f) == Z_OK) && ok;
  } else {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) return InternalError(fmt::format("cannot create '{}'", tmp));
    ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = (std::fclose(f) == 0) && ok;
  }
  std::error_code ec;
  if (!ok) {
    std::filesystem::remove(tmp, ec);
    return InternalError(fmt::format("writing trace '{}' failed (disk full?)", path));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return InternalError(fmt::format("renaming '{}' to '{}': {}", tmp, path, ec.message()));
  return OkStatus();
}

TraceSummary Summarize(const Trace& trace) {
  TraceSummary s;
  std::unordered_map<uint64_t, uint64_t> live;
  std::set<int> streams;
  uint64_t live_bytes = 0;
  for (const TraceEvent& e : trace.events) {
    s.duration_us = e.time_us;
    if (e.kind == TraceEvent::Kind::kAlloc) {
      ++s.allocs;
      live[e.id] = e.bytes;
      live_bytes += e.bytes;
      s.peak_live_bytes = std::max(s.peak_live_bytes, live_bytes);
      s.max_alloc_bytes = std::max(s.max_alloc_bytes, e.bytes);
      streams.insert(e.stream);
    } else if (auto it = live.find(e.id); it != live.end()) {
      ++s.frees;
      live_bytes -= it->second;
      live.erase(it);
    }
  }
  s.live_at_end = live.size();
  s.streams = static_cast<int>(streams.size());
  return s;
}

}  // namespace keel::mem
