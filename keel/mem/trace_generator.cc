// Synthetic transformer-training traces (trace_generator.h). Sizes follow a GPT block:
// activations of one block input are A = batch*seq*h*dtype bytes; attention scores
// batch*heads*seq*seq*dtype; a block's parameters 12*h*h (qkv 3h^2, out h^2, fc1 4h^2, fc2 4h^2).
#include "keel/mem/trace_generator.h"

#include <fmt/format.h>

#include <random>
#include <vector>

namespace keel::mem {
namespace {

// Emits events with strictly increasing ids and a clock that advances a little per event.
class Emitter {
 public:
  explicit Emitter(uint64_t seed) : rng_(seed) {}
  uint64_t Alloc(uint64_t bytes, int stream) {
    Tick();
    const uint64_t id = next_id_++;
    events_.push_back({TraceEvent::Kind::kAlloc, now_, id, bytes, stream});
    return id;
  }
  void Free(uint64_t id) {
    Tick();
    events_.push_back({TraceEvent::Kind::kFree, now_, id, 0, 0});
  }
  void FreeAll(std::vector<uint64_t>* ids) {
    for (uint64_t id : *ids) Free(id);
    ids->clear();
  }
  std::mt19937_64& rng() { return rng_; }
  std::vector<TraceEvent> Take() { return std::move(events_); }

 private:
  void Tick() { now_ += 1 + rng_() % 20; }
  std::mt19937_64 rng_;
  uint64_t now_ = 0, next_id_ = 1;
  std::vector<TraceEvent> events_;
};

// One step's shapes.
struct Shapes {
  uint64_t act;     // one block input/output: batch*seq*h*dtype
  uint64_t scores;  // batch*heads*seq*seq*dtype
  uint64_t logits;  // batch*seq*vocab*dtype
};

// Full parameters of one block, as four tensors (what a ZeRO-3 gather materializes).
std::vector<uint64_t> BlockParamBytes(const GeneratorOptions& o) {
  const uint64_t hh = o.hidden * o.hidden * o.dtype_bytes;
  return {3 * hh, hh, 4 * hh, 4 * hh};
}

std::vector<uint64_t> Gather(Emitter* em, const GeneratorOptions& o) {
  std::vector<uint64_t> ids;
  if (!o.zero3 || o.world_size == 1) return ids;
  for (uint64_t b : BlockParamBytes(o)) ids.push_back(em->Alloc(b, o.gather_stream));
  return ids;
}

// The tensors a block's forward produces, in order; the ones saved for backward go to `saved`.
void BlockForward(Emitter* em, const Shapes& s, std::vector<uint64_t>* saved) {
  std::vector<uint64_t> temp;
  auto keep = [&](uint64_t bytes) { saved->push_back(em->Alloc(bytes, 0)); };
  keep(s.act);                             // layernorm 1 output
  keep(3 * s.act);                         // qkv
  temp.push_back(em->Alloc(s.scores, 0));  // raw scores
  keep(s.scores);                          // softmax probabilities
  em->FreeAll(&temp);
  keep(s.act);                          // attention context
  temp.push_back(em->Alloc(s.act, 0));  // out projection
  keep(s.act);                          // residual + layernorm 2
  em->FreeAll(&temp);
  keep(4 * s.act);                      // fc1
  keep(4 * s.act);                      // gelu
  temp.push_back(em->Alloc(s.act, 0));  // fc2
  em->FreeAll(&temp);
}

void BlockBackward(Emitter* em, const GeneratorOptions& o, const Shapes& s,
                   std::vector<uint64_t>* saved, std::vector<uint64_t>* grad_buckets) {
  // Gradients flow back through the block: a few activation-sized temporaries at a time.
  for (uint64_t mult : {4, 4, 1, 3}) {
    const uint64_t g = em->Alloc(mult * s.act, 0);
    if (mult == 3) {
      const uint64_t gs = em->Alloc(s.scores, 0);
      em->Free(gs);
    }
    em->Free(g);
  }
  em->FreeAll(saved);
  // Weight gradients: full-size, then reduce-scattered into the persistent shards.
  for (uint64_t b : BlockParamBytes(o)) grad_buckets->push_back(em->Alloc(b, 0));
  if (o.zero3 && o.world_size > 1) em->FreeAll(grad_buckets);
}

int SeqLen(Emitter* em, const GeneratorOptions& o) {
  std::uniform_int_distribution<int> d(o.min_seq, o.max_seq);
  const int s = d(em->rng());
  return (s + 63) / 64 * 64;
}

void Step(Emitter* em, const GeneratorOptions& o) {
  const uint64_t seq = SeqLen(em, o);
  const uint64_t b = o.micro_batch, d = o.dtype_bytes;
  const Shapes s{b * seq * o.hidden * d, b * o.heads * seq * seq * d, b * seq * o.vocab * d};
  std::vector<uint64_t> inputs;                        // block inputs (checkpoints)
  std::vector<std::vector<uint64_t>> saved(o.layers);  // per block, without checkpointing
  inputs.push_back(em->Alloc(s.act, 0));               // embeddings
  for (int l = 0; l < o.layers; ++l) {
    std::vector<uint64_t> params = Gather(em, o);
    std::vector<uint64_t> acts;
    BlockForward(em, s, &acts);
    inputs.push_back(em->Alloc(s.act, 0));  // block output = next block's input
    if (o.checkpointing) {
      em->FreeAll(&acts);
    } else {
      saved[l] = std::move(acts);
    }
    em->FreeAll(&params);
  }
  // Head: logits, an fp32 copy for the loss, and their gradient.
  const uint64_t logits = em->Alloc(s.logits, 0);
  const uint64_t logits32 = em->Alloc(s.logits * 4 / d, 0);
  em->Free(logits32);
  const uint64_t dlogits = em->Alloc(s.logits, 0);
  em->Free(logits);
  em->Free(dlogits);
  std::vector<uint64_t> grad_buckets;
  for (int l = o.layers - 1; l >= 0; --l) {
    std::vector<uint64_t> params = Gather(em, o);
    if (o.checkpointing) BlockForward(em, s, &saved[l]);  // recompute burst
    BlockBackward(em, o, s, &saved[l], &grad_buckets);
    em->Free(inputs.back());
    inputs.pop_back();
    em->FreeAll(&params);
  }
  em->FreeAll(&inputs);
  // Optimizer step: one fp32 temporary per block shard; unsharded grads are freed after it.
  const uint64_t shard = 12 * o.hidden * o.hidden / o.world_size;
  for (int l = 0; l < o.layers; ++l) em->Free(em->Alloc(shard * 4, 0));
  em->FreeAll(&grad_buckets);
}

}  // namespace

Status GeneratorOptions::Validate() const {
  auto bad = [](const std::string& what) { return InvalidArgumentError("generator: " + what); };
  if (steps < 1 || steps > 1000) return bad(fmt::format("steps {} not in 1..1000", steps));
  if (layers < 1 || layers > 512) return bad(fmt::format("layers {} not in 1..512", layers));
  if (hidden < 64 || hidden > 65536 || hidden % 64 != 0) {
    return bad(fmt::format("hidden {} must be a multiple of 64 in 64..65536", hidden));
  }
  if (heads < 1 || hidden % heads != 0) {
    return bad(fmt::format("heads {} must divide hidden {}", heads, hidden));
  }
  if (vocab < 1 || vocab > (1u << 22)) return bad(fmt::format("vocab {} not in 1..4M", vocab));
  if (micro_batch < 1 || micro_batch > 1024) {
    return bad(fmt::format("micro_batch {} not in 1..1024", micro_batch));
  }
  if (min_seq < 1 || max_seq < min_seq || max_seq > 131072) {
    return bad(fmt::format("sequence range {}..{} must satisfy 1 <= min <= max <= 131072", min_seq,
                           max_seq));
  }
  if (dtype_bytes != 1 && dtype_bytes != 2 && dtype_bytes != 4) {
    return bad(fmt::format("dtype_bytes {} must be 1, 2 or 4", dtype_bytes));
  }
  if (world_size < 1 || world_size > 4096) {
    return bad(fmt::format("world_size {} not in 1..4096", world_size));
  }
  if (gather_stream < 0 || gather_stream > kTraceMaxStream) {
    return bad(fmt::format("gather_stream {} out of range", gather_stream));
  }
  return OkStatus();
}

StatusOr<Trace> GenerateTrace(const GeneratorOptions& o) {
  KEEL_RETURN_IF_ERROR(o.Validate());
  Emitter em(o.seed);
  // Persistent state: parameter shards (bf16), gradient shards, fp32 master + Adam m and v.
  const uint64_t shard = 12 * o.hidden * o.hidden / o.world_size;
  const uint64_t embed = o.vocab * o.hidden * o.dtype_bytes;
  em.Alloc(embed, 0);
  for (int l = 0; l < o.layers; ++l) {
    em.Alloc(shard * o.dtype_bytes, 0);
    em.Alloc(shard * o.dtype_bytes, 0);
    if (o.optimizer_states) {
      for (int k = 0; k < 3; ++k) em.Alloc(shard * 4, 0);
    }
  }
  for (int step = 0; step < o.steps; ++step) Step(&em, o);
  Trace t;
  t.comments = {"source: keel mem generate (synthetic transformer training)",
                fmt::format("options: seed={} steps={} layers={} hidden={} heads={} vocab={} "
                            "micro_batch={} seq={}..{} dtype_bytes={} checkpointing={} zero3={} "
                            "world_size={} optimizer_states={} gather_stream={}",
                            o.seed, o.steps, o.layers, o.hidden, o.heads, o.vocab, o.micro_batch,
                            o.min_seq, o.max_seq, o.dtype_bytes, o.checkpointing, o.zero3,
                            o.world_size, o.optimizer_states, o.gather_stream)};
  t.events = em.Take();
  return t;
}

}  // namespace keel::mem
