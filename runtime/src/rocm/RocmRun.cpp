//===- RocmRun.cpp - the HIP runtime under the GPU entries ----------------===//
//
// attn_rocm_run and attn_rocm_run_backward are the GPU entries' common path
// (gpu/GpuRun.cpp) over the HIP runtime, as CudaRun.cpp is over the CUDA
// driver: the tensors' device made current for the call (HIP keeps a
// current device per thread, not contexts), the module of the image and the
// variant's function (both cached), hipModuleLaunchKernel,
// hipMemsetD32Async and the stream-ordered hipMallocAsync / hipFreeAsync, all
// on the caller's stream. attn_rocm_available() says whether HIP loads and
// reports an AMD GPU.
//
//===----------------------------------------------------------------------===//

#include "../gpu/GpuRun.h"
#include "HipDriver.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

using namespace attn::runtime;
using namespace attn::runtime::rocm;
using attn::runtime::gpu::KernelImage;
using attn::runtime::gpu::kernelName;

namespace {

//===----------------------------------------------------------------------===//
// Modules and functions, cached for the process
//===----------------------------------------------------------------------===//

struct Cache {
  std::mutex mu;
  /// A module is loaded into one device: keyed by it.
  std::map<std::tuple<int, const void *, uint64_t>, hipModule_t> modules;
  std::map<std::pair<hipModule_t, std::string>, hipFunction_t> functions;
};

Cache &cache() {
  static Cache *c = new Cache; // never destroyed: used until exit
  return *c;
}

/// Makes \p device the calling thread's current HIP device. \p previous is
/// set to the device that was current when it had to be changed (it stays
/// -1 otherwise), for HipApi::finish() to restore.
attn_status_t selectDevice(const Driver &drv, int device, int &previous) {
  int current = 0;
  if (hipError_t r = drv.hipGetDevice(&current))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("hipGetDevice", r));
  if (current == device)
    return ATTN_OK;
  int count = 0;
  if (hipError_t r = drv.hipGetDeviceCount(&count))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("hipGetDeviceCount", r));
  if (device >= count)
    return fail(ATTN_ERROR_DEVICE, "q: tensor is on ROCm device " +
                                       str(device) +
                                       ", but the HIP runtime reports " +
                                       str(count) + " device(s)");
  if (hipError_t r = drv.hipSetDevice(device))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("hipSetDevice", r) +
                                       " (device " + str(device) + ")");
  previous = current;
  return ATTN_OK;
}

/// The variant's function on \p device (current), loading the image once
/// per device.
attn_status_t getFunction(const Driver &drv, int device, const KernelImage &k,
                          const attn_cuda_kernel_variant_t &v,
                          hipFunction_t &fn) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto key = std::make_tuple(device, k.image, k.image_size);
  auto mit = c.modules.find(key);
  if (mit == c.modules.end()) {
    hipModule_t mod = nullptr;
    if (hipError_t r = drv.hipModuleLoadData(&mod, k.image))
      return fail(ATTN_ERROR_DRIVER, drv.errorText("hipModuleLoadData", r) +
                                         " (" + kernelName(&k) + ")");
    mit = c.modules.emplace(key, mod).first;
  }
  hipModule_t mod = mit->second;
  auto fit = c.functions.find({mod, v.function});
  if (fit == c.functions.end()) {
    hipFunction_t got = nullptr;
    if (hipError_t r = drv.hipModuleGetFunction(&got, mod, v.function))
      return fail(ATTN_ERROR_DRIVER, drv.errorText("hipModuleGetFunction", r) +
                                         " ('" + v.function + "' of " +
                                         kernelName(&k) + ")");
    fit = c.functions.emplace(std::make_pair(mod, v.function), got).first;
  }
  fn = fit->second;
  return ATTN_OK;
}

/// The HIP runtime as the GPU entries' device side. One object per call: it
/// remembers the caller's device when prepare() changes it, and finish()
/// puts it back.
class HipApi final : public gpu::Api {
public:
  const char *name() const override { return "ROCm"; }
  const char *infix() const override { return "rocm"; }
  MemoryKind memory() const override { return MemoryKind::RocmDevice; }
  /// hipModuleLaunchKernel takes the grid in blocks but computes the global
  /// size (blocks * threads per block) in 32 bits; 64 KiB of LDS; the
  /// softmax kernels read k and v through buffer resources, whose range
  /// (num_records) is 32 bits.
  gpu::Limits limits() const override {
    return {UINT32_MAX,
            UINT32_MAX,
            UINT32_MAX,
            64 * 1024,
            "AMD GPUs have 64 KiB of LDS per workgroup",
            UINT32_MAX};
  }

  attn_status_t prepare(const KernelImage &k,
                        const attn_cuda_kernel_variant_t &v, int deviceId,
                        void *&fn) override {
    std::string err;
    drv = loadDriver(err);
    if (!drv)
      return fail(ATTN_ERROR_DRIVER, err);
    if (attn_status_t st = selectDevice(*drv, deviceId, previous))
      return st;
    hipFunction_t f = nullptr;
    if (attn_status_t st = getFunction(*drv, deviceId, k, v, f))
      return st;
    fn = f;
    return ATTN_OK;
  }

  attn_status_t launch(void *fn, const KernelImage &k,
                       const attn_cuda_kernel_variant_t &v, int64_t gridX,
                       int64_t gridY, void **params, void *stream) override {
    if (hipError_t r = drv->hipModuleLaunchKernel(
            static_cast<hipFunction_t>(fn), static_cast<unsigned>(gridX),
            static_cast<unsigned>(gridY), 1,
            static_cast<unsigned>(v.num_threads), 1, 1,
            static_cast<unsigned>(v.shared_mem_bytes),
            static_cast<hipStream_t>(stream), params, nullptr))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("hipModuleLaunchKernel", r) + " ('" +
                      v.function + "' of " + kernelName(&k) + ")");
    return ATTN_OK;
  }

  attn_status_t zero32(uintptr_t dst, size_t words, void *stream,
                       const std::string &what) override {
    if (hipError_t r =
            drv->hipMemsetD32Async(reinterpret_cast<void *>(dst), 0, words,
                                   static_cast<hipStream_t>(stream)))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("hipMemsetD32Async", r) + " (" + what + ")");
    return ATTN_OK;
  }

  attn_status_t allocAsync(size_t bytes, void *stream, uintptr_t &ptr,
                           const std::string &what) override {
    void *p = nullptr;
    if (hipError_t r =
            drv->hipMallocAsync(&p, bytes, static_cast<hipStream_t>(stream)))
      return fail(r == hipErrorOutOfMemory ? ATTN_ERROR_OUT_OF_MEMORY
                                           : ATTN_ERROR_DRIVER,
                  drv->errorText("hipMallocAsync", r) + " (" + what + ")");
    ptr = reinterpret_cast<uintptr_t>(p);
    return ATTN_OK;
  }

  attn_status_t freeAsync(uintptr_t ptr, void *stream,
                          const std::string &what) override {
    if (hipError_t r = drv->hipFreeAsync(reinterpret_cast<void *>(ptr),
                                         static_cast<hipStream_t>(stream)))
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("hipFreeAsync", r) + " (" + what + ")");
    return ATTN_OK;
  }

  /// The call's status \p st, after putting the caller's device back when
  /// prepare() changed it, on every path. A failed restore is reported only
  /// when the call had succeeded: an earlier error says more.
  attn_status_t finish(attn_status_t st) {
    if (previous < 0)
      return st;
    hipError_t r = drv->hipSetDevice(previous);
    if (r && st == ATTN_OK)
      return fail(ATTN_ERROR_DRIVER,
                  drv->errorText("hipSetDevice", r) +
                      " (restoring the calling thread's device " +
                      str(previous) + " after the launch was queued)");
    return st;
  }

private:
  /// Set by prepare(): the loaded runtime, and the caller's device when it
  /// was changed (-1: not changed).
  const Driver *drv = nullptr;
  int previous = -1;
};

} // namespace

extern "C" attn_status_t attn_rocm_run(const attn_rocm_kernel_desc_t *kernel,
                                       const DLTensor *const *inputs,
                                       DLTensor *o, DLTensor *lse,
                                       void *stream) {
  HipApi api;
  return api.finish(gpu::runForward(api, kernel, inputs, o, lse, stream));
}

extern "C" attn_status_t
attn_rocm_run_backward(const attn_rocm_backward_desc_t *kernel,
                       const DLTensor *const *inputs, const DLTensor *o,
                       const DLTensor *lse, const DLTensor *dout,
                       const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                       DLTensor *dv, DLTensor *const *daux, void *stream) {
  HipApi api;
  return api.finish(gpu::runBackward(api, kernel, inputs, o, lse, dout, dlse,
                                     dq, dk, dv, daux, stream));
}

extern "C" int32_t attn_rocm_available(void) {
  std::string err;
  int count = 0;
  if (const Driver *drv = loadDriver(err))
    if (hipError_t r = drv->hipGetDeviceCount(&count))
      err = drv->errorText("hipGetDeviceCount", r);
  return gpu::answerAvailable("ROCm", "hipGetDeviceCount", err, count);
}
