//===- HipDriver.h - the HIP runtime API, loaded with dlopen ----*- C++ -*-===//
//
// Private to runtime/src. The few HIP types and entry points the ROCm half
// of the runtime needs, declared here (as CudaDriver.h does for CUDA) so
// that the runtime neither includes hip_runtime.h nor links libamdhip64:
// the library is loaded with dlopen at the first ROCm call, and a machine
// without ROCm builds and runs everything else unchanged.
//
// The signatures follow hip_runtime_api.h of ROCm 5 and 6 (unchanged
// between them for these entry points; all exported by Debian's 5.2.3, the
// stream-ordered hipMallocAsync / hipFreeAsync since ROCm 5.1).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_ROCM_HIPDRIVER_H
#define ATTN_RUNTIME_ROCM_HIPDRIVER_H

#include <cstddef>
#include <string>

namespace attn::runtime::rocm {

/// hipError_t: 0 is success; every other value an error.
using hipError_t = int;
constexpr hipError_t hipSuccess = 0;
/// hipErrorOutOfMemory (hipErrorMemoryAllocation is the same value):
/// reported as ATTN_ERROR_OUT_OF_MEMORY.
constexpr hipError_t hipErrorOutOfMemory = 2;

struct ihipModule_t;
struct ihipModuleSymbol_t;
struct ihipStream_t;
using hipModule_t = ihipModule_t *;
using hipFunction_t = ihipModuleSymbol_t *;
using hipStream_t = ihipStream_t *;
/// A device address (void * in HIP, unlike CUDA's integer).
using hipDeviceptr_t = void *;

/// The resolved entry points. HIP has no contexts to manage: the calling
/// thread's current device (hipGetDevice / hipSetDevice) selects where
/// modules load and kernels launch.
struct Driver {
  hipError_t (*hipInit)(unsigned flags);
  const char *(*hipGetErrorString)(hipError_t error);
  hipError_t (*hipGetDeviceCount)(int *count);
  hipError_t (*hipGetDevice)(int *device);
  hipError_t (*hipSetDevice)(int device);
  hipError_t (*hipModuleLoadData)(hipModule_t *module, const void *image);
  hipError_t (*hipModuleGetFunction)(hipFunction_t *function,
                                     hipModule_t module, const char *name);
  hipError_t (*hipModuleLaunchKernel)(hipFunction_t f, unsigned gridX,
                                      unsigned gridY, unsigned gridZ,
                                      unsigned blockX, unsigned blockY,
                                      unsigned blockZ, unsigned sharedMemBytes,
                                      hipStream_t stream, void **kernelParams,
                                      void **extra);
  hipError_t (*hipMemsetD32Async)(hipDeviceptr_t dst, int value, size_t count,
                                  hipStream_t stream);
  hipError_t (*hipMallocAsync)(void **ptr, size_t bytes, hipStream_t stream);
  hipError_t (*hipFreeAsync)(void *ptr, hipStream_t stream);

  /// "hipGetDeviceCount failed: hipErrorNoDevice (HIP error 100)".
  std::string errorText(const char *function, hipError_t result) const;
};

/// The HIP runtime, loaded and initialized (hipInit) once per process,
/// thread-safe. The library is $ATTN_HIP_LIBRARY when set and non-empty,
/// else the first of libamdhip64.so, libamdhip64.so.6 and libamdhip64.so.5
/// that loads. Returns NULL and sets `error` to a one-line reason ("HIP
/// runtime not available: ...", or "... hipInit failed: ..." on a machine
/// without an AMD GPU) when it cannot be used; the outcome is the same for
/// every later call.
const Driver *loadDriver(std::string &error);

} // namespace attn::runtime::rocm

#endif
