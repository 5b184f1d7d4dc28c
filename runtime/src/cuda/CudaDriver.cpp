//===- CudaDriver.cpp - dlopen the CUDA driver once -----------------------===//

#include "CudaDriver.h"

#include <cstdlib>
#include <dlfcn.h>
#include <mutex>

using namespace attn::runtime::cuda;

namespace {

struct Loaded {
  Driver driver{};
  bool ok = false;
  std::string error;
};

/// Resolves \p name into \p slot; false (with \p error set) when missing.
template <typename Fn>
bool resolve(void *lib, const std::string &libName, const char *name, Fn &slot,
             std::string &error) {
  dlerror();
  void *sym = dlsym(lib, name);
  if (!sym) {
    const char *why = dlerror();
    error = "CUDA driver not available: '" + libName + "' has no symbol " +
            name + (why ? std::string(" (") + why + ")" : std::string());
    return false;
  }
  slot = reinterpret_cast<Fn>(sym);
  return true;
}

void load(Loaded &out) {
  const char *env = std::getenv("ATTN_CUDA_DRIVER");
  std::string libName = env && *env ? env : "libcuda.so.1";
  // Never closed: modules and contexts live as long as the process.
  void *lib = dlopen(libName.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *why = dlerror();
    std::string reason = why ? why : "dlopen failed";
    if (reason.find(libName) == std::string::npos)
      reason = "cannot load '" + libName + "': " + reason;
    out.error = "CUDA driver not available: " + reason;
    return;
  }
  Driver &d = out.driver;
#define ATTN_RESOLVE(name)                                                     \
  if (!resolve(lib, libName, #name, d.name, out.error))                        \
    return;
  ATTN_RESOLVE(cuInit)
  ATTN_RESOLVE(cuGetErrorString)
  ATTN_RESOLVE(cuDeviceGetCount)
  ATTN_RESOLVE(cuDeviceGet)
  ATTN_RESOLVE(cuDevicePrimaryCtxRetain)
  ATTN_RESOLVE(cuCtxGetCurrent)
  ATTN_RESOLVE(cuCtxSetCurrent)
  ATTN_RESOLVE(cuCtxGetDevice)
  ATTN_RESOLVE(cuModuleLoadData)
  ATTN_RESOLVE(cuModuleGetFunction)
  ATTN_RESOLVE(cuFuncSetAttribute)
  ATTN_RESOLVE(cuLaunchKernel)
  ATTN_RESOLVE(cuMemsetD32Async)
  ATTN_RESOLVE(cuMemAllocAsync)
  ATTN_RESOLVE(cuMemFreeAsync)
#undef ATTN_RESOLVE
  if (CUresult r = d.cuInit(0)) {
    out.error = d.errorText("cuInit", r);
    return;
  }
  out.ok = true;
}

} // namespace

std::string Driver::errorText(const char *function, CUresult result) const {
  const char *text = nullptr;
  if (!cuGetErrorString || cuGetErrorString(result, &text) != CUDA_SUCCESS ||
      !text)
    text = "unknown error";
  return std::string(function) + " failed: " + text + " (CUDA error " +
         std::to_string(result) + ")";
}

const Driver *attn::runtime::cuda::loadDriver(std::string &error) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { load(loaded); });
  if (!loaded.ok) {
    error = loaded.error;
    return nullptr;
  }
  return &loaded.driver;
}
