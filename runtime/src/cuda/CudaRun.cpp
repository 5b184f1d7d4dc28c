//===- CudaRun.cpp - attn_cuda_run: validate, pick a variant, launch ------===//
//
// Everything is validated (with the CPU run's shared checks, plus the CUDA
// kernels' device, dtype and layout needs) before the driver is touched, so
// a bad call fails the same way on a machine without CUDA. Then: the current
// context (or the device's primary context), the module of the image and the
// variant's function (both cached), one cuLaunchKernel on the caller's
// stream, no synchronization.
//
//===----------------------------------------------------------------------===//

#include "../Validate.h"
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

namespace {

/// Most threads a CTA may have.
constexpr int32_t kMaxThreadsPerBlock = 1024;
/// Largest grid.y (B * Hq) and grid.x (query tiles).
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridX = INT32_MAX;
/// The kernels copy q, k, v in chunks of this many bytes (cp.async).
constexpr int64_t kChunkBytes = 16;

/// What the forward's and the backward's descriptors have in common.
struct KernelImage {
  const char *name;
  uint32_t abi_version;
  const void *image;
  uint64_t image_size;
  int32_t num_variants;
  const attn_cuda_kernel_variant_t *variants;
  int32_t num_inputs;
  const attn_input_desc_t *inputs;
};

template <typename Desc> KernelImage imageOf(const Desc *d) {
  return {d->name,         d->abi_version, d->image,      d->image_size,
          d->num_variants, d->variants,    d->num_inputs, d->inputs};
}

std::string kernelName(const KernelImage *k) {
  return std::string("kernel '") + (k->name ? k->name : "?") + "'";
}

/// Validates the kernel descriptor and converts its inputs to a Signature.
attn_status_t checkKernel(const KernelImage *k, attn::Signature &sig) {
  std::string kname = kernelName(k);
  if (k->abi_version != ATTN_ABI_VERSION)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kname + ": ABI version " + str(k->abi_version) +
                    ", this runtime supports " + str(ATTN_ABI_VERSION));
  if (!k->image)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": image is NULL (not compiled for CUDA)");
  if (k->image_size == 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, kname + ": image_size is 0");
  if (k->num_variants <= 0 || !k->variants)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": no variants (num_variants is " +
                    str(k->num_variants) +
                    (k->variants ? "" : ", variants is NULL") + ")");
  for (int32_t i = 0; i < k->num_variants; ++i) {
    const attn_cuda_kernel_variant_t &v = k->variants[i];
    std::string where = kname + ": variants[" + str(i) + "]";
    if (!v.function || !*v.function)
      return fail(ATTN_ERROR_INVALID_ARGUMENT, where + " has no function");
    where += " '" + std::string(v.function) + "'";
    if (v.max_head_dim <= 0 || v.block_q <= 0 || v.num_threads <= 0 ||
        v.num_threads > kMaxThreadsPerBlock || v.shared_mem_bytes < 0)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": max_head_dim " + str(v.max_head_dim) +
                      ", block_q " + str(v.block_q) + ", num_threads " +
                      str(v.num_threads) + ", shared_mem_bytes " +
                      str(v.shared_mem_bytes) +
                      "; expected positive sizes, num_threads <= " +
                      str(kMaxThreadsPerBlock) + " and shared_mem_bytes >= 0");
    if (i > 0 && v.max_head_dim < k->variants[i - 1].max_head_dim)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": max_head_dim " + str(v.max_head_dim) +
                      " is smaller than the previous variant's " +
                      str(k->variants[i - 1].max_head_dim) +
                      "; variants must be sorted by max_head_dim");
  }
  if (attn_status_t st = checkInputDescs(kname, k->num_inputs, k->inputs, sig))
    return st;
  for (int i = 0; i < 3; ++i)
    if (k->inputs[i].type != ATTN_BF16 && k->inputs[i].type != ATTN_F16)
      return fail(ATTN_ERROR_UNSUPPORTED,
                  kname + ": CUDA kernels take bf16 or f16 q, k, v; " +
                      k->inputs[i].name + " is declared " +
                      elemTypeName(k->inputs[i].type));
  return ATTN_OK;
}

/// q, k and v are read in 16-byte chunks: the innermost stride must be 1,
/// every other stride a multiple of a chunk, the start chunk-aligned. Dims of
/// size 1 are never stepped along, so their strides do not matter.
attn_status_t checkChunkLayout(const DLTensor *t, const attn::InputSig &in) {
  int64_t elemBytes = t->dtype.bits / 8;
  int64_t chunkElems = kChunkBytes / elemBytes;
  std::vector<int64_t> strides = stridesOf(t);
  int inner = t->ndim - 1;
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] == 1)
      continue;
    std::string where = in.name + ": dim " + str(d) + " (" + in.dims[d].symbol +
                        ") has stride " + str(strides[d]);
    if (d == inner && strides[d] != 1)
      return fail(ATTN_ERROR_LAYOUT,
                  where + "; CUDA kernels need the innermost stride to be 1 "
                          "(they copy contiguous 16-byte chunks)");
    if (d != inner && strides[d] % chunkElems != 0)
      return fail(ATTN_ERROR_LAYOUT,
                  where + ", not a multiple of " + str(chunkElems) +
                      " elements; CUDA kernels copy 16-byte chunks, so every "
                      "row must start 16-byte aligned (pad the head dim)");
  }
  uintptr_t addr = reinterpret_cast<uintptr_t>(t->data) +
                   static_cast<uintptr_t>(t->byte_offset);
  if (addr % kChunkBytes != 0)
    return fail(ATTN_ERROR_LAYOUT,
                in.name + ": data + byte_offset (" +
                    str(int64_t(t->byte_offset)) +
                    ") is not 16-byte aligned; CUDA kernels copy 16-byte "
                    "chunks");
  return ATTN_OK;
}

/// The variant with the smallest max_head_dim >= max(Dqk, Dv).
attn_status_t selectVariant(const KernelImage *k, const attn::DimBinding &dims,
                            const attn_cuda_kernel_variant_t *&out) {
  int64_t dqk = dims.at("Dqk"), dv = dims.at("Dv");
  int64_t need = std::max(dqk, dv);
  for (int32_t i = 0; i < k->num_variants; ++i)
    if (k->variants[i].max_head_dim >= need) {
      out = &k->variants[i];
      return ATTN_OK;
    }
  return fail(ATTN_ERROR_UNSUPPORTED,
              kernelName(k) + ": head dims Dqk = " + str(dqk) +
                  ", Dv = " + str(dv) +
                  " are not supported; the largest supported head "
                  "dim is " +
                  str(k->variants[k->num_variants - 1].max_head_dim));
}

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

attn_status_t launch(const Driver &drv, CUfunction fn, const KernelImage *k,
                     const attn_cuda_kernel_variant_t &variant, int64_t gridX,
                     int64_t gridY, std::vector<void *> &params, void *stream) {
  if (CUresult r = drv.cuLaunchKernel(
          fn, static_cast<unsigned>(gridX), static_cast<unsigned>(gridY), 1,
          static_cast<unsigned>(variant.num_threads), 1, 1,
          static_cast<unsigned>(variant.shared_mem_bytes),
          static_cast<CUstream>(stream), params.data(), nullptr))
    return fail(ATTN_ERROR_DRIVER, drv.errorText("cuLaunchKernel", r) + " ('" +
                                       variant.function + "' of " +
                                       kernelName(k) + ")");
  return ATTN_OK;
}

/// The grid: gridX tiles along `rows` (N or M), gridY = B * heads.
attn_status_t gridOf(const attn_cuda_kernel_variant_t &variant, int64_t rows,
                     int64_t bh, const char *tensor, const char *bhText,
                     const char *rowsText, int64_t &gridX) {
  if (bh > kMaxGridY)
    return fail(ATTN_ERROR_SHAPE, std::string(tensor) + ": " + bhText + " = " +
                                      str(bh) + " is more than " +
                                      str(kMaxGridY) +
                                      " (the CUDA grid's y dimension)");
  gridX = (rows + variant.block_q - 1) / variant.block_q;
  if (gridX > kMaxGridX)
    return fail(ATTN_ERROR_SHAPE, std::string(tensor) + ": ceil(" + rowsText +
                                      " / block_q) = " + str(gridX) +
                                      " is more than " + str(kMaxGridX) +
                                      " (the CUDA grid's x dimension)");
  return ATTN_OK;
}

/// Whether `t` is compact row-major (its elements fill one range).
bool isCompact(const DLTensor *t) {
  std::vector<int64_t> strides = stridesOf(t);
  int64_t expect = 1;
  for (int d = t->ndim - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && strides[d] != expect)
      return false;
    expect *= t->shape[d];
  }
  return true;
}

int64_t numel(const DLTensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; ++d)
    n *= t->shape[d];
  return n;
}

} // namespace

extern "C" attn_status_t attn_cuda_run(const attn_cuda_kernel_desc_t *kernel,
                                       const DLTensor *const *inputs,
                                       DLTensor *o, DLTensor *lse,
                                       void *stream) {
  clearLastError();

  // The kernel descriptor and the call's pointers.
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  KernelImage image = imageOf(kernel);
  attn::Signature sig;
  if (attn_status_t st = checkKernel(&image, sig))
    return st;
  if (attn_status_t st =
          checkCallPointers(kernel->name, kernel->has_lse, inputs, o, lse))
    return st;

  // Inputs and outputs: devices, dtypes, shapes, layouts.
  attn::DimBinding dims;
  if (attn_status_t st = checkTensors(sig, kernel->inputs, inputs, o, lse,
                                      MemoryKind::CudaDevice, dims))
    return st;
  for (int i = 0; i < 3; ++i)
    if (attn_status_t st = checkChunkLayout(inputs[i], sig.inputs[i]))
      return st;

  // Variant and launch geometry (no overflow: checkExtent bounded q's
  // numel).
  const attn_cuda_kernel_variant_t *variant = nullptr;
  if (attn_status_t st = selectVariant(&image, dims, variant))
    return st;
  int64_t gridY = dims.at("B") * dims.at("Hq"), gridX;
  if (attn_status_t st =
          gridOf(*variant, dims.at("N"), gridY, "q", "B * Hq", "N", gridX))
    return st;
  if (variant->scratch_state_floats || variant->scratch_fixed_floats)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kernelName(&image) + ": variant '" + variant->function +
                    "' declares global scratch, which only gradients' "
                    "kernels take (attn_cuda_run_backward)");

  // Kernel parameters: every descriptor field, q, k, v, o, lse, aux.
  Descriptors desc;
  addCallDescriptors(desc, kernel->num_inputs, inputs, o, lse, dims);
  std::vector<void *> params = desc.wordPointers();

  const Driver *drv = nullptr;
  CUfunction fn = nullptr;
  if (attn_status_t st =
          prepareLaunch(&image, *variant, inputs[0]->device.device_id, drv, fn))
    return st;
  return launch(*drv, fn, &image, *variant, gridX, gridY, params, stream);
}

extern "C" attn_status_t
attn_cuda_run_backward(const attn_cuda_backward_desc_t *kernel,
                       const DLTensor *const *inputs, const DLTensor *o,
                       const DLTensor *lse, const DLTensor *dout,
                       const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                       DLTensor *dv, DLTensor *const *daux, void *stream) {
  clearLastError();

  // The descriptor.
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  KernelImage image = imageOf(kernel);
  attn::Signature sig;
  if (attn_status_t st = checkKernel(&image, sig))
    return st;
  if (attn_status_t st = checkGradInputs(kernelName(&image), kernel->num_inputs,
                                         kernel->inputs, kernel->num_grads,
                                         kernel->grad_inputs))
    return st;

  // The call: the CPU backward's rules in CUDA memory; dout feeds tensor
  // cores as q does.
  BackwardKernel k{kernel->name,      kernel->num_inputs, kernel->inputs,
                   kernel->needs_lse, kernel->num_grads,  kernel->grad_inputs};
  BackwardTensors t{o, lse, dout, dlse, dq, dk, dv, daux};
  attn::DimBinding dims;
  if (attn_status_t st =
          checkBackwardCall(k, sig, inputs, t, MemoryKind::CudaDevice,
                            dlTypeOf(kernel->inputs[0].type), dims))
    return st;
  for (int i = 0; i < 3; ++i)
    if (attn_status_t st = checkChunkLayout(inputs[i], sig.inputs[i]))
      return st;
  attn::InputSig doutSig = sig.inputs[0];
  doutSig.name = "dout";
  doutSig.dims.back().symbol = "Dv";
  if (attn_status_t st = checkChunkLayout(dout, doutSig))
    return st;
  // dq and the aux gradients are zeroed by one memset each.
  std::vector<std::pair<std::string, DLTensor *>> zeroed = {{"dq", dq}};
  for (int32_t i = 0; i < kernel->num_grads; ++i)
    zeroed.push_back(
        {std::string("d") + kernel->inputs[kernel->grad_inputs[i]].name,
         daux[i]});
  for (auto &[name, z] : zeroed)
    if (!isCompact(z))
      return fail(ATTN_ERROR_LAYOUT,
                  name + ": strides " +
                      shapeString(stridesOf(z).data(), z->ndim) +
                      " are not compact row-major; the CUDA backward zeroes "
                      "it with one memset before adding to it");

  // Variant and launch geometry: a CTA per kv tile of each (b, hk).
  const attn_cuda_kernel_variant_t *variant = nullptr;
  if (attn_status_t st = selectVariant(&image, dims, variant))
    return st;
  int64_t gridY = dims.at("B") * dims.at("Hkv"), gridX;
  if (attn_status_t st =
          gridOf(*variant, dims.at("M"), gridY, "k", "B * Hkv", "M", gridX))
    return st;
  // The linear family's kernels take global scratch (their checkpoints),
  // allocated on the stream for the launch.
  uint64_t scratchPerCta =
      attn_cuda_scratch_floats_per_cta(variant, dims.at("N"));
  uint64_t ctas = uint64_t(gridX) * uint64_t(gridY), scratchBytes = 0;
  if (variant->scratch_state_floats < 0 || variant->scratch_fixed_floats < 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kernelName(&image) + ": variant '" + variant->function +
                    "' has a negative scratch size");
  if (scratchPerCta) {
    if (scratchPerCta > (uint64_t(1) << 62) / 4 / ctas)
      return fail(ATTN_ERROR_OUT_OF_MEMORY,
                  kernelName(&image) + ": the scratch of " + str(ctas) +
                      " CTAs of " + str(int64_t(scratchPerCta)) +
                      " floats each does not fit in 64-bit sizes");
    scratchBytes = scratchPerCta * 4 * ctas;
  }
  Descriptors desc;
  addBackwardDescriptors(desc, k, inputs, t, dims);

  const Driver *drv = nullptr;
  CUfunction fn = nullptr;
  if (attn_status_t st =
          prepareLaunch(&image, *variant, inputs[0]->device.device_id, drv, fn))
    return st;
  for (auto &[name, z] : zeroed) {
    CUdeviceptr ptr = reinterpret_cast<uintptr_t>(z->data) + z->byte_offset;
    if (CUresult r = drv->cuMemsetD32Async(ptr, 0, size_t(numel(z)),
                                           static_cast<CUstream>(stream)))
      return fail(ATTN_ERROR_DRIVER, drv->errorText("cuMemsetD32Async", r) +
                                         " (zeroing " + name + " of " +
                                         kernelName(&image) + ")");
  }
  if (!scratchBytes) {
    std::vector<void *> params = desc.wordPointers();
    return launch(*drv, fn, &image, *variant, gridX, gridY, params, stream);
  }
  CUdeviceptr scratch = 0;
  auto cstream = static_cast<CUstream>(stream);
  if (CUresult r =
          drv->cuMemAllocAsync(&scratch, size_t(scratchBytes), cstream))
    return fail(r == CUDA_ERROR_OUT_OF_MEMORY ? ATTN_ERROR_OUT_OF_MEMORY
                                              : ATTN_ERROR_DRIVER,
                drv->errorText("cuMemAllocAsync", r) + " (" +
                    str(int64_t(scratchBytes)) + " bytes of scratch for " +
                    kernelName(&image) + ")");
  auto *p = reinterpret_cast<const void *>(uintptr_t(scratch));
  desc.add(p, p, {int64_t(scratchBytes)}, {1});
  std::vector<void *> params = desc.wordPointers();
  attn_status_t st =
      launch(*drv, fn, &image, *variant, gridX, gridY, params, stream);
  // Freed after the kernel on the stream, whether or not it launched.
  CUresult r = drv->cuMemFreeAsync(scratch, cstream);
  if (st == ATTN_OK && r)
    return fail(ATTN_ERROR_DRIVER, drv->errorText("cuMemFreeAsync", r) +
                                       " (the scratch of " +
                                       kernelName(&image) + ")");
  return st;
}

extern "C" int32_t attn_cuda_available(void) {
  clearLastError();
  std::string err;
  const Driver *drv = loadDriver(err);
  if (!drv) {
    fail(ATTN_ERROR_DRIVER, err);
    return 0;
  }
  int count = 0;
  if (CUresult r = drv->cuDeviceGetCount(&count)) {
    fail(ATTN_ERROR_DRIVER, drv->errorText("cuDeviceGetCount", r));
    return 0;
  }
  if (count < 1) {
    fail(ATTN_ERROR_DRIVER,
         "no CUDA device: cuDeviceGetCount reports " + str(count));
    return 0;
  }
  return 1;
}
