//===- BackwardTestUtil.h - GPU backward kernels and calls ------*- C++ -*-===//
//
// For the GPU backward tests (CudaBackwardTest.cpp, RocmRunTest.cpp): a
// backward descriptor in the form the compiler emits, whose image is the
// fake drivers' text ("function=num_params\n"), and a valid call at fake,
// disjoint device addresses, run through attn_cuda_run_backward or
// attn_rocm_run_backward (the ROCm types are the CUDA ones).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_BACKWARDTESTUTIL_H
#define ATTN_TEST_BACKWARDTESTUTIL_H

#include "CudaTestUtil.h"

#include <cstdint>
#include <string>
#include <vector>

namespace attn_test {

/// Kernel parameters of one memref descriptor of rank \p rank: allocated,
/// aligned, offset, sizes, strides.
inline int descWords(int rank) { return 3 + 2 * rank; }

/// A GPU backward descriptor for q, k, v : T[...] and the aux inputs
/// doc : i32[B, N] (no gradient), table : f32[Hq, 32] and slope : f32[Hq]
/// (gradients when listed in `grads`, by default both). The image lists
/// every variant with as many parameters as the kernel takes.
struct BwdKernel {
  std::vector<Variant> variantDecls;
  std::vector<attn_cuda_kernel_variant_t> variants;
  std::vector<attn_input_desc_t> inputs;
  std::vector<int32_t> grads;
  attn_cuda_backward_desc_t desc{};
  const std::string *image = nullptr;

  explicit BwdKernel(std::vector<Variant> vs, attn_elem_type_t type = ATTN_BF16,
                     std::vector<int32_t> grads_ = {4, 5})
      : variantDecls(std::move(vs)), grads(std::move(grads_)) {
    static const char *const qDims[] = {"B", "Hq", "N", "Dqk"};
    static const char *const kDims[] = {"B", "Hkv", "M", "Dqk"};
    static const char *const vDims[] = {"B", "Hkv", "M", "Dv"};
    static const char *const docDims[] = {"B", "N"};
    static const char *const tableDims[] = {"Hq", nullptr};
    static const int64_t tableSizes[] = {0, 32};
    static const char *const slopeDims[] = {"Hq"};
    inputs = {{"q", type, 4, qDims, nullptr},
              {"k", type, 4, kDims, nullptr},
              {"v", type, 4, vDims, nullptr},
              {"doc", ATTN_I32, 2, docDims, nullptr},
              {"table", ATTN_F32, 2, tableDims, tableSizes},
              {"slope", ATTN_F32, 1, slopeDims, nullptr}};
    image = fakeImage(variantDecls, numParams(), variants);
    desc.abi_version = ATTN_ABI_VERSION;
    desc.name = "test_bwd";
    desc.image = image->c_str();
    desc.image_size = image->size() + 1;
    desc.num_variants = static_cast<int32_t>(variants.size());
    desc.variants = variants.data();
    desc.num_inputs = static_cast<int32_t>(inputs.size());
    desc.inputs = inputs.data();
    desc.needs_lse = 1;
    desc.num_grads = static_cast<int32_t>(grads.size());
    desc.grad_inputs = grads.empty() ? nullptr : grads.data();
  }
  BwdKernel(const BwdKernel &) = delete;
  BwdKernel &operator=(const BwdKernel &) = delete;

  /// q, k, v, o, lse, aux, dout, dlse, dq, dk, dv, daux (and the scratch
  /// when the variants declare it).
  int numParams() const {
    int n = 4 * descWords(4) + descWords(3);
    for (size_t i = 3; i < inputs.size(); ++i)
      n += descWords(inputs[i].rank);
    n += descWords(4) + descWords(3) + 3 * descWords(4);
    for (int32_t g : grads)
      n += descWords(inputs[g].rank);
    if (!variantDecls.empty() && variantDecls[0].scratchStateFloats)
      n += descWords(1);
    return n;
  }
};

/// Backward variants; block_q (kv rows per CTA) differs between them so
/// that grid.x shows which one ran. d128 and d256 need the shared-memory
/// opt-in.
inline std::vector<Variant> backwardVariants() {
  return {{"attn_test_bwd_d64", 64, 64, 128, 32768},
          {"attn_test_bwd_d128", 128, 32, 256, 65536},
          {"attn_test_bwd_d256", 256, 16, 256, 100000}};
}

/// A valid backward call: B=2, Hq=4, Hkv=2, N=100, M=77, Dqk=64, Dv=48,
/// q, k, v and dout of one half type, compact, on `home` (CUDA device 0
/// unless given) at fake, disjoint addresses; lse and dlse given.
struct BwdCall {
  int64_t B = 2, Hq = 4, Hkv = 2, N = 100, M = 77, Dqk = 64, Dv = 48;
  static constexpr int64_t kTableCols = 32;
  Tensor q, k, v, o, lse, doc, table, slope;
  Tensor dout, dlse, dq, dk, dv, dtable, dslope;
  bool withLse = true, withDlse = true;

  static constexpr uintptr_t kQ = 0x10000000, kK = 0x20000000, kV = 0x30000000,
                             kO = 0x40000000, kLse = 0x50000000,
                             kDoc = 0x60000000, kTable = 0x70000000,
                             kSlope = 0x78000000, kDout = 0x80000000,
                             kDlse = 0x90000000, kDq = 0xa0000000,
                             kDk = 0xb0000000, kDv = 0xc0000000,
                             kDtable = 0xd0000000, kDslope = 0xe0000000;

  /// attn_cuda_run_backward or attn_rocm_run_backward (one signature).
  using Entry = attn_status_t (*)(const attn_cuda_backward_desc_t *,
                                  const DLTensor *const *, const DLTensor *,
                                  const DLTensor *, const DLTensor *,
                                  const DLTensor *, DLTensor *, DLTensor *,
                                  DLTensor *, DLTensor *const *, void *);

  /// The pointers of the entry, for tests that change one.
  struct Args {
    Entry entry;
    const attn_cuda_backward_desc_t *kernel;
    const DLTensor *const *inputs;
    const DLTensor *o, *lse, *dout, *dlse;
    DLTensor *dq, *dk, *dv;
    DLTensor *const *daux;
    void *stream;
  };

  /// The entry run() and args() call, and the device reshape() puts every
  /// tensor on.
  Entry entry;
  DLDevice home;

  explicit BwdCall(DLDataType type = bf16(),
                   Entry entry_ = attn_cuda_run_backward,
                   DLDevice home_ = {kDLCUDA, 0})
      : entry(entry_), home(home_) {
    reshape(type);
  }
  BwdCall(const BwdCall &) = delete;
  BwdCall &operator=(const BwdCall &) = delete;

  /// Rebuilds every tensor, compact, from the current sizes.
  void reshape(DLDataType type = bf16()) {
    q = Tensor({B, Hq, N, Dqk}, type, kQ);
    k = Tensor({B, Hkv, M, Dqk}, type, kK);
    v = Tensor({B, Hkv, M, Dv}, type, kV);
    o = Tensor({B, Hq, N, Dv}, f32(), kO);
    lse = Tensor({B, Hq, N}, f32(), kLse);
    doc = Tensor({B, N}, i32(), kDoc);
    table = Tensor({Hq, kTableCols}, f32(), kTable);
    slope = Tensor({Hq}, f32(), kSlope);
    dout = Tensor({B, Hq, N, Dv}, type, kDout);
    dlse = Tensor({B, Hq, N}, f32(), kDlse);
    dq = Tensor({B, Hq, N, Dqk}, f32(), kDq);
    dk = Tensor({B, Hkv, M, Dqk}, f32(), kDk);
    dv = Tensor({B, Hkv, M, Dv}, f32(), kDv);
    dtable = Tensor({Hq, kTableCols}, f32(), kDtable);
    dslope = Tensor({Hq}, f32(), kDslope);
    setDevice(home);
  }

  std::vector<Tensor *> all() {
    return {&q,    &k,    &v,  &o,  &lse, &doc,    &table, &slope,
            &dout, &dlse, &dq, &dk, &dv,  &dtable, &dslope};
  }

  /// Every tensor on \p device.
  void setDevice(DLDevice device) {
    for (Tensor *t : all())
      t->t.device = device;
  }

  /// The call's arguments; daux is {dtable, dslope} (grad_inputs {4, 5}).
  /// Valid while this object lives.
  Args args(const attn_cuda_backward_desc_t *kernel, void *stream = nullptr) {
    ins[0] = q.get();
    ins[1] = k.get();
    ins[2] = v.get();
    ins[3] = doc.get();
    ins[4] = table.get();
    ins[5] = slope.get();
    daux[0] = dtable.get();
    daux[1] = dslope.get();
    Args a;
    a.entry = entry;
    a.kernel = kernel;
    a.inputs = ins;
    a.o = o.get();
    a.lse = withLse ? lse.get() : nullptr;
    a.dout = dout.get();
    a.dlse = withDlse ? dlse.get() : nullptr;
    a.dq = dq.get();
    a.dk = dk.get();
    a.dv = dv.get();
    a.daux = daux;
    a.stream = stream;
    return a;
  }

  static attn_status_t invoke(const Args &a) {
    return a.entry(a.kernel, a.inputs, a.o, a.lse, a.dout, a.dlse, a.dq, a.dk,
                   a.dv, a.daux, a.stream);
  }

  attn_status_t run(const attn_cuda_backward_desc_t *kernel,
                    void *stream = nullptr) {
    return invoke(args(kernel, stream));
  }

private:
  const DLTensor *ins[6] = {};
  DLTensor *daux[2] = {};
};

/// Where each descriptor starts among the parameters of a BwdKernel with
/// both gradients (137 parameters).
enum Param : int {
  PQ = 0,
  PK = 11,
  PV = 22,
  PO = 33,
  PLse = 44,
  PDoc = 53,
  PTable = 60,
  PSlope = 67,
  PDout = 72,
  PDlse = 83,
  PDq = 92,
  PDk = 103,
  PDv = 114,
  PDtable = 125,
  PDslope = 132,
  PEnd = 137
};

using Words = std::vector<int64_t>;

/// The descriptor of a compact tensor at \p address + \p byteOffset.
inline Words compactDesc(uintptr_t address, const std::vector<int64_t> &sizes,
                         int64_t byteOffset = 0) {
  Words w = {int64_t(address), int64_t(address) + byteOffset, 0};
  w.insert(w.end(), sizes.begin(), sizes.end());
  std::vector<int64_t> strides(sizes.size());
  int64_t s = 1;
  for (size_t d = sizes.size(); d-- > 0;) {
    strides[d] = s;
    s *= sizes[d];
  }
  w.insert(w.end(), strides.begin(), strides.end());
  return w;
}

} // namespace attn_test

#endif // ATTN_TEST_BACKWARDTESTUTIL_H
