//===- CudaRun.cpp - the CUDA driver under the GPU entries ----------------===//
//
// attn_cuda_run and attn_cuda_run_backward are the GPU entries' common path
// (gpu/GpuRun.cpp) over the CUDA driver: the current context (or the
// device's primary context), the module of the image and the variant's
// function (both cached), cuLaunchKernel, cuMemsetD32Async and the
// stream-ordered cuMemAllocAsync / cuMemFreeAsync, all on the caller's
// stream.
//
//===----------------------------------------------------------------------===//

#include "../gpu/GpuRun.h"
#include "CudaDriver.h"

#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

using namespace attn::runtime;
using namespace attn::runtime::cuda;
using attn::runtime::gpu::KernelImage;
using attn::runtime::gpu::kernelName;

namespace {

//===----------------------------------------------------------------------===//
// Driver state: contexts, modules and functions, cached for the process
//===----------------------------------------------------------------------===//

struct FunctionEntry {
  CUfunction fn = nullptr;
  /// The MAX_DYNAMIC_SHARED_SIZE_BYTES set on fn (0: left at the default).
  int sharedOptIn = 0;
};

struct Cache {
  std::mutex mu;
  std::map<int, CUcontext> primary; // device ordinal -> retained context
  std::map<std::tuple<CUcontext, const void *, uint64_t>, CUmodule> modules;
  std::map<std::pair<CUmodule, std::string>, FunctionEntry> functions;
};

Cache &cache() {
  static Cache *c = new Cache; // never destroyed: used until exit
  return *c;
}

/// The context to launch in: the calling thread's current one (which must be
/// on \p device), else \p device's primary context, made current.
attn_status_t currentContext(const Driver &drv, int device, CUcontext &ctx) {
  ctx = nullptr;
  if (CUresult r = drv.cuCtxGetCurrent(&ctx))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("cuCtxGetCurrent", r));
  if (ctx) {
    CUdevice current = -1;
    if (CUresult r = drv.cuCtxGetDevice(&current))
      return fail(ATTN_ERROR_DRIVER, drv.errorText("cuCtxGetDevice", r));
    if (current != device)
      return fail(ATTN_ERROR_DEVICE,
                  "q: tensors are on CUDA device " + str(device) +
                      " but the calling thread's current CUDA context is on "
                      "device " +
                      str(current) + "; make device " + str(device) +
                      " current first (e.g. cudaSetDevice(" + str(device) +
                      "))");
    return ATTN_OK;
  }
  Cache &c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.primary.find(device);
    if (it != c.primary.end()) {
      ctx = it->second;
    } else {
      int count = 0;
      if (CUresult r = drv.cuDeviceGetCount(&count))
        return fail(ATTN_ERROR_DRIVER, drv.errorText("cuDeviceGetCount", r));
      if (device >= count)
        return fail(ATTN_ERROR_DEVICE, "q: tensor is on CUDA device " +
                                           str(device) +
                                           ", but the driver reports " +
                                           str(count) + " device(s)");
      CUdevice dev = 0;
      if (CUresult r = drv.cuDeviceGet(&dev, device))
        return fail(ATTN_ERROR_DRIVER, drv.errorText("cuDeviceGet", r));
      if (CUresult r = drv.cuDevicePrimaryCtxRetain(&ctx, dev))
        return fail(ATTN_ERROR_DRIVER,
                    drv.errorText("cuDevicePrimaryCtxRetain", r));
      c.primary[device] = ctx;
    }
  }
  if (CUresult r = drv.cuCtxSetCurrent(ctx))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("cuCtxSetCurrent", r));
  return ATTN_OK;
}

/// The variant's function in \p ctx (current), loading the image once per
/// context and opting in to more than 48 KiB of dynamic shared memory once
/// per function.
attn_status_t getFunction(const Driver &drv, CUcontext ctx,
                          const KernelImage *k,
                          const attn_cuda_kernel_variant_t &v, CUfunction &fn) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto key = std::make_tuple(ctx, k->image, k->image_size);
  auto mit = c.modules.find(key);
  if (mit == c.modules.end()) {
    CUmodule mod = nullptr;
    if (CUresult r = drv.cuModuleLoadData(&mod, k->image))
      return fail(ATTN_ERROR_DRIVER, drv.errorText("cuModuleLoadData", r) +
                                         " (" + kernelName(k) + ")");
    mit = c.modules.emplace(key, mod).first;
  }
  CUmodule mod = mit->second;
  FunctionEntry &f = c.functions[{mod, v.function}];
  if (!f.fn) {
    CUfunction got = nullptr;
    if (CUresult r = drv.cuModuleGetFunction(&got, mod, v.function)) {
      c.functions.erase({mod, v.function});
      return fail(ATTN_ERROR_DRIVER, drv.errorText("cuModuleGetFunction", r) +
                                         " ('" + v.function + "' of " +
                                         kernelName(k) + ")");
    }
    f.fn = got;
  }
  if (v.shared_mem_bytes > kDefaultMaxDynamicSharedBytes &&
      v.shared_mem_bytes > f.sharedOptIn) {
    if (CUresult r = drv.cuFuncSetAttribute(
            f.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            v.shared_mem_bytes))
      return fail(ATTN_ERROR_DRIVER, drv.errorText("cuFuncSetAttribute", r) +
                                         " ('" + v.function + "' asks for " +
                                         str(v.shared_mem_bytes) +
                                         " bytes of dynamic shared memory)");
    f.sharedOptIn = v.shared_mem_bytes;
  }
  fn = f.fn;
  return ATTN_OK;
}

/// Makes the tensors' context current and gets the variant's function
/// (the driver touched only from here on).
attn_status_t prepareLaunch(const KernelImage *k,
                            const attn_cuda_kernel_variant_t &variant,
                            int deviceId, const Driver *&drv, CUfunction &fn) {
  std::string err;
  drv = loadDriver(err);
  if (!drv)
    return fail(ATTN_ERROR_DRIVER, err);
  CUcontext ctx = nullptr;
  if (attn_status_t st = currentContext(*drv, deviceId, ctx))
    return st;
  return getFunction(*drv, ctx, k, variant, fn);
}

/// The CUDA driver as the GPU entries' device side.
class CudaApi final : public gpu::Api {
public:
  const char *name() const override { return "CUDA"; }
  const char *infix() const override { return "cuda"; }
  MemoryKind memory() const override { return MemoryKind::CudaDevice; }
  /// grid.x up to 2^31 - 1 blocks, grid.y up to 65535; shared memory is
  /// the device's to refuse (getFunction opts in past 48 KiB).
  gpu::Limits limits() const override { return {INT32_MAX, 65535, 0, 0, ""}; }

  attn_status_t prepare(const KernelImage &k,
                        const attn_cuda_kernel_variant_t &v, int deviceId,
                        void *&fn) override {
    CUfunction f = nullptr;
    if (attn_status_t st = prepareLaunch(&k, v, deviceId, drv, f))
      return st;
    fn = f;
    return ATTN_OK;
  }

  attn_status_t launch(void *fn, const KernelImage &k,
                       const attn_cuda_kernel_variant_t &v, int64_t gridX,
                       int64_t gridY, void **params, void *stream) override {
    if (CUresult r = drv->cuLaunchKernel(
            static_cast<CUfunction>(fn), static_cast<unsigned>(gridX),
            static_cast<unsigned>(gridY), 1,
            static_cast<unsigned>(v.num_threads), 1, 1,
            static_cast<unsigned>(v.shared_mem_bytes),
            static_cast<CUstream>(stream), params, nullptr))
      return fail(ATTN_ERROR_DRIVER, drv->errorText("cuLaunchKernel", r) +
                                         " ('" + v.function + "' of " +
                                         kernelName(&k) + ")");
    return ATTN_OK;
  }

  attn_status_t zero32(uintptr_t dst, size_t words, void *stream,
                       const std::string &what) override {
    if (CUresult r =
            drv->cuMemsetD32Async(dst, 0, words, static_cast<CUstream>(stream)))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("cuMemsetD32Async", r) + " (" + what + ")");
    return ATTN_OK;
  }

  attn_status_t allocAsync(size_t bytes, void *stream, uintptr_t &ptr,
                           const std::string &what) override {
    CUdeviceptr p = 0;
    if (CUresult r =
            drv->cuMemAllocAsync(&p, bytes, static_cast<CUstream>(stream)))
      return fail(r == CUDA_ERROR_OUT_OF_MEMORY ? ATTN_ERROR_OUT_OF_MEMORY
                                                : ATTN_ERROR_DRIVER,
                  drv->errorText("cuMemAllocAsync", r) + " (" + what + ")");
    ptr = uintptr_t(p);
    return ATTN_OK;
  }

  attn_status_t freeAsync(uintptr_t ptr, void *stream,
                          const std::string &what) override {
    if (CUresult r = drv->cuMemFreeAsync(CUdeviceptr(ptr),
                                         static_cast<CUstream>(stream)))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("cuMemFreeAsync", r) + " (" + what + ")");
    return ATTN_OK;
  }

  attn_status_t slots(void *fn, const attn_cuda_kernel_variant_t &v,
                      int deviceId, int64_t &slots) override {
    int sms = 0, perSm = 0;
    if (CUresult r = drv->cuDeviceGetAttribute(
            &sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, deviceId))
      return fail(ATTN_ERROR_DRIVER, drv->errorText("cuDeviceGetAttribute", r));
    if (CUresult r = drv->cuOccupancyMaxActiveBlocksPerMultiprocessor(
            &perSm, static_cast<CUfunction>(fn), v.num_threads,
            size_t(v.shared_mem_bytes)))
      return fail(
          ATTN_ERROR_DRIVER,
          drv->errorText("cuOccupancyMaxActiveBlocksPerMultiprocessor", r) +
              " ('" + v.function + "')");
    slots = int64_t(std::max(sms, 0)) * std::max(perSm, 0);
    return ATTN_OK;
  }

  attn_status_t copyToHost(void *dst, uintptr_t src, size_t bytes, void *stream,
                           const std::string &what) override {
    auto s = static_cast<CUstream>(stream);
    if (CUresult r = drv->cuMemcpyDtoHAsync(dst, CUdeviceptr(src), bytes, s))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("cuMemcpyDtoHAsync", r) + " (" + what + ")");
    if (CUresult r = drv->cuStreamSynchronize(s))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("cuStreamSynchronize", r) + " (" + what + ")");
    return ATTN_OK;
  }

private:
  /// Set by prepare(): the loaded driver.
  const Driver *drv = nullptr;
};

} // namespace

extern "C" attn_status_t attn_cuda_run(const attn_cuda_kernel_desc_t *kernel,
                                       const DLTensor *const *inputs,
                                       DLTensor *o, DLTensor *lse,
                                       void *stream) {
  CudaApi api;
  return gpu::runForward(api, kernel, inputs, o, lse, stream);
}

extern "C" attn_status_t
attn_cuda_run_batch(const attn_cuda_kernel_desc_t *kernel,
                    const DLTensor *const *inputs,
                    const attn_gpu_batch_layout_t *layout, DLTensor *o,
                    DLTensor *lse, void *stream) {
  CudaApi api;
  return gpu::runBatch(api, kernel, inputs, layout, o, lse, stream);
}

extern "C" attn_status_t
attn_cuda_run_backward(const attn_cuda_backward_desc_t *kernel,
                       const DLTensor *const *inputs, const DLTensor *o,
                       const DLTensor *lse, const DLTensor *dout,
                       const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                       DLTensor *dv, DLTensor *const *daux, void *stream) {
  CudaApi api;
  return gpu::runBackward(api, kernel, inputs, o, lse, dout, dlse, dq, dk, dv,
                          daux, stream);
}

extern "C" int32_t attn_cuda_available(void) {
  std::string err;
  int count = 0;
  if (const Driver *drv = loadDriver(err))
    if (CUresult r = drv->cuDeviceGetCount(&count))
      err = drv->errorText("cuDeviceGetCount", r);
  return gpu::answerAvailable("CUDA", "cuDeviceGetCount", err, count);
}
