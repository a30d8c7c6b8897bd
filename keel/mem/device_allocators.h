// DeviceAllocators: one allocator per device, created on first use, with streams numbered as
// they are first seen — what a PyTorch pluggable allocator needs behind its two C functions
// (torch_allocator.cc builds libkeel_torch_alloc.so from it over the CUDA backend).
//
//   DeviceAllocators devices([](int d) { return MakeCudaMemory({.device = d}); }, "stitching", {});
//   KEEL_ASSIGN_OR_RETURN(void* p, devices.Malloc(bytes, /*device=*/0, stream_handle));
//   KEEL_RETURN_IF_ERROR(devices.Free(p, 0));
//
// A device whose backend cannot be made (no GPU, no driver) keeps failing with that error; it
// is not retried on every call. Thread-safety: thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "keel/common/mutex.h"
#include "keel/common/status.h"
#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem {

class DeviceAllocators {
 public:
  using BackendFactory = std::function<StatusOr<std::unique_ptr<PhysicalMemory>>(int device)>;

  DeviceAllocators(BackendFactory make_backend, std::string policy, AllocatorOptions options);
  ~DeviceAllocators();

  // `stream` is an opaque handle (a cudaStream_t); each distinct handle gets its own pools.
  StatusOr<void*> Malloc(uint64_t bytes, int device, const void* stream);
  Status Free(void* ptr, int device);
  // The device's allocator stats, or the error that keeps it from existing.
  StatusOr<AllocatorStats> Stats(int device);

 private:
  struct Device {
    Status status;  // why the device has no allocator
    std::unique_ptr<PhysicalMemory> backend;
    std::unique_ptr<Allocator> allocator;  // declared after backend: destroyed first
    std::unordered_map<const void*, int> streams;
  };
  // The device's entry, created (once) on first use.
  Device& GetDevice(int device) KEEL_REQUIRES(mu_);

  const BackendFactory make_backend_;
  const std::string policy_;
  const AllocatorOptions options_;
  Mutex mu_;
  std::map<int, Device> devices_ KEEL_GUARDED_BY(mu_);
};

}  // namespace keel::mem
