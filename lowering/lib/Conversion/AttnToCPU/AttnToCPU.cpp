//===- AttnToCPU.cpp - tiled attn specs to vectorized CPU kernels ---------===//
//
// Implements convert-attn-to-cpu. The kernel for one work item (b, h, q-tile):
//
//   Qt[d][i] = scale * q[b, h, q0 + i, d]        (transposed: queries in lanes)
//   for each kv tile (k0, kn), classified empty / full / partial:
//     pass 1: S[j][i] = sum_d K[j, d] * Qt[d][i]  (broadcast-FMA micro-kernel)
//             S = score(S); S = mask ? S : -inf   (mask only on partial tiles)
//     pass 2: online softmax: m' = max(m, rowmax S); P = exp(S - m');
//             l = l * exp(m - m') + sum_j P
//     pass 3: Ot[dv][i] = Ot[dv][i] * alpha + sum_j V[j, dv] * P[j][i]
//   o[b, h, q0 + i, dv] = Ot[dv][i] / l[i]; lse = m + log l
//
// Sigmoid, relu and none skip the row statistics (pass 1 writes P directly).
// Because every vector runs along queries, any head dim and any K/V stride
// works without padding, and the per-row softmax state is plain vector math.
//
//===----------------------------------------------------------------------===//

#include "KernelBase.h"
#include "LinearToCPU.h"
#include "attn/Conversion/Passes.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include <limits>

namespace mlir::attn {
#define GEN_PASS_DEF_CONVERTATTNTOCPU
#include "attn/Conversion/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

namespace {

using P = arith::CmpIPredicate;

class KernelBuilder : public KernelBase {
public:
  KernelBuilder(SpecOp spec, ModuleOp module)
      : KernelBase(spec.getLoc(), module.getContext(), 16), spec(spec),
        att(spec.getAttention()),
        sched(att ? att.getScheduleAttr() : ScheduleAttr()) {
    // build() reports a missing schedule; keep the sizes valid until then.
    vl = sched ? sched.getVectorWidth() : 16;
    bq = sched ? sched.getTileQ() : 64;
    bk = sched ? sched.getTileKv() : 64;
    ci = bq / vl;
    // Register blocking: keep at most ~24 vector accumulators live.
    rj = std::max<int64_t>(1, std::min<int64_t>(8, 24 / ci));
    rd = rj;
    b.setInsertionPointToEnd(module.getBody());
  }

  LogicalResult build();

private:
  void emitPrologue(func::FuncOp fn);
  void emitItem(Value item);
  void emitLoadQ(Value bIdx, Value h, Value q0, Value qn);
  void emitKVTile(Value bIdx, Value h, Value hk, Value q0, Value qn, Value k0,
                  Value kn, Value partial);
  void emitPass1Block(Value bIdx, Value h, Value hk, Value k0, Value jb,
                      int64_t nj, Value partial, ArrayRef<Value> qIdx,
                      SmallVector<Value> &stat);
  void finishElement(Value bIdx, Value h, Value kvIdx, Value jRow, int64_t c,
                     Value x, bool withMask, ArrayRef<Value> qIdx,
                     SmallVector<Value> &stat);
  void emitFinishRows(Value bIdx, Value h, Value k0, Value kn, Value partial,
                      ArrayRef<Value> qIdx, SmallVector<Value> &stat);
  void emitPV(Value hk, Value bIdx, Value k0, Value kn, bool rescale);
  void emitStore(Value bIdx, Value h, Value q0, Value qn);

  SpecOp spec;
  AttentionOp att;
  ScheduleAttr sched;
  int64_t bq, bk, ci, rj, rd;

  // Kernel values.
  Value q, k, v, o, lse;
  KernelEnv env;
  Value N, M, Dqk, Dv, Hq, G;                 // index
  Value nQT, nKT;                             // index
  Value scale, bias;                          // f32 scalars
  Value hasLse;                               // i1
  Value Qt, St, Ot, mBuf, lBuf, aBuf, invBuf; // local buffers
  NormalizerKind kind;
  /// Score/mask regions present: finish S in a separate row loop.
  bool deferFinish = false;
};

} // namespace

void KernelBuilder::emitPrologue(func::FuncOp fn) {
  Block *entry = &fn.getBody().front();
  q = entry->getArgument(0);
  k = entry->getArgument(1);
  v = entry->getArgument(2);
  o = entry->getArgument(3);
  lse = entry->getArgument(4);
  bindEnv(spec, entry, /*firstAux=*/5, env);
  auto dimOf = [&](Value m, int64_t d) {
    return Value(memref::DimOp::create(b, m, d));
  };
  Hq = dimOf(q, 1);
  N = dimOf(q, 2);
  Dqk = dimOf(q, 3);
  M = dimOf(k, 2);
  Dv = dimOf(v, 3);
  G = arith::DivUIOp::create(b, Hq, dimOf(k, 1));
  auto toF32 = [&](Value x) -> Value {
    return x.getType().isF64()
               ? Value(arith::TruncFOp::create(b, b.getF32Type(), x))
               : x;
  };
  if (!att.getScale().empty()) {
    scale = toF32(emitRegion(b, att.getScale(), {}, env));
  } else {
    Value d = arith::SIToFPOp::create(b, b.getF64Type(), env.dims["Dqk"]);
    scale = toF32(math::RsqrtOp::create(b, d));
  }
  bias = att.getBias().empty() ? cf32(0)
                               : toF32(emitRegion(b, att.getBias(), {}, env));
  Value lsePtr = memref::ExtractAlignedPointerAsIndexOp::create(b, lse);
  hasLse = arith::CmpIOp::create(b, P::ne, lsePtr, cidx(0));

  nQT = arith::CeilDivUIOp::create(b, N, cidx(bq));
  nKT = arith::CeilDivUIOp::create(b, M, cidx(bk));
  // Local buffers, allocated once per call (not per item).
  Type f32 = b.getF32Type();
  Qt = memref::AllocaOp::create(
      b, MemRefType::get({ShapedType::kDynamic, bq}, f32), ValueRange{Dqk});
  St = memref::AllocaOp::create(b, MemRefType::get({bk, bq}, f32));
  Ot = memref::AllocaOp::create(
      b, MemRefType::get({ShapedType::kDynamic, bq}, f32), ValueRange{Dv});
  mBuf = memref::AllocaOp::create(b, MemRefType::get({bq}, f32));
  lBuf = memref::AllocaOp::create(b, MemRefType::get({bq}, f32));
  aBuf = memref::AllocaOp::create(b, MemRefType::get({bq}, f32));
  invBuf = memref::AllocaOp::create(b, MemRefType::get({bq}, f32));
}

void KernelBuilder::emitLoadQ(Value bIdx, Value h, Value q0, Value qn) {
  Value zero = cf32(0);
  loop(cidx(0), cidx(bq), cidx(1), {}, [&](Value i, ValueRange) {
    Value inRange = arith::CmpIOp::create(b, P::ult, i, qn);
    auto ifOp = scf::IfOp::create(b, TypeRange{}, inRange, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value row = arith::AddIOp::create(b, q0, i);
      loop(cidx(0), Dqk, cidx(1), {}, [&](Value d, ValueRange) {
        Value x =
            toF32(memref::LoadOp::create(b, q, ValueRange{bIdx, h, row, d}));
        Value xs = arith::MulFOp::create(b, x, scale);
        memref::StoreOp::create(b, xs, Qt, ValueRange{d, i});
        return SmallVector<Value>{};
      });
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      loop(cidx(0), Dqk, cidx(1), {}, [&](Value d, ValueRange) {
        memref::StoreOp::create(b, zero, Qt, ValueRange{d, i});
        return SmallVector<Value>{};
      });
    }
    return SmallVector<Value>{};
  });
}

/// Pass 1 for `nj` kv rows starting at jb (relative to k0): S rows, score,
/// mask, and the running row statistic (max for softmax, sum for relu with
/// row normalization) in `stat`.
void KernelBuilder::emitPass1Block(Value bIdx, Value h, Value hk, Value k0,
                                   Value jb, int64_t nj, Value partial,
                                   ArrayRef<Value> qIdx,
                                   SmallVector<Value> &stat) {
  SmallVector<Value> init(nj * ci, vsplat(0));
  SmallVector<Value> rows;
  for (int64_t r = 0; r < nj; ++r)
    rows.push_back(
        arith::AddIOp::create(b, arith::AddIOp::create(b, k0, jb), cidx(r)));
  auto dLoop = loop(cidx(0), Dqk, cidx(1), init, [&](Value d, ValueRange acc) {
    SmallVector<Value> qv;
    for (int64_t c = 0; c < ci; ++c)
      qv.push_back(
          vector::LoadOp::create(b, vf32(), Qt, ValueRange{d, cidx(c * vl)}));
    SmallVector<Value> next;
    for (int64_t r = 0; r < nj; ++r) {
      Value kv = bcast(toF32(
          memref::LoadOp::create(b, k, ValueRange{bIdx, hk, rows[r], d})));
      for (int64_t c = 0; c < ci; ++c)
        next.push_back(vector::FMAOp::create(b, kv, qv[c], acc[r * ci + c]));
    }
    return next;
  });
  for (int64_t r = 0; r < nj; ++r) {
    Value jRow = arith::AddIOp::create(b, jb, cidx(r));
    for (int64_t c = 0; c < ci; ++c) {
      Value x = dLoop.getResult(r * ci + c);
      if (deferFinish) {
        // Score and mask run once per tile in emitFinishRows: one copy of
        // their code instead of one per accumulator.
        vector::StoreOp::create(b, x, St, ValueRange{jRow, cidx(c * vl)});
        continue;
      }
      finishElement(bIdx, h, toI64(rows[r]), jRow, c, x, /*withMask=*/false,
                    qIdx, stat);
    }
  }
}

/// Score, mask and normalizer of one vector of S (kv row jRow, lanes of
/// query block c); writes P to St and updates the row statistic.
void KernelBuilder::finishElement(Value bIdx, Value h, Value kvIdx, Value jRow,
                                  int64_t c, Value x, bool withMask,
                                  ArrayRef<Value> qIdx,
                                  SmallVector<Value> &stat) {
  Value hI64 = toI64(h), bI64 = toI64(bIdx);
  if (!att.getScore().empty())
    x = emitRegion(b, att.getScore(), {x, bI64, hI64, qIdx[c], kvIdx}, env);
  // Visibility: evaluated only on partial tiles (the caller emits one
  // version of the row loop per tile class).
  Value visible;
  if (withMask) {
    visible = emitRegion(b, att.getMask(), {bI64, hI64, qIdx[c], kvIdx}, env);
    if (!isa<VectorType>(visible.getType()))
      visible = bcast(visible);
  }
  Value p = x;
  switch (kind) {
  case NormalizerKind::softmax:
    if (visible)
      p = arith::SelectOp::create(
          b, visible, x, vsplat(-std::numeric_limits<float>::infinity()));
    stat[c] = arith::MaximumFOp::create(b, stat[c], p);
    break;
  case NormalizerKind::sigmoid: {
    Value z = arith::AddFOp::create(b, x, bcast(bias));
    Value e = math::ExpOp::create(b, arith::NegFOp::create(b, z));
    p = arith::DivFOp::create(b, vsplat(1),
                              arith::AddFOp::create(b, vsplat(1), e));
    break;
  }
  case NormalizerKind::relu: {
    Value r0 = arith::MaximumFOp::create(b, x, vsplat(0));
    p = r0;
    for (int64_t i = 1, e = att.getReluPower(); i < e; ++i)
      p = arith::MulFOp::create(b, p, r0);
    break;
  }
  case NormalizerKind::none:
    break;
  }
  if (kind != NormalizerKind::softmax && visible)
    p = arith::SelectOp::create(b, visible, p, vsplat(0));
  if (kind == NormalizerKind::relu && att.getRowNormalize())
    stat[c] = arith::AddFOp::create(b, stat[c], p);
  vector::StoreOp::create(b, p, St, ValueRange{jRow, cidx(c * vl)});
}

void KernelBuilder::emitFinishRows(Value bIdx, Value h, Value k0, Value kn,
                                   Value partial, ArrayRef<Value> qIdx,
                                   SmallVector<Value> &stat) {
  auto rows = [&](bool withMask) {
    auto f = loop(cidx(0), kn, cidx(1), stat, [&](Value j, ValueRange carried) {
      SmallVector<Value> st(carried.begin(), carried.end());
      Value kvIdx = toI64(arith::AddIOp::create(b, k0, j));
      for (int64_t c = 0; c < ci; ++c) {
        Value x =
            vector::LoadOp::create(b, vf32(), St, ValueRange{j, cidx(c * vl)});
        finishElement(bIdx, h, kvIdx, j, c, x, withMask, qIdx, st);
      }
      return st;
    });
    return SmallVector<Value>(f.getResults());
  };
  if (att.getMask().empty()) {
    stat = rows(false);
    return;
  }
  SmallVector<Type> statTypes(ci, vf32());
  auto ifOp = scf::IfOp::create(b, statTypes, partial, true);
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, rows(true));
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, rows(false));
  }
  for (int64_t c = 0; c < ci; ++c)
    stat[c] = ifOp.getResult(c);
}

void KernelBuilder::emitPV(Value hk, Value bIdx, Value k0, Value kn,
                           bool rescale) {
  // Pass 3: Ot[dv][i] (* alpha[i] for softmax) + sum_j V[j, dv] * P[j][i],
  // rd value columns at a time so the accumulators stay in registers.
  auto block = [&](Value dvb, int64_t nd) {
    SmallVector<Value> init;
    SmallVector<Value> alpha;
    if (rescale)
      for (int64_t c = 0; c < ci; ++c)
        alpha.push_back(
            vector::LoadOp::create(b, vf32(), aBuf, ValueRange{cidx(c * vl)}));
    for (int64_t r = 0; r < nd; ++r) {
      Value row = arith::AddIOp::create(b, dvb, cidx(r));
      for (int64_t c = 0; c < ci; ++c) {
        Value acc = vector::LoadOp::create(b, vf32(), Ot,
                                           ValueRange{row, cidx(c * vl)});
        init.push_back(rescale ? Value(arith::MulFOp::create(b, acc, alpha[c]))
                               : acc);
      }
    }
    auto jLoop = loop(cidx(0), kn, cidx(1), init, [&](Value j, ValueRange acc) {
      SmallVector<Value> pv;
      for (int64_t c = 0; c < ci; ++c)
        pv.push_back(
            vector::LoadOp::create(b, vf32(), St, ValueRange{j, cidx(c * vl)}));
      Value kvRow = arith::AddIOp::create(b, k0, j);
      SmallVector<Value> next;
      for (int64_t r = 0; r < nd; ++r) {
        Value col = arith::AddIOp::create(b, dvb, cidx(r));
        Value vv = bcast(toF32(
            memref::LoadOp::create(b, v, ValueRange{bIdx, hk, kvRow, col})));
        for (int64_t c = 0; c < ci; ++c)
          next.push_back(vector::FMAOp::create(b, vv, pv[c], acc[r * ci + c]));
      }
      return next;
    });
    for (int64_t r = 0; r < nd; ++r) {
      Value row = arith::AddIOp::create(b, dvb, cidx(r));
      for (int64_t c = 0; c < ci; ++c)
        vector::StoreOp::create(b, jLoop.getResult(r * ci + c), Ot,
                                ValueRange{row, cidx(c * vl)});
    }
  };
  // Full blocks of rd value columns, then the remainder one at a time.
  Value dvFull =
      arith::SubIOp::create(b, Dv, arith::RemUIOp::create(b, Dv, cidx(rd)));
  loop(cidx(0), dvFull, cidx(rd), {}, [&](Value dvb, ValueRange) {
    block(dvb, rd);
    return SmallVector<Value>{};
  });
  // The remaining Dv % rd columns as one register block of that width.
  if (rd > 1) {
    SmallVector<int64_t> cases;
    for (int64_t r = 1; r < rd; ++r)
      cases.push_back(r);
    Value rem = arith::RemUIOp::create(b, Dv, cidx(rd));
    auto sw =
        scf::IndexSwitchOp::create(b, TypeRange{}, rem, cases, cases.size());
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&sw.getDefaultRegion().emplaceBlock());
    scf::YieldOp::create(b);
    for (auto [i, r] : llvm::enumerate(cases)) {
      b.setInsertionPointToStart(&sw.getCaseRegions()[i].emplaceBlock());
      block(dvFull, r);
      scf::YieldOp::create(b);
    }
  }
}

void KernelBuilder::emitKVTile(Value bIdx, Value h, Value hk, Value q0,
                               Value qn, Value k0, Value kn, Value partial) {
  // Query indices per lane block, clamped to N - 1 so padding lanes of a
  // tail tile never index aux tensors out of range (their results are
  // discarded).
  SmallVector<Value> qIdx;
  {
    auto vidx = VectorType::get({vl}, b.getIndexType());
    Value step = vector::StepOp::create(b, vidx);
    Value last = toI64(arith::SubIOp::create(b, N, cidx(1)));
    for (int64_t c = 0; c < ci; ++c) {
      Value base = bcast(arith::AddIOp::create(b, q0, cidx(c * vl)));
      Value idx = arith::AddIOp::create(b, base, step);
      Value i64v = arith::IndexCastOp::create(
          b, VectorType::get({vl}, b.getI64Type()), idx);
      qIdx.push_back(arith::MinSIOp::create(b, i64v, bcast(last)));
    }
  }
  bool softmax = kind == NormalizerKind::softmax;
  bool rowSum = kind == NormalizerKind::relu && att.getRowNormalize();
  SmallVector<Value> stat(
      ci, vsplat(softmax ? -std::numeric_limits<float>::infinity() : 0.0f));
  // Pass 1 over blocks of rj kv rows, then the remainder row by row.
  Value jFull =
      arith::SubIOp::create(b, kn, arith::RemUIOp::create(b, kn, cidx(rj)));
  auto runBlocks = [&](Value lb, Value ub, int64_t nj) {
    auto f = loop(lb, ub, cidx(nj), stat, [&](Value jb, ValueRange carried) {
      SmallVector<Value> s(carried.begin(), carried.end());
      emitPass1Block(bIdx, h, hk, k0, jb, nj, partial, qIdx, s);
      return s;
    });
    for (int64_t c = 0; c < ci; ++c)
      stat[c] = f.getResult(c);
  };
  runBlocks(cidx(0), jFull, rj);
  // The remainder: a full tile has a static one (bk % rj rows, done as one
  // register block); only a tail tile falls back to single rows.
  if (int64_t rem = bk % rj) {
    SmallVector<Type> statTypes(ci, vf32());
    Value isFull = arith::CmpIOp::create(b, P::eq, kn, cidx(bk));
    auto ifOp = scf::IfOp::create(b, statTypes, isFull, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      SmallVector<Value> s = stat;
      emitPass1Block(bIdx, h, hk, k0, jFull, rem, partial, qIdx, s);
      scf::YieldOp::create(b, s);
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      runBlocks(jFull, kn, 1);
      scf::YieldOp::create(b, stat);
    }
    for (int64_t c = 0; c < ci; ++c)
      stat[c] = ifOp.getResult(c);
  } else {
    runBlocks(jFull, kn, 1);
  }
  if (deferFinish)
    emitFinishRows(bIdx, h, k0, kn, partial, qIdx, stat);

  if (softmax) {
    // Pass 2: new row max, P = exp(S - m'), l = l * alpha + sum P; alpha
    // goes to aBuf for pass 3, which rescales the accumulator.
    Value ninf = vsplat(-std::numeric_limits<float>::infinity());
    SmallVector<Value> mSafe, alpha;
    for (int64_t c = 0; c < ci; ++c) {
      Value mOld =
          vector::LoadOp::create(b, vf32(), mBuf, ValueRange{cidx(c * vl)});
      Value mNew = arith::MaximumFOp::create(b, mOld, stat[c]);
      // A row that has seen no visible key keeps m = -inf; subtract 0 then.
      Value isInf =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, ninf);
      Value safe = arith::SelectOp::create(b, isInf, vsplat(0), mNew);
      alpha.push_back(
          math::ExpOp::create(b, arith::SubFOp::create(b, mOld, safe)));
      mSafe.push_back(safe);
      vector::StoreOp::create(b, mNew, mBuf, ValueRange{cidx(c * vl)});
    }
    SmallVector<Value> zero(ci, vsplat(0));
    auto sumLoop =
        loop(cidx(0), kn, cidx(1), zero, [&](Value j, ValueRange acc) {
          SmallVector<Value> next;
          for (int64_t c = 0; c < ci; ++c) {
            Value s = vector::LoadOp::create(b, vf32(), St,
                                             ValueRange{j, cidx(c * vl)});
            Value p =
                math::ExpOp::create(b, arith::SubFOp::create(b, s, mSafe[c]));
            vector::StoreOp::create(b, p, St, ValueRange{j, cidx(c * vl)});
            next.push_back(arith::AddFOp::create(b, acc[c], p));
          }
          return next;
        });
    for (int64_t c = 0; c < ci; ++c) {
      Value lOld =
          vector::LoadOp::create(b, vf32(), lBuf, ValueRange{cidx(c * vl)});
      Value lNew =
          vector::FMAOp::create(b, lOld, alpha[c], sumLoop.getResult(c));
      vector::StoreOp::create(b, lNew, lBuf, ValueRange{cidx(c * vl)});
      vector::StoreOp::create(b, alpha[c], aBuf, ValueRange{cidx(c * vl)});
    }
    emitPV(hk, bIdx, k0, kn, /*rescale=*/true);
    return;
  }
  if (rowSum)
    for (int64_t c = 0; c < ci; ++c) {
      Value lOld =
          vector::LoadOp::create(b, vf32(), lBuf, ValueRange{cidx(c * vl)});
      vector::StoreOp::create(b, arith::AddFOp::create(b, lOld, stat[c]), lBuf,
                              ValueRange{cidx(c * vl)});
    }
  emitPV(hk, bIdx, k0, kn, /*rescale=*/false);
}

void KernelBuilder::emitStore(Value bIdx, Value h, Value q0, Value qn) {
  bool softmax = kind == NormalizerKind::softmax;
  bool divide =
      softmax || (kind == NormalizerKind::relu && att.getRowNormalize());
  // inv = l > 0 ? 1 / l : 0 (empty rows give 0, never NaN); lse per lane.
  for (int64_t c = 0; c < ci; ++c) {
    Value inv = vsplat(1);
    if (divide) {
      Value l =
          vector::LoadOp::create(b, vf32(), lBuf, ValueRange{cidx(c * vl)});
      Value pos =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, l, vsplat(0));
      inv = arith::SelectOp::create(
          b, pos, arith::DivFOp::create(b, vsplat(1), l), vsplat(0));
      if (softmax) {
        Value m =
            vector::LoadOp::create(b, vf32(), mBuf, ValueRange{cidx(c * vl)});
        Value lse = arith::SelectOp::create(
            b, pos, arith::AddFOp::create(b, m, math::LogOp::create(b, l)),
            vsplat(-std::numeric_limits<float>::infinity()));
        vector::StoreOp::create(b, lse, mBuf, ValueRange{cidx(c * vl)});
      }
    }
    vector::StoreOp::create(b, inv, invBuf, ValueRange{cidx(c * vl)});
  }
  loop(cidx(0), qn, cidx(1), {}, [&](Value i, ValueRange) {
    Value row = arith::AddIOp::create(b, q0, i);
    Value inv = memref::LoadOp::create(b, invBuf, ValueRange{i});
    loop(cidx(0), Dv, cidx(1), {}, [&](Value d, ValueRange) {
      Value acc = memref::LoadOp::create(b, Ot, ValueRange{d, i});
      memref::StoreOp::create(b, arith::MulFOp::create(b, acc, inv), o,
                              ValueRange{bIdx, h, row, d});
      return SmallVector<Value>{};
    });
    if (softmax)
      ifThen(hasLse, [&] {
        Value x = memref::LoadOp::create(b, mBuf, ValueRange{i});
        memref::StoreOp::create(b, x, lse, ValueRange{bIdx, h, row});
      });
    return SmallVector<Value>{};
  });
}

void KernelBuilder::emitItem(Value item) {
  Value qt = arith::RemUIOp::create(b, item, nQT);
  Value bh = arith::DivUIOp::create(b, item, nQT);
  Value h = arith::RemUIOp::create(b, bh, Hq);
  Value bIdx = arith::DivUIOp::create(b, bh, Hq);
  Value hk = arith::DivUIOp::create(b, h, G);
  Value q0 = arith::MulIOp::create(b, qt, cidx(bq));
  Value qn =
      arith::MinUIOp::create(b, cidx(bq), arith::SubIOp::create(b, N, q0));
  emitLoadQ(bIdx, h, q0, qn);
  // Row state: m = -inf, l = 0, Ot = 0.
  for (int64_t c = 0; c < ci; ++c) {
    vector::StoreOp::create(b, vsplat(-std::numeric_limits<float>::infinity()),
                            mBuf, ValueRange{cidx(c * vl)});
    vector::StoreOp::create(b, vsplat(0), lBuf, ValueRange{cidx(c * vl)});
  }
  loop(cidx(0), Dv, cidx(1), {}, [&](Value d, ValueRange) {
    for (int64_t c = 0; c < ci; ++c)
      vector::StoreOp::create(b, vsplat(0), Ot, ValueRange{d, cidx(c * vl)});
    return SmallVector<Value>{};
  });
  Value qLo = toI64(q0);
  Value qHi = toI64(
      arith::SubIOp::create(b, arith::AddIOp::create(b, q0, qn), cidx(1)));
  Value bI64 = toI64(bIdx), hI64 = toI64(h);
  loop(cidx(0), nKT, cidx(1), {}, [&](Value kt, ValueRange) {
    Value k0 = arith::MulIOp::create(b, kt, cidx(bk));
    Value kn =
        arith::MinUIOp::create(b, cidx(bk), arith::SubIOp::create(b, M, k0));
    Value compute, partial;
    if (att.getMask().empty()) {
      compute = arith::ConstantOp::create(b, b.getBoolAttr(true));
      partial = arith::ConstantOp::create(b, b.getBoolAttr(false));
    } else {
      Value kLo = toI64(k0);
      Value kHi = toI64(
          arith::SubIOp::create(b, arith::AddIOp::create(b, k0, kn), cidx(1)));
      auto [lo, hi] = emitMaskIntervals(b, att.getMask(), bI64, hI64, qLo, qHi,
                                        kLo, kHi, env);
      compute = arith::CmpIOp::create(b, P::ne, hi, ci64(0)); // not empty
      partial = arith::CmpIOp::create(b, P::ne, lo, ci64(1)); // not full
    }
    ifThen(compute, [&] { emitKVTile(bIdx, h, hk, q0, qn, k0, kn, partial); });
    return SmallVector<Value>{};
  });
  emitStore(bIdx, h, q0, qn);
}

LogicalResult KernelBuilder::build() {
  if (!sched)
    return att.emitError() << "convert-attn-to-cpu needs a schedule; run "
                              "attn-tile-attention first";
  kind = att.getNormalizer();
  deferFinish = !att.getScore().empty() || !att.getMask().empty();
  auto fn = createKernelFunc(spec);
  emitPrologue(fn);
  Block &entry = fn.getBody().front();
  Value begin = toIdx(entry.getArgument(entry.getNumArguments() - 2));
  Value end = toIdx(entry.getArgument(entry.getNumArguments() - 1));
  loop(begin, end, cidx(1), {}, [&](Value item, ValueRange) {
    emitItem(item);
    return SmallVector<Value>{};
  });
  func::ReturnOp::create(b);
  return success();
}

namespace {
struct ConvertAttnToCPUPass
    : public mlir::attn::impl::ConvertAttnToCPUBase<ConvertAttnToCPUPass> {
  using ConvertAttnToCPUBase::ConvertAttnToCPUBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<SpecOp> specs(module.getBody()->getOps<SpecOp>());
    for (SpecOp spec : specs) {
      if (spec.getLinearAttention()) {
        if (failed(buildLinearKernel(spec, module, vectorWidth, linearChunk)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      KernelBuilder kb(spec, module);
      if (failed(kb.build()))
        return signalPassFailure();
      spec->erase();
    }
  }
};
} // namespace
