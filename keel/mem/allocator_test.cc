// Invariants of all three policies under randomized alloc/free sequences on the host backend
// (real memory): live blocks never overlap, every byte of a live block holds what was written
// through it until it is freed (so no two live blocks share memory, stitched or not), the
// stats match the live set and the backend, and freeing everything + EmptyCache returns every
// chunk and range. Plus the argument errors every policy shares.
#include "keel/mem/allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

struct Live {
  uint64_t size = 0, requested = 0;
  unsigned char pattern = 0;
};

// True when every byte of [p, p + n) is `v` (memcmp against a filled buffer: fast under ASan).
bool Holds(const void* p, uint64_t n, unsigned char v) {
  static std::vector<unsigned char> ref(1 << 16);
  std::memset(ref.data(), v, ref.size());
  const auto* b = static_cast<const unsigned char*>(p);
  for (uint64_t i = 0; i < n; i += ref.size()) {
    if (std::memcmp(b + i, ref.data(), std::min<uint64_t>(ref.size(), n - i)) != 0) return false;
  }
  return true;
}

// (policy, backend chunk bytes): 2 MiB chunks as on GPUs, and 512 KiB chunks so that one
// 2 MiB stitching unit spans several chunks. "stitching-gmlake" is the stitching policy with
// GMLake's own settings (realloc_level 0, chunk_rounding); "stitching" has keel's defaults
// (reAlloc of the shortfall, lent small segments, 512 B pBlocks).
class AllocatorInvariantsTest : public ::testing::TestWithParam<std::tuple<std::string, uint64_t>> {
 protected:
  static std::string Variant() { return std::get<0>(GetParam()); }
  static std::string Policy() {
    return Variant().starts_with("stitching") ? "stitching" : Variant();
  }

  void SetUp() override {
    auto m = MakeHostMemory({.chunk_bytes = std::get<1>(GetParam()), .capacity_bytes = 96 * kMiB});
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    backend_ = std::move(*m);
    AllocatorOptions o;
    o.frag_limit_bytes = 6 * kMiB;  // let the small sizes below be stitched
    o.auto_gc_bytes = 256 * kMiB;
    o.expandable_page_bytes = 4 * kMiB;
    if (Variant() == "stitching-gmlake") {
      o.realloc_level = 0;
      o.chunk_rounding = true;
    }
    auto a = MakeAllocator(Policy(), backend_.get(), o);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    alloc_ = std::move(*a);
  }

  void CheckStats() {
    AllocatorStats s = alloc_->stats();
    uint64_t active = 0, requested = 0;
    for (const auto& [p, l] : live_) {
      active += l.size;
      requested += l.requested;
    }
    ASSERT_EQ(s.active_bytes, active);
    ASSERT_EQ(s.requested_bytes, requested);
    ASSERT_EQ(s.reserved_bytes, backend_->counters().chunks_live * backend_->granularity());
    ASSERT_LE(s.reserved_bytes, backend_->capacity());
    ASSERT_GE(s.reserved_bytes, s.active_bytes);  // stitched bytes are never counted twice
    ASSERT_GE(s.peak_active_bytes, s.active_bytes);
    ASSERT_GE(s.peak_requested_bytes, s.requested_bytes);
    ASSERT_GE(s.peak_reserved_bytes, s.reserved_bytes);
    ASSERT_EQ(s.alloc_count - s.free_count, live_.size());
  }

  void CheckNoOverlap(uintptr_t p, uint64_t size) {
    auto next = live_.lower_bound(p);
    if (next != live_.end()) {
      ASSERT_LE(p + size, next->first) << "overlaps the next block";
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second.size, p) << "overlaps the previous block";
    }
  }

  // A random size from the small pool, the 20 MiB-segment range or beyond, on stream 0 or 1;
  // the block is filled with its own pattern (every byte must be writable).
  void AllocateOne(std::mt19937_64& rng) {
    uint64_t bytes = 0;
    switch (rng() % 4) {
      case 0:
        bytes = 1 + rng() % (64 * 1024);
        break;
      case 1:
        bytes = 1 + rng() % kMiB;
        break;
      case 2:
        bytes = kMiB + 1 + rng() % (9 * kMiB);
        break;
      default:
        bytes = 10 * kMiB + rng() % (14 * kMiB);
        break;
    }
    StatusOr<Allocation> a = alloc_->Allocate(bytes, static_cast<int>(rng() % 2));
    if (!a.ok()) {
      ASSERT_EQ(a.status().code(), StatusCode::kResourceExhausted) << a.status().ToString();
      ASSERT_NE(a.status().message().find("reserved"), std::string::npos);
      ++ooms_;
      return;
    }
    ASSERT_GE(a->size, bytes);
    const auto p = reinterpret_cast<uintptr_t>(a->ptr);
    ASSERT_NO_FATAL_FAILURE(CheckNoOverlap(p, a->size));
    Live l{a->size, bytes, next_pattern_};
    next_pattern_ = static_cast<unsigned char>(next_pattern_ % 250 + 1);
    std::memset(a->ptr, l.pattern, l.size);
    live_[p] = l;
  }

  // Frees the i-th live block after checking it still holds its pattern.
  void FreeOne(size_t i) {
    auto it = std::next(live_.begin(), static_cast<std::ptrdiff_t>(i));
    ASSERT_TRUE(Holds(reinterpret_cast<void*>(it->first), it->second.size, it->second.pattern))
        << "a live block's bytes changed: another block shares its memory";
    ASSERT_TRUE(alloc_->Free(reinterpret_cast<void*>(it->first)).ok());
    live_.erase(it);
  }

  std::unique_ptr<PhysicalMemory> backend_;
  std::unique_ptr<Allocator> alloc_;
  std::map<uintptr_t, Live> live_;
  unsigned char next_pattern_ = 1;
  int ooms_ = 0;
};

TEST_P(AllocatorInvariantsTest, RandomAllocFreeKeepsBlocksDisjointAndStatsExact) {
  std::mt19937_64 rng(0x5eed + Variant().size() + std::get<1>(GetParam()));
  for (int step = 0; step < 700; ++step) {
    // Drift up to about two thirds of the capacity, then hover there (some OOMs on purpose).
    const uint64_t pct = alloc_->stats().active_bytes < 64 * kMiB ? 60 : 35;
    if (live_.empty() || rng() % 100 < pct) {
      ASSERT_NO_FATAL_FAILURE(AllocateOne(rng));
    } else {
      ASSERT_NO_FATAL_FAILURE(FreeOne(rng() % live_.size()));
    }
    ASSERT_NO_FATAL_FAILURE(CheckStats());
    if (step % 97 == 96) alloc_->EmptyCache();
  }
  while (!live_.empty()) ASSERT_NO_FATAL_FAILURE(FreeOne(0));
  ASSERT_NO_FATAL_FAILURE(CheckStats());
  alloc_->EmptyCache();
  AllocatorStats s = alloc_->stats();
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.active_bytes, 0u);
  BackendCounters k = backend_->counters();
  EXPECT_EQ(k.chunks_live, 0u) << "chunks leaked";
  EXPECT_EQ(k.reserves, k.frees) << "virtual ranges leaked";
  EXPECT_EQ(k.maps, k.unmaps);
  EXPECT_EQ(s.map_count, k.maps);
  EXPECT_EQ(s.unmap_count, k.unmaps);
  EXPECT_GT(s.peak_reserved_bytes, 0u);
  EXPECT_LE(s.utilization(), 1.0 + 1e-9);
  EXPECT_GT(ooms_, 0) << "the run never reached the capacity";
  RecordProperty("ooms", ooms_);
  RecordProperty("stitches", static_cast<int>(s.stitch_count));
  RecordProperty("stitched_reuses", static_cast<int>(s.stitched_reuse_count));
  if (Policy() == "stitching") {
    EXPECT_GT(s.stitch_count, 0u) << "the run never stitched";
    EXPECT_GT(s.stitched_reuse_count, 0u) << "the run never reused a stitched block";
  }
}

TEST_P(AllocatorInvariantsTest, BadRequestsAreErrorsAndTheAllocatorStaysUsable) {
  EXPECT_EQ(alloc_->Allocate(0, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(alloc_->Allocate(64, -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(alloc_->Allocate(~0ull, 0).status().code(), StatusCode::kInvalidArgument);
  StatusOr<Allocation> huge = alloc_->Allocate(1ull << 40, 0);
  ASSERT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(huge.status().message().find("capacity"), std::string::npos) << huge.status().message();
  int local = 0;
  EXPECT_EQ(alloc_->Free(&local).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(alloc_->Free(nullptr).code(), StatusCode::kInvalidArgument);
  StatusOr<Allocation> a = alloc_->Allocate(3 * kMiB, 0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(alloc_->Free(static_cast<char*>(a->ptr) + 512).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(alloc_->Free(a->ptr).ok());
  Status twice = alloc_->Free(a->ptr);
  EXPECT_EQ(twice.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.message().find("already freed"), std::string::npos) << twice.message();
  StatusOr<Allocation> b = alloc_->Allocate(3 * kMiB, 1);
  ASSERT_TRUE(b.ok());
  std::memset(b->ptr, 7, b->size);
  ASSERT_TRUE(alloc_->Free(b->ptr).ok());
  AllocatorStats s = alloc_->stats();
  EXPECT_EQ(s.active_bytes, 0u);
  EXPECT_EQ(s.alloc_count, 2u);
  EXPECT_EQ(s.free_count, 2u);
  EXPECT_EQ(s.oom_count, 1u);
  EXPECT_EQ(alloc_->name(), Policy());
}

TEST_P(AllocatorInvariantsTest, OutOfMemoryNamesTheNumbersAndWhatToChange) {
  std::vector<void*> held;
  Status oom;
  for (int i = 0; i < 20 && oom.ok(); ++i) {
    StatusOr<Allocation> a = alloc_->Allocate(16 * kMiB, 0);
    if (a.ok()) {
      held.push_back(a->ptr);
    } else {
      oom = a.status();
    }
  }
  ASSERT_EQ(oom.code(), StatusCode::kResourceExhausted);
  for (const char* word :
       {"requested 16.0 MiB", "active", "reserved", "cached", "capacity 96.0 MiB", "raise"}) {
    EXPECT_NE(oom.message().find(word), std::string::npos) << word << " in: " << oom.message();
  }
  for (void* p : held) ASSERT_TRUE(alloc_->Free(p).ok());
  EXPECT_TRUE(alloc_->Allocate(16 * kMiB, 0).ok()) << "usable after OOM";
}

TEST_P(AllocatorInvariantsTest, ResetPeaksDropsPeaksToCurrent) {
  StatusOr<Allocation> a = alloc_->Allocate(12 * kMiB, 0);
  StatusOr<Allocation> b = alloc_->Allocate(12 * kMiB, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(alloc_->Free(b->ptr).ok());
  alloc_->ResetPeaks();
  AllocatorStats s = alloc_->stats();
  EXPECT_EQ(s.peak_active_bytes, s.active_bytes);
  EXPECT_EQ(s.peak_reserved_bytes, s.reserved_bytes);
  EXPECT_EQ(s.peak_requested_bytes, 12 * kMiB);
  ASSERT_TRUE(alloc_->Free(a->ptr).ok());
}

TEST_P(AllocatorInvariantsTest, ConcurrentCallersOnTheirOwnStreams) {
  std::vector<std::thread> threads;
  threads.reserve(4);
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<void*> mine;
      for (int i = 0; i < 200; ++i) {
        if (mine.empty() || rng() % 2 == 0) {
          StatusOr<Allocation> a = alloc_->Allocate(1 + rng() % (3 * kMiB), t);
          if (a.ok()) mine.push_back(a->ptr);
        } else {
          if (!alloc_->Free(mine.back()).ok()) ++failures[t];
          mine.pop_back();
        }
      }
      for (void* p : mine) {
        if (!alloc_->Free(p).ok()) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
  alloc_->EmptyCache();
  EXPECT_EQ(alloc_->stats().active_bytes, 0u);
  EXPECT_EQ(backend_->counters().chunks_live, 0u);
}

INSTANTIATE_TEST_SUITE_P(Policies, AllocatorInvariantsTest,
                         ::testing::Combine(::testing::Values("caching", "expandable", "stitching",
                                                              "stitching-gmlake"),
                                            ::testing::Values(2 * kMiB, kMiB / 2)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" +
                                              std::to_string(std::get<1>(info.param) >> 10) + "K";
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(MakeAllocatorTest, RejectsUnknownPoliciesBadOptionsAndNoBackend) {
  auto m = MakeSimulatedMemory({});
  ASSERT_TRUE(m.ok());
  StatusOr<std::unique_ptr<Allocator>> bad = MakeAllocator("buddy", m->get(), {});
  ASSERT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  for (const char* name : {"caching", "expandable", "stitching", "buddy"}) {
    EXPECT_NE(bad.status().message().find(name), std::string::npos) << bad.status().message();
  }
  EXPECT_EQ(MakeAllocator("caching", nullptr, {}).status().code(), StatusCode::kInvalidArgument);
  std::vector<AllocatorOptions> invalid(7);
  invalid[0].reuse_limit = 0.5;
  invalid[1].defrag_level = 2;
  invalid[2].frag_limit_bytes = 0;
  invalid[3].expandable_page_bytes = 0;
  invalid[4].auto_gc_bytes = 0;
  invalid[5].realloc_level = 2;
  invalid[6].realloc_level = -1;
  for (const AllocatorOptions& o : invalid) {
    EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(MakeAllocator("stitching", m->get(), o).status().code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(AllocatorOptions{}.Validate().ok());
  EXPECT_DOUBLE_EQ(AllocatorStats{}.utilization(), 1.0);
}

}  // namespace
}  // namespace keel::mem
