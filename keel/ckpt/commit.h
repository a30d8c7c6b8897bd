// Committing a checkpoint step: the one implementation of DIR/step-<N>/COMMITTED, DIR/latest
// and retention, used by the agent's persister and (through keel._C) by keel.ckpt's
// synchronous saves. See docs/formats/checkpoint.md.
// Thread-safety: functions are thread-safe for different directories.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "keel/common/status.h"

namespace keel::ckpt {

// Writes `path` atomically: `fill(fd, tmp_path)` writes the content into <path>.tmp, which is
// then fsynced, renamed over `path`, and its directory fsynced (the fsyncs only if
// `durable`). A crash leaves the old file or the new one; a failure removes the temporary.
Status WriteAtomically(const std::string& path,
                       const std::function<Status(int fd, const std::string& tmp)>& fill,
                       bool durable = true);
// write() all of `data` to `fd`, retrying short writes and EINTR; errors name `path`.
Status WriteAll(int fd, const void* data, size_t size, const std::string& path);
// Writes `bytes` to `path` atomically (WriteAtomically).
Status WriteFileAtomically(const std::string& path, const std::string& bytes);

// Marks step `step` of `dir` committed (every one of `world_size` rank files is durable):
// writes DIR/step-<step>/COMMITTED, then DIR/latest, each atomically; then deletes committed
// steps beyond the newest `keep_last` (0 keeps all) and uncommitted steps older than `step`.
Status CommitStep(const std::string& dir, int64_t step, int world_size, int keep_last);

}  // namespace keel::ckpt
