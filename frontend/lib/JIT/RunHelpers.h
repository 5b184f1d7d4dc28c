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
  return co;
}

} // namespace mlir::attn::run

#endif // ATTN_LIB_JIT_RUNHELPERS_H
