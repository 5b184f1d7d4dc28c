//===- GpuRun.h - what every GPU backend's launcher shares ------*- C++ -*-===//
//
// Private to runtime/src. attn_cuda_run, attn_cuda_run_backward and their
// ROCm twins validate a call, choose a variant, build the kernel
// parameters and size the scratch the same way whatever the GPU API: that
// is written once here, over `Api`, the few device calls a backend supplies
// (its driver's contexts, modules, launches, memsets and stream-ordered
// allocations). Everything is validated before the API is touched, so a bad
// call fails the same way on a machine without the GPU's driver.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_GPU_GPURUN_H
#define ATTN_RUNTIME_GPU_GPURUN_H

#include "../Validate.h"
#include "attn/runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attn::runtime::gpu {

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

/// "kernel 'name'", for messages.
std::string kernelName(const KernelImage *k);

template <typename Desc> KernelImage imageOf(const Desc *d) {
  return {d->name,         d->abi_version, d->image,      d->image_size,
          d->num_variants, d->variants,    d->num_inputs, d->inputs};
}

/// What a GPU API can launch, checked before it is touched.
struct Limits {
  /// Largest grid.x (tiles) and grid.y (B * heads), in blocks.
  int64_t maxGridX, maxGridY;
  /// Largest grid.x * threads per block (HIP counts the global size in
  /// threads, in 32 bits); 0: no such limit.
  int64_t maxThreadsX;
  /// Largest dynamic shared memory per block (AMD's LDS); 0: left to the
  /// driver (CUDA's depends on the device and an opt-in).
  int64_t maxSharedBytes;
  /// Why, for messages: "AMD GPUs have 64 KiB of LDS per workgroup".
  const char *sharedWhy;
  /// Largest byte range of one (batch, kv head) slice of k or v, which the
  /// forward kernels read through one buffer resource (AMD: 32-bit
  /// num_records); 0: no such limit.
  int64_t maxSliceBytes = 0;
};

/// A GPU API's device side. Each call reports its own failure (fail()).
class Api {
public:
  virtual ~Api() = default;
  /// "CUDA": in messages ("CUDA kernels take ...").
  virtual const char *name() const = 0;
  /// "cuda": the entry points' infix (attn_cuda_run_backward).
  virtual const char *infix() const = 0;
  /// Where the call's tensors must live.
  virtual MemoryKind memory() const = 0;
  /// Its grid and shared memory limits.
  virtual Limits limits() const = 0;
  /// Loads the driver, makes device `deviceId` current for the calling
  /// thread and returns the variant's function (an opaque handle).
  virtual attn_status_t prepare(const KernelImage &k,
                                const attn_cuda_kernel_variant_t &v,
                                int deviceId, void *&fn) = 0;
  /// One launch of `fn` on `stream`, grid (gridX, gridY), the variant's
  /// threads and dynamic shared memory; `params`: one pointer per word.
  virtual attn_status_t launch(void *fn, const KernelImage &k,
                               const attn_cuda_kernel_variant_t &v,
                               int64_t gridX, int64_t gridY, void **params,
                               void *stream) = 0;
  /// Queues zeroing `words` 32-bit words at `dst` (`what`: "zeroing dq of
  /// kernel 'x'").
  virtual attn_status_t zero32(uintptr_t dst, size_t words, void *stream,
                               const std::string &what) = 0;
  /// Stream-ordered allocation and free (`what`: whose scratch).
  virtual attn_status_t allocAsync(size_t bytes, void *stream, uintptr_t &ptr,
                                   const std::string &what) = 0;
  virtual attn_status_t freeAsync(uintptr_t ptr, void *stream,
                                  const std::string &what) = 0;
  /// How many CTAs of `fn` (variant `v`, prepared on device `deviceId`) the
  /// device runs at once: SMs x CTAs per SM. The decode schedule sizes its
  /// kv splits with it; 0 (the default) when the API cannot tell, which
  /// gives one split.
  virtual attn_status_t slots(void *fn, const attn_cuda_kernel_variant_t &v,
                              int deviceId, int64_t &slots) {
    (void)fn, (void)v, (void)deviceId;
    slots = 0;
    return ATTN_OK;
  }
  /// Copies `bytes` bytes at device address `src` to host `dst` in the
  /// order of `stream`, and waits for them: a debug path
  /// (ATTN_GPU_CHECK_TABLES), which stalls the stream. The device must be
  /// current (prepare()). The default: UNSUPPORTED.
  virtual attn_status_t copyToHost(void *dst, uintptr_t src, size_t bytes,
                                   void *stream, const std::string &what) {
    (void)dst, (void)src, (void)bytes, (void)stream;
    return fail(ATTN_ERROR_UNSUPPORTED, std::string("the ") + name() +
                                            " runtime cannot read " + what +
                                            " back to the host");
  }
};

/// attn_<api>_available()'s answer (clears the last error first): 0 with
/// `error` when the driver did not load or count, 0 with "no <api> device:
/// <countFn> reports N" when it counted none, else 1.
int32_t answerAvailable(const char *api, const char *countFn,
                        const std::string &error, int count);

//===----------------------------------------------------------------------===//
// The checks and geometry the launchers share (GpuRun.cpp)
//===----------------------------------------------------------------------===//

/// Validates the kernel descriptor and converts its inputs to a Signature.
attn_status_t checkKernel(const Api &api, const KernelImage *k,
                          attn::Signature &sig);
/// The decode schedule's fields of a forward descriptor (ABI 6) and its
/// batch prefill variants (ABI 9).
attn_status_t checkDecodeFields(const attn_cuda_kernel_desc_t *k,
                                const std::string &kname);
/// q, k and v are read in 16-byte chunks: the innermost stride must be 1,
/// every other stride a multiple of a chunk, the start chunk-aligned. Dims of
/// size 1 are never stepped along, so their strides do not matter.
attn_status_t checkChunkLayout(const Api &api, const DLTensor *t,
                               const attn::InputSig &in);
/// A variant's dynamic shared memory within the API's limit, where it has
/// one (a ROCm variant past 64 KiB of LDS could never launch).
attn_status_t checkShared(const Api &api, const KernelImage *k,
                          const attn_cuda_kernel_variant_t &v);
/// The first of `variants` (n, sorted by max_head_dim) handling max(Dqk,
/// Dv), its shared memory checked (checkShared); UNSUPPORTED when none
/// does, naming `set` ("decode": "... by its decode variants"; "" for the
/// image's own).
attn_status_t selectVariant(const Api &api, const KernelImage *k, int32_t n,
                            const attn_cuda_kernel_variant_t *variants,
                            const char *set, const attn::DimBinding &dims,
                            const attn_cuda_kernel_variant_t *&out);
/// The first of `n` variants (sorted by max_head_dim) handling max(Dqk, Dv),
/// or NULL.
const attn_cuda_kernel_variant_t *
firstFitting(int32_t n, const attn_cuda_kernel_variant_t *variants,
             const attn::DimBinding &dims);
/// The grid: gridX tiles along `rows` (N or M), gridY = B * heads, within
/// the API's limits.
attn_status_t gridOf(const Api &api, const attn_cuda_kernel_variant_t &variant,
                     int64_t rows, int64_t bh, const char *tensor,
                     const char *bhText, const char *rowsText, int64_t &gridX);
/// Whether this call takes the decode schedule: the kernel has one and
/// N <= decode_max_n, unless ATTN_GPU_SCHEDULE says prefill or decode.
bool useDecode(const attn_cuda_kernel_desc_t *k, int64_t N);
/// The compact row-major strides of `sizes`.
std::vector<int64_t> compactStrides(const std::vector<int64_t> &sizes);

//===----------------------------------------------------------------------===//
// The decode schedule (GpuDecodeRun.cpp)
//===----------------------------------------------------------------------===//

/// A memref descriptor's fields, the offset folded into `aligned`.
struct View {
  const void *allocated = nullptr, *aligned = nullptr;
  std::vector<int64_t> sizes, strides;
  /// `t` as it is.
  static View of(const DLTensor *t);
  /// A NULL descriptor of `sizes` (compact strides): an absent tensor.
  static View null(std::vector<int64_t> sizes);
  /// Appends this memref descriptor to a launch's parameters.
  void addTo(Descriptors &d) const {
    d.add(allocated, aligned, sizes, strides);
  }
};

/// What the decode, merge and batch prefill kernels read and write, in
/// their argument order: q, k, v, o, lse (NULL when not asked for), then the
/// batch tables cu_seqlens_q, cu_seqlens_k, block_table, kv_lens (NULL for
/// a dense call). A ragged batch's packed tensors are views [B, H, rows, D]
/// with a zero batch stride (AttnToNVVM.cpp, emitDecodePrologue).
struct DecodeTensors {
  View q, k, v, o, lse;
  View tables[4];
  /// attn_cuda_run's dense call.
  static DecodeTensors dense(const DLTensor *const *inputs, const DLTensor *o,
                             const DLTensor *lse, const attn::DimBinding &dims);
};

/// The decode schedule (runtime.h, attn_cuda_run): variant `dec` into
/// stream-ordered partials, then the merge variant into o and lse; `dims`
/// B, Hq, Hkv, Dv and N, M (the longest sequence's); the aux inputs from
/// inputs[3].
attn_status_t runDecode(Api &api, const attn_cuda_kernel_desc_t *kernel,
                        const KernelImage &image,
                        const attn_cuda_kernel_variant_t &dec,
                        const DecodeTensors &t, const DLTensor *const *inputs,
                        const attn::DimBinding &dims, void *stream);

/// attn_<api>_run_batch's semantics over `api` (runtime.h).
attn_status_t runBatch(Api &api, const attn_cuda_kernel_desc_t *kernel,
                       const DLTensor *const *inputs,
                       const attn_gpu_batch_layout_t *layout, DLTensor *o,
                       DLTensor *lse, void *stream);

/// attn_<api>_run's semantics over `api` (runtime.h).
attn_status_t runForward(Api &api, const attn_cuda_kernel_desc_t *kernel,
                         const DLTensor *const *inputs, DLTensor *o,
                         DLTensor *lse, void *stream);
/// attn_<api>_run_backward's semantics over `api` (runtime.h).
attn_status_t runBackward(Api &api, const attn_cuda_backward_desc_t *kernel,
                          const DLTensor *const *inputs, const DLTensor *o,
                          const DLTensor *lse, const DLTensor *dout,
                          const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                          DLTensor *dv, DLTensor *const *daux, void *stream);

} // namespace attn::runtime::gpu

#endif
