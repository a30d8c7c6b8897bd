// The CUDA driver, loaded at run time.
//
// keel never links libcuda: GPU code finds the driver with dlopen("libcuda.so.1") on first
// use, so one binary runs on machines with and without a GPU. Without a driver, calls return
// UNAVAILABLE with a message saying so; nothing crashes. This folder is built only when
// KEEL_WITH_CUDA is on (a toolkit was found at build time, for its headers).
// Thread-safety: all functions are thread-safe; the driver is loaded once.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "keel/common/status.h"

namespace keel::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t total_memory_bytes = 0;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
};

struct DriverInfo {
  int version = 0;  // e.g. 13000 for CUDA 13.0
  std::vector<DeviceInfo> devices;
};

// Loads and initialises the driver (once) and lists the devices.
StatusOr<DriverInfo> QueryDriver();

// Page-locks host memory (e.g. a mapped checkpoint slot) for fast device<->host copies, in
// every context (CU_MEMHOSTREGISTER_PORTABLE). Needs a current CUDA context on the calling
// thread (PyTorch makes its device's primary context current once it used the GPU).
Status RegisterHostMemory(void* data, size_t bytes);
// Undoes RegisterHostMemory; call before unmapping the memory.
Status UnregisterHostMemory(void* data);

}  // namespace keel::cuda
