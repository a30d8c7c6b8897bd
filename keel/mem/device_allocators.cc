// DeviceAllocators: per-device allocators created lazily, streams numbered on first sight.
#include "keel/mem/device_allocators.h"

#include <utility>

namespace keel::mem {

DeviceAllocators::DeviceAllocators(BackendFactory make_backend, std::string policy,
                                   AllocatorOptions options)
    : make_backend_(std::move(make_backend)), policy_(std::move(policy)), options_(options) {}

DeviceAllocators::~DeviceAllocators() = default;

DeviceAllocators::Device& DeviceAllocators::GetDevice(int device) {
  auto [it, inserted] = devices_.try_emplace(device);
  Device& d = it->second;
  if (!inserted) return d;
  if (device < 0) {
    d.status = InvalidArgumentError("device " + std::to_string(device) + " is negative");
    return d;
  }
  StatusOr<std::unique_ptr<PhysicalMemory>> backend = make_backend_(device);
  if (!backend.ok()) {
    d.status = backend.status();
    return d;
  }
  d.backend = std::move(*backend);
  StatusOr<std::unique_ptr<Allocator>> alloc = MakeAllocator(policy_, d.backend.get(), options_);
  if (!alloc.ok()) {
    d.status = alloc.status();
    d.backend.reset();
    return d;
  }
  d.allocator = std::move(*alloc);
  return d;
}

StatusOr<void*> DeviceAllocators::Malloc(uint64_t bytes, int device, const void* stream) {
  MutexLock lock(&mu_);
  Device& d = GetDevice(device);
  if (d.allocator == nullptr) return d.status;
  auto [it, inserted] = d.streams.try_emplace(stream, static_cast<int>(d.streams.size()));
  KEEL_ASSIGN_OR_RETURN(Allocation a, d.allocator->Allocate(bytes, it->second));
  return a.ptr;
}

Status DeviceAllocators::Free(void* ptr, int device) {
  MutexLock lock(&mu_);
  Device& d = GetDevice(device);
  if (d.allocator == nullptr) return d.status;
  return d.allocator->Free(ptr);
}

StatusOr<AllocatorStats> DeviceAllocators::Stats(int device) {
  MutexLock lock(&mu_);
  Device& d = GetDevice(device);
  if (d.allocator == nullptr) return d.status;
  return d.allocator->stats();
}

}  // namespace keel::mem
