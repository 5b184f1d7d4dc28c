//===- MergeToNVVM.cpp - the split-KV decode's merge kernel ---------------===//
//
// The decode kernel (AttnToNVVM.cpp, decode mode) leaves, per kv split s, a
// normalized partial o_s and its lse_s for each (query head, query) row of a
// GQA group: o_part [B, Hkv, S, C * 16, Dv] and lse_part [B, Hkv, S, C * 16],
// row f = (h % G) * N + i. This kernel combines them as the CPU's mergeRow
// does:
//
//   m   = max_s lse_s;     w_s = exp(lse_s - m)   (0 where lse_s = -inf)
//   o   = sum_s w_s o_s / sum_s w_s;   lse = m + log(sum_s w_s)
//
// and a row whose every split is empty (all lse_s = -inf) gets o = 0 and
// lse = -inf. Arguments (o_part, lse_part, o [B, Hq, N, Dv], lse [B, Hq, N]
// or null, cu_seqlens_q or null); a ragged batch's o and lse are views
// [B, Hq, total_q, Dv] and [B, Hq, total_q] of the packed tensors with a
// zero batch stride, its sequence b's queries rows cu_seqlens_q[b] ..
// cu_seqlens_q[b + 1] - 1, and N the longest sequence's query count.
// Grid (ceil(N / 4), B * Hq), 128 threads: one warp per output
// row, its lanes over the head dim (columns lane + 32 j), every lane walking
// the S partial lse values itself (uniform loads, no shuffles or shared
// memory). A separate kernel rather than the last CTA of each group merging
// behind an atomic counter: stream order is the only synchronization, which
// the simulator can check (docs/cuda-decode-plan.md, section 2.7).
//
//===----------------------------------------------------------------------===//

#include "MergeToNVVM.h"
#include "attn/Conversion/KernelScaffold.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

class MergeKernelBuilder : public KernelScaffold {
public:
  MergeKernelBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule,
                     int64_t maxHeadDim)
      : KernelScaffold(spec), maxHeadDim(maxHeadDim) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

private:
  /// Rows of o per CTA: one per warp.
  static constexpr int64_t kRowsPerCta = 4;
  /// The merged row `row` of (b, h) in o and lse: its partials are row f
  /// of kv head hk.
  void emitRow(Value oPart, Value lsePart, Value bIdx, Value h, Value row,
               Value hk, Value f, Value lane, Value numSplits, Value dv,
               Value hasLse);

  int64_t maxHeadDim;
};

} // namespace

void MergeKernelBuilder::emitRow(Value oPart, Value lsePart, Value bIdx,
                                 Value h, Value row, Value hk, Value f,
                                 Value lane, Value numSplits, Value dv,
                                 Value hasLse) {
  const float log2e = 1.4426950408889634f;
  auto partLse = [&](Value s) -> Value {
    return memref::LoadOp::create(b, lsePart, ValueRange{bIdx, hk, s, f});
  };
  Value m = buildFor(b, cidx(0), numSplits, cidx(1), {ninf()},
                     [&](Value s, ValueRange acc) -> SmallVector<Value> {
                       return {fmax(acc[0], partLse(s))};
                     })
                .getResult(0);
  // All splits empty: m = -inf; every weight is then exp(-inf) = 0.
  Value mSafe = select(arith::CmpFOp::create(b, F::OEQ, m, ninf()), cf32(0), m);
  Value mScaled = fmul(mSafe, cf32(-log2e));
  int64_t cols = (maxHeadDim + 31) / 32;
  SmallVector<Value> init(cols + 1, cf32(0)); // sum, then the columns
  SmallVector<Value> col(cols), inRange(cols);
  for (int64_t j = 0; j < cols; ++j) {
    col[j] = add(lane, cidx(32 * j));
    inRange[j] = ult(col[j], dv);
  }
  auto sums = buildFor(b, cidx(0), numSplits, cidx(1), init,
                       [&](Value s, ValueRange acc) -> SmallVector<Value> {
                         Value w = math::Exp2Op::create(
                             b, fma(partLse(s), cf32(log2e), mScaled));
                         SmallVector<Value> next = {fadd(acc[0], w)};
                         for (int64_t j = 0; j < cols; ++j) {
                           // Columns past Dv read column 0 (in bounds) and are
                           // not stored.
                           Value c = select(inRange[j], col[j], cidx(0));
                           Value x = memref::LoadOp::create(
                               b, oPart, ValueRange{bIdx, hk, s, f, c});
                           next.push_back(fma(w, x, acc[1 + j]));
                         }
                         return next;
                       });
  Value sum = sums.getResult(0);
  Value pos = arith::CmpFOp::create(b, F::OGT, sum, cf32(0));
  Value inv = select(pos, arith::DivFOp::create(b, cf32(1), sum), cf32(0));
  for (int64_t j = 0; j < cols; ++j)
    ifThen(inRange[j], [&] {
      memref::StoreOp::create(b, fmul(sums.getResult(1 + j), inv), o,
                              ValueRange{bIdx, h, row, col[j]});
    });
  ifThen(land(cmp(P::eq, lane, cidx(0)), hasLse), [&] {
    Value x = select(pos, fadd(m, math::LogOp::create(b, sum)), ninf());
    memref::StoreOp::create(b, x, lse, ValueRange{bIdx, h, row});
  });
}

LogicalResult MergeKernelBuilder::build() {
  MLIRContext *ctx = b.getContext();
  SmallVector<Type> args = {decodePartialType(ctx, 5),
                            decodePartialType(ctx, 4),
                            decodePartialType(ctx, 4),
                            decodePartialType(ctx, 3), batchTableType(ctx, 1)};
  std::string name = ("attn_" + spec.getSymName() + "_merge").str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  int64_t threads = 32 * kRowsPerCta;
  setLaunchContract(fn, kRowsPerCta, threads, 0, maxHeadDim);
  fn->setAttr("attn.shared_bytes", b.getI64IntegerAttr(0));
  fn->setAttr(kRoleAttr, b.getStringAttr("merge"));
  OpBuilder::InsertionGuard guard(b);
  Block *entry = &fn.getBody().front();
  b.setInsertionPointToStart(entry);
  Value oPart = entry->getArgument(0), lsePart = entry->getArgument(1);
  o = entry->getArgument(2);
  lse = entry->getArgument(3);
  Value cuQ = entry->getArgument(4);
  auto dim = [&](Value m, int64_t d) -> Value {
    return memref::DimOp::create(b, m, d);
  };
  Hq = dim(o, 1);
  Dv = dim(o, 3);
  G = divu(Hq, dim(oPart, 1));
  Value numSplits = dim(oPart, 2);
  Value hasLse = cmp(
      P::ne, memref::ExtractAlignedPointerAsIndexOp::create(b, lse), cidx(0));
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value warp = divu(tid, cidx(32)), lane = remu(tid, cidx(32));
  Value i =
      add(mul(gpu::BlockIdOp::create(b, gpu::Dimension::x), cidx(kRowsPerCta)),
          warp);
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value h = remu(bh, Hq), bIdx = divu(bh, Hq);
  Value hk = divu(h, G);
  // Sequence b's queries (all of o's rows without cu_seqlens_q), at most
  // the rows the partials hold per head (as the decode kernel clamps a bad
  // table).
  std::pair<Value, Value> rows = sequenceRows(cuQ, bIdx, dim(o, 2));
  Value qBase = rows.first;
  N = minu(sub(rows.second, qBase), divu(dim(oPart, 3), G));
  Value f = add(mul(remu(h, G), N), i);
  ifThen(ult(i, N), [&] {
    emitRow(oPart, lsePart, bIdx, h, add(qBase, i), hk, f, lane, numSplits, Dv,
            hasLse);
  });
  gpu::ReturnOp::create(b);
  return success();
}

LogicalResult mlir::attn::buildMergeGpuKernel(SpecOp spec,
                                              gpu::GPUModuleOp gpuModule,
                                              int64_t maxHeadDim) {
  return MergeKernelBuilder(spec, gpuModule, maxHeadDim).build();
}
