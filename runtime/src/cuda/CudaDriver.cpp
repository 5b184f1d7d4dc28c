//===- CudaDriver.cpp - dlopen the CUDA driver once -----------------------===//

#include "CudaDriver.h"
#include "../DynamicLibrary.h"

#include <cstdlib>
#include <mutex>

using namespace attn::runtime;
using namespace attn::runtime::cuda;

namespace {

constexpr const char *kWhat = "CUDA driver";

struct Loaded {
  Driver driver{};
  bool ok = false;
  std::string error;
};

void load(Loaded &out) {
  const char *env = std::getenv("ATTN_CUDA_DRIVER");
  std::string libName = env && *env ? env : "libcuda.so.1";
  void *lib = openLibrary(libName, kWhat, out.error);
  if (!lib)
    return;
  Driver &d = out.driver;
#define ATTN_RESOLVE(name)                                                     \
  if (!resolveSymbol(lib, libName, kWhat, #name, d.name, out.error))           \
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
  ATTN_RESOLVE(cuDeviceGetAttribute)
  ATTN_RESOLVE(cuOccupancyMaxActiveBlocksPerMultiprocessor)
  ATTN_RESOLVE(cuStreamSynchronize)
#undef ATTN_RESOLVE
  if (!resolveSymbol(lib, libName, kWhat, "cuMemcpyDtoHAsync_v2",
                     d.cuMemcpyDtoHAsync, out.error))
    return;
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
