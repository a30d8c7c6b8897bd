// IndexPermutation: a seeded pseudo-random bijection of [0, n), computed per index in O(1)
// time and memory (a Feistel network over the next power of 4, cycle-walking back into
// range). keel shuffles a 10^10-record dataset's shard order with it without storing the
// order. The same (n, seed) always gives the same permutation.
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>

namespace keel::data {

class IndexPermutation {
 public:
  // shuffle=false: the identity.
  IndexPermutation(uint64_t n, uint64_t seed, bool shuffle = true);
  // The element at position `i` (< n) of the permuted order.
  uint64_t At(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t Round(uint64_t half, int round) const;
  uint64_t Encrypt(uint64_t x) const;

  uint64_t n_;
  uint64_t seed_;
  bool shuffle_;
  int half_bits_ = 0;  // each Feistel half; the domain is 4^half_bits_ >= n
};

}  // namespace keel::data
