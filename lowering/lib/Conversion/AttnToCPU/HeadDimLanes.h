//===- HeadDimLanes.h - decode micro-kernels, head dim in lanes -*- C++ -*-===//
//
// The decode schedule's micro-kernels for few queries per kv head (G * N at
// most a quarter of the vector width). The prefill micro-kernel puts the
// queries in the SIMD lanes and broadcasts one K or V element per FMA, so a
// decode step with G * N = 1 uses one lane of sixteen and issues a broadcast
// load per FMA. These put the head dim in the lanes instead: every K and V
// row is read with full vector loads and each loaded vector feeds all the
// step's queries. Q·Kᵀ then ends in one horizontal sum per (key, query);
// P·V keeps its accumulators in registers across a whole kv tile. The
// tile's S layout (one vector of query lanes per key row) is unchanged, so
// score, mask and softmax code is shared with the lane micro-kernel.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOCPU_HEADDIMLANES_H
#define ATTN_LOWERING_ATTNTOCPU_HEADDIMLANES_H

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

namespace mlir::attn::cpu {

/// A K or V row: a memref with a unit innermost stride and the indices of
/// the row's first element but the last (the column index follows).
struct RowRef {
  Value mem;
  SmallVector<Value, 3> idx;
};

class HeadDimLanes {
public:
  HeadDimLanes(ImplicitLocOpBuilder &b, int64_t vl) : b(b), vl(vl) {}

  /// The most queries per kv head these kernels take: beyond vl / 4 the
  /// lane micro-kernel does fewer operations per key (docs/architecture.md).
  static int64_t maxQueries(int64_t vl) { return vl / 4; }

  /// One f32 vector per key row of `rows`: lane g < gn holds
  /// sum_{d < D} Qr[g, d] * K_row[d], the other lanes 0. Qr is f32
  /// [>= gn, >= ceil(D / vl) * vl], row-major, zero past D.
  SmallVector<Value> scores(Value Qr, int64_t gn, ArrayRef<RowRef> rows,
                            Value D);

  /// For g < gn: Or[g, :Dv] = Or[g, :Dv] * alpha[g] (when `rescale`) +
  /// sum_{j < kn} St[j, g] * V_j[:Dv], V_j from vRow(j). Or is f32
  /// [>= gn, >= ceil(Dv / vl) * vl] (its padding columns take garbage-free
  /// zeros: V's tail is a masked load); alpha is f32 [>= gn].
  void accumulatePV(Value Or, Value St, Value alpha, int64_t gn, Value kn,
                    Value Dv, function_ref<RowRef(Value j)> vRow, bool rescale);

private:
  Value cidx(int64_t v);
  VectorType vf32();
  Value zeros();
  /// Columns [d, d + vl) of a row as f32 (bf16/f16 widened); masked to
  /// the first `count` columns (the rest 0) when `count` is given.
  Value loadRow(const RowRef &row, Value d, Value count = {});
  /// The lane sums of `xs` (f32 vectors), vl of them per vector: the sum
  /// of xs[i] is lane lanes[i] of sums[i / vl].
  void sumLanes(ArrayRef<Value> xs, SmallVector<Value> &sums,
                SmallVector<int64_t> &lanes);
  scf::ForOp loop(Value lb, Value ub, Value step, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body);

  ImplicitLocOpBuilder &b;
  int64_t vl;
};

} // namespace mlir::attn::cpu

#endif
