// The CUDA backend: skips with the reason where there is no driver or GPU; on a GPU machine,
// one short pass over create / reserve / map / set-access / unmap / release.
#include <gtest/gtest.h>

#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

TEST(CudaMemoryTest, CreateReserveMapUnmapRelease) {
  StatusOr<std::unique_ptr<PhysicalMemory>> made = MakeCudaMemory({.device = 0});
  if (!made.ok()) {
    ASSERT_EQ(made.status().code(), StatusCode::kUnavailable) << made.status().ToString();
    GTEST_SKIP() << made.status().message();
  }
  PhysicalMemory& m = **made;
  EXPECT_EQ(m.name(), "cuda");
  const uint64_t g = m.granularity();
  EXPECT_GE(g, 2ull << 20);
  EXPECT_EQ(g % (2ull << 20), 0u);
  EXPECT_GE(m.capacity(), g);
  StatusOr<ChunkId> c = m.CreateChunk();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  StatusOr<uintptr_t> base = m.Reserve(2 * g);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_EQ(*base % g, 0u);
  // The same chunk at two addresses: what a stitched block is.
  ASSERT_TRUE(m.Map(*base, *c).ok());
  ASSERT_TRUE(m.Map(*base + g, *c).ok());
  EXPECT_EQ(m.Map(*base, *c).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Free(*base, 2 * g).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(m.Unmap(*base).ok());
  ASSERT_TRUE(m.Unmap(*base + g).ok());
  ASSERT_TRUE(m.Free(*base, 2 * g).ok());
  ASSERT_TRUE(m.ReleaseChunk(*c).ok());
  EXPECT_EQ(m.counters().chunks_live, 0u);
}

TEST(CudaMemoryTest, BadDeviceIsUnavailable) {
  StatusOr<std::unique_ptr<PhysicalMemory>> made = MakeCudaMemory({.device = 4096});
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kUnavailable) << made.status().ToString();
}

}  // namespace
}  // namespace keel::mem
