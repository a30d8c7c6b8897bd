// Shared pieces of the `keel mem` subcommands (cmd_mem.cc, mem_record.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "keel/common/status.h"

namespace keel::cli {

// "1048576", "512K", "64M", "80G", "1T" (binary units; "MiB"/"MB"/"m" spellings accepted).
// InvalidArgument naming `flag` for anything else, zero, or overflow.
StatusOr<uint64_t> ParseBytes(const std::string& flag, const std::string& text);

struct RecordFlags {
  std::string out;                   // OUT.trace.gz
  std::string min_bytes = "1M";      // smallest recorded allocation
  std::string recorder;              // libkeel_mem_record.so; empty = search
  bool cuda_snapshot = true;         // install the CUDA snapshot hook for Python children
  std::vector<std::string> command;  // the program and its arguments
};

// `keel mem record`: runs the command under the recorder and writes the trace(s). Returns the
// process exit code (0, 1 failure) and prints what it did / why it failed.
int RunRecord(const RecordFlags& flags);

}  // namespace keel::cli
