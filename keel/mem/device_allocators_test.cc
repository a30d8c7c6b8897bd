// DeviceAllocators over the host backend (lazy per-device creation, streams as separate
// pools, a failing device's error kept), and libkeel_torch_alloc.so loaded as PyTorch loads
// it: both C symbols exist, and without a GPU keel_malloc answers null instead of crashing.
#include "keel/mem/device_allocators.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace keel::mem {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

TEST(DeviceAllocatorsTest, DevicesAreMadeOnFirstUseAndStreamsGetTheirOwnPools) {
  int made = 0;
  DeviceAllocators devices(
      [&made](int device) -> StatusOr<std::unique_ptr<PhysicalMemory>> {
        ++made;
        if (device == 1) return UnavailableError("no device 1 here");
        return MakeHostMemory({.chunk_bytes = 2 * kMiB, .capacity_bytes = 64 * kMiB});
      },
      "stitching", {});
  EXPECT_EQ(made, 0);
  int s0 = 0, s1 = 0;  // two distinct "stream" handles
  StatusOr<void*> a = devices.Malloc(4 * kMiB, 0, &s0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::memset(*a, 1, 4 * kMiB);
  ASSERT_TRUE(devices.Free(*a, 0).ok());
  StatusOr<void*> b = devices.Malloc(4 * kMiB, 0, &s1);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*b, *a) << "another stream does not reuse stream 0's cached block";
  StatusOr<void*> c = devices.Malloc(4 * kMiB, 0, &s0);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a) << "the same stream does";
  EXPECT_EQ(made, 1);
  StatusOr<AllocatorStats> st = devices.Stats(0);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->reserved_bytes, 40 * kMiB);

  for (int i = 0; i < 2; ++i) {
    StatusOr<void*> bad = devices.Malloc(kMiB, 1, nullptr);
    ASSERT_EQ(bad.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(bad.status().message().find("no device 1"), std::string::npos);
  }
  EXPECT_EQ(made, 2) << "a failed device is not retried on every call";
  EXPECT_EQ(devices.Malloc(kMiB, -1, nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(devices.Free(&s0, 0).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(devices.Free(*b, 0).ok());
  ASSERT_TRUE(devices.Free(*c, 0).ok());
}

TEST(TorchAllocatorLibraryTest, ExportsTheCSymbolsAndFailsCleanlyWithoutAGpu) {
  const char* build = std::getenv("KEEL_BUILD_DIR");
  if (build == nullptr) GTEST_SKIP() << "KEEL_BUILD_DIR is not set (run through ctest)";
  std::string path = std::string(build) + "/keel/mem/libkeel_torch_alloc.so";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  using Malloc = void* (*)(ssize_t, int, void*);
  using Free = void (*)(void*, ssize_t, int, void*);
  auto keel_malloc = reinterpret_cast<Malloc>(dlsym(lib, "keel_malloc"));
  auto keel_free = reinterpret_cast<Free>(dlsym(lib, "keel_free"));
  ASSERT_NE(keel_malloc, nullptr);
  ASSERT_NE(keel_free, nullptr);
  EXPECT_EQ(keel_malloc(0, 0, nullptr), nullptr);
  keel_free(nullptr, 0, 0, nullptr);
  if (void* probe = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL); probe != nullptr) {
    dlclose(probe);
    void* p = keel_malloc(4 << 20, 0, nullptr);  // a GPU machine: a real device allocation
    EXPECT_NE(p, nullptr);
    keel_free(p, 4 << 20, 0, nullptr);
  } else {
    EXPECT_EQ(keel_malloc(4 << 20, 0, nullptr), nullptr) << "no driver: null, not a crash";
  }
  // Not dlclose()d: the library keeps its per-device state for the life of the process.
}

}  // namespace
}  // namespace keel::mem
