// The driver loader must report exactly what this machine has: a driver and its devices, or
// UNAVAILABLE saying there is none — never a crash or a link failure.
#include "keel/cuda/driver.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

namespace keel::cuda {
namespace {

TEST(CudaDriverTest, ReportsTheDriverThisMachineHas) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  StatusOr<DriverInfo> info = QueryDriver();
  if (lib == nullptr) {
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(info.status().message().find("libcuda.so.1"), std::string::npos);
    return;
  }
  dlclose(lib);
  // A driver is present: either it works and lists devices, or it says why not.
  if (info.ok()) {
    EXPECT_GE(info->version, 1000);
    for (const DeviceInfo& d : info->devices) {
      EXPECT_FALSE(d.name.empty());
      EXPECT_GT(d.total_memory_bytes, 0u);
      EXPECT_GE(d.compute_capability_major, 3);
    }
  } else {
    EXPECT_EQ(info.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(info.status().message().find("failed"), std::string::npos);
  }
}

TEST(CudaDriverTest, RepeatedQueriesAgree) {
  StatusOr<DriverInfo> a = QueryDriver(), b = QueryDriver();
  ASSERT_EQ(a.ok(), b.ok());
  if (a.ok())
    EXPECT_EQ(a->devices.size(), b->devices.size());
  else
    EXPECT_EQ(a.status(), b.status());
}

}  // namespace
}  // namespace keel::cuda
