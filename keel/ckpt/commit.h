// Committing a checkpoint step: the one implementation of DIR/step-<N>/COMMITTED, DIR/latest
// and retention, used by the agent's persister and (through keel._C) by keel.ckpt's
// synchronous saves. See docs/formats/checkpoint.md.
// Thread-safety: functions are thread-safe for different directories.
#pragma once

#include <cstdint>
#include <string>

#include "keel/common/status.h"

namespace keel::ckpt {

// Writes `bytes` to `path` atomically: temporary file, fsync, rename, directory fsync.
Status WriteFileAtomically(const std::string& path, const std::string& bytes);

// Marks step `step` of `dir` committed (every one of `world_size` rank files is durable):
// writes DIR/step-<step>/COMMITTED, then DIR/latest, each atomically; then deletes committed
// steps beyond the newest `keep_last` (0 keeps all) and uncommitted steps older than `step`.
Status CommitStep(const std::string& dir, int64_t step, int world_size, int keep_last);

}  // namespace keel::ckpt
