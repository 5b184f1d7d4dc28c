//===- KernelBase.h - shared helpers of the CPU kernel builders -*- C++ -*-===//
//
// Builder shorthands used by both CPU kernel generators (softmax-family
// tiles in AttnToCPU.cpp, linear recurrences in LinearToCPU.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOCPU_KERNELBASE_H
#define ATTN_LOWERING_ATTNTOCPU_KERNELBASE_H

#include "attn/Conversion/RegionEmitter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::attn::cpu {

/// A strided memref type of `rank` dims with dynamic sizes/strides/offset.
MemRefType stridedType(MLIRContext *ctx, int64_t rank, Type elt);

class KernelBase {
protected:
  KernelBase(Location loc, MLIRContext *ctx, int64_t vl)
      : b(loc, ctx), vl(vl) {}

  // Small helpers.
  Value ci64(int64_t v) {
    return arith::ConstantOp::create(b, b.getI64IntegerAttr(v));
  }
  Value cidx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value cf32(float v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value vsplat(float v) {
    auto t = VectorType::get({vl}, b.getF32Type());
    return arith::ConstantOp::create(b, t, DenseElementsAttr::get(t, v));
  }
  Value toIdx(Value v) {
    return arith::IndexCastOp::create(b, b.getIndexType(), v);
  }
  Value toI64(Value v) {
    return arith::IndexCastOp::create(b, b.getI64Type(), v);
  }
  Value bcast(Value s) {
    return vector::BroadcastOp::create(b, VectorType::get({vl}, s.getType()),
                                       s);
  }
  VectorType vf32() { return VectorType::get({vl}, b.getF32Type()); }
  /// bf16/f16 inputs are widened on load: all arithmetic is fp32.
  Value toF32(Value x) {
    if (x.getType().isF32())
      return x;
    return arith::ExtFOp::create(b, b.getF32Type(), x);
  }
  /// scf.for from lb to ub (index) with a body callback; returns results.
  scf::ForOp loop(Value lb, Value ub, Value step, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto f = scf::ForOp::create(b, lb, ub, step, init);
    OpBuilder::InsertionGuard g(b);
    // A loop without results comes with an implicit yield; build our own.
    if (!f.getBody()->empty())
      f.getBody()->getTerminator()->erase();
    b.setInsertionPointToEnd(f.getBody());
    SmallVector<Value> res = body(f.getInductionVar(), f.getRegionIterArgs());
    scf::YieldOp::create(b, res);
    return f;
  }
  /// scf.if without results.
  void ifThen(Value cond, function_ref<void()> body) {
    auto op = scf::IfOp::create(b, TypeRange{}, cond, false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    body();
  }

  /// Creates, at the builder, the kernel function `attn_<name>_tiles(q, k, v,
  /// o, lse, aux..., begin, end) -> i32` over strided memrefs with its entry
  /// block, and leaves the builder at the start of that block. The result is
  /// the status finishKernel() returns.
  func::FuncOp createKernelFunc(SpecOp spec);

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

  /// Binds the canonical dims (from q, k, v = entry args 0..2), the aux
  /// inputs (entry args from `firstAux` on, in declaration order) with
  /// their extra dims, and the params into `env`.
  void bindEnv(SpecOp spec, Block *entry, unsigned firstAux, KernelEnv &env);

  ImplicitLocOpBuilder b;
  int64_t vl;

private:
  SmallVector<Value> scratch;
  scf::IfOp guard;
};

} // namespace mlir::attn::cpu

#endif
