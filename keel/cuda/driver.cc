// CUDA driver loading through dlopen; the function table is resolved once.
#include "keel/cuda/driver.h"

#include <cuda.h>
#include <dlfcn.h>

#include <mutex>

namespace keel::cuda {
namespace {

struct DriverApi {
  decltype(&cuInit) init = nullptr;
  decltype(&cuDriverGetVersion) driver_get_version = nullptr;
  decltype(&cuDeviceGetCount) device_get_count = nullptr;
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetName) device_get_name = nullptr;
  decltype(&cuDeviceTotalMem) device_total_mem = nullptr;
  decltype(&cuDeviceGetAttribute) device_get_attribute = nullptr;
  decltype(&cuGetErrorString) get_error_string = nullptr;
  decltype(&cuMemHostRegister) host_register = nullptr;
  decltype(&cuMemHostUnregister) host_unregister = nullptr;
};

template <typename F>
bool Resolve(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

// Loaded once; the handle is never closed (the driver stays mapped for the process).
const StatusOr<DriverApi>& Api() {
  static const StatusOr<DriverApi>* api = [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = dlerror();
      return new StatusOr<DriverApi>(
          UnavailableError(std::string("no CUDA driver on this machine (dlopen libcuda.so.1: ") +
                           (err ? err : "unknown error") + ")"));
    }
    DriverApi a;
    bool ok = Resolve(lib, "cuInit", &a.init) &&
              Resolve(lib, "cuDriverGetVersion", &a.driver_get_version) &&
              Resolve(lib, "cuDeviceGetCount", &a.device_get_count) &&
              Resolve(lib, "cuDeviceGet", &a.device_get) &&
              Resolve(lib, "cuDeviceGetName", &a.device_get_name) &&
              Resolve(lib, "cuDeviceTotalMem_v2", &a.device_total_mem) &&
              Resolve(lib, "cuDeviceGetAttribute", &a.device_get_attribute) &&
              Resolve(lib, "cuGetErrorString", &a.get_error_string) &&
              Resolve(lib, "cuMemHostRegister_v2", &a.host_register) &&
              Resolve(lib, "cuMemHostUnregister", &a.host_unregister);
    if (!ok) {
      return new StatusOr<DriverApi>(
          UnavailableError("libcuda.so.1 lacks a required driver function (driver too old?)"));
    }
    return new StatusOr<DriverApi>(a);
  }();
  return *api;
}

Status Check(const DriverApi& api, CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return OkStatus();
  const char* text = nullptr;
  api.get_error_string(r, &text);
  return UnavailableError(std::string(what) + " failed: " + (text ? text : "unknown error") +
                          " (CUresult " + std::to_string(static_cast<int>(r)) + ")");
}

}  // namespace

StatusOr<DriverInfo> QueryDriver() {
  KEEL_ASSIGN_OR_RETURN(const DriverApi& api, Api());
  KEEL_RETURN_IF_ERROR(Check(api, api.init(0), "cuInit"));
  DriverInfo info;
  KEEL_RETURN_IF_ERROR(Check(api, api.driver_get_version(&info.version), "cuDriverGetVersion"));
  int count = 0;
  KEEL_RETURN_IF_ERROR(Check(api, api.device_get_count(&count), "cuDeviceGetCount"));
  for (int i = 0; i < count; ++i) {
    CUdevice dev;
    KEEL_RETURN_IF_ERROR(Check(api, api.device_get(&dev, i), "cuDeviceGet"));
    DeviceInfo d;
    d.index = i;
    char name[256] = {0};
    KEEL_RETURN_IF_ERROR(
        Check(api, api.device_get_name(name, sizeof(name) - 1, dev), "cuDeviceGetName"));
    d.name = name;
    KEEL_RETURN_IF_ERROR(
        Check(api, api.device_total_mem(&d.total_memory_bytes, dev), "cuDeviceTotalMem"));
    KEEL_RETURN_IF_ERROR(
        Check(api,
              api.device_get_attribute(&d.compute_capability_major,
                                       CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
              "cuDeviceGetAttribute"));
    KEEL_RETURN_IF_ERROR(
        Check(api,
              api.device_get_attribute(&d.compute_capability_minor,
                                       CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
              "cuDeviceGetAttribute"));
    info.devices.push_back(std::move(d));
  }
  return info;
}

Status RegisterHostMemory(void* data, size_t bytes) {
  KEEL_ASSIGN_OR_RETURN(const DriverApi& api, Api());
  return Check(api, api.host_register(data, bytes, CU_MEMHOSTREGISTER_PORTABLE),
               "cuMemHostRegister");
}

Status UnregisterHostMemory(void* data) {
  KEEL_ASSIGN_OR_RETURN(const DriverApi& api, Api());
  return Check(api, api.host_unregister(data), "cuMemHostUnregister");
}

}  // namespace keel::cuda
