// The CUDA backend: the driver's virtual-memory API (cuMemCreate/cuMemMap/...), loaded at run
// time, so it compiles on every machine and answers Unavailable where there is no GPU.
//
// One chunk is one cuMemCreate of granularity() bytes, pinned on the device; Map is cuMemMap
// plus cuMemSetAccess(read/write) for that device, exactly as GMLake's VirBlock does
// (glake.md §1). The rules of physical_memory.h are checked by the shared BackendLedger
// before a driver call is made, so a bad call from an allocator is an error, not a fault.
#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "keel/common/mutex.h"
#include "keel/mem/backend_ledger.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

// Note [Own driver prototypes]
// keel/cuda/driver.cc also dlopens libcuda, but it is built only when a CUDA toolkit is
// found (it includes <cuda.h>), and this backend must compile on every machine. So the few
// types and entry points used here are declared below from the public driver API reference
// (CUDA 11.2+ ABI); each struct matches the documented layout (CUmemAllocationProp is 32
// bytes: type, handle types, location {type, id}, win32 metadata pointer, 8 bytes of flags).
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUdeviceptr = unsigned long long;                   // NOLINT(google-runtime-int)
using CUmemGenericAllocationHandle = unsigned long long;  // NOLINT(google-runtime-int)

constexpr int kMemAllocationTypePinned = 1;
constexpr int kMemLocationTypeDevice = 1;
constexpr int kMemAccessFlagsReadWrite = 3;
constexpr int kGranularityRecommended = 1;
constexpr CUresult kSuccess = 0;

struct CUmemLocation {
  int type;
  int id;
};
struct CUmemAllocationProp {
  int type;
  int requested_handle_types;
  CUmemLocation location;
  void* win32_handle_meta_data;
  struct {
    unsigned char compression_type;
    unsigned char gpu_direct_rdma_capable;
    unsigned short usage;  // NOLINT(google-runtime-int)
    unsigned char reserved[4];
  } alloc_flags;
};
static_assert(sizeof(CUmemAllocationProp) == 32, "CUmemAllocationProp layout");
struct CUmemAccessDesc {
  CUmemLocation location;
  int flags;
};

struct DriverApi {
  CUresult (*init)(unsigned int);
  CUresult (*device_get)(CUdevice*, int);
  CUresult (*device_get_count)(int*);
  CUresult (*primary_ctx_retain)(CUcontext*, CUdevice);
  CUresult (*primary_ctx_release)(CUdevice);
  CUresult (*ctx_set_current)(CUcontext);
  CUresult (*get_error_string)(CUresult, const char**);
  CUresult (*mem_get_info)(size_t*, size_t*);
  CUresult (*mem_get_granularity)(size_t*, const CUmemAllocationProp*, int);
  CUresult (*mem_create)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*,
                         unsigned long long);  // NOLINT(google-runtime-int)
  CUresult (*mem_release)(CUmemGenericAllocationHandle);
  CUresult (*address_reserve)(CUdeviceptr*, size_t, size_t, CUdeviceptr,
                              unsigned long long);  // NOLINT(google-runtime-int)
  CUresult (*address_free)(CUdeviceptr, size_t);
  CUresult (*mem_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                      unsigned long long);  // NOLINT(google-runtime-int)
  CUresult (*mem_unmap)(CUdeviceptr, size_t);
  CUresult (*mem_set_access)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
};

template <typename F>
bool Resolve(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

// Loaded once; the handle is never closed (the driver stays mapped for the process).
const StatusOr<DriverApi>& Api() {
  static const auto* api = [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = dlerror();
      return new StatusOr<DriverApi>(UnavailableError(
          std::string("cuda memory: no CUDA driver on this machine (dlopen libcuda.so.1: ") +
          (err != nullptr ? err : "unknown error") + ")"));
    }
    DriverApi a{};
    bool ok = Resolve(lib, "cuInit", &a.init) && Resolve(lib, "cuDeviceGet", &a.device_get) &&
              Resolve(lib, "cuDeviceGetCount", &a.device_get_count) &&
              Resolve(lib, "cuDevicePrimaryCtxRetain", &a.primary_ctx_retain) &&
              Resolve(lib, "cuDevicePrimaryCtxRelease_v2", &a.primary_ctx_release) &&
              Resolve(lib, "cuCtxSetCurrent", &a.ctx_set_current) &&
              Resolve(lib, "cuGetErrorString", &a.get_error_string) &&
              Resolve(lib, "cuMemGetInfo_v2", &a.mem_get_info) &&
              Resolve(lib, "cuMemGetAllocationGranularity", &a.mem_get_granularity) &&
              Resolve(lib, "cuMemCreate", &a.mem_create) &&
              Resolve(lib, "cuMemRelease", &a.mem_release) &&
              Resolve(lib, "cuMemAddressReserve", &a.address_reserve) &&
              Resolve(lib, "cuMemAddressFree", &a.address_free) &&
              Resolve(lib, "cuMemMap", &a.mem_map) && Resolve(lib, "cuMemUnmap", &a.mem_unmap) &&
              Resolve(lib, "cuMemSetAccess", &a.mem_set_access);
    if (!ok) {
      return new StatusOr<DriverApi>(UnavailableError(
          "cuda memory: libcuda.so.1 lacks the virtual-memory API (driver older than 10.2?)"));
    }
    return new StatusOr<DriverApi>(a);
  }();
  return *api;
}

Status Check(const DriverApi& api, CUresult r, const char* what) {
  if (r == kSuccess) return OkStatus();
  const char* text = nullptr;
  api.get_error_string(r, &text);
  std::string msg = std::string("cuda memory: ") + what +
                    " failed: " + (text != nullptr ? text : "error " + std::to_string(r));
  // CUDA_ERROR_OUT_OF_MEMORY = 2.
  return r == 2 ? ResourceExhaustedError(msg) : InternalError(msg);
}

class CudaMemory final : public PhysicalMemory {
 public:
  CudaMemory(const DriverApi& api, CUdevice device, CUcontext ctx, uint64_t granularity,
             uint64_t capacity)
      : api_(api),
        device_(device),
        ctx_(ctx),
        granularity_(granularity),
        capacity_(capacity / granularity * granularity),
        ledger_(granularity, capacity) {
    prop_.type = kMemAllocationTypePinned;
    prop_.location = {kMemLocationTypeDevice, device};
  }

  ~CudaMemory() override {
    MutexLock lock(&mu_);
    // Tear down whatever the allocator above left: mappings, ranges, then handles.
    api_.ctx_set_current(ctx_);
    for (const auto& [address, chunk] : ledger_.mappings()) api_.mem_unmap(address, granularity_);
    for (const auto& [base, bytes] : ledger_.reservations()) api_.address_free(base, bytes);
    for (uint64_t handle : ledger_.LivePayloads()) api_.mem_release(handle);
    api_.primary_ctx_release(device_);
  }

  std::string_view name() const override { return "cuda"; }
  uint64_t granularity() const override { return granularity_; }
  uint64_t capacity() const override { return capacity_; }

  StatusOr<ChunkId> CreateChunk() override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckCreate());
    KEEL_RETURN_IF_ERROR(Check(api_, api_.ctx_set_current(ctx_), "cuCtxSetCurrent"));
    CUmemGenericAllocationHandle handle = 0;
    KEEL_RETURN_IF_ERROR(
        Check(api_, api_.mem_create(&handle, granularity(), &prop_, 0), "cuMemCreate"));
    return ledger_.AddChunk(handle);
  }

  Status ReleaseChunk(ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(bool free_now, ledger_.Release(chunk));
    KEEL_ASSIGN_OR_RETURN(uint64_t handle, ledger_.Payload(chunk, /*include_released=*/true));
    if (free_now) return ReleaseHandle(chunk, handle);
    return OkStatus();
  }

  StatusOr<uintptr_t> Reserve(uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckReserve(bytes));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.ctx_set_current(ctx_), "cuCtxSetCurrent"));
    CUdeviceptr base = 0;
    KEEL_RETURN_IF_ERROR(Check(api_, api_.address_reserve(&base, bytes, granularity(), 0, 0),
                               "cuMemAddressReserve"));
    ledger_.AddReservation(base, bytes);
    return static_cast<uintptr_t>(base);
  }

  Status Free(uintptr_t base, uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckFree(base, bytes));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.ctx_set_current(ctx_), "cuCtxSetCurrent"));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.address_free(base, bytes), "cuMemAddressFree"));
    ledger_.RemoveReservation(base);
    return OkStatus();
  }

  Status Map(uintptr_t address, ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckMap(address, chunk));
    KEEL_ASSIGN_OR_RETURN(uint64_t handle, ledger_.Payload(chunk));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.ctx_set_current(ctx_), "cuCtxSetCurrent"));
    KEEL_RETURN_IF_ERROR(
        Check(api_, api_.mem_map(address, granularity(), 0, handle, 0), "cuMemMap"));
    CUmemAccessDesc access{{kMemLocationTypeDevice, device_}, kMemAccessFlagsReadWrite};
    Status s =
        Check(api_, api_.mem_set_access(address, granularity(), &access, 1), "cuMemSetAccess");
    if (!s.ok()) {
      api_.mem_unmap(address, granularity());
      return s;
    }
    ledger_.AddMapping(address, chunk);
    return OkStatus();
  }

  Status Unmap(uintptr_t address) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(ChunkId chunk, ledger_.CheckUnmap(address));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.ctx_set_current(ctx_), "cuCtxSetCurrent"));
    KEEL_RETURN_IF_ERROR(Check(api_, api_.mem_unmap(address, granularity()), "cuMemUnmap"));
    if (ledger_.RemoveMapping(address)) {
      KEEL_ASSIGN_OR_RETURN(uint64_t handle, ledger_.Payload(chunk, /*include_released=*/true));
      return ReleaseHandle(chunk, handle);
    }
    return OkStatus();
  }

  BackendCounters counters() const override {
    MutexLock lock(&mu_);
    return ledger_.counters();
  }

 private:
  Status ReleaseHandle(ChunkId chunk, uint64_t handle) KEEL_REQUIRES(mu_) {
    ledger_.DropChunk(chunk);
    return Check(api_, api_.mem_release(handle), "cuMemRelease");
  }

  const DriverApi api_;
  const CUdevice device_;
  const CUcontext ctx_;
  CUmemAllocationProp prop_{};
  const uint64_t granularity_, capacity_;  // immutable: read without mu_
  mutable Mutex mu_;
  internal::BackendLedger ledger_ KEEL_GUARDED_BY(mu_);
};

// The chunk size: 2 MiB (GMLake's) rounded up to the device's recommended granularity.
StatusOr<uint64_t> ChunkBytes(const DriverApi& api, CUdevice device) {
  CUmemAllocationProp prop{};
  prop.type = kMemAllocationTypePinned;
  prop.location = {kMemLocationTypeDevice, device};
  size_t g = 0;
  KEEL_RETURN_IF_ERROR(Check(api, api.mem_get_granularity(&g, &prop, kGranularityRecommended),
                             "cuMemGetAllocationGranularity"));
  if (g == 0) return InternalError("cuda memory: the driver reports a granularity of 0");
  constexpr uint64_t kTwoMiB = 2ull << 20;
  return (kTwoMiB + g - 1) / g * g;
}

}  // namespace

StatusOr<std::unique_ptr<PhysicalMemory>> MakeCudaMemory(const CudaMemoryOptions& options) {
  const StatusOr<DriverApi>& loaded = Api();
  if (!loaded.ok()) return loaded.status();
  const DriverApi& api = *loaded;
  // A driver without a usable GPU (CUDA_ERROR_NO_DEVICE and the like) fails here: that is
  // "unavailable", like a missing driver, not an internal error.
  if (Status s = Check(api, api.init(0), "cuInit"); !s.ok()) {
    return UnavailableError(s.message() + " (no usable GPU on this machine?)");
  }
  int count = 0;
  KEEL_RETURN_IF_ERROR(Check(api, api.device_get_count(&count), "cuDeviceGetCount"));
  if (options.device < 0 || options.device >= count) {
    return UnavailableError("cuda memory: device " + std::to_string(options.device) +
                            " does not exist (" + std::to_string(count) + " GPU(s) visible)");
  }
  CUdevice device = 0;
  KEEL_RETURN_IF_ERROR(Check(api, api.device_get(&device, options.device), "cuDeviceGet"));
  CUcontext ctx = nullptr;
  KEEL_RETURN_IF_ERROR(
      Check(api, api.primary_ctx_retain(&ctx, device), "cuDevicePrimaryCtxRetain"));
  auto fail = [&](Status s) {
    api.primary_ctx_release(device);
    return s;
  };
  if (Status s = Check(api, api.ctx_set_current(ctx), "cuCtxSetCurrent"); !s.ok()) {
    return fail(s);
  }
  StatusOr<uint64_t> chunk = ChunkBytes(api, device);
  if (!chunk.ok()) return fail(chunk.status());
  size_t free_bytes = 0, total_bytes = 0;
  if (Status s = Check(api, api.mem_get_info(&free_bytes, &total_bytes), "cuMemGetInfo"); !s.ok()) {
    return fail(s);
  }
  uint64_t capacity = options.capacity_bytes == 0 ? free_bytes : options.capacity_bytes;
  capacity = std::min<uint64_t>(capacity, total_bytes);
  if (capacity < *chunk) {
    return fail(ResourceExhaustedError("cuda memory: device " + std::to_string(options.device) +
                                       " has only " + internal::FormatBytes(capacity) +
                                       " available, less than one chunk"));
  }
  return std::unique_ptr<PhysicalMemory>(new CudaMemory(api, device, ctx, *chunk, capacity));
}

}  // namespace keel::mem
