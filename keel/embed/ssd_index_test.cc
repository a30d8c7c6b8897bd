#include "keel/embed/ssd_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

namespace keel::embed {
namespace {

TEST(SsdIndexTest, MatchesOracleThroughGrowAndShrink) {
  SsdIndex index;
  std::unordered_map<uint64_t, uint32_t> oracle;
  std::mt19937_64 rng(1);
  for (int round = 0; round < 400000; ++round) {
    // Grow to ~50k keys, then drain, so both rehash directions run.
    const bool growing = (round / 100000) % 2 == 0;
    const uint64_t key = rng() % 60000;
    const int op = static_cast<int>(rng() % 10);
    if (op < (growing ? 6 : 2)) {
      const auto loc = static_cast<uint32_t>(rng() % 0xFFFFFFFEu);
      auto it = oracle.find(key);
      EXPECT_EQ(index.Upsert(key, loc), it == oracle.end() ? SsdIndex::kEmpty : it->second);
      oracle[key] = loc;
    } else if (op < 8) {
      auto it = oracle.find(key);
      EXPECT_EQ(index.Erase(key), it == oracle.end() ? SsdIndex::kEmpty : it->second);
      if (it != oracle.end()) oracle.erase(it);
    } else {
      auto it = oracle.find(key);
      EXPECT_EQ(index.Find(key), it == oracle.end() ? SsdIndex::kEmpty : it->second);
      EXPECT_EQ(index.Update(key, 5), it != oracle.end());
      if (it != oracle.end()) it->second = 5;
    }
    ASSERT_EQ(index.size(), static_cast<int64_t>(oracle.size()));
  }
  int64_t visited = 0;
  index.ForEach([&](uint64_t key, uint32_t loc) {
    ++visited;
    EXPECT_EQ(oracle.at(key), loc);
  });
  EXPECT_EQ(visited, static_cast<int64_t>(oracle.size()));
}

TEST(SsdIndexTest, AtMost16BytesPerRowWhileGrowing) {
  SsdIndex index;
  for (uint64_t key = 0; key < 2'000'000; ++key) {
    index.Upsert(key * 0x9E3779B97F4A7C15ull, static_cast<uint32_t>(key));
    if (key + 1 >= 10000) {
      ASSERT_LE(static_cast<double>(index.bytes()) / static_cast<double>(index.size()), 16.0)
          << "at " << index.size() << " rows";
    }
  }
  EXPECT_EQ(index.Find(12345 * 0x9E3779B97F4A7C15ull), 12345u);
}

}  // namespace
}  // namespace keel::embed
