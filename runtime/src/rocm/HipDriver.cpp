//===- HipDriver.cpp - dlopen the HIP runtime once ------------------------===//

#include "HipDriver.h"
#include "../DynamicLibrary.h"

#include <cstdlib>
#include <mutex>

using namespace attn::runtime;
using namespace attn::runtime::rocm;

namespace {

constexpr const char *kWhat = "HIP runtime";

struct Loaded {
  Driver driver{};
  bool ok = false;
  std::string error;
};

/// Opens $ATTN_HIP_LIBRARY, or the first HIP runtime that loads (ROCm's
/// unversioned name, then 6 and Debian's 5); the error names the first.
void *openHip(std::string &libName, std::string &error) {
  const char *env = std::getenv("ATTN_HIP_LIBRARY");
  if (env && *env) {
    libName = env;
    return openLibrary(libName, kWhat, error);
  }
  std::string firstError;
  for (const char *name :
       {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"}) {
    std::string err;
    if (void *lib = openLibrary(name, kWhat, err)) {
      libName = name;
      return lib;
    }
    if (firstError.empty())
      firstError = err;
  }
  error = firstError;
  return nullptr;
}

void load(Loaded &out) {
  std::string libName;
  void *lib = openHip(libName, out.error);
  if (!lib)
    return;
  Driver &d = out.driver;
#define ATTN_RESOLVE(name)                                                     \
  if (!resolveSymbol(lib, libName, kWhat, #name, d.name, out.error))           \
    return;
  ATTN_RESOLVE(hipInit)
  ATTN_RESOLVE(hipGetErrorString)
  ATTN_RESOLVE(hipGetDeviceCount)
  ATTN_RESOLVE(hipGetDevice)
  ATTN_RESOLVE(hipSetDevice)
  ATTN_RESOLVE(hipModuleLoadData)
  ATTN_RESOLVE(hipModuleGetFunction)
  ATTN_RESOLVE(hipModuleLaunchKernel)
  ATTN_RESOLVE(hipMemsetD32Async)
  ATTN_RESOLVE(hipMallocAsync)
  ATTN_RESOLVE(hipFreeAsync)
#undef ATTN_RESOLVE
  if (hipError_t r = d.hipInit(0)) {
    out.error = "HIP runtime '" + libName + "' loaded, but " +
                d.errorText("hipInit", r);
    return;
  }
  out.ok = true;
}

} // namespace

std::string Driver::errorText(const char *function, hipError_t result) const {
  const char *text = hipGetErrorString ? hipGetErrorString(result) : nullptr;
  return std::string(function) + " failed: " + (text ? text : "unknown error") +
         " (HIP error " + std::to_string(result) + ")";
}

const Driver *attn::runtime::rocm::loadDriver(std::string &error) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { load(loaded); });
  if (!loaded.ok) {
    error = loaded.error;
    return nullptr;
  }
  return &loaded.driver;
}
