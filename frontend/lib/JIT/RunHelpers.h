//===- RunHelpers.h - what the compiled `attnc run`s share ------*- C++ -*-===//
//
// Host arrays as DLTensors and in the kernels' element types, for
// RunCompiled.cpp (forward) and RunBackward.cpp (gradients). Private to
// frontend/lib/JIT.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LIB_JIT_RUNHELPERS_H
#define ATTN_LIB_JIT_RUNHELPERS_H

#include "attn/Frontend/RunSpec.h"
#include "attn/JIT/Compiler.h"
#include "attn/Signature.h"
#include "attn/npy.h"
#include "attn/runtime.h"
#include "llvm/ADT/StringRef.h"
#include <cmath>
#include <string>
#include <vector>

namespace mlir::attn::run {

using ::attn::HostArray;

/// A host array as a DLTensor (compact, CPU).
struct TensorView {
  DLTensor t{};
  std::vector<int64_t> shape;
  TensorView(HostArray &a, DLDataType dtype) : shape(a.shape) {
    t.data = a.bytes.data();
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
  }
};

/// The kernel's element type for an input declared `t`.
inline void kernelType(::attn::ElemType t, ::attn::DType &dt, DLDataType &dl) {
  switch (t) {
  case ::attn::ElemType::I32:
    dt = ::attn::DType::I32;
    dl = DLDataType{kDLInt, 32, 1};
    return;
  case ::attn::ElemType::BF16:
    dt = ::attn::DType::BF16;
    dl = DLDataType{kDLBfloat, 16, 1};
    return;
  case ::attn::ElemType::F16:
    dt = ::attn::DType::F16;
    dl = DLDataType{kDLFloat, 16, 1};
    return;
  case ::attn::ElemType::F32:
    dt = ::attn::DType::F32;
    dl = DLDataType{kDLFloat, 32, 1};
    return;
  }
}

/// Converts `a` to `to` in place (a no-op when it already is).
inline std::string convertInPlace(HostArray &a, ::attn::DType to) {
  if (a.dtype == to)
    return "";
  HostArray r;
  if (std::string err = HostArray::allocate(to, a.shape, r); !err.empty())
    return err;
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    r.setDouble(i, a.getDouble(i));
  a = std::move(r);
  return "";
}

/// Whether the kernel's `x` agrees with the reference's `y` where either is
/// not finite: NaN in both, or the same infinity. (A NaN in an input reaches
/// both the same way; that is not a disagreement.)
inline bool sameNonFinite(double x, double y) {
  return (std::isnan(x) && std::isnan(y)) || (std::isinf(x) && x == y);
}

/// "" or the error for a head dim past the CPU kernels' limit (attn_cpu_run
/// checks it again for every caller).
inline std::string checkCpuHeadDims(const ::attn::DimBinding &dims) {
  for (const char *d : {"Dqk", "Dv"})
    if (dims.count(d) && dims.at(d) > ATTN_MAX_HEAD_DIM)
      return std::string("head dim ") + d + " = " + std::to_string(dims.at(d)) +
             " exceeds the CPU kernels' limit of " +
             std::to_string(ATTN_MAX_HEAD_DIM) + " (ATTN_MAX_HEAD_DIM)";
  return "";
}

/// The kernel's CPU descriptor, or NULL when it was not compiled for the CPU.
inline const attn_kernel_desc_t *cpuDescOf(const ::attn::Kernel &kernel) {
  const attn_kernel_t &any = kernel.desc();
  for (int32_t t = 0; t < any.num_targets; ++t)
    if (any.targets[t].device_type == kDLCPU && any.targets[t].desc)
      return static_cast<const attn_kernel_desc_t *>(any.targets[t].desc);
  return nullptr;
}

/// The JIT options `attnc run` asks for: params, target, tiles, chunk.
inline ::attn::CompileOptions compileOptionsFor(const RunOptions &opts) {
  ::attn::CompileOptions co;
  for (const std::string &p : opts.params) {
    auto [k, v] = llvm::StringRef(p).split('=');
    co.params.push_back({k.trim().str(), v.trim().str()});
  }
  co.target = opts.target;
  co.tileQ = opts.tileQ;
  co.tileKV = opts.tileKV;
  co.linearChunk = opts.linearChunk;
  co.decodeKernels = opts.decodeKernels;
  return co;
}

} // namespace mlir::attn::run

#endif // ATTN_LIB_JIT_RUNHELPERS_H
