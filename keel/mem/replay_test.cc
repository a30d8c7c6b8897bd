// The replayer over the real allocators: metrics consistent with the trace, OOMs counted and
// survived, the stitching policy beating caching on a trace built to fragment, host backend.
#include "keel/mem/replay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "keel/mem/trace_generator.h"

namespace keel::mem {
namespace {

using Kind = TraceEvent::Kind;
constexpr uint64_t kMiB = 1ull << 20;

// 16 x 64 MiB blocks, each followed by a small persistent block; every 64 MiB block is freed,
// then one 768 MiB request arrives: 1 GiB is free but in 64 MiB holes.
Trace Fragmenting() {
  Trace t;
  uint64_t now = 0, id = 1;
  std::vector<uint64_t> big;
  for (int i = 0; i < 16; ++i) {
    big.push_back(id);
    t.events.push_back({Kind::kAlloc, ++now, id++, 64 * kMiB, 0});
    t.events.push_back({Kind::kAlloc, ++now, id++, 3 * kMiB, 0});
  }
  for (uint64_t b : big) t.events.push_back({Kind::kFree, ++now, b});
  t.events.push_back({Kind::kAlloc, ++now, id, 768 * kMiB, 0});
  t.events.push_back({Kind::kFree, ++now, id});
  return t;
}

TEST(ReplayTest, MetricsAreConsistentForEveryPolicy) {
  const Trace t = Fragmenting();
  const TraceSummary s = Summarize(t);
  for (const char* policy : {"caching", "expandable", "stitching"}) {
    ReplayOptions o;
    o.policy = policy;
    auto r = Replay(t, o);
    ASSERT_TRUE(r.ok()) << policy << ": " << r.status();
    EXPECT_EQ(r->allocs, s.allocs) << policy;
    EXPECT_EQ(r->frees, s.frees) << policy;
    EXPECT_EQ(r->oom_count, 0u);
    EXPECT_GE(r->peak_active_bytes, s.peak_live_bytes) << policy;
    EXPECT_GE(r->peak_reserved_bytes, r->peak_active_bytes) << policy;
    EXPECT_DOUBLE_EQ(r->utilization,
                     static_cast<double>(r->peak_active_bytes) / r->peak_reserved_bytes);
    EXPECT_DOUBLE_EQ(r->fragmentation, 1.0 - r->utilization);
    EXPECT_EQ(r->alloc_all.count, s.allocs);
    EXPECT_EQ(r->alloc_cached.count + r->alloc_grew.count + r->alloc_stitched.count, s.allocs);
    EXPECT_GT(r->map_count, 0u);
    EXPECT_LE(r->alloc_all.median_ns, r->alloc_all.p99_ns);
    EXPECT_EQ(r->capacity_bytes, 80ull << 30);
  }
}

TEST(ReplayTest, StitchingReusesFragmentedMemoryWhereCachingGrows) {
  const Trace t = Fragmenting();
  ReplayOptions o;
  o.allocator.frag_limit_bytes = 256 * kMiB;
  o.policy = "caching";
  auto caching = Replay(t, o);
  o.policy = "stitching";
  auto stitching = Replay(t, o);
  ASSERT_TRUE(caching.ok() && stitching.ok());
  EXPECT_GT(stitching->stitch_count, 0u);
  EXPECT_EQ(stitching->alloc_stitched.count, 1u);
  EXPECT_LT(stitching->peak_reserved_bytes, caching->peak_reserved_bytes);
  EXPECT_GT(stitching->utilization, caching->utilization);
}

TEST(ReplayTest, OutOfMemoryIsCountedAndTheReplayGoesOn) {
  Trace t;
  t.events = {{Kind::kAlloc, 1, 1, 4 * kMiB, 0},
              {Kind::kAlloc, 2, 2, 512 * kMiB, 0},  // does not fit in 64 MiB
              {Kind::kFree, 3, 2},                  // skipped: its alloc failed
              {Kind::kAlloc, 4, 3, 8 * kMiB, 0},
              {Kind::kFree, 5, 1},
              {Kind::kFree, 6, 3}};
  ReplayOptions o;
  o.capacity_bytes = 64 * kMiB;
  for (const char* policy : {"caching", "expandable", "stitching"}) {
    o.policy = policy;
    auto r = Replay(t, o);
    ASSERT_TRUE(r.ok()) << policy << ": " << r.status();
    EXPECT_EQ(r->oom_count, 1u) << policy;
    EXPECT_EQ(r->allocs, 2u);
    EXPECT_EQ(r->frees, 2u);
    EXPECT_THAT(r->first_oom, ::testing::HasSubstr("event 1 (alloc of 536870912 bytes)"));
  }
}

TEST(ReplayTest, HostBackendReplaysAGeneratedTrace) {
  GeneratorOptions g;
  g.steps = 2;
  g.layers = 2;
  g.hidden = 256;
  g.heads = 4;
  g.vocab = 512;
  g.min_seq = 64;
  g.max_seq = 256;
  g.checkpointing = true;
  auto t = GenerateTrace(g);
  ASSERT_TRUE(t.ok());
  for (const char* policy : {"caching", "expandable", "stitching"}) {
    ReplayOptions o;
    o.policy = policy;
    o.backend = "host";
    auto r = Replay(*t, o);
    ASSERT_TRUE(r.ok()) << policy << ": " << r.status();
    EXPECT_EQ(r->backend, "host");
    EXPECT_EQ(r->oom_count, 0u);
    EXPECT_EQ(r->capacity_bytes, 1ull << 30);  // automatic: max(1 GiB, 2 x peak live)
    EXPECT_EQ(r->allocs, Summarize(*t).allocs);
  }
}

TEST(ReplayTest, RejectsBadOptions) {
  ReplayOptions o;
  o.policy = "buddy";
  EXPECT_THAT(Replay(Fragmenting(), o).status().message(),
              ::testing::HasSubstr("unknown allocator 'buddy'"));
  o = {};
  o.backend = "gpu";
  EXPECT_EQ(Replay(Fragmenting(), o).status().code(), StatusCode::kInvalidArgument);
  o = {};
  o.capacity_bytes = 1000;
  EXPECT_THAT(Replay(Fragmenting(), o).status().message(), ::testing::HasSubstr("below one chunk"));
  o = {};
  o.chunk_bytes = 1000;
  EXPECT_FALSE(Replay(Fragmenting(), o).ok());
}

}  // namespace
}  // namespace keel::mem
