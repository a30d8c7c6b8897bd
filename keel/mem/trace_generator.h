// Synthetic allocation traces of transformer training (docs/mem.md, "Synthetic traces").
//
// The generator emits the allocation pattern of a GPT-style decoder trained with mixed
// precision, step by step: per-step sequence lengths drawn between min_seq and max_seq,
// forward activations (kept, or only the layer inputs under activation checkpointing with a
// recompute burst per layer in backward), the attention-score and logits tensors whose sizes
// follow the sequence length, ZeRO-3 gather/free of each layer's full parameters around its
// forward and backward, gradient buckets reduce-scattered into persistent shards, and Adam's
// persistent fp32 states. Same options (seed included) -> the same trace, byte for byte.
//
//   keel::mem::GeneratorOptions o;
//   o.steps = 4;
//   o.checkpointing = true;
//   KEEL_ASSIGN_OR_RETURN(keel::mem::Trace t, keel::mem::GenerateTrace(o));
#pragma once

#include <cstdint>
#include <string>

#include "keel/common/status.h"
#include "keel/mem/trace.h"

namespace keel::mem {

struct GeneratorOptions {
  uint64_t seed = 1;             // drives sequence lengths and event timing
  int steps = 4;                 // training steps (1..1000)
  int layers = 16;               // transformer blocks (1..512)
  uint64_t hidden = 2048;        // model width h; a block holds 12*h*h parameters
  int heads = 16;                // attention heads (score tensor is batch*heads*seq*seq)
  uint64_t vocab = 50304;        // logits are batch*seq*vocab, plus an fp32 copy for the loss
  int micro_batch = 4;           // sequences per step
  int min_seq = 256;             // per-step sequence length, uniform in [min_seq, max_seq],
  int max_seq = 2048;            //   rounded up to a multiple of 64
  int dtype_bytes = 2;           // activation/parameter element size (bf16)
  bool checkpointing = false;    // keep only block inputs; recompute each block in backward
  bool zero3 = true;             // parameters sharded over world_size; gather per block
  int world_size = 8;            // ZeRO-3 shard count (1 = unsharded, no gathers)
  bool optimizer_states = true;  // fp32 master weights + Adam m and v, persistent
  int gather_stream = 0;         // stream of ZeRO-3 gather buffers (a side stream if != 0)
  Status Validate() const;
};

// The trace's comments record every option, so a trace says how it was made.
StatusOr<Trace> GenerateTrace(const GeneratorOptions& options);

}  // namespace keel::mem
