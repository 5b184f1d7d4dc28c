//===- RegionEmitter.h - inline attn regions into kernels -------*- C++ -*-===//
//
// Two ways of inlining an attn region (mask, score, param default, ...) into
// generated kernel code:
//  * emitRegion: a clone in which values that depend on a vector argument
//    (the queries of a tile sit in SIMD lanes) become vectors and the rest
//    stay scalar; f64 in varying code is evaluated as f32, the kernel's
//    precision, while uniform scalars keep f64 for accuracy.
//  * emitMaskIntervals: the mask over index intervals, giving a tri-state
//    answer per tile (always visible / never visible / mixed), which is how
//    tiles are skipped without evaluating the mask per element. It emits the
//    shared interval engine (attn/Analysis/MaskIntervals.h).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_REGIONEMITTER_H
#define ATTN_CONVERSION_REGIONEMITTER_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::attn {

/// What regions may read besides their arguments, as kernel values.
struct KernelEnv {
  /// Every shape symbol as an i64 value (canonical dims, G, aux dims).
  llvm::StringMap<Value> dims;
  /// Every param as a scalar (i64 or f64).
  llvm::StringMap<Value> params;
  /// Aux inputs by name (strided memrefs).
  llvm::StringMap<Value> aux;
  int64_t vectorWidth = 16;
  /// GPU threads: region arguments are per-element scalars rather than
  /// vectors; values depending on them are still "varying" (f64 evaluated as
  /// f32, aux lookups per element) but stay scalar.
  bool scalarLanes = false;
};

/// Clones the body of `region` with its block arguments bound to `args`
/// (scalars or vectors of env.vectorWidth lanes; with env.scalarLanes every
/// argument is a varying scalar) and returns the yielded
/// value. Aux lookups clamp their indices into range, so a kernel never reads
/// out of bounds (the reference evaluator reports such indices as errors).
Value emitRegion(ImplicitLocOpBuilder &b, Region &region, ValueRange args,
                 const KernelEnv &env);

/// Reverse mode over a region with SIMD lanes (the backward pass's
/// chain rule through the score): clones the region as emitRegion does,
/// then propagates `seed` (an f32 vector, the adjoint of the yielded value;
/// an f32 scalar with env.scalarLanes) back to its first argument and
/// returns that adjoint (0 when the region does not read it). Each f32 aux
/// lookup adds its adjoint to the gradient buffer `auxGrads` maps its input to
/// (memrefs of the input's shape, f32), lane by lane with atomic adds; inputs
/// without a buffer are skipped. The derivative rules are the reference
/// evaluator's (PyTorch's conventions). `itemOwnsBH`: the caller's work item is
/// the only one that evaluates the region at its (b, h) arguments (the region's
/// first two), so a lookup into an input declared [B, Hq, ...] at exactly those
/// indices adds with a plain load and store (the linear family's gates: no
/// other item touches that element, and the lanes add one after the other).
Value emitRegionGradient(ImplicitLocOpBuilder &b, Region &region,
                         ValueRange args, Value seed, const KernelEnv &env,
                         const llvm::StringMap<Value> &auxGrads,
                         bool itemOwnsBH = false);

/// Binds what regions read into `env`: every canonical dim (B, Hq, Hkv, N,
/// M, Dqk, Dv from the q, k, v memrefs; G = Hq / Hkv) as i64, the aux inputs
/// (`auxArgs`, memrefs in declaration order) with the extra dims they bind,
/// and each param's (default or bound) value, evaluated in order. `m` and
/// `hkv` (i64), where given, replace M and Hkv read from k (a paged
/// kernel's k is a page pool [pages, page_size, Hkv, D]).
void bindKernelEnv(ImplicitLocOpBuilder &b, SpecOp spec, Value q, Value k,
                   Value v, ValueRange auxArgs, KernelEnv &env, Value m = {},
                   Value hkv = {});

/// (Re)evaluates every param's value into `env.params`, in order, from the
/// dims `env` holds now (a paged kernel rebinds M per sequence, and
/// `param bias = -log(M)` must follow it).
void bindParams(ImplicitLocOpBuilder &b, SpecOp spec, KernelEnv &env);

/// Evaluates the mask region over b, h fixed and q_idx in [q0, q1],
/// kv_idx in [k0, k1] (inclusive, i64 values). Returns (lo, hi) of the
/// predicate as i64 0/1: lo == 1 means every element is visible, hi == 0
/// means none is. The rules are the shared engine of
/// attn/Analysis/MaskIntervals.h (the same MaskClassifier computes on the
/// host), instantiated with a domain that emits arith ops.
std::pair<Value, Value> emitMaskIntervals(ImplicitLocOpBuilder &b, Region &mask,
                                          Value bIdx, Value h, Value q0,
                                          Value q1, Value k0, Value k1,
                                          const KernelEnv &env);

/// emitMaskIntervals over heads h in [h0, h1] as well (the decode schedule's
/// tiles hold the query heads of a GQA group).
std::pair<Value, Value> emitMaskIntervals(ImplicitLocOpBuilder &b, Region &mask,
                                          Value bIdx, Value h0, Value h1,
                                          Value q0, Value q1, Value k0,
                                          Value k1, const KernelEnv &env);

} // namespace mlir::attn

#endif
