// Initial values of new embedding rows: "zeros", "normal(mean,std)" or "uniform(low,high)",
// drawn from a generator seeded by (seed, id), so a row's initial value does not depend on when
// or on which thread the row is created.
// Thread-safety: immutable after Parse.
#pragma once

#include <cstdint>
#include <string>

#include "keel/common/status.h"

namespace keel::embed {

class Initializer {
 public:
  // INVALID_ARGUMENT naming the text for anything else (std < 0, low > high, junk).
  static StatusOr<Initializer> Parse(const std::string& text, uint64_t seed);
  void Fill(uint64_t id, float* row, int64_t dim) const;

 private:
  enum class Kind { kZeros, kNormal, kUniform };
  Kind kind_ = Kind::kZeros;
  float a_ = 0, b_ = 0;
  uint64_t seed_ = 0;
};

// A 64-bit mix of x (splitmix64's finalizer): ids to shards, hash slots and generator seeds.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace keel::embed
