// libkeel_torch_alloc.so: keel's stitching allocator over the CUDA backend, as the two C
// functions torch.cuda.memory.CUDAPluggableAllocator loads:
//
//   alloc = torch.cuda.memory.CUDAPluggableAllocator("libkeel_torch_alloc.so",
//                                                    "keel_malloc", "keel_free")
//   torch.cuda.memory.change_current_allocator(alloc)   # before any CUDA tensor exists
//
// Each device gets its allocator on first use; each CUDA stream its own pools. Failures
// (out of memory, no GPU) are logged and answered with a null pointer, which PyTorch turns
// into its out-of-memory error. The library compiles everywhere; it only works with a GPU.
#include <sys/types.h>

#include "keel/common/logging.h"
#include "keel/mem/device_allocators.h"

namespace {

keel::mem::DeviceAllocators& Devices() {
  // Never destroyed: PyTorch may free tensors from its own static destructors at exit.
  static auto* devices = new keel::mem::DeviceAllocators(
      [](int device) { return keel::mem::MakeCudaMemory({.device = device}); }, "stitching",
      keel::mem::AllocatorOptions{});
  return *devices;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* keel_malloc(ssize_t size, int device, void* stream) {
  if (size <= 0) return nullptr;
  keel::StatusOr<void*> p = Devices().Malloc(static_cast<uint64_t>(size), device, stream);
  if (!p.ok()) {
    KEEL_LOG(Error, "keel_malloc({} bytes, device {}): {}", size, device, p.status().ToString());
    return nullptr;
  }
  return *p;
}

__attribute__((visibility("default"))) void keel_free(void* ptr, ssize_t /*size*/, int device,
                                                      void* /*stream*/) {
  if (ptr == nullptr) return;
  keel::Status s = Devices().Free(ptr, device);
  if (!s.ok()) KEEL_LOG(Error, "keel_free(device {}): {}", device, s.ToString());
}

}  // extern "C"
