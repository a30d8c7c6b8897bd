// The caching policy's PyTorch rules on small, exact cases (simulated backend): 512 B
// rounding, the small pool's 2 MiB segments, 20 MiB segments under 10 MiB, larger segments
// rounded to 2 MiB, the split thresholds, max_split_size, per-stream pools, coalescing, and
// the release-cache-and-retry step before out of memory.
#include <gtest/gtest.h>

#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"
#include "keel/mem/policy_test_fixture.h"

namespace keel::mem {
namespace {

class CachingTest : public PolicyTest {
 protected:
  CachingTest() : PolicyTest("caching") {}
  uint64_t Reserved() { return alloc_->stats().reserved_bytes; }
};

TEST_F(CachingTest, SmallRequestsRoundTo512AndShareA2MiBSegment) {
  Make(1ull << 30);
  Allocation a = Alloc(1);
  EXPECT_EQ(a.size, 512u);
  EXPECT_EQ(Reserved(), 2 * kMiB);
  Allocation b = Alloc(1000);
  EXPECT_EQ(b.size, 1024u);
  EXPECT_EQ(Addr(b), Addr(a) + 512) << "best fit takes the split-off rest";
  Allocation c = Alloc(kMiB);  // the largest small request
  EXPECT_EQ(c.size, kMiB);
  EXPECT_EQ(Reserved(), 2 * kMiB);
  EXPECT_EQ(alloc_->stats().segment_count, 1u);
  Allocation d = Alloc(kMiB);  // 1 MiB - 1.5 KiB left: a second small segment
  EXPECT_EQ(Reserved(), 4 * kMiB);
  EXPECT_EQ(alloc_->stats().segment_count, 2u);
  AllocatorStats s = alloc_->stats();
  EXPECT_EQ(s.active_bytes, 512 + 1024 + 2 * kMiB);
  EXPECT_EQ(s.requested_bytes, 1 + 1000 + 2 * kMiB);
  for (const Allocation& x : {a, b, c, d}) ASSERT_TRUE(alloc_->Free(x.ptr).ok());
}

TEST_F(CachingTest, LargeSegmentSizesAndSplitThreshold) {
  Make(1ull << 30);
  Allocation a = Alloc(kMiB + 1);  // large: 1 MiB + 512 from a 20 MiB segment
  EXPECT_EQ(a.size, kMiB + 512);
  EXPECT_EQ(Reserved(), 20 * kMiB);
  Allocation b = Alloc(5 * kMiB);
  EXPECT_EQ(Addr(b), Addr(a) + kMiB + 512);
  EXPECT_EQ(Reserved(), 20 * kMiB);
  // 14 MiB + 1 does not fit the first segment's 14 MiB - 512 B rest; >= 10 MiB, so its own
  // segment, rounded up to 2 MiB.
  Allocation c = Alloc(14 * kMiB + 1);
  EXPECT_EQ(Reserved(), 36 * kMiB);
  EXPECT_EQ(c.size, 14 * kMiB + 512) << "the 2 MiB - 512 B rest (> 1 MiB) is split off";
  Allocation d = Alloc(19 * kMiB + kMiB / 2);  // a 20 MiB segment; 512 KiB rest is not split
  EXPECT_EQ(d.size, 20 * kMiB);
  EXPECT_EQ(Reserved(), 56 * kMiB);
  EXPECT_EQ(alloc_->stats().segment_count, 3u);
  for (const Allocation& x : {a, b, c, d}) ASSERT_TRUE(alloc_->Free(x.ptr).ok());
  EXPECT_EQ(Reserved(), 56 * kMiB) << "segments stay cached";
  alloc_->EmptyCache();
  EXPECT_EQ(Reserved(), 0u);
  EXPECT_EQ(alloc_->stats().segment_count, 0u);
  EXPECT_EQ(backend_->counters().chunks_live, 0u);
}

TEST_F(CachingTest, FreedNeighboursCoalesceIntoOneBlock) {
  Make(1ull << 30);
  Allocation a = Alloc(4 * kMiB), b = Alloc(4 * kMiB), c = Alloc(4 * kMiB);
  ASSERT_EQ(Reserved(), 20 * kMiB);
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  ASSERT_TRUE(alloc_->Free(c.ptr).ok());
  ASSERT_TRUE(alloc_->Free(b.ptr).ok());
  Allocation whole = Alloc(20 * kMiB);  // only fits if all three (and the rest) merged
  EXPECT_EQ(Addr(whole), Addr(a));
  EXPECT_EQ(Reserved(), 20 * kMiB);
  ASSERT_TRUE(alloc_->Free(whole.ptr).ok());
}

TEST_F(CachingTest, PoolsArePerStream) {
  Make(1ull << 30);
  Allocation a = Alloc(4 * kMiB, 0);
  Allocation b = Alloc(4 * kMiB, 1);
  EXPECT_EQ(Reserved(), 40 * kMiB) << "stream 1 does not take stream 0's free block";
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  Allocation c = Alloc(4 * kMiB, 0);
  EXPECT_EQ(Addr(c), Addr(a));
  ASSERT_TRUE(alloc_->Free(b.ptr).ok());
  ASSERT_TRUE(alloc_->Free(c.ptr).ok());
}

TEST_F(CachingTest, MaxSplitSizeKeepsLargeBlocksWhole) {
  AllocatorOptions o;
  o.max_split_size_bytes = 16 * kMiB;
  Make(1ull << 30, o);
  Allocation big = Alloc(30 * kMiB);
  ASSERT_TRUE(alloc_->Free(big.ptr).ok());
  Allocation small = Alloc(8 * kMiB);
  EXPECT_NE(Addr(small), Addr(big)) << "a request below max_split never takes an oversize block";
  EXPECT_EQ(Reserved(), 50 * kMiB);
  Allocation again = Alloc(28 * kMiB);  // >= max_split: the 30 MiB block is within 20 MiB
  EXPECT_EQ(Addr(again), Addr(big));
  EXPECT_EQ(again.size, 30 * kMiB) << "blocks >= max_split are not split";
  ASSERT_TRUE(alloc_->Free(small.ptr).ok());
  ASSERT_TRUE(alloc_->Free(again.ptr).ok());
}

TEST_F(CachingTest, FullBackendReleasesCachedSegmentsAndRetriesOnce) {
  Make(40 * kMiB);
  Allocation a = Alloc(30 * kMiB, 0);
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  Allocation b = Alloc(20 * kMiB, 1);  // 30 cached + 20 > 40: release the cache, retry
  ASSERT_NE(b.ptr, nullptr);
  AllocatorStats s = alloc_->stats();
  EXPECT_EQ(s.empty_cache_count, 1u);
  EXPECT_EQ(s.reserved_bytes, 20 * kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, 30 * kMiB);
  StatusOr<Allocation> c = alloc_->Allocate(30 * kMiB, 0);
  ASSERT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("--allocator stitching"), std::string::npos)
      << c.status().message();
  EXPECT_EQ(alloc_->stats().oom_count, 1u);
  ASSERT_TRUE(alloc_->Free(b.ptr).ok());
  EXPECT_NE(Alloc(30 * kMiB, 0).ptr, nullptr);
}

}  // namespace
}  // namespace keel::mem
