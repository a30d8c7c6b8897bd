// The stitching policy's decision order (glake.md §1) on hand-built scenarios (simulated
// backend, GMLake's default thresholds unless a test changes one; Gmlake() turns keel's two
// departures off, Note [Stitching defaults]), and on the host backend that a stitched block
// really aliases its primaries' memory.
#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"
#include "keel/mem/policy_test_fixture.h"

namespace keel::mem {
namespace {

// GMLake's own settings: no reAlloc, every request > 1 MiB rounded to 2 MiB chunks.
AllocatorOptions Gmlake() {
  AllocatorOptions o;
  o.realloc_level = 0;
  o.chunk_rounding = true;
  return o;
}

class StitchingTest : public PolicyTest {
 protected:
  StitchingTest() : PolicyTest("stitching") {}
  // Two free, non-adjacent 300 MiB blocks (separate segments) on `stream`.
  void TwoFreeBlocks(int stream = 0) {
    a_ = Alloc(300 * kMiB, stream);
    b_ = Alloc(300 * kMiB, stream);
    Free(a_);
    Free(b_);
    ASSERT_EQ(Stats().reserved_bytes, 600 * kMiB);
  }
  void ExpectNothingLeaksAfterEmptyCache() {
    alloc_->EmptyCache();
    EXPECT_EQ(Stats().reserved_bytes, 0u);
    EXPECT_EQ(Stats().segment_count, 0u);
    EXPECT_EQ(backend_->counters().chunks_live, 0u);
    EXPECT_EQ(backend_->counters().reserves, backend_->counters().frees);
    EXPECT_EQ(backend_->counters().maps, backend_->counters().unmaps);
  }

  Allocation a_, b_;
};

TEST_F(StitchingTest, StitchesFreeBlocksInsteadOfReservingMore) {
  Make(2ull << 30);
  TwoFreeBlocks();
  Allocation s = Alloc(600 * kMiB);
  EXPECT_NE(s.ptr, a_.ptr);
  EXPECT_NE(s.ptr, b_.ptr);
  EXPECT_EQ(s.size, 600 * kMiB);
  AllocatorStats st = Stats();
  EXPECT_EQ(st.stitch_count, 1u);
  EXPECT_EQ(st.stitched_bytes, 600 * kMiB);
  EXPECT_EQ(st.reserved_bytes, 600 * kMiB) << "stitching adds no reserved bytes";
  EXPECT_EQ(st.active_bytes, 600 * kMiB);
  EXPECT_EQ(st.segment_count, 3u) << "two segments and one stitched block";
  EXPECT_EQ(st.map_count, 600u) << "300 primary chunk maps + 300 stitched";
  // Every chunk is claimed: anything else needs new memory.
  Allocation other = Alloc(100 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 700 * kMiB);
  Free(other);
  Free(s);
  // The freed stitched block is cached and serves the next request of its size.
  Allocation again = Alloc(600 * kMiB);
  EXPECT_EQ(again.ptr, s.ptr);
  EXPECT_EQ(Stats().stitched_reuse_count, 1u);
  EXPECT_EQ(Stats().stitch_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 700 * kMiB);
  Free(again);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, AFittingPrimaryBlockComesFirstAndFragmentsTheCachedStitch) {
  Make(2ull << 30, Gmlake());
  TwoFreeBlocks();
  Free(Alloc(600 * kMiB));  // cached, intact
  Allocation p = Alloc(300 * kMiB);
  EXPECT_TRUE(p.ptr == a_.ptr || p.ptr == b_.ptr) << "best-fit pBlock before any sBlock";
  EXPECT_EQ(Stats().stitched_reuse_count, 0u);
  // The cached sBlock now shares chunks with p: it cannot be handed out, and one free block
  // cannot be stitched, so a new segment it is.
  Allocation q = Alloc(600 * kMiB);
  EXPECT_EQ(Stats().stitched_reuse_count, 0u);
  EXPECT_EQ(Stats().stitch_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 1200 * kMiB);
  Free(p);
  Free(q);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, RequestsBelowFragLimitGetANewSegment) {
  Make(2ull << 30);
  Allocation a = Alloc(200 * kMiB), b = Alloc(200 * kMiB);
  Free(a);
  Free(b);
  Allocation c = Alloc(400 * kMiB);  // < 512 MiB
  EXPECT_EQ(Stats().stitch_count, 0u);
  EXPECT_EQ(Stats().reserved_bytes, 800 * kMiB);
  Free(c);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, OnlyTheRequestsStreamsBlocksAreStitched) {
  Make(2ull << 30);
  TwoFreeBlocks(/*stream=*/0);
  Allocation c = Alloc(600 * kMiB, /*stream=*/1);
  EXPECT_EQ(Stats().stitch_count, 0u);
  EXPECT_EQ(Stats().reserved_bytes, 1200 * kMiB);
  Free(c);
}

TEST_F(StitchingTest, TheHighestStreamNumberWorks) {
  Make(2ull << 30);
  TwoFreeBlocks(/*stream=*/INT_MAX);
  Allocation s = Alloc(600 * kMiB, INT_MAX);
  EXPECT_EQ(Stats().stitch_count, 1u);
  Free(s);
}

TEST_F(StitchingTest, DefragLevelOneStitchesOnlyWhenNewMemoryFails) {
  AllocatorOptions o;
  o.defrag_level = 1;
  Make(2ull << 30, o);
  TwoFreeBlocks();
  Allocation c = Alloc(600 * kMiB);
  EXPECT_EQ(Stats().stitch_count, 0u) << "room for a new segment: no stitch";
  EXPECT_EQ(Stats().reserved_bytes, 1200 * kMiB);
  Free(c);

  Make(700 * kMiB, o);  // a fresh allocator and backend with no room for 600 more
  TwoFreeBlocks();
  Allocation d = Alloc(600 * kMiB);
  EXPECT_EQ(Stats().stitch_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 600 * kMiB);
  EXPECT_EQ(Stats().empty_cache_count, 0u) << "stitched before releasing the cache";
  Free(d);
}

TEST_F(StitchingTest, ReuseLimitCapsTheCachedBlockAndOnlyAPrefixIsClaimed) {
  Make(2ull << 30);
  TwoFreeBlocks();
  Allocation s = Alloc(600 * kMiB);
  Free(s);
  Allocation prefix = Alloc(520 * kMiB);  // 600 <= 520 x 10: reused
  EXPECT_EQ(prefix.ptr, s.ptr);
  EXPECT_EQ(prefix.size, 520 * kMiB);
  EXPECT_EQ(Stats().active_bytes, 520 * kMiB);
  // The unclaimed 80 MiB tail went back to its primary's free block.
  Allocation tail = Alloc(80 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 600 * kMiB);
  EXPECT_EQ(Stats().stitch_count, 1u);
  Free(tail);
  Free(prefix);

  AllocatorOptions o;
  o.reuse_limit = 1.1;
  Make(2ull << 30, o);
  TwoFreeBlocks();
  Free(Alloc(600 * kMiB));
  Allocation t = Alloc(520 * kMiB);  // 600 > 520 x 1.1: stitched anew from 300 + 220
  EXPECT_EQ(Stats().stitched_reuse_count, 0u);
  EXPECT_EQ(Stats().stitch_count, 2u);
  EXPECT_EQ(Stats().reserved_bytes, 600 * kMiB);
  Free(t);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, GarbageCollectionOfStitchedBlocks) {
  Make(2ull << 30);
  TwoFreeBlocks();
  Free(Alloc(600 * kMiB));
  Allocation p = Alloc(300 * kMiB);  // fragments the cached sBlock
  alloc_->EmptyCache();              // GC drops it; the free primary segment is released
  EXPECT_EQ(Stats().gc_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 300 * kMiB);
  EXPECT_EQ(Stats().segment_count, 1u);
  Free(p);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, AutoGcDropsCachedStitchesOnceTheStitchedTotalIsReached) {
  AllocatorOptions o;
  o.auto_gc_bytes = 1ull << 30;
  o.reuse_limit = 1.01;
  Make(2ull << 30, o);
  TwoFreeBlocks();
  Free(Alloc(600 * kMiB));
  EXPECT_EQ(Stats().segment_count, 3u);
  Allocation s = Alloc(580 * kMiB);  // not reusable (600 > 585.8); 600 + 580 > 1 GiB: GC
  EXPECT_EQ(Stats().gc_count, 1u);
  EXPECT_EQ(Stats().stitch_count, 2u);
  EXPECT_EQ(Stats().segment_count, 3u) << "the first stitched block is gone";
  EXPECT_EQ(Stats().reserved_bytes, 600 * kMiB);
  Free(s);
}

TEST_F(StitchingTest, ReleasingTheCacheBeforeOom) {
  Make(700 * kMiB, Gmlake());
  TwoFreeBlocks();
  Allocation c = Alloc(700 * kMiB);  // cannot stitch (600 < 700), no room: release, retry
  EXPECT_EQ(Stats().empty_cache_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 700 * kMiB);
  StatusOr<Allocation> d = alloc_->Allocate(2 * kMiB, 0);
  ASSERT_EQ(d.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(d.status().message().find("frag_limit"), std::string::npos);
  EXPECT_EQ(Stats().oom_count, 1u);
  Free(c);
}

TEST_F(StitchingTest, ChunkRoundingRoundsLargeRequestsTo2MiBSmallOnesTo512B) {
  Make(2ull << 30, Gmlake());
  Allocation small = Alloc(1000);
  EXPECT_EQ(small.size, 1024u);
  Allocation large = Alloc(kMiB + 1);
  EXPECT_EQ(large.size, 2 * kMiB);
  Allocation big = Alloc(19 * kMiB + 1);  // does not fit the 18 MiB rest: its own segment
  EXPECT_EQ(big.size, 20 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 2 * kMiB + 20 * kMiB + 20 * kMiB);
  for (const Allocation& x : {small, large, big}) Free(x);
  ExpectNothingLeaksAfterEmptyCache();
}

TEST_F(StitchingTest, ByDefaultLargeRequestsRoundTo512BAndSplitAsPyTorch) {
  Make(2ull << 30);
  Allocation large = Alloc(kMiB + 1);
  EXPECT_EQ(large.size, kMiB + 512);
  Allocation next = Alloc(3 * kMiB);  // the 20 MiB segment's rest, not a chunk boundary
  EXPECT_EQ(static_cast<char*>(next.ptr), static_cast<char*>(large.ptr) + kMiB + 512);
  EXPECT_EQ(Stats().reserved_bytes, 20 * kMiB);
  EXPECT_EQ(Stats().active_bytes, 4 * kMiB + 512);
  Free(large);
  Free(next);
  ExpectNothingLeaksAfterEmptyCache();
}

// reAlloc (GMLake's paper S4): 600 MiB free in two blocks, 700 MiB asked: one new segment of
// the 100 MiB shortfall, stitched with both; without it, a new 700 MiB segment.
TEST_F(StitchingTest, ReallocCreatesOnlyTheShortfallAndStitchesIt) {
  for (int level : {1, 0}) {
    SCOPED_TRACE(level);
    AllocatorOptions o;
    o.realloc_level = level;
    Make(2ull << 30, o);
    TwoFreeBlocks();
    const uint64_t maps_before = backend_->counters().maps;
    Allocation c = Alloc(700 * kMiB);
    EXPECT_EQ(c.size, 700 * kMiB);
    if (level == 1) {
      EXPECT_EQ(Stats().reserved_bytes, 700 * kMiB) << "grew by the shortfall only";
      EXPECT_EQ(Stats().stitch_count, 1u);
      EXPECT_EQ(Stats().segment_count, 4u) << "three segments and the stitched block";
      // 50 chunks for the new segment, then 350 for the stitched view.
      EXPECT_EQ(backend_->counters().maps - maps_before, 50u + 350u);
    } else {
      EXPECT_EQ(Stats().reserved_bytes, 1300 * kMiB);
      EXPECT_EQ(Stats().stitch_count, 0u);
    }
    Free(c);
    // Freed, the stitch is cached and serves the same size again without new memory.
    Allocation d = Alloc(700 * kMiB);
    EXPECT_EQ(Stats().reserved_bytes, level == 1 ? 700 * kMiB : 1300 * kMiB);
    Free(d);
    ExpectNothingLeaksAfterEmptyCache();
  }
}

// A shortfall that entirely free small segments cover takes no new memory: they are lent to
// the large pool and stitched (Note [Lending free small segments]).
TEST_F(StitchingTest, ReallocLendsEntirelyFreeSmallSegments) {
  Make(2ull << 30);
  std::vector<Allocation> small(8);
  for (Allocation& x : small) x = Alloc(512 * 1024);  // two 2 MiB segments
  for (const Allocation& x : small) Free(x);
  Allocation a = Alloc(300 * kMiB), b = Alloc(300 * kMiB);
  Free(a);
  Free(b);
  ASSERT_EQ(Stats().reserved_bytes, 604 * kMiB);
  Allocation c = Alloc(602 * kMiB);
  EXPECT_EQ(Stats().reserved_bytes, 604 * kMiB) << "one small segment was lent";
  EXPECT_EQ(Stats().stitch_count, 1u);
  Allocation s = Alloc(1000);  // the other small segment is still the small pool's
  EXPECT_EQ(Stats().reserved_bytes, 604 * kMiB);
  Free(s);
  Free(c);
  ExpectNothingLeaksAfterEmptyCache();
}

// With 512 B pBlocks two blocks can share a chunk: only the whole free chunks of a free block
// are stitched, and a chunk is free again only once both its blocks are.
TEST_F(StitchingTest, OnlyWholeFreeChunksAreStitched) {
  AllocatorOptions o;
  o.frag_limit_bytes = 2 * kMiB;
  Make(2ull << 30, o);
  Allocation x = Alloc(3 * kMiB), y = Alloc(3 * kMiB), z = Alloc(14 * kMiB);  // one segment
  ASSERT_EQ(Stats().reserved_bytes, 20 * kMiB);
  Free(x);                          // [0, 3 MiB): whole chunk 0; chunk 1 is shared with y
  Free(z);                          // [6, 20 MiB): whole chunks 3..9
  Allocation s = Alloc(16 * kMiB);  // no free block fits; 8 whole chunks do
  EXPECT_EQ(Stats().stitch_count, 1u);
  EXPECT_EQ(Stats().reserved_bytes, 20 * kMiB);
  Allocation t = Alloc(2 * kMiB);  // the 1 MiB left of x's block, not yet a whole chunk
  EXPECT_EQ(Stats().reserved_bytes, 40 * kMiB) << "a new 20 MiB segment";
  Free(t);
  Free(y);  // [2, 6 MiB) is free now: chunks 1 and 2 are whole
  Allocation u = Alloc(4 * kMiB);
  EXPECT_EQ(static_cast<char*>(u.ptr), static_cast<char*>(x.ptr) + 2 * kMiB);
  Free(u);
  Free(s);
  ExpectNothingLeaksAfterEmptyCache();
}

// True when every byte of [p, p + n) is `v`.
bool Holds(const void* p, uint64_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (uint64_t i = 0; i < n; ++i) {
    if (b[i] != v) return false;
  }
  return true;
}

TEST(StitchingHostTest, AStitchedBlockAliasesItsPrimaries) {
  auto m = MakeHostMemory({.chunk_bytes = 2 * kMiB, .capacity_bytes = 64 * kMiB});
  ASSERT_TRUE(m.ok());
  AllocatorOptions o;
  o.frag_limit_bytes = 8 * kMiB;
  auto alloc = MakeAllocator("stitching", m->get(), o);
  ASSERT_TRUE(alloc.ok());
  Allocator& al = **alloc;
  StatusOr<Allocation> a = al.Allocate(12 * kMiB, 0);
  StatusOr<Allocation> b = al.Allocate(12 * kMiB, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(al.Free(a->ptr).ok());
  ASSERT_TRUE(al.Free(b->ptr).ok());
  StatusOr<Allocation> s = al.Allocate(24 * kMiB, 0);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(al.stats().stitch_count, 1u);
  ASSERT_EQ(al.stats().reserved_bytes, 24 * kMiB);
  // Largest first; equal sizes in descending address order.
  auto* hi = static_cast<unsigned char*>(std::max(a->ptr, b->ptr));
  auto* lo = static_cast<unsigned char*>(std::min(a->ptr, b->ptr));
  auto* sp = static_cast<unsigned char*>(s->ptr);
  std::memset(sp, 0x11, 12 * kMiB);
  std::memset(sp + 12 * kMiB, 0x22, 12 * kMiB);
  // The primaries' addresses are not live allocations now, but their chunks stay mapped
  // there (GMLake keeps the primary mapping): the stitched writes must show through them.
  EXPECT_TRUE(Holds(hi, 12 * kMiB, 0x11));
  EXPECT_TRUE(Holds(lo, 12 * kMiB, 0x22));
  lo[5] = 0x77;
  EXPECT_EQ(sp[12 * kMiB + 5], 0x77);
  ASSERT_TRUE(al.Free(s->ptr).ok());
  al.EmptyCache();
  EXPECT_EQ(al.stats().reserved_bytes, 0u);
  EXPECT_EQ((*m)->counters().chunks_live, 0u);
}

}  // namespace
}  // namespace keel::mem

namespace keel::mem {
namespace {

// The case GMLake exists for: every segment half free, no free block large enough. Caching
// and expandable have nothing to release and fail; stitching serves the request from the
// scattered halves without one more byte reserved.
TEST(PolicyComparisonTest, StitchingServesWhatFragmentationStrandsForTheOthers) {
  for (const char* policy : {"caching", "expandable", "stitching"}) {
    SCOPED_TRACE(policy);
    auto m = MakeSimulatedMemory({.chunk_bytes = 2 * kMiB, .capacity_bytes = 200 * kMiB});
    ASSERT_TRUE(m.ok());
    AllocatorOptions o;
    o.frag_limit_bytes = 32 * kMiB;
    o.expandable_page_bytes = 20 * kMiB;
    auto alloc = MakeAllocator(policy, m->get(), o);
    ASSERT_TRUE(alloc.ok());
    Allocator& al = **alloc;
    std::vector<void*> blocks;
    // 20 x 9.5 MiB: caching puts two in each 20 MiB segment, expandable packs them into
    // 20 MiB pages, stitching rounds them to 10 MiB segments of their own.
    for (int i = 0; i < 20; ++i) {
      StatusOr<Allocation> a = al.Allocate(9 * kMiB + kMiB / 2, 0);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      blocks.push_back(a->ptr);
    }
    ASSERT_EQ(al.stats().reserved_bytes, 200 * kMiB);
    for (size_t i = 0; i < blocks.size(); i += 2) ASSERT_TRUE(al.Free(blocks[i]).ok());
    StatusOr<Allocation> big = al.Allocate(60 * kMiB, 0);
    if (std::string(policy) == "stitching") {
      ASSERT_TRUE(big.ok()) << big.status().ToString();
      EXPECT_EQ(al.stats().stitch_count, 1u);
      EXPECT_EQ(al.stats().reserved_bytes, 200 * kMiB);
      ASSERT_TRUE(al.Free(big->ptr).ok());
    } else {
      EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
    }
    for (size_t i = 1; i < blocks.size(); i += 2) ASSERT_TRUE(al.Free(blocks[i]).ok());
    al.EmptyCache();
    EXPECT_EQ(al.stats().reserved_bytes, 0u);
  }
}

}  // namespace
}  // namespace keel::mem
