// IndexPermutation: 4-round Feistel network with cycle-walking.
#include "keel/data/permutation.h"

namespace keel::data {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

IndexPermutation::IndexPermutation(uint64_t n, uint64_t seed, bool shuffle)
    : n_(n), seed_(Mix(seed)), shuffle_(shuffle) {
  while (half_bits_ < 32 && (uint64_t{1} << (2 * half_bits_)) < n) ++half_bits_;
}

uint64_t IndexPermutation::Round(uint64_t half, int round) const {
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  return Mix(half ^ Mix(seed_ + static_cast<uint64_t>(round))) & mask;
}

uint64_t IndexPermutation::Encrypt(uint64_t x) const {
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  uint64_t left = x >> half_bits_, right = x & mask;
  for (int r = 0; r < 4; ++r) {
    const uint64_t next = left ^ Round(right, r);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t IndexPermutation::At(uint64_t i) const {
  if (!shuffle_ || n_ <= 1) return i;
  // The Feistel network permutes [0, 4^half_bits_); walking the cycle from i until it lands
  // in [0, n) restricts it to a permutation of [0, n) (the domain is < 4n, so ~4 steps).
  uint64_t x = Encrypt(i);
  while (x >= n_) x = Encrypt(x);
  return x;
}

}  // namespace keel::data
