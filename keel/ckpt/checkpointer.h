// Checkpointer: keel.ckpt for C++ training programs (and the engine under the Python API).
//
//   KEEL_ASSIGN_OR_RETURN(auto ckpt, ckpt::Checkpointer::Create({.dir = "/data/ckpt"}));
//   KEEL_ASSIGN_OR_RETURN(std::optional<ckpt::Checkpoint> last, ckpt->Load());
//   if (last) { TensorView w = *last->file->Get("model/w"); ... }       // last->step, ->source
//   KEEL_RETURN_IF_ERROR(ckpt->Save(step, {{"model/w", w_view}}, {{"lr", "0.1"}}));
//
// Inside a `keel run` worker (KEEL_SHM_DIR and KEEL_AGENT_SOCKET set) Save copies the tensors
// into one of the rank's two shared-memory slots and returns; the agent persists the step to
// DIR/step-<N>/rank-<R>.safetensors and the master commits it once every rank persisted it.
// Load restores the step the master chose (the newest one every rank holds in memory) without
// copying — the tensors point into the slot's copy-on-write mapping — else the newest
// committed step on disk whose checksum verifies. Elsewhere Save writes the rank's file
// synchronously and, in a single-process job, commits it; multi-process jobs outside keel run
// commit with CommitStep after a barrier of their own (keel.ckpt does this in Python).
// Thread-safety: not thread-safe; one per rank.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keel/ckpt/memory_slot.h"
#include "keel/ckpt/safetensors.h"
#include "keel/common/status.h"

namespace keel::ckpt {

struct CheckpointerOptions {
  std::string dir;       // made absolute
  int keep_last = -1;    // committed steps kept, 0 keeps all; -1: $KEEL_CKPT_KEEP_LAST, else 3
  int copy_threads = 0;  // threads copying into memory; 0: one per core, at most 8
};

struct Checkpoint {
  int64_t step = -1;
  std::string source;                           // "memory" or "disk"
  std::shared_ptr<const SafetensorsFile> file;  // tensors and metadata (keel.* keys included)
};

class Checkpointer {
 public:
  // Reads RANK, WORLD_SIZE, LOCAL_RANK, KEEL_SHM_DIR and KEEL_AGENT_SOCKET from the
  // environment. INVALID_ARGUMENT for a bad dir or keep_last.
  static StatusOr<std::unique_ptr<Checkpointer>> Create(const CheckpointerOptions& options);
  ~Checkpointer();

  // Saves `tensors` (contiguous CPU) and `metadata` for `step` (>= 0); keel.step, keel.rank
  // and keel.world_size are added. persist=false keeps the step in memory only (needs the
  // agent; elsewhere such saves are skipped). Returns where the step went: "memory", "disk"
  // or "skipped". If the agent stopped answering, the file is written to disk (uncommitted
  // unless the job has one process).
  StatusOr<std::string> Save(int64_t step, const std::vector<NamedTensor>& tensors,
                             std::map<std::string, std::string> metadata, bool persist = true);
  // Save in two halves, for tensors the caller copies itself (CUDA tensors: one device->host
  // copy straight into the memory slot, which is page-locked for it). BeginSave returns one
  // destination view per entry of `layout` (only names, dtypes and shapes are read); fill
  // them, then FinishSave. Memory tier only (FAILED_PRECONDITION elsewhere: use Save).
  StatusOr<std::vector<TensorView>> BeginSave(int64_t step, const std::vector<NamedTensor>& layout,
                                              std::map<std::string, std::string> metadata,
                                              bool pin_for_cuda = false);
  Status FinishSave(bool persist = true);
  // Memory first, then disk (see above); nullopt when there is no checkpoint.
  StatusOr<std::optional<Checkpoint>> Load();
  // The master's memory step for this rank, or nullopt (none, or no agent).
  StatusOr<std::optional<Checkpoint>> LoadFromMemory();
  // DIR/step-<step>/rank-<rank>.safetensors, checksum verified.
  StatusOr<Checkpoint> LoadFromDisk(int64_t step);
  // Committed steps on disk, newest first.
  std::vector<int64_t> CommittedSteps() const;

  bool in_agent_memory() const { return agent_fd_ >= 0; }
  // Started by a keel agent (whether or not its memory tier is usable).
  bool under_agent() const { return under_agent_; }
  const std::string& dir() const { return options_.dir; }
  int keep_last() const { return options_.keep_last; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  explicit Checkpointer(CheckpointerOptions options);
  // Sends `request` to the agent and returns its reply ("ok ..."), or an error.
  StatusOr<std::string> AskAgent(const std::string& request, int timeout_ms);
  void AddKeelMetadata(int64_t step, std::map<std::string, std::string>* metadata) const;
  // Stops using the agent (it stopped answering): later saves go to disk.
  void LeaveAgent(const Status& why);

  CheckpointerOptions options_;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0;
  std::string shm_dir_;
  std::string agent_address_;  // abstract socket name, without the leading '@'
  int agent_fd_ = -1;
  bool under_agent_ = false;
  std::unique_ptr<SlotWriter> writer_;
  int pending_slot_ = -1;  // between BeginSave and FinishSave
  int64_t pending_step_ = -1;
};

}  // namespace keel::ckpt
