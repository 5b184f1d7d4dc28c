//===- KernelBase.h - shared helpers of the CPU kernel builders -*- C++ -*-===//
//
// Builder shorthands used by both CPU kernel generators (softmax-family
// tiles in AttnToCPU.cpp, linear recurrences in LinearToCPU.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOCPU_KERNELBASE_H
#define ATTN_LOWERING_ATTNTOCPU_KERNELBASE_H

#include "attn/Conversion/KernelScaffold.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::attn::cpu {

/// A strided memref type of `rank` dims with dynamic sizes/strides/offset.
MemRefType stridedType(MLIRContext *ctx, int64_t rank, Type elt);

/// The CPU builders' scaffolding: vectors of `vl` f32 lanes, the kernel
/// function over work items, heap scratch with its allocation guard.
class KernelBase : public KernelScaffold {
protected:
  KernelBase(SpecOp spec, int64_t vl) : KernelScaffold(spec), vl(vl) {}

  Value vsplat(float v) {
    auto t = VectorType::get({vl}, b.getF32Type());
    return arith::ConstantOp::create(b, t, DenseElementsAttr::get(t, v));
  }
  Value bcast(Value s) {
    return vector::BroadcastOp::create(b, VectorType::get({vl}, s.getType()),
                                       s);
  }
  VectorType vf32() { return VectorType::get({vl}, b.getF32Type()); }

  /// Creates, at the builder, the kernel function `attn_<name><suffix>_tiles(q,
  /// k, v, o, lse, aux..., extra..., begin, end) -> i32` over strided memrefs
  /// with its entry block, and leaves the builder at the start of that
  /// block. The result is the status finishKernel() returns.
  /// `outputTypes` (o, lse) replaces the canonical [B, Hq, N, Dv] and
  /// [B, Hq, N] memrefs when given (the decode schedule's partials).
  func::FuncOp createKernelFunc(ArrayRef<Type> extraArgs = {},
                                StringRef suffix = "",
                                ArrayRef<Type> outputTypes = {});

  /// createKernelFunc() of `attn_<name>_backward_tiles` with the
  /// gradients' arguments (KernelScaffold::BackwardArgs).
  func::FuncOp createBackwardKernelFunc(ArrayRef<InputOp> gradInputs);

  /// A per-call scratch buffer: memref.alloc (malloc, 64-byte aligned) in
  /// the kernel's entry block, checked by beginGuardedBody() and freed by
  /// finishKernel(). Scratch never goes on the stack: its size scales with
  /// the head dims and tiles, and callers may run kernels on threads with
  /// small stacks.
  Value allocScratch(MemRefType type, ValueRange dynamicSizes = {});

  /// Opens `scf.if` on "every scratch buffer was allocated" (a failed malloc
  /// leaves a null aligned pointer) and leaves the builder at the start of
  /// its then-block, where the kernel's work items go.
  void beginGuardedBody();

  /// Leaves the guard, frees the scratch and returns the kernel's status:
  /// ATTN_KERNEL_OK, or ATTN_KERNEL_OUT_OF_MEMORY when an allocation failed
  /// (attn/runtime.h).
  void finishKernel();

  int64_t vl;

private:
  SmallVector<Value> scratch;
  scf::IfOp guard;
};

} // namespace mlir::attn::cpu

#endif
