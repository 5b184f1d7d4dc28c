//===- KernelScaffold.h - what every kernel builder shares ------*- C++ -*-===//
//
// The scaffolding the CPU and GPU kernel builders (softmax family and linear
// attention) have in common, written once: builder shorthands and loops,
// the kernel signature (q, k, v, o, lse, then the aux inputs, as strided
// memrefs), binding the canonical tensors and dims from the entry block,
// binding aux inputs and params for the spec's regions, the scale and bias,
// and the launch contract GPU kernels carry as attributes.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_KERNELSCAFFOLD_H
#define ATTN_CONVERSION_KERNELSCAFFOLD_H

#include "attn/Conversion/RegionEmitter.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include <limits>

namespace mlir::gpu {
class GPUFuncOp;
} // namespace mlir::gpu

namespace mlir::attn {

/// The memref types of a kernel's arguments, in the runtime's order: q, k,
/// v (element type `qkvType(name)`; a static unit innermost stride when
/// `unitInnerQKV`), o (f32, rank 4), lse (f32, rank 3), then each aux input
/// with its declared rank and type. Sizes, strides and offsets are dynamic.
SmallVector<Type> kernelArgTypes(SpecOp spec,
                                 function_ref<Type(StringRef)> qkvType,
                                 bool unitInnerQKV);

/// The element type a spec declares for `name` (q, k or v), or `fallback`.
Type declaredElementType(SpecOp spec, StringRef name, Type fallback);

/// The one element type of q, k and v for tensor-core kernels: bf16 or
/// f16 and the same for all three; otherwise an error on the spec (`why`
/// follows "bf16 or f16 q, k and v" in its text).
FailureOr<Type> uniformHalfPrecisionQKV(SpecOp spec, StringRef why);

/// The launch contract of a GPU kernel variant, read back by the target
/// (attn_cuda_kernel_variant_t): rows per CTA (`blockQ`), threads, dynamic
/// shared memory, the largest head dim it handles; plus the known block
/// size. Each target's conversion adds its own occupancy hints afterwards
/// (nvvm.minctasm, rocdl.waves_per_eu).
void setLaunchContract(gpu::GPUFuncOp fn, int64_t blockQ, int64_t numThreads,
                       int64_t sharedBytes, int64_t maxHeadDim);

/// The attribute naming what a GPU kernel beside the forward variants is
/// for: "decode" (the split-KV decode kernel, writing partial o and lse per
/// kv split) or "merge" (combining those partials). The forward variants
/// have none.
inline constexpr llvm::StringLiteral kRoleAttr = "attn.role";

/// The f32 memref type (dynamic sizes, strides and offset) of the decode
/// kernel's partials: o_part [B, Hkv, S, rows, Dv] (rank 5) and lse_part
/// [B, Hkv, S, rows] (rank 4).
MemRefType decodePartialType(MLIRContext *ctx, int64_t rank);

/// The i32 memref type (dynamic sizes, strides and offset) of a batch
/// table: cu_seqlens_q, cu_seqlens_k and kv_lens (rank 1), block_table
/// (rank 2). A null descriptor means the table is absent.
MemRefType batchTableType(MLIRContext *ctx, int64_t rank);

/// Fails with an error on the kernel when a gpu.func of `module` declares
/// more attn.shared_bytes than `limitBytes` (the target's shared memory per
/// block): it could never be launched.
LogicalResult checkSharedLimit(ModuleOp module, int64_t limitBytes);

/// The GPU gradients' kernels' arguments: the forward's (q, k, v of `elt`
/// with a unit inner stride, o, lse, aux inputs), then do (`elt`), dlse
/// (f32), dq, dk, dv (f32) and one f32 gradient per entry of `gradInputs`.
SmallVector<Type> backwardKernelArgTypes(SpecOp spec, Type elt,
                                         ArrayRef<InputOp> gradInputs);

/// Marks `fn` a gradients' kernel: attn.backward, attn.block_kv = blockKv
/// (one work-group per kv tile) and attn.gradient_inputs.
void setBackwardContract(gpu::GPUFuncOp fn, int64_t blockKv,
                         ArrayRef<InputOp> gradInputs);

/// What a linear-attention spec asks for, read once: both linear builders
/// branch on these.
struct LinearForm {
  LinearForm() = default;
  explicit LinearForm(LinearAttentionOp op);
  explicit LinearForm(TiledLinearAttentionOp op);
  explicit LinearForm(TiledLinearAttentionBackwardOp op);
  bool normalize = false, exclusive = false, causal = true, delta = false;
  bool hasGate = false, vecGate = false, hasBonus = false;
  FeatureMapKind fmQ = FeatureMapKind::identity;
  FeatureMapKind fmK = FeatureMapKind::identity;
};

/// scf.for from lb to ub by step carrying `init`, its body built by
/// body(induction variable, carried values) -> the values to yield; the
/// builder stays after the loop.
scf::ForOp buildFor(ImplicitLocOpBuilder &b, Value lb, Value ub, Value step,
                    ValueRange init,
                    function_ref<SmallVector<Value>(Value, ValueRange)> body);

class KernelScaffold {
protected:
  KernelScaffold(SpecOp spec)
      : spec(spec), b(spec.getLoc(), spec.getContext()) {}

  // Constants.
  Value cidx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value ci32(int32_t v) {
    return arith::ConstantOp::create(b, b.getI32IntegerAttr(v));
  }
  Value ci64(int64_t v) {
    return arith::ConstantOp::create(b, b.getI64IntegerAttr(v));
  }
  Value cf32(float v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value ninf() { return cf32(-std::numeric_limits<float>::infinity()); }

  // Conversions.
  Value toIdx(Value v) {
    return arith::IndexCastOp::create(b, b.getIndexType(), v);
  }
  Value toI64(Value v) {
    return arith::IndexCastOp::create(b, b.getI64Type(), v);
  }
  /// f32 of a scalar: bf16/f16 widened, f64 (region results) narrowed.
  Value toF32(Value x) {
    if (x.getType().isF32())
      return x;
    if (x.getType().isF64())
      return arith::TruncFOp::create(b, b.getF32Type(), x);
    return arith::ExtFOp::create(b, b.getF32Type(), x);
  }

  // Index and float arithmetic.
  Value add(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value divu(Value x, Value y) { return arith::DivUIOp::create(b, x, y); }
  Value remu(Value x, Value y) { return arith::RemUIOp::create(b, x, y); }
  Value minu(Value x, Value y) { return arith::MinUIOp::create(b, x, y); }
  Value maxu(Value x, Value y) { return arith::MaxUIOp::create(b, x, y); }
  Value ceilDiv(Value x, Value y) {
    return arith::CeilDivUIOp::create(b, x, y);
  }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, p, x, y);
  }
  Value ult(Value x, Value y) { return cmp(arith::CmpIPredicate::ult, x, y); }
  Value land(Value x, Value y) { return arith::AndIOp::create(b, x, y); }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }
  Value fadd(Value x, Value y) { return arith::AddFOp::create(b, x, y); }
  Value fsub(Value x, Value y) { return arith::SubFOp::create(b, x, y); }
  Value fmul(Value x, Value y) { return arith::MulFOp::create(b, x, y); }
  Value fma(Value x, Value y, Value z) {
    return math::FmaOp::create(b, x, y, z);
  }
  Value fmin(Value x, Value y) { return arith::MinimumFOp::create(b, x, y); }
  Value fmax(Value x, Value y) { return arith::MaximumFOp::create(b, x, y); }
  Value fexp(Value x) { return math::ExpOp::create(b, x); }

  // Structured control flow.
  /// scf.for from lb to ub (index) with a body callback; returns the loop.
  scf::ForOp loop(Value lb, Value ub, Value step, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body);
  /// A loop without results, step 1.
  void forEach(Value lb, Value ub, function_ref<void(Value)> body);
  /// scf.if without results.
  void ifThen(Value cond, function_ref<void()> body);
  /// scf.if without results, with an else branch.
  void ifThenElse(Value cond, function_ref<void()> thenBody,
                  function_ref<void()> elseBody);
  /// scf.if yielding `count` index values: `thenBody`'s under `cond`, else
  /// `elseBody`'s; e.g. a table read only when the table is present.
  SmallVector<Value> ifIndices(Value cond, unsigned count,
                               function_ref<SmallVector<Value>()> thenBody,
                               function_ref<SmallVector<Value>()> elseBody);
  /// Whether memref `m` is present: its aligned pointer is not null.
  Value present(Value m);
  /// Entry i of an i32 table as an index (sign-extended: a negative entry
  /// becomes a huge unsigned value, which the callers' unsigned clamps
  /// cut); i is clamped to the table's last entry.
  Value tableEntry(Value table, Value i);
  /// Sequence `bIdx`'s rows [begin, end) of a ragged tensor with `rows`
  /// rows, from the offsets [table[b], table[b + 1]) clamped into
  /// [0, rows] (a bad table gives wrong rows, never ones outside the
  /// tensor); [0, rows) when `table` is null.
  std::pair<Value, Value> sequenceRows(Value table, Value bIdx, Value rows);

  // The kernel's arguments and what the spec's regions see.
  /// Binds q, k, v, o, lse (entry args 0..4) and the dims Hq, N, Dqk, M,
  /// Dv and G = Hq / Hkv read from them.
  void bindCanonical(Block *entry);
  /// Binds the canonical dims, the aux inputs (entry args from 5 on, in
  /// declaration order) with their extra dims, and the params into `env`.
  /// `m` and `hkv` (i64) replace the dims read from k where given (a paged
  /// kernel's k is a page pool).
  void bindRegionEnv(Block *entry, KernelEnv &env, Value m = {},
                     Value hkv = {});
  /// The scale as f32: the spec's `scale` region, else 1/sqrt(Dqk).
  Value emitScale(Region &scaleRegion, KernelEnv &env);
  /// The spec's `bias` region as f32, else 0.
  Value emitBias(Region &biasRegion, KernelEnv &env);

  /// The gradients' kernels' arguments beyond the forward's (the ABI of
  /// attn_cpu_run_backward and attn_cuda_run_backward): do, dlse, dq, dk,
  /// dv, then one f32 gradient per entry of `gradInputs` with the input's
  /// rank.
  struct BackwardArgs {
    Value dout, dlse, dq, dk, dv;
    llvm::StringMap<Value> auxGrads;
  };
  /// The BackwardArgs of a gradients' kernel's entry block (they follow q,
  /// k, v, o, lse and the aux inputs).
  BackwardArgs bindBackwardArgs(Block *entry, ArrayRef<InputOp> gradInputs);

  /// The softmax gradients' per-query statistics of rows q0 .. q0 + BM of
  /// head h: lse and D = rowsum(do o) - dlse (dlse may be a null memref,
  /// `hasDlse` says) into the f32 workgroup arrays `LSEs` and `Ds` (0 past
  /// N). `numThreads` threads of id `tid` work on it, a power-of-two group
  /// of adjacent lanes (at most `width`, within a shuffle's reach) per row,
  /// each a strided share of the row's Dv columns, summed by xor shuffles.
  void emitBackwardRowStatistics(Value tid, int64_t numThreads, int64_t width,
                                 Value bIdx, Value h, Value q0, int64_t BM,
                                 Value dout, Value dlse, Value hasDlse,
                                 Value LSEs, Value Ds);

  SpecOp spec;
  ImplicitLocOpBuilder b;
  Value q, k, v, o, lse;
  Value Hq, N, Dqk, M, Dv, G;
};

} // namespace mlir::attn

#endif // ATTN_CONVERSION_KERNELSCAFFOLD_H
