//===- CudaTestUtil.h - fake CUDA tensors, kernel descriptors ---*- C++ -*-===//
//
// For the CUDA runtime tests: DLPack tensors on kDLCUDA with fake, aligned
// device addresses (attn_cuda_run never dereferences them) and kernel
// descriptors in the form the compiler emits. A kernel's image is the fake
// driver's text format ("function=num_params\n", see FakeCudaDriver.h); the
// real driver never sees it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_CUDATESTUTIL_H
#define ATTN_TEST_CUDATESTUTIL_H

#include "attn/runtime.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace attn_test {

inline DLDataType bf16() { return {kDLBfloat, 16, 1}; }
inline DLDataType f16() { return {kDLFloat, 16, 1}; }
inline DLDataType f32() { return {kDLFloat, 32, 1}; }
inline DLDataType i32() { return {kDLInt, 32, 1}; }

/// A DLTensor with owned shape and strides (empty strides: NULL, compact).
struct Tensor {
  std::vector<int64_t> shape, strides;
  DLTensor t{};
  Tensor() = default;
  Tensor(std::vector<int64_t> shape_, DLDataType dtype, uintptr_t address,
         std::vector<int64_t> strides_ = {}, DLDevice device = {kDLCUDA, 0})
      : shape(std::move(shape_)), strides(std::move(strides_)) {
    t.data = reinterpret_cast<void *>(address);
    t.device = device;
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dtype;
    t.byte_offset = 0;
  }
  Tensor(const Tensor &o) : shape(o.shape), strides(o.strides), t(o.t) {}
  Tensor &operator=(const Tensor &o) {
    shape = o.shape;
    strides = o.strides;
    t = o.t;
    return *this;
  }
  /// The tensor, its shape/strides pointing at this object's vectors.
  DLTensor *get() {
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    return &t;
  }
};

/// One compiled variant, as the test declares it.
struct Variant {
  std::string function;
  int32_t maxHeadDim, blockQ, numThreads, sharedBytes;
  int64_t scratchStateFloats = 0, scratchFixedFloats = 0;
};

/// Fills `variants` with the C form of `decls` and returns the fake
/// driver's image listing each with `numParams` parameters. Images live
/// until exit: the runtime caches modules by image address, so a freed
/// image's address must not come back for another image.
inline const std::string *
fakeImage(const std::vector<Variant> &decls, int numParams,
          std::vector<attn_cuda_kernel_variant_t> &variants) {
  std::string text;
  for (const Variant &v : decls) {
    variants.push_back({v.function.c_str(), v.maxHeadDim, v.blockQ,
                        v.numThreads, v.sharedBytes, v.scratchStateFloats,
                        v.scratchFixedFloats});
    text += v.function + "=" + std::to_string(numParams) + "\n";
  }
  static std::deque<std::string> images;
  images.push_back(text);
  return &images.back();
}

/// A CUDA kernel descriptor for q, k, v : T[...] and an aux input
/// doc : i32[B, N]; lse supported. The image lists every variant with
/// `numParams` parameters (60: 4 x 11 + 9 + 7).
struct Kernel {
  std::vector<Variant> variantDecls;
  std::vector<attn_cuda_kernel_variant_t> variants;
  std::vector<attn_input_desc_t> inputs;
  attn_cuda_kernel_desc_t desc{};
  const std::string *image = nullptr;

  explicit Kernel(std::vector<Variant> vs, attn_elem_type_t type = ATTN_BF16,
                  int numParams = 60)
      : variantDecls(std::move(vs)) {
    static const char *const qDims[] = {"B", "Hq", "N", "Dqk"};
    static const char *const kDims[] = {"B", "Hkv", "M", "Dqk"};
    static const char *const vDims[] = {"B", "Hkv", "M", "Dv"};
    static const char *const docDims[] = {"B", "N"};
    inputs = {{"q", type, 4, qDims, nullptr},
              {"k", type, 4, kDims, nullptr},
              {"v", type, 4, vDims, nullptr},
              {"doc", ATTN_I32, 2, docDims, nullptr}};
    image = fakeImage(variantDecls, numParams, variants);
    desc.abi_version = ATTN_ABI_VERSION;
    desc.name = "test_kernel";
    desc.image = image->c_str();
    desc.image_size = image->size() + 1;
    desc.num_variants = static_cast<int32_t>(variants.size());
    desc.variants = variants.data();
    desc.num_inputs = static_cast<int32_t>(inputs.size());
    desc.inputs = inputs.data();
    desc.has_lse = 1;
  }
  Kernel(const Kernel &) = delete;
  Kernel &operator=(const Kernel &) = delete;
};

/// Three variants: d64 (48 KiB or less of shared memory), d128 (64 KiB: must
/// opt in), d256 (100000 bytes).
inline std::vector<Variant> standardVariants() {
  return {{"attn_fwd_d64", 64, 64, 128, 32768},
          {"attn_fwd_d128", 128, 64, 128, 65536},
          {"attn_fwd_d256", 256, 32, 256, 100000}};
}

/// A valid call: B=2, Hq=4, Hkv=2, N=100, M=77, Dqk=64, Dv=48, bf16 inputs,
/// compact layouts, on CUDA device 0 at fake addresses.
struct Call {
  int64_t B = 2, Hq = 4, Hkv = 2, N = 100, M = 77, Dqk = 64, Dv = 48;
  Tensor q, k, v, o, lse, doc;
  bool withLse = true;

  static constexpr uintptr_t kQ = 0x10000000, kK = 0x20000000, kV = 0x30000000,
                             kO = 0x40000000, kLse = 0x50000000,
                             kDoc = 0x60000000;

  explicit Call(DLDataType type = bf16()) { reshape(type); }

  /// Rebuilds every tensor, compact, from the current sizes.
  void reshape(DLDataType type = bf16()) {
    q = Tensor({B, Hq, N, Dqk}, type, kQ);
    k = Tensor({B, Hkv, M, Dqk}, type, kK);
    v = Tensor({B, Hkv, M, Dv}, type, kV);
    o = Tensor({B, Hq, N, Dv}, f32(), kO);
    lse = Tensor({B, Hq, N}, f32(), kLse);
    doc = Tensor({B, N}, i32(), kDoc);
  }

  /// Every tensor on \p device.
  void setDevice(DLDevice device) {
    for (Tensor *t : {&q, &k, &v, &o, &lse, &doc})
      t->t.device = device;
  }

  attn_status_t run(const attn_cuda_kernel_desc_t *kernel,
                    void *stream = nullptr) {
    const DLTensor *ins[] = {q.get(), k.get(), v.get(), doc.get()};
    DLTensor *lsePtr = lse.get();
    return attn_cuda_run(kernel, ins, o.get(), withLse ? lsePtr : nullptr,
                         stream);
  }
};

/// A softmax kernel with the decode schedule and the batch prefill as attnc
/// emits it: forward variants d64 and d128 (block_q 64), decode variants
/// d64 and d128 (16 rows, one warp), the merge (4 rows, 128 threads) and
/// batch prefill variants d64 and d128 (block_q 64); inputs q, k, v and
/// doc : i32[B, N]. Each function's parameter count is what the runtime
/// passes it (the fake driver reads that many).
struct DecodeKernel {
  std::vector<attn_cuda_kernel_variant_t> forward = {
      {"attn_fwd_d64", 64, 64, 128, 40960, 0, 0},
      {"attn_fwd_d128", 128, 64, 128, 81920, 0, 0}};
  std::vector<attn_cuda_kernel_variant_t> decode = {
      {"attn_dec_d64", 64, 16, 32, 34816, 0, 0},
      {"attn_dec_d128", 128, 16, 32, 36864, 0, 0}};
  attn_cuda_kernel_variant_t merge = {"attn_merge", 128, 4, 128, 0, 0, 0};
  std::vector<attn_cuda_kernel_variant_t> batch = {
      {"attn_batch_d64", 64, 64, 128, 40960, 0, 0},
      {"attn_batch_d128", 128, 64, 128, 81920, 0, 0}};
  std::vector<attn_input_desc_t> inputs;
  attn_cuda_kernel_desc_t desc{};

  DecodeKernel() {
    static const char *const qDims[] = {"B", "Hq", "N", "Dqk"};
    static const char *const kDims[] = {"B", "Hkv", "M", "Dqk"};
    static const char *const vDims[] = {"B", "Hkv", "M", "Dv"};
    static const char *const docDims[] = {"B", "N"};
    inputs = {{"q", ATTN_BF16, 4, qDims, nullptr},
              {"k", ATTN_BF16, 4, kDims, nullptr},
              {"v", ATTN_BF16, 4, vDims, nullptr},
              {"doc", ATTN_I32, 2, docDims, nullptr}};
    // Forward: q, k, v, o (11 words each), lse (9), doc (7). Decode: q, k,
    // v, o_part (13), lse_part (11), doc, the batch tables cu_seqlens_q,
    // cu_seqlens_k (5 each), block_table (7), kv_lens (5). Merge: o_part,
    // lse_part, o, lse, cu_seqlens_q. Batch prefill: the forward's, then
    // the four tables.
    static std::deque<std::string> images;
    images.push_back("attn_fwd_d64=60\nattn_fwd_d128=60\nattn_dec_d64=86\n"
                     "attn_dec_d128=86\nattn_merge=49\nattn_batch_d64=82\n"
                     "attn_batch_d128=82\n");
    desc.abi_version = ATTN_ABI_VERSION;
    desc.name = "decode_kernel";
    desc.image = images.back().c_str();
    desc.image_size = images.back().size() + 1;
    desc.num_variants = int32_t(forward.size());
    desc.variants = forward.data();
    desc.num_inputs = int32_t(inputs.size());
    desc.inputs = inputs.data();
    desc.has_lse = 1;
    desc.decode_max_n = 16;
    desc.num_decode_variants = int32_t(decode.size());
    desc.decode_variants = decode.data();
    desc.merge_variant = &merge;
    desc.num_batch_variants = int32_t(batch.size());
    desc.batch_variants = batch.data();
  }
};

} // namespace attn_test

#endif // ATTN_TEST_CUDATESTUTIL_H
