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

template <typename Desc> KernelImage imageOf(const Desc *d) {
  return {d->name,         d->abi_version, d->image,      d->image_size,
          d->num_variants, d->variants,    d->num_inputs, d->inputs};
}

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

/// Validates the kernel descriptor and converts its inputs to a Signature.
attn_status_t checkKernel(const Api &api, const KernelImage *k,
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

/// The decode schedule's fields of a forward descriptor (ABI 6).
attn_status_t checkDecodeFields(const attn_cuda_kernel_desc_t *k,
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

/// q, k and v are read in 16-byte chunks: the innermost stride must be 1,
/// every other stride a multiple of a chunk, the start chunk-aligned. Dims of
/// size 1 are never stepped along, so their strides do not matter.
attn_status_t checkChunkLayout(const Api &api, const DLTensor *t,
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

/// A variant's dynamic shared memory within the API's limit, where it has
/// one (a ROCm variant past 64 KiB of LDS could never launch).
attn_status_t checkShared(const Api &api, const KernelImage *k,
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

/// The variant with the smallest max_head_dim >= max(Dqk, Dv), if the API
/// can launch it.
/// The first of `n` variants (sorted by max_head_dim) handling max(Dqk, Dv),
/// or NULL.
const attn_cuda_kernel_variant_t *
firstFitting(int32_t n, const attn_cuda_kernel_variant_t *variants,
             const attn::DimBinding &dims) {
  int64_t need = std::max(dims.at("Dqk"), dims.at("Dv"));
  for (int32_t i = 0; i < n; ++i)
    if (variants[i].max_head_dim >= need)
      return &variants[i];
  return nullptr;
}

attn_status_t selectVariant(const Api &api, const KernelImage *k,
                            const attn::DimBinding &dims,
                            const attn_cuda_kernel_variant_t *&out) {
  out = firstFitting(k->num_variants, k->variants, dims);
  if (out)
    return checkShared(api, k, *out);
  int64_t dqk = dims.at("Dqk"), dv = dims.at("Dv");
  return fail(ATTN_ERROR_UNSUPPORTED,
              kernelName(k) + ": head dims Dqk = " + str(dqk) +
                  ", Dv = " + str(dv) +
                  " are not supported; the largest supported head "
                  "dim is " +
                  str(k->variants[k->num_variants - 1].max_head_dim));
}

/// The grid: gridX tiles along `rows` (N or M), gridY = B * heads, within
/// the API's limits.
attn_status_t gridOf(const Api &api, const attn_cuda_kernel_variant_t &variant,
                     int64_t rows, int64_t bh, const char *tensor,
                     const char *bhText, const char *rowsText, int64_t &gridX) {
  Limits limits = api.limits();
  if (bh > limits.maxGridY)
    return fail(ATTN_ERROR_SHAPE, std::string(tensor) + ": " + bhText + " = " +
                                      str(bh) + " is more than " +
                                      str(limits.maxGridY) + " (the " +
                                      api.name() + " grid's y dimension)");
  gridX = (rows + variant.block_q - 1) / variant.block_q;
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

/// Whether this call takes the decode schedule: the kernel has one and
/// N <= decode_max_n, unless ATTN_GPU_SCHEDULE says prefill or decode.
bool useDecode(const attn_cuda_kernel_desc_t *k, int64_t N) {
  if (k->num_decode_variants <= 0 || !k->decode_variants)
    return false;
  if (int forced = forcedSchedule("ATTN_GPU_SCHEDULE"); forced >= 0)
    return forced == 1;
  return N <= k->decode_max_n;
}

/// The compact row-major strides of `sizes`.
std::vector<int64_t> compactStrides(const std::vector<int64_t> &sizes) {
  std::vector<int64_t> strides(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = s;
    s *= sizes[i];
  }
  return strides;
}

/// The decode schedule (runtime.h, attn_cuda_run): the decode variant into
/// stream-ordered partials, then the merge variant into o and lse.
attn_status_t runDecode(Api &api, const attn_cuda_kernel_desc_t *kernel,
                        const KernelImage &image,
                        const attn_cuda_kernel_variant_t &dec,
                        const DLTensor *const *inputs, DLTensor *o,
                        DLTensor *lse, const attn::DimBinding &dims,
                        void *stream) {
  const attn_cuda_kernel_variant_t &merge = *kernel->merge_variant;
  if (attn_status_t st = checkShared(api, &image, dec))
    return st;
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), Hkv = dims.at("Hkv");
  int64_t N = dims.at("N"), M = dims.at("M"), Dv = dims.at("Dv");
  // No overflow: B * Hq * N is bounded by q's checked extent.
  int64_t rows = dec.block_q;
  int64_t chunks = ((Hq / Hkv) * N + rows - 1) / rows;
  int64_t ctas = B * Hkv * chunks;
  int64_t mergeX;
  if (attn_status_t st =
          gridOf(api, merge, N, B * Hq, "q", "B * Hq", "N", mergeX))
    return st;

  int deviceId = inputs[0]->device.device_id;
  void *decFn = nullptr, *mergeFn = nullptr;
  if (attn_status_t st = api.prepare(image, dec, deviceId, decFn))
    return st;
  if (attn_status_t st = api.prepare(image, merge, deviceId, mergeFn))
    return st;
  int64_t slots = 0;
  if (attn_status_t st = api.slots(decFn, dec, deviceId, slots))
    return st;
  int64_t splits = attn_cuda_decode_splits(ctas, M, slots);
  Limits limits = api.limits();
  if (ctas > limits.maxGridX / splits)
    return fail(ATTN_ERROR_SHAPE,
                "q: the decode schedule's B * Hkv * ceil(G * N / " + str(rows) +
                    ") * splits = " + str(ctas) + " * " + str(splits) +
                    " CTAs are more than " + str(limits.maxGridX) + " (the " +
                    api.name() + " grid's x dimension)");

  // The partials: o_part [B, Hkv, S, C * rows, Dv], then lse_part
  // [B, Hkv, S, C * rows], in one allocation.
  std::vector<int64_t> oSizes = {B, Hkv, splits, chunks * rows, Dv};
  std::vector<int64_t> lseSizes = {B, Hkv, splits, chunks * rows};
  int64_t lseFloats = ctas * splits * rows, oFloats;
  if (__builtin_mul_overflow(lseFloats, Dv, &oFloats) ||
      oFloats > (int64_t(1) << 60) / 4 - lseFloats)
    return fail(ATTN_ERROR_OUT_OF_MEMORY,
                kernelName(&image) + ": the decode partials of " +
                    str(ctas * splits) + " CTAs do not fit in 64-bit sizes");
  size_t bytes = size_t(oFloats + lseFloats) * 4;
  uintptr_t part = 0;
  if (attn_status_t st = api.allocAsync(bytes, stream, part,
                                        str(int64_t(bytes)) +
                                            " bytes of decode partials for " +
                                            kernelName(&image)))
    return st;
  auto *oPart = reinterpret_cast<const void *>(part);
  auto *lsePart = reinterpret_cast<const void *>(part + size_t(oFloats) * 4);

  Descriptors decDesc;
  for (int i = 0; i < 3; ++i)
    decDesc.addTensor(inputs[i]);
  decDesc.add(oPart, oPart, oSizes, compactStrides(oSizes));
  decDesc.add(lsePart, lsePart, lseSizes, compactStrides(lseSizes));
  for (int32_t i = 3; i < kernel->num_inputs; ++i)
    decDesc.addTensor(inputs[i]);
  // A dense batch: the batch tables (cu_seqlens_q, cu_seqlens_k,
  // block_table, kv_lens) are null.
  for (int rank : {1, 1, 2, 1})
    decDesc.add(nullptr, nullptr, std::vector<int64_t>(rank, 0),
                std::vector<int64_t>(rank, 1));
  Descriptors mergeDesc;
  mergeDesc.add(oPart, oPart, oSizes, compactStrides(oSizes));
  mergeDesc.add(lsePart, lsePart, lseSizes, compactStrides(lseSizes));
  mergeDesc.addTensor(o);
  if (lse)
    mergeDesc.addTensor(lse);
  else
    mergeDesc.add(nullptr, nullptr, {B, Hq, N}, {Hq * N, N, 1});
  mergeDesc.add(nullptr, nullptr, {0}, {1}); // cu_seqlens_q: dense

  std::vector<void *> decParams = decDesc.wordPointers();
  attn_status_t st =
      api.launch(decFn, image, dec, ctas * splits, 1, decParams.data(), stream);
  if (st == ATTN_OK) {
    std::vector<void *> mergeParams = mergeDesc.wordPointers();
    st = api.launch(mergeFn, image, merge, mergeX, B * Hq, mergeParams.data(),
                    stream);
  }
  // Freed after the launches on the stream, whether or not they launched.
  attn_status_t freed = api.freeAsync(
      part, stream, "the decode partials of " + kernelName(&image));
  return st != ATTN_OK ? st : freed;
}

} // namespace

extern "C" int64_t attn_cuda_decode_splits(int64_t ctas, int64_t M,
                                           int64_t slots) {
  constexpr int64_t kMaxSplits = 128;
  if (const char *env = std::getenv("ATTN_DECODE_SPLITS")) {
    char *endp = nullptr;
    long long v = std::strtoll(env, &endp, 10);
    if (endp != env && *endp == '\0' && v > 0)
      return std::min<int64_t>(v, kMaxSplits);
  }
  if (ctas <= 0 || M <= 0 || slots <= 0 || 5 * ctas >= 4 * slots)
    return 1;
  int64_t most = std::min<int64_t>(kMaxSplits, (M + 127) / 128);
  auto efficiency = [&](int64_t s) {
    int64_t n = ctas * s, waves = (n + slots - 1) / slots;
    return double(n) / double(waves * slots);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s)
    best = std::max(best, efficiency(s));
  for (int64_t s = 1; s <= most; ++s)
    if (efficiency(s) >= 0.85 * best)
      return s;
  return 1;
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
  if (attn_status_t st = selectVariant(api, &image, dims, variant))
    return st;
  if (useDecode(kernel, dims.at("N")))
    if (const attn_cuda_kernel_variant_t *dec = firstFitting(
            kernel->num_decode_variants, kernel->decode_variants, dims))
      return runDecode(api, kernel, image, *dec, inputs, o, lse, dims, stream);
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
  if (attn_status_t st = selectVariant(api, &image, dims, variant))
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
