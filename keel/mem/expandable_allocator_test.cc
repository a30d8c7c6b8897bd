// The expandable policy on exact cases (simulated backend): one range per (stream, pool)
// growing by pages at its end, blocks contiguous across page boundaries, the free tail's
// whole pages unmapped by EmptyCache and by a full backend before out of memory.
#include <gtest/gtest.h>

#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"
#include "keel/mem/policy_test_fixture.h"

namespace keel::mem {
namespace {

class ExpandableTest : public PolicyTest {
 protected:
  ExpandableTest() : PolicyTest("expandable") {}
};

TEST_F(ExpandableTest, GrowsByPagesAtTheEndAndStaysContiguous) {
  Make(1ull << 30);
  Allocation a = Alloc(30 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB);
  EXPECT_EQ(Stats().segment_count, 2u) << "two 20 MiB pages";
  Allocation b = Alloc(10 * kMiB);  // fits the tail of page 2
  EXPECT_EQ(Addr(b), Addr(a) + 30 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB);
  Allocation c = Alloc(15 * kMiB);  // grows one page, right after b
  EXPECT_EQ(Addr(c), Addr(b) + 10 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 60 * kMiB);
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  Allocation d = Alloc(35 * kMiB);  // the 30 MiB hole is too small: 5 MiB tail + 2 pages
  EXPECT_EQ(Addr(d), Addr(c) + 15 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 100 * kMiB);
  for (const Allocation& x : {b, c, d}) ASSERT_TRUE(alloc_->Free(x.ptr).ok());
  alloc_->EmptyCache();
  EXPECT_EQ(Stats().reserved_bytes, 0u);
  EXPECT_EQ(Stats().segment_count, 0u);
  EXPECT_EQ(backend_->counters().chunks_live, 0u);
  EXPECT_EQ(backend_->counters().reserves, backend_->counters().frees);
}

TEST_F(ExpandableTest, EmptyCacheUnmapsOnlyWholePagesOfTheFreeTail) {
  Make(1ull << 30);
  Allocation a = Alloc(25 * kMiB);
  Allocation b = Alloc(12 * kMiB);
  ASSERT_EQ(Stats().reserved_bytes, 40 * kMiB);
  ASSERT_TRUE(alloc_->Free(b.ptr).ok());
  alloc_->EmptyCache();  // the free tail [25, 40) holds no whole page
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB);
  Allocation c = Alloc(40 * kMiB);  // [25, 65): grows to 80
  EXPECT_EQ(Addr(c), Addr(a) + 25 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 80 * kMiB);
  ASSERT_TRUE(alloc_->Free(c.ptr).ok());
  alloc_->EmptyCache();  // [25, 80) free: pages 2..3 go, page 1 (20..40) holds a's tail
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB);
  EXPECT_GT(Stats().unmap_count, 0u);
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  alloc_->EmptyCache();
  EXPECT_EQ(Stats().reserved_bytes, 0u);
}

TEST_F(ExpandableTest, StreamsAndPoolsHaveTheirOwnRanges) {
  Make(1ull << 30);
  Allocation s0 = Alloc(4 * kMiB, 0);
  Allocation s1 = Alloc(4 * kMiB, 1);
  Allocation small = Alloc(4096, 0);
  EXPECT_EQ(Stats().reserved_bytes, 20 * kMiB + 20 * kMiB + 2 * kMiB);
  EXPECT_NE(Addr(s1), Addr(s0) + 4 * kMiB);
  for (const Allocation& x : {s0, s1, small}) ASSERT_TRUE(alloc_->Free(x.ptr).ok());
}

TEST_F(ExpandableTest, AFullBackendTakesFreePagesFromOtherRangesBeforeOom) {
  Make(60 * kMiB);
  Allocation a = Alloc(40 * kMiB, 0);
  ASSERT_TRUE(alloc_->Free(a.ptr).ok());
  Allocation b = Alloc(40 * kMiB, 1);  // stream 0's two free pages are unmapped first
  ASSERT_NE(b.ptr, nullptr);
  EXPECT_EQ(Stats().empty_cache_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB);
  StatusOr<Allocation> c = alloc_->Allocate(40 * kMiB, 0);
  ASSERT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Stats().oom_count, 1u);
  ASSERT_TRUE(alloc_->Free(b.ptr).ok());
}

}  // namespace
}  // namespace keel::mem
