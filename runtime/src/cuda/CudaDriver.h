//===- CudaDriver.h - the CUDA driver API, loaded with dlopen --*- C++ -*-===//
//
// Private to runtime/src. The few driver types, constants and entry points
// attn_cuda_run needs, declared here (as Halide's cuda_functions.h does) so
// that the runtime neither includes cuda.h nor links libcuda: the driver is
// loaded with dlopen at the first CUDA call, and a machine without CUDA
// builds and runs everything else unchanged.
//
// The signatures follow cuda.h of CUDA 12/13; every entry point used has kept
// its unversioned name and signature since CUDA 4 (checked with nm -D against
// the toolkit's stub libcuda.so: none of them has a _v2 export), except the
// copy to the host, whose 64-bit form cuda.h maps to cuMemcpyDtoHAsync_v2
// (the unversioned export takes 32-bit device pointers).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_CUDA_CUDADRIVER_H
#define ATTN_RUNTIME_CUDA_CUDADRIVER_H

#include <cstddef>
#include <string>

namespace attn::runtime::cuda {

/// cudaError_enum: 0 is success; every other value an error.
using CUresult = int;
constexpr CUresult CUDA_SUCCESS = 0;
/// CUDA_ERROR_OUT_OF_MEMORY: reported as ATTN_ERROR_OUT_OF_MEMORY.
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;

/// A device ordinal, as DLPack's device_id for kDLCUDA.
using CUdevice = int;

struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
using CUcontext = CUctx_st *;
using CUmodule = CUmod_st *;
using CUfunction = CUfunc_st *;
using CUstream = CUstream_st *;
/// A device address.
using CUdeviceptr = unsigned long long;

/// CUfunction_attribute values.
using CUfunction_attribute = int;
constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES =
    8;

/// CUdevice_attribute: the device's streaming multiprocessors.
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;

/// Dynamic shared memory a kernel may use without opting in.
constexpr int kDefaultMaxDynamicSharedBytes = 48 * 1024;

/// The resolved entry points.
struct Driver {
  CUresult (*cuInit)(unsigned flags);
  CUresult (*cuGetErrorString)(CUresult error, const char **str);
  CUresult (*cuDeviceGetCount)(int *count);
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice device);
  CUresult (*cuCtxGetCurrent)(CUcontext *ctx);
  CUresult (*cuCtxSetCurrent)(CUcontext ctx);
  CUresult (*cuCtxGetDevice)(CUdevice *device);
  CUresult (*cuModuleLoadData)(CUmodule *module, const void *image);
  CUresult (*cuModuleGetFunction)(CUfunction *fn, CUmodule module,
                                  const char *name);
  CUresult (*cuFuncSetAttribute)(CUfunction fn, CUfunction_attribute attr,
                                 int value);
  CUresult (*cuLaunchKernel)(CUfunction fn, unsigned gridX, unsigned gridY,
                             unsigned gridZ, unsigned blockX, unsigned blockY,
                             unsigned blockZ, unsigned sharedMemBytes,
                             CUstream stream, void **kernelParams,
                             void **extra);
  CUresult (*cuMemsetD32Async)(CUdeviceptr dst, unsigned value, size_t count,
                               CUstream stream);
  /// Stream-ordered allocation (CUDA 11.2): the backward's scratch lives
  /// from its launch to the free queued after it, on the caller's stream.
  CUresult (*cuMemAllocAsync)(CUdeviceptr *dptr, size_t bytes, CUstream stream);
  CUresult (*cuMemFreeAsync)(CUdeviceptr dptr, CUstream stream);
  /// What the decode schedule's split count needs: how many CTAs of a
  /// function run at once (SMs x CTAs per SM).
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(
      int *numBlocks, CUfunction fn, int blockSize, size_t dynamicSmemBytes);
  /// ATTN_GPU_CHECK_TABLES (a debug mode): the batch tables read back to the
  /// host in stream order, and waited for. Resolved from
  /// "cuMemcpyDtoHAsync_v2".
  CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes,
                                CUstream stream);
  CUresult (*cuStreamSynchronize)(CUstream stream);

  /// "cuLaunchKernel failed: <the driver's text> (CUDA error 700)".
  std::string errorText(const char *function, CUresult result) const;
};

/// The driver, loaded and initialized (cuInit) once per process, thread-safe.
/// The library is $ATTN_CUDA_DRIVER when set and non-empty, else
/// "libcuda.so.1". Returns NULL and sets \p error to a one-line reason
/// ("CUDA driver not available: ...", or "cuInit failed: ...") when it
/// cannot be used; the outcome is the same for every later call.
const Driver *loadDriver(std::string &error);

} // namespace attn::runtime::cuda

#endif // ATTN_RUNTIME_CUDA_CUDADRIVER_H
