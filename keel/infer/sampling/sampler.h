// Next-token sampling from logits: repetition penalty, top-k, top-p, min-p, temperature, then
// a seeded draw (llama.cpp's order); temperature <= 0 is greedy (argmax).
// Thread-safety: a Sampler is single-threaded (it owns its random generator).
#pragma once

#include <cstdint>
#include <random>
#include <span>

#include "keel/common/status.h"

namespace keel::infer {

struct SamplerOptions {
  float temperature = 0.8f;     // <= 0: greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off; drop tokens below min_p * p(best)
  float repeat_penalty = 1.0f;  // 1: off; > 1 discourages tokens among the last repeat_last_n
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;
};

Status Validate(const SamplerOptions& o);

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {}
  // `history`: the tokens so far (prompt and generated), for the repetition penalty.
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplerOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace keel::infer
