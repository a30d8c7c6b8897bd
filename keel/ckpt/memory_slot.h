// Memory slots: a rank's checkpoint copies in the agent's shared-memory directory.
//
// Each local rank owns two slots, SHM_DIR/rank-<R>.slot-<S>.safetensors (S = 0, 1); each is a
// complete safetensors file, so the agent persists it and any reader loads it. The agent
// decides which slot a save goes to (never the one it is persisting, never the newest
// complete one), so a save neither waits for nor is skipped because of a persist.
//
// SlotWriter is the worker's side. It keeps each slot it wrote mapped, so the next save into
// that slot copies into pages that are already allocated and mapped (a memcpy at memory
// bandwidth); the first save into a slot allocates its pages with fallocate, which fails
// cleanly (ENOSPC, with the setting to change) where a too-small /dev/shm would otherwise
// SIGBUS. After mapping one slot cold, a background thread maps the other one at the same
// size (creating it if absent), so the second save is warm too; it never changes a slot file
// that holds data.
//
//   SlotWriter writer(shm_dir, local_rank, /*threads=*/4);
//   KEEL_RETURN_IF_ERROR(writer.Write(slot, tensors, metadata));
//
// Thread-safety: a SlotWriter is not thread-safe; one per rank.
#pragma once

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "keel/ckpt/safetensors.h"
#include "keel/common/status.h"

namespace keel::ckpt {

std::string SlotPath(const std::string& shm_dir, int local_rank, int slot);

class SlotWriter {
 public:
  SlotWriter(std::string shm_dir, int local_rank, int threads);
  ~SlotWriter();
  SlotWriter(const SlotWriter&) = delete;
  SlotWriter& operator=(const SlotWriter&) = delete;

  // Writes a safetensors file of `tensors` and `metadata` into slot `slot` (0 or 1), in place.
  // RESOURCE_EXHAUSTED (naming /dev/shm and how to enlarge it) if it does not fit.
  Status Write(int slot, const std::vector<NamedTensor>& tensors,
               const std::map<std::string, std::string>& metadata);
  // The first half of Write for callers that copy the data themselves (CUDA tensors: one
  // device->host copy straight into the slot): writes the header for `layout` (only names,
  // dtypes and shapes are used) and returns one view per entry into the slot's data part.
  StatusOr<std::vector<TensorView>> Prepare(int slot, const std::vector<NamedTensor>& layout,
                                            const std::map<std::string, std::string>& metadata);
  // Page-locks the slots' memory for CUDA copies from now on (until destruction or
  // remapping). Best effort: without a driver or a current context it logs once and the
  // copies are merely slower.
  void PinForCuda();
  // The slot's current file was handed to a reader (a restore maps it): the next Write into
  // the slot creates a new file instead of changing this one under the reader.
  void Detach(int slot);

  int threads() const { return threads_; }

 private:
  struct Mapped {
    void* addr = nullptr;
    size_t size = 0;
    bool pinned = false;
  };
  void Unmap(int slot);
  // Maps slot `slot` with `total` bytes (reusing the warm mapping when the size matches).
  Status Map(int slot, uint64_t total);
  void Pin(Mapped* m);
  // Background: maps the other slot at `total` bytes if its file is absent or that size.
  void WarmOther(int slot, uint64_t total);

  const std::string shm_dir_;
  const int local_rank_;
  const int threads_;
  Mapped mapped_[2];
  bool detached_[2] = {false, false};
  bool pin_ = false;
  bool pin_failed_ = false;
  std::thread warmer_;  // joined before any other use of mapped_
};

}  // namespace keel::ckpt
