//===- GpuRun.cpp - validate, pick a variant, launch: any GPU API ---------===//
//
// The GPU entries' common path (GpuRun.h): the descriptor and the call are
// checked with the CPU run's shared rules plus the GPU kernels' own
// (device, bf16/f16 q/k/v, 16-byte chunk layouts, grid limits), all before
// the API is touched; then the variant, the kernel parameters, the backward's
// zeroed gradients and scratch, and one launch on the caller's stream, with
// no synchronization.
//
//===----------------------------------------------------------------------===//

#include "GpuRun.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace attn::runtime;
using namespace attn::runtime::gpu;

namespace {

/// Most threads a CTA may have (CUDA's and AMD's workgroups alike).
constexpr int32_t kMaxThreadsPerBlock = 1024;
/// The kernels copy q, k, v in chunks of this many bytes (cp.async).
constexpr int64_t kChunkBytes = 16;

} // namespace

std::string gpu::kernelName(const KernelImage *k) {
  return std::string("kernel '") + (k->name ? k->name : "?") + "'";
}

namespace {

/// Validates `n` variants at `vs` (`field`: "variants", "decode_variants").
attn_status_t checkVariants(const std::string &kname, const char *field,
                            int32_t n, const attn_cuda_kernel_variant_t *vs) {
  for (int32_t i = 0; i < n; ++i) {
    const attn_cuda_kernel_variant_t &v = vs[i];
    std::string where = kname + ": " + field + "[" + str(i) + "]";
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
    if (i > 0 && v.max_head_dim < vs[i - 1].max_head_dim)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": max_head_dim " + str(v.max_head_dim) +
                      " is smaller than the previous variant's " +
                      str(vs[i - 1].max_head_dim) + "; " + field +
                      " must be sorted by max_head_dim");
  }
  return ATTN_OK;
}

} // namespace

attn_status_t gpu::checkKernel(const Api &api, const KernelImage *k,
                               attn::Signature &sig) {
  std::string kname = kernelName(k);
  if (k->abi_version != ATTN_ABI_VERSION)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kname + ": ABI version " + str(k->abi_version) +
                    ", this runtime supports " + str(ATTN_ABI_VERSION));
  if (!k->image)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": image is NULL (not compiled for " + api.name() +
                    ")");
  if (k->image_size == 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, kname + ": image_size is 0");
  if (k->num_variants <= 0 || !k->variants)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": no variants (num_variants is " +
                    str(k->num_variants) +
                    (k->variants ? "" : ", variants is NULL") + ")");
  if (attn_status_t st =
          checkVariants(kname, "variants", k->num_variants, k->variants))
    return st;
  if (attn_status_t st = checkInputDescs(kname, k->num_inputs, k->inputs, sig))
    return st;
  for (int i = 0; i < 3; ++i)
    if (k->inputs[i].type != ATTN_BF16 && k->inputs[i].type != ATTN_F16)
      return fail(ATTN_ERROR_UNSUPPORTED,
                  kname + ": " + api.name() +
                      " kernels take bf16 or f16 q, k, v; " +
                      k->inputs[i].name + " is declared " +
                      elemTypeName(k->inputs[i].type));
  return ATTN_OK;
}

namespace {

/// The batch prefill variants (ABI 9). Batch variants without decode ones
/// are well-formed: the compiler emits both, but neither needs the other.
attn_status_t checkBatchFields(const attn_cuda_kernel_desc_t *k,
                               const std::string &kname) {
  if (k->num_batch_variants < 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, kname + ": num_batch_variants " +
                                                 str(k->num_batch_variants) +
                                                 "; expected >= 0");
  if (k->num_batch_variants > 0 && !k->batch_variants)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": num_batch_variants is " +
                    str(k->num_batch_variants) + " but batch_variants is NULL");
  return checkVariants(kname, "batch_variants", k->num_batch_variants,
                       k->batch_variants);
}

} // namespace

attn_status_t gpu::checkDecodeFields(const attn_cuda_kernel_desc_t *k,
                                     const std::string &kname) {
  if (k->decode_max_n < 0 || k->num_decode_variants < 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode_max_n " + str(k->decode_max_n) +
                    ", num_decode_variants " + str(k->num_decode_variants) +
                    "; expected >= 0");
  bool haveVariants = k->num_decode_variants > 0 && k->decode_variants;
  if (k->decode_max_n > 0 && !haveVariants)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode_max_n is " + str(k->decode_max_n) +
                    " but there are no decode variants");
  if (attn_status_t st = checkBatchFields(k, kname))
    return st;
  if (!haveVariants)
    return ATTN_OK;
  if (!k->merge_variant)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode variants without a merge variant "
                        "(merge_variant is NULL)");
  if (attn_status_t st = checkVariants(
          kname, "decode_variants", k->num_decode_variants, k->decode_variants))
    return st;
  return checkVariants(kname, "merge_variant", 1, k->merge_variant);
}

attn_status_t gpu::checkChunkLayout(const Api &api, const DLTensor *t,
                                    const attn::InputSig &in) {
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
                  where + "; " + std::string(api.name()) +
                      " kernels need the innermost stride to be 1 "
                      "(they copy contiguous 16-byte chunks)");
    if (d != inner && strides[d] % chunkElems != 0)
      return fail(ATTN_ERROR_LAYOUT,
                  where + ", not a multiple of " + str(chunkElems) +
                      " elements; " + api.name() +
                      " kernels copy 16-byte chunks, so every "
                      "row must start 16-byte aligned (pad the head dim)");
  }
  uintptr_t addr = reinterpret_cast<uintptr_t>(t->data) +
                   static_cast<uintptr_t>(t->byte_offset);
  if (addr % kChunkBytes != 0)
    return fail(ATTN_ERROR_LAYOUT, in.name + ": data + byte_offset (" +
                                       str(int64_t(t->byte_offset)) +
                                       ") is not 16-byte aligned; " +
                                       api.name() +
                                       " kernels copy 16-byte "
                                       "chunks");
  return ATTN_OK;
}

/// The byte range of one (batch, head) slice of a rank-4 tensor as a buffer
/// resource spans it: max(rows x row stride, cols) elements.
namespace {

attn_status_t checkSliceRange(const Api &api, const DLTensor *t,
                              const attn::InputSig &in) {
  int64_t limit = api.limits().maxSliceBytes;
  if (!limit || t->ndim != 4)
    return ATTN_OK;
  std::vector<int64_t> strides = stridesOf(t);
  int64_t elemBytes = t->dtype.bits / 8;
  // Divided rather than multiplied: shapes were bounded by checkTensors,
  // strides were not.
  int64_t rows = t->shape[2], cols = t->shape[3];
  int64_t maxElems = limit / elemBytes;
  bool tooBig = cols > maxElems ||
                (rows > 0 && strides[2] > 0 && rows > maxElems / strides[2]);
  if (!tooBig)
    return ATTN_OK;
  return fail(ATTN_ERROR_SHAPE,
              in.name + ": a (batch, head) slice spans " + str(rows) +
                  " rows of stride " + str(strides[2]) +
                  " elements, more "
                  "than the " +
                  str(limit) + " bytes a " + api.name() +
                  " buffer resource can address (32-bit range); split the "
                  "sequence");
}

} // namespace

attn_status_t gpu::checkShared(const Api &api, const KernelImage *k,
                               const attn_cuda_kernel_variant_t &v) {
  Limits limits = api.limits();
  if (!limits.maxSharedBytes || v.shared_mem_bytes <= limits.maxSharedBytes)
    return ATTN_OK;
  return fail(ATTN_ERROR_UNSUPPORTED,
              kernelName(k) + ": variant '" + v.function + "' asks for " +
                  str(v.shared_mem_bytes) +
                  " bytes of shared memory (shared_mem_bytes), more than the " +
                  str(limits.maxSharedBytes) + " a " + api.name() +
                  " block can have (" + limits.sharedWhy + ")");
}

const attn_cuda_kernel_variant_t *
gpu::firstFitting(int32_t n, const attn_cuda_kernel_variant_t *variants,
                  const attn::DimBinding &dims) {
  int64_t need = std::max(dims.at("Dqk"), dims.at("Dv"));
  for (int32_t i = 0; i < n; ++i)
    if (variants[i].max_head_dim >= need)
      return &variants[i];
  return nullptr;
}

attn_status_t gpu::selectVariant(const Api &api, const KernelImage *k,
                                 int32_t n,
                                 const attn_cuda_kernel_variant_t *variants,
                                 const char *set, const attn::DimBinding &dims,
                                 const attn_cuda_kernel_variant_t *&out) {
  out = firstFitting(n, variants, dims);
  if (out)
    return checkShared(api, k, *out);
  std::string which = *set ? std::string(" by its ") + set + " variants" : "";
  return fail(ATTN_ERROR_UNSUPPORTED,
              kernelName(k) + ": head dims Dqk = " + str(dims.at("Dqk")) +
                  ", Dv = " + str(dims.at("Dv")) + " are not supported" +
                  which + "; the largest supported head dim is " +
                  str(variants[n - 1].max_head_dim));
}

attn_status_t gpu::gridOf(const Api &api,
                          const attn_cuda_kernel_variant_t &variant,
                          int64_t rows, int64_t bh, const char *tensor,
                          const char *bhText, const char *rowsText,
                          int64_t &gridX) {
  Limits limits = api.limits();
  if (bh > limits.maxGridY)
    return fail(ATTN_ERROR_SHAPE, std::string(tensor) + ": " + bhText + " = " +
                                      str(bh) + " is more than " +
                                      str(limits.maxGridY) + " (the " +
                                      api.name() + " grid's y dimension)");
  // Without rows + block_q - 1: a batch's rows (max_seqlen_q) are the
  // caller's, up to 2^63 - 1.
  gridX = rows / variant.block_q + (rows % variant.block_q != 0);
  std::string tiles = std::string(tensor) + ": ceil(" + rowsText +
                      " / block_q) = " + str(gridX);
  if (gridX > limits.maxGridX)
    return fail(ATTN_ERROR_SHAPE, tiles + " is more than " +
                                      str(limits.maxGridX) + " (the " +
                                      api.name() + " grid's x dimension)");
  // Divided rather than multiplied: gridX may be near 2^62.
  if (limits.maxThreadsX &&
      gridX > limits.maxThreadsX / int64_t(variant.num_threads))
    return fail(ATTN_ERROR_SHAPE,
                tiles + " blocks of " + str(variant.num_threads) +
                    " threads are more than " + str(limits.maxThreadsX) +
                    " threads (the " + api.name() +
                    " grid's x dimension counts threads in 32 bits)");
  return ATTN_OK;
}

namespace {

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

bool gpu::useDecode(const attn_cuda_kernel_desc_t *k, int64_t N) {
  if (k->num_decode_variants <= 0 || !k->decode_variants)
    return false;
  if (int forced = forcedSchedule("ATTN_GPU_SCHEDULE"); forced >= 0)
    return forced == 1;
  return N <= k->decode_max_n;
}

std::vector<int64_t> gpu::compactStrides(const std::vector<int64_t> &sizes) {
  std::vector<int64_t> strides(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = s;
    s *= sizes[i];
  }
  return strides;
}

attn_status_t gpu::runForward(Api &api, const attn_cuda_kernel_desc_t *kernel,
                              const DLTensor *const *inputs, DLTensor *o,
                              DLTensor *lse, void *stream) {
  clearLastError();

  // The kernel descriptor and the call's pointers.
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  KernelImage image = imageOf(kernel);
  attn::Signature sig;
  if (attn_status_t st = checkKernel(api, &image, sig))
    return st;
  if (attn_status_t st = checkDecodeFields(kernel, kernelName(&image)))
    return st;
  if (attn_status_t st =
          checkCallPointers(kernel->name, kernel->has_lse, inputs, o, lse))
    return st;

  // Inputs and outputs: devices, dtypes, shapes, layouts.
  attn::DimBinding dims;
  if (attn_status_t st =
          checkTensors(sig, kernel->inputs, inputs, o, lse, api.memory(), dims))
    return st;
  for (int i = 0; i < 3; ++i)
    if (attn_status_t st = checkChunkLayout(api, inputs[i], sig.inputs[i]))
      return st;
  for (int i = 1; i < 3; ++i)
    if (attn_status_t st = checkSliceRange(api, inputs[i], sig.inputs[i]))
      return st;

  // Variant and launch geometry (no overflow: checkExtent bounded q's
  // numel).
  const attn_cuda_kernel_variant_t *variant = nullptr;
  if (attn_status_t st = selectVariant(api, &image, image.num_variants,
                                       image.variants, "", dims, variant))
    return st;
  if (useDecode(kernel, dims.at("N")))
    if (const attn_cuda_kernel_variant_t *dec = firstFitting(
            kernel->num_decode_variants, kernel->decode_variants, dims))
      return runDecode(api, kernel, image, *dec,
                       DecodeTensors::dense(inputs, o, lse, dims), inputs, dims,
                       stream);
  int64_t gridY = dims.at("B") * dims.at("Hq"), gridX;
  if (attn_status_t st =
          gridOf(api, *variant, dims.at("N"), gridY, "q", "B * Hq", "N", gridX))
    return st;
  if (variant->scratch_state_floats || variant->scratch_fixed_floats)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kernelName(&image) + ": variant '" + variant->function +
                    "' declares global scratch, which only gradients' "
                    "kernels take (attn_" +
                    api.infix() + "_run_backward)");

  // Kernel parameters: every descriptor field, q, k, v, o, lse, aux.
  Descriptors desc;
  addCallDescriptors(desc, kernel->num_inputs, inputs, o, lse, dims);
  std::vector<void *> params = desc.wordPointers();

  void *fn = nullptr;
  if (attn_status_t st =
          api.prepare(image, *variant, inputs[0]->device.device_id, fn))
    return st;
  return api.launch(fn, image, *variant, gridX, gridY, params.data(), stream);
}

attn_status_t gpu::runBackward(Api &api,
                               const attn_cuda_backward_desc_t *kernel,
                               const DLTensor *const *inputs, const DLTensor *o,
                               const DLTensor *lse, const DLTensor *dout,
                               const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                               DLTensor *dv, DLTensor *const *daux,
                               void *stream) {
  clearLastError();

  // The descriptor.
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  KernelImage image = imageOf(kernel);
  attn::Signature sig;
  if (attn_status_t st = checkKernel(api, &image, sig))
    return st;
  if (attn_status_t st = checkGradInputs(kernelName(&image), kernel->num_inputs,
                                         kernel->inputs, kernel->num_grads,
                                         kernel->grad_inputs))
    return st;

  // The call: the CPU backward's rules in device memory; dout feeds tensor
  // cores as q does.
  BackwardKernel k{kernel->name,      kernel->num_inputs, kernel->inputs,
                   kernel->needs_lse, kernel->num_grads,  kernel->grad_inputs};
  BackwardTensors t{o, lse, dout, dlse, dq, dk, dv, daux};
  attn::DimBinding dims;
  if (attn_status_t st =
          checkBackwardCall(k, sig, inputs, t, api.memory(),
                            dlTypeOf(kernel->inputs[0].type), dims))
    return st;
  for (int i = 0; i < 3; ++i)
    if (attn_status_t st = checkChunkLayout(api, inputs[i], sig.inputs[i]))
      return st;
  attn::InputSig doutSig = sig.inputs[0];
  doutSig.name = "dout";
  doutSig.dims.back().symbol = "Dv";
  if (attn_status_t st = checkChunkLayout(api, dout, doutSig))
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
                      " are not compact row-major; the " + api.name() +
                      " backward zeroes "
                      "it with one memset before adding to it");

  // Variant and launch geometry: a CTA per kv tile of each (b, hk).
  const attn_cuda_kernel_variant_t *variant = nullptr;
  if (attn_status_t st = selectVariant(api, &image, image.num_variants,
                                       image.variants, "", dims, variant))
    return st;
  int64_t gridY = dims.at("B") * dims.at("Hkv"), gridX;
  if (attn_status_t st = gridOf(api, *variant, dims.at("M"), gridY, "k",
                                "B * Hkv", "M", gridX))
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

  void *fn = nullptr;
  if (attn_status_t st =
          api.prepare(image, *variant, inputs[0]->device.device_id, fn))
    return st;
  for (auto &[name, z] : zeroed) {
    uintptr_t ptr = reinterpret_cast<uintptr_t>(z->data) + z->byte_offset;
    if (attn_status_t st =
            api.zero32(ptr, size_t(numel(z)), stream,
                       "zeroing " + name + " of " + kernelName(&image)))
      return st;
  }
  if (!scratchBytes) {
    std::vector<void *> params = desc.wordPointers();
    return api.launch(fn, image, *variant, gridX, gridY, params.data(), stream);
  }
  uintptr_t scratch = 0;
  if (attn_status_t st =
          api.allocAsync(size_t(scratchBytes), stream, scratch,
                         str(int64_t(scratchBytes)) + " bytes of scratch for " +
                             kernelName(&image)))
    return st;
  auto *p = reinterpret_cast<const void *>(scratch);
  desc.add(p, p, {int64_t(scratchBytes)}, {1});
  std::vector<void *> params = desc.wordPointers();
  attn_status_t st =
      api.launch(fn, image, *variant, gridX, gridY, params.data(), stream);
  // Freed after the kernel on the stream, whether or not it launched.
  attn_status_t freed =
      api.freeAsync(scratch, stream, "the scratch of " + kernelName(&image));
  return st != ATTN_OK ? st : freed;
}

int32_t gpu::answerAvailable(const char *api, const char *countFn,
                             const std::string &error, int count) {
  clearLastError();
  if (!error.empty()) {
    fail(ATTN_ERROR_DRIVER, error);
    return 0;
  }
  if (count < 1) {
    fail(ATTN_ERROR_DRIVER, std::string("no ") + api + " device: " + countFn +
                                " reports " + str(count));
    return 0;
  }
  return 1;
}
