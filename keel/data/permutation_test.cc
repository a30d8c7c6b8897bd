// IndexPermutation: a bijection for every size, deterministic per seed, O(1) per index.
#include "keel/data/permutation.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace keel::data {
namespace {

TEST(IndexPermutation, IsABijectionForEverySize) {
  for (uint64_t n : {1, 2, 3, 4, 5, 16, 17, 1000, 4096, 4097, 65537}) {
    IndexPermutation p(n, 42);
    std::vector<bool> seen(n);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t x = p.At(i);
      ASSERT_LT(x, n) << n;
      ASSERT_FALSE(seen[x]) << "n=" << n << " repeats " << x;
      seen[x] = true;
    }
  }
}

TEST(IndexPermutation, DeterministicPerSeedAndActuallyShuffled) {
  IndexPermutation a(1000, 7), b(1000, 7), c(1000, 8), id(1000, 7, /*shuffle=*/false);
  int same_as_c = 0, fixed_points = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(a.At(i), b.At(i));
    EXPECT_EQ(id.At(i), i);
    same_as_c += a.At(i) == c.At(i);
    fixed_points += a.At(i) == i;
  }
  EXPECT_LT(same_as_c, 50);     // another seed, another order
  EXPECT_LT(fixed_points, 50);  // not close to the identity
}

TEST(IndexPermutation, HugeDomainsCostNothing) {
  const uint64_t n = 10'000'000'000ULL;  // 10^10 shards would still be fine
  IndexPermutation p(n, 1);
  std::set<uint64_t> sample;
  for (uint64_t i = 0; i < 10000; ++i) {
    const uint64_t x = p.At(i * 999'983);
    ASSERT_LT(x, n);
    sample.insert(x);
  }
  EXPECT_EQ(sample.size(), 10000u);
}

}  // namespace
}  // namespace keel::data
