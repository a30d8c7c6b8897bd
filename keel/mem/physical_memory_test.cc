// Tests for the host and simulated PhysicalMemory backends: the shared rules (capacity,
// alignment, double map, Free with live mappings, deferred release) on both, and on the host
// backend that the memory is real: a chunk mapped twice shows the same bytes at both
// addresses, and a released chunk's pages come back zeroed.
#include "keel/mem/physical_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>

namespace keel::mem {
namespace {

constexpr uint64_t kChunk = 2ull << 20;

using Factory = std::function<StatusOr<std::unique_ptr<PhysicalMemory>>()>;

class BackendRulesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<PhysicalMemory>> m =
        GetParam() == "host"
            ? MakeHostMemory({.chunk_bytes = kChunk, .capacity_bytes = 4 * kChunk})
            : MakeSimulatedMemory({.chunk_bytes = kChunk, .capacity_bytes = 4 * kChunk});
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    mem_ = std::move(*m);
  }
  std::unique_ptr<PhysicalMemory> mem_;
};

TEST_P(BackendRulesTest, CapacityIsEnforced) {
  EXPECT_EQ(mem_->name(), GetParam());
  EXPECT_EQ(mem_->granularity(), kChunk);
  EXPECT_EQ(mem_->capacity(), 4 * kChunk);
  ChunkId ids[4];
  for (auto& id : ids) {
    StatusOr<ChunkId> c = mem_->CreateChunk();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    id = *c;
  }
  StatusOr<ChunkId> extra = mem_->CreateChunk();
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(mem_->counters().chunks_live, 4u);
  ASSERT_TRUE(mem_->ReleaseChunk(ids[0]).ok());
  EXPECT_TRUE(mem_->CreateChunk().ok());  // room again
  EXPECT_EQ(mem_->counters().peak_chunks_live, 4u);
}

TEST_P(BackendRulesTest, ReserveMapUnmapFreeRules) {
  EXPECT_EQ(mem_->Reserve(kChunk + 4096).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mem_->Reserve(0).status().code(), StatusCode::kInvalidArgument);
  StatusOr<uintptr_t> base = mem_->Reserve(2 * kChunk);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_EQ(*base % kChunk, 0u) << "reservations are granularity-aligned";
  StatusOr<ChunkId> c = mem_->CreateChunk();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(mem_->Map(*base + 4096, *c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mem_->Map(*base + 2 * kChunk, *c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mem_->Map(*base, 12345).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(mem_->Map(*base, *c).ok());
  EXPECT_EQ(mem_->Map(*base, *c).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(mem_->Free(*base, 2 * kChunk).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(mem_->Free(*base, kChunk).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mem_->Unmap(*base + kChunk).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mem_->Unmap(*base).ok());
  ASSERT_TRUE(mem_->Map(*base + kChunk, *c).ok()) << "the reservation survives Unmap";
  ASSERT_TRUE(mem_->Unmap(*base + kChunk).ok());
  ASSERT_TRUE(mem_->Free(*base, 2 * kChunk).ok());
  EXPECT_EQ(mem_->Free(*base, 2 * kChunk).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(mem_->ReleaseChunk(*c).ok());
  EXPECT_EQ(mem_->ReleaseChunk(*c).code(), StatusCode::kInvalidArgument);
  BackendCounters k = mem_->counters();
  EXPECT_EQ(k.chunks_live, 0u);
  EXPECT_EQ(k.maps, 2u);
  EXPECT_EQ(k.unmaps, 2u);
  EXPECT_EQ(k.reserves, 1u);
  EXPECT_EQ(k.frees, 1u);
}

TEST_P(BackendRulesTest, ReleaseOfAMappedChunkIsDeferredToTheLastUnmap) {
  StatusOr<uintptr_t> a = mem_->Reserve(kChunk);
  StatusOr<uintptr_t> b = mem_->Reserve(kChunk);
  StatusOr<ChunkId> c = mem_->CreateChunk();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(mem_->Map(*a, *c).ok());
  ASSERT_TRUE(mem_->Map(*b, *c).ok());
  ASSERT_TRUE(mem_->ReleaseChunk(*c).ok());
  EXPECT_EQ(mem_->counters().chunks_live, 1u) << "still mapped twice";
  EXPECT_EQ(mem_->Map(*a + 0, *c).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mem_->Unmap(*a).ok());
  EXPECT_EQ(mem_->counters().chunks_live, 1u);
  ASSERT_TRUE(mem_->Unmap(*b).ok());
  EXPECT_EQ(mem_->counters().chunks_live, 0u);
  ASSERT_TRUE(mem_->Free(*a, kChunk).ok());
  ASSERT_TRUE(mem_->Free(*b, kChunk).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendRulesTest, ::testing::Values("host", "simulated"));

TEST(HostMemoryTest, AChunkMappedTwiceShowsTheSameBytes) {
  auto mem = MakeHostMemory({.chunk_bytes = kChunk, .capacity_bytes = 8 * kChunk});
  ASSERT_TRUE(mem.ok());
  PhysicalMemory& m = **mem;
  StatusOr<uintptr_t> primary = m.Reserve(2 * kChunk);
  StatusOr<uintptr_t> stitched = m.Reserve(2 * kChunk);
  StatusOr<ChunkId> c0 = m.CreateChunk();
  StatusOr<ChunkId> c1 = m.CreateChunk();
  ASSERT_TRUE(primary.ok() && stitched.ok() && c0.ok() && c1.ok());
  ASSERT_TRUE(m.Map(*primary, *c0).ok());
  ASSERT_TRUE(m.Map(*primary + kChunk, *c1).ok());
  // The stitched view maps them in the other order.
  ASSERT_TRUE(m.Map(*stitched, *c1).ok());
  ASSERT_TRUE(m.Map(*stitched + kChunk, *c0).ok());
  auto* p = reinterpret_cast<unsigned char*>(*primary);
  auto* s = reinterpret_cast<unsigned char*>(*stitched);
  std::memset(p, 0x11, kChunk);
  std::memset(p + kChunk, 0x22, kChunk);
  EXPECT_EQ(s[0], 0x22);
  EXPECT_EQ(s[kChunk - 1], 0x22);
  EXPECT_EQ(s[kChunk], 0x11);
  s[kChunk + 7] = 0x99;
  EXPECT_EQ(p[7], 0x99) << "writes through the stitched view reach the primary";
  for (uintptr_t a : {*primary, *primary + kChunk, *stitched, *stitched + kChunk}) {
    ASSERT_TRUE(m.Unmap(a).ok());
  }
  ASSERT_TRUE(m.ReleaseChunk(*c0).ok());
  ASSERT_TRUE(m.ReleaseChunk(*c1).ok());
  // A new chunk reuses a released slot; its pages were punched out, so it reads zero.
  StatusOr<ChunkId> fresh = m.CreateChunk();
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(m.Map(*primary, *fresh).ok());
  EXPECT_EQ(p[7], 0);
  EXPECT_EQ(p[kChunk - 1], 0);
  ASSERT_TRUE(m.Unmap(*primary).ok());
  ASSERT_TRUE(m.ReleaseChunk(*fresh).ok());
  ASSERT_TRUE(m.Free(*primary, 2 * kChunk).ok());
  ASSERT_TRUE(m.Free(*stitched, 2 * kChunk).ok());
  EXPECT_EQ(m.counters().chunks_live, 0u);
}

TEST(HostMemoryTest, DestructionWithLiveMappingsDoesNotLeakOrCrash) {
  auto mem = MakeHostMemory({.chunk_bytes = kChunk, .capacity_bytes = 2 * kChunk});
  ASSERT_TRUE(mem.ok());
  StatusOr<uintptr_t> base = (*mem)->Reserve(kChunk);
  StatusOr<ChunkId> c = (*mem)->CreateChunk();
  ASSERT_TRUE(base.ok() && c.ok());
  ASSERT_TRUE((*mem)->Map(*base, *c).ok());
  mem->reset();  // unmaps the reservation and closes the memfd
}

TEST(BackendOptionsTest, BadOptionsAreRejected) {
  EXPECT_EQ(MakeHostMemory({.chunk_bytes = 1000}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeHostMemory({.chunk_bytes = 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeHostMemory({.chunk_bytes = kChunk, .capacity_bytes = kChunk / 2}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeSimulatedMemory({.chunk_bytes = 3}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeSimulatedMemory({.chunk_bytes = kChunk, .capacity_bytes = 0}).status().code(),
            StatusCode::kInvalidArgument);
  // Capacity rounds down to whole chunks.
  auto m = MakeSimulatedMemory({.chunk_bytes = kChunk, .capacity_bytes = 3 * kChunk + 5});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->capacity(), 3 * kChunk);
}

}  // namespace
}  // namespace keel::mem
