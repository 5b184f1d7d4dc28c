//===- BackwardToCPU.cpp - the backward tile program to a CPU kernel ------===//
//
// The CPU patterns of attn.tiled_attention_backward (TileBackwardLowering).
// A work item is one (b, hk): it owns the dq rows of its group's query heads,
// so it runs its kv tiles one after the other and adds to dq without atomics
// (the op leaves that choice to the backend). Per item:
//
//   D[g][i] = rowsum(do ∘ o) - dlse          (softmax; once per row)
//   Qs = scale q, DOs = do rows of the group, packed; dQs = 0
//   for each kv tile (k0, kn):                     (attn.tile.bwd.init)
//     Kt[d][j], Vt[dv][j] = k, v transposed (keys in SIMD lanes; rows past
//     kn zero), Kn[j][d] = k rows padded to whole vectors; dKt = dVt = 0
//     for each head h of the group, q tile the mask leaves non-empty:
//       for each block of 4 query rows (the fused step, attn.tile.bwd.dq):
//         S = Qs Kt    X = S; S = score(S); hide     dP = DOs Vt
//         P = exp(S - lse_i) | normalizer   dS = P (dP - D_i) | derivative
//         dX = dS ∂score/∂x                 dVt += DOsᵀ P    dKt += Qsᵀ dX
//         dQs[rows, :] += dX Kn             (vectors along d)
//     dk, dv rows of the tile = dKt, dVt transposed     (attn.tile.bwd.store)
//   dq = scale dQs
//
// Keys sit in the lanes so that dK and dV accumulate with plain vector FMAs
// (queries in lanes, as in the forward, would need a reduction per key);
// dq, the one product along keys, runs along d instead. Each product is
// register-blocked over a block of query rows, which share every tile
// vector they load (the forward blocks over kv rows the same way).

//===----------------------------------------------------------------------===//

#include "BackwardToCPU.h"
#include "KernelBase.h"
#include "attn/Conversion/TileLowering.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include <limits>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

namespace {

using P = arith::CmpIPredicate;
using FP = arith::CmpFPredicate;

class BackwardKernelBuilder : public KernelBase, public TileBackwardLowering {
public:
  BackwardKernelBuilder(SpecOp spec, ModuleOp module)
      : KernelBase(spec, 16), tiled(spec.getTiledAttentionBackward()),
        module(module) {
    ScheduleAttr s = tiled ? tiled.getSchedule() : ScheduleAttr();
    vl = s ? s.getVectorWidth() : 16;
    bq = s ? s.getTileQ() : 64;
    bk = s ? s.getTileKv() : 64;
    cj = bk / vl;
    b.setInsertionPointToEnd(module.getBody());
  }

  LogicalResult build();

  ATTN_TILE_BACKWARD_LOWERING_PATTERNS

private:
  func::FuncOp createFunc();
  void emitPrologue(Block *entry);
  void emitItem(Value item);
  void emitRowBlock(Value i0, int64_t rows, Value g, Value partial);
  /// The tile's key indices per lane block (clamped to M - 1 for the
  /// regions' lookups) and which lanes hold keys of the tile.
  void keyLanes(SmallVector<Value> &jIdx, SmallVector<Value> &inTile);
  /// Score and visibility of one vector of row `row` (lane block c).
  std::pair<Value, Value> scoreAndVisibility(Value x, Value row, int64_t c,
                                             ArrayRef<Value> jIdx,
                                             ArrayRef<Value> inTile,
                                             Value partial);
  /// Every (query head, q tile) pair of the item the mask leaves non-empty
  /// against the current kv tile: sets pairH/G/Q0/Qn and calls `body`.
  void forEachPair(Region *maskRegion, function_ref<void(Value)> body);
  /// Row-normalized relu: L[g][i] = Σ_j relu(s_ij)^p, a pass over the kv
  /// tiles before the gradients (the forward keeps no row statistic).
  void emitRowSums();
  /// The kv tile's Kt (and, `withV`, Vt and Kn), zero past tileKn.
  void emitLoadTile(bool withV);
  /// out[r][c] = Σ_d bcast(rowsBuf[i0 + r][d]) * tileT[d][c vl ..], the
  /// product of `rows` packed rows with a transposed kv tile.
  SmallVector<Value> rowsTimesTile(Value rowsBuf, Value i0, int64_t rows,
                                   Value len, Value tileT);
  /// tileT[d][c vl ..] += Σ_{i < n} bcast(rowsBuf[base + i][d]) * X[i][c vl
  /// ..]: dV (from P) and dK (from dX) of the whole pair, four d at a time
  /// in registers, so the tile's gradients are read and written once per
  /// pair.
  void accumulateTile(Value rowsBuf, Value base, Value n, Value len,
                      Value tileT, Value X);
  void emitWriteDQ(Value g, Value h);

  TiledAttentionBackwardOp tiled;
  ModuleOp module;
  int64_t bq, bk, cj;
  NormalizerKind kind;
  KernelEnv env;

  // Kernel arguments beyond the forward's, and the aux gradients by name.
  Value dout, dlse, dq, dk, dv;
  llvm::StringMap<Value> auxGrads;
  Value scale, bias, hasDlse;
  Value Hkv, nQT, nKT, Dpad;
  // Scratch.
  Value Kt, Vt, Kn, dKt, dVt, Dbuf, Qs, DOs, Pt, Xt, dQs, Lbuf;
  bool rowNormalize = false;
  /// Query rows per register block of the fused step.
  static constexpr int64_t kRows = 4;

  // The work item and the pair being lowered.
  Value itemB, itemHk, tileK0, tileKn, pairH, pairQ0, pairQn, pairG;
  // What the step's ops recorded for the fused row loop.
  Region *pendingScore = nullptr, *pendingScoreGrad = nullptr;
  bool pendingMask = false;
  Region *mask = nullptr;
  /// The recompute's score region (tile.score in the q loop), for the
  /// row-sum pass.
  Region *scoreRegion = nullptr;
};

} // namespace

//===----------------------------------------------------------------------===//
// The kernel shell
//===----------------------------------------------------------------------===//

func::FuncOp BackwardKernelBuilder::createFunc() {
  return createBackwardKernelFunc(tiled.getGradientInputs());
}

void BackwardKernelBuilder::emitPrologue(Block *entry) {
  bindCanonical(entry);
  env.vectorWidth = vl;
  bindRegionEnv(entry, env);
  BackwardArgs args = bindBackwardArgs(entry, tiled.getGradientInputs());
  dout = args.dout;
  dlse = args.dlse;
  dq = args.dq;
  dk = args.dk;
  dv = args.dv;
  auxGrads = std::move(args.auxGrads);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
  hasDlse = cmp(P::ne, memref::ExtractAlignedPointerAsIndexOp::create(b, dlse),
                cidx(0));
  Hkv = memref::DimOp::create(b, k, 1);
  nQT = ceilDiv(N, cidx(bq));
  nKT = ceilDiv(M, cidx(bk));
  // Kn rows padded to whole blocks of 4 vectors (the dq product's width).
  Dpad = mul(ceilDiv(Dqk, cidx(4 * vl)), cidx(4 * vl));
  Type f32 = b.getF32Type();
  int64_t dyn = ShapedType::kDynamic;
  Kt = allocScratch(MemRefType::get({dyn, bk}, f32), ValueRange{Dqk});
  Vt = allocScratch(MemRefType::get({dyn, bk}, f32), ValueRange{Dv});
  Kn = allocScratch(MemRefType::get({bk, dyn}, f32), ValueRange{Dpad});
  dKt = allocScratch(MemRefType::get({dyn, bk}, f32), ValueRange{Dqk});
  dVt = allocScratch(MemRefType::get({dyn, bk}, f32), ValueRange{Dv});
  Dbuf = allocScratch(MemRefType::get({dyn}, f32), ValueRange{mul(G, N)});
  if (rowNormalize)
    Lbuf = allocScratch(MemRefType::get({dyn}, f32), ValueRange{mul(G, N)});
  // The item's q rows (scaled) and do rows, packed once; the pair's P and
  // dX; the item's dq rows, accumulated unscaled along d (vectors) across
  // kv tiles.
  Qs = allocScratch(MemRefType::get({dyn, dyn}, f32),
                    ValueRange{mul(G, N), Dqk});
  DOs =
      allocScratch(MemRefType::get({dyn, dyn}, f32), ValueRange{mul(G, N), Dv});
  Pt = allocScratch(MemRefType::get({bq, bk}, f32));
  Xt = allocScratch(MemRefType::get({bq, bk}, f32));
  dQs = allocScratch(MemRefType::get({dyn, dyn}, f32),
                     ValueRange{mul(G, N), Dpad});
}

LogicalResult BackwardKernelBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention_backward to lower";
  if (bq <= 0 || bk <= 0 || bk % vl != 0 || bq > kMaxTileRows ||
      bk > kMaxTileRows)
    return tiled.emitError()
           << "the CPU backward kernel needs tile_kv (" << bk
           << ") a positive multiple of the vector width (" << vl
           << ") and tile_q (" << bq << "), tile_kv at most " << kMaxTileRows
           << " rows";
  kind = tiled.getNormalizer();
  rowNormalize = kind == NormalizerKind::relu && tiled.getRowNormalize();
  for (Operation &op : tiled.getBodyBlock())
    if (auto loop = dyn_cast<QLoopOp>(op)) {
      if (!loop.getMask().empty())
        mask = &loop.getMask();
      loop.walk([&](TileScoreOp score) { scoreRegion = &score.getScore(); });
    }
  auto fn = createFunc();
  Block *entry = &fn.getBody().front();
  emitPrologue(entry);
  Value begin = toIdx(entry->getArgument(entry->getNumArguments() - 2));
  Value end = toIdx(entry->getArgument(entry->getNumArguments() - 1));
  beginGuardedBody();
  LogicalResult result = success();
  forEach(begin, end, [&](Value item) {
    emitItem(item);
    if (rowNormalize)
      emitRowSums();
    Block &body = tiled.getBodyBlock();
    // The kv tiles of the item one after the other: they add to the same dq
    // rows.
    forEach(cidx(0), nKT, [&](Value kt) {
      tileK0 = mul(kt, cidx(bk));
      tileKn = minu(cidx(bk), sub(M, tileK0));
      map.map(body.getArgument(0), itemB);
      map.map(body.getArgument(1), itemHk);
      map.map(body.getArgument(2), tileK0);
      if (failed(lowerTileBackwardBlock(body, *this)))
        result = failure();
    });
    forEach(cidx(0), G,
            [&](Value g) { emitWriteDQ(g, add(mul(itemHk, G), g)); });
  });
  finishKernel();
  return result;
}

/// The item's rows of D (softmax), its q and do rows packed, and its dq
/// accumulators zeroed.
void BackwardKernelBuilder::emitItem(Value item) {
  itemB = divu(item, Hkv);
  itemHk = remu(item, Hkv);
  // D = do·o: softmax (less dlse) and the row-normalized relu need it.
  bool needD = kind == NormalizerKind::softmax || rowNormalize;
  forEach(cidx(0), G, [&](Value g) {
    Value h = add(mul(itemHk, G), g);
    forEach(cidx(0), N, [&](Value i) {
      Value row = add(mul(g, N), i);
      forEach(cidx(0), ceilDiv(Dpad, cidx(vl)), [&](Value e) {
        vector::StoreOp::create(b, vsplat(0), dQs,
                                ValueRange{row, mul(e, cidx(vl))});
      });
      forEach(cidx(0), Dqk, [&](Value d) {
        Value x =
            toF32(memref::LoadOp::create(b, q, ValueRange{itemB, h, i, d}));
        memref::StoreOp::create(b, fmul(x, scale), Qs, ValueRange{row, d});
      });
      forEach(cidx(0), Dv, [&](Value d) {
        Value x = memref::LoadOp::create(b, dout, ValueRange{itemB, h, i, d});
        memref::StoreOp::create(b, x, DOs, ValueRange{row, d});
      });
      if (rowNormalize)
        memref::StoreOp::create(b, cf32(0), Lbuf, ValueRange{row});
      if (!needD)
        return;
      auto dot = loop(
          cidx(0), Dv, cidx(1), {cf32(0)},
          [&](Value d, ValueRange acc) -> SmallVector<Value> {
            Value x =
                memref::LoadOp::create(b, dout, ValueRange{itemB, h, i, d});
            Value y = memref::LoadOp::create(b, o, ValueRange{itemB, h, i, d});
            return {fma(x, y, acc[0])};
          });
      Value useDlse =
          kind == NormalizerKind::softmax
              ? hasDlse
              : Value(arith::ConstantOp::create(b, b.getBoolAttr(false)));
      auto withDlse = scf::IfOp::create(b, TypeRange{b.getF32Type()}, useDlse,
                                        /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&withDlse.getThenRegion().front());
        Value x = memref::LoadOp::create(b, dlse, ValueRange{itemB, h, i});
        scf::YieldOp::create(b, fsub(dot.getResult(0), x));
        b.setInsertionPointToStart(&withDlse.getElseRegion().front());
        scf::YieldOp::create(b, dot.getResult(0));
      }
      memref::StoreOp::create(b, withDlse.getResult(0), Dbuf,
                              ValueRange{add(mul(g, N), i)});
    });
  });
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

/// Loads the kv tile (transposed, zero past kn) and zeroes its gradients.
void BackwardKernelBuilder::emitLoadTile(bool withV) {
  Value zero = cf32(0);
  forEach(cidx(0), cidx(bk), [&](Value j) {
    Value inTile = ult(j, tileKn);
    Value row = minu(add(tileK0, j), sub(M, cidx(1)));
    auto copy = [&](Value mem, Value len, Value dstT) {
      forEach(cidx(0), len, [&](Value d) {
        Value x = toF32(
            memref::LoadOp::create(b, mem, ValueRange{itemB, itemHk, row, d}));
        memref::StoreOp::create(b, select(inTile, x, zero), dstT,
                                ValueRange{d, j});
        if (withV && dstT == Kt)
          memref::StoreOp::create(b, select(inTile, x, zero), Kn,
                                  ValueRange{j, d});
      });
    };
    copy(k, Dqk, Kt);
    if (!withV)
      return;
    copy(v, Dv, Vt);
    forEach(Dqk, Dpad, [&](Value d) {
      memref::StoreOp::create(b, zero, Kn, ValueRange{j, d});
    });
  });
}

LogicalResult BackwardKernelBuilder::lowerBwdInit(TileBwdInitOp) {
  emitLoadTile(/*withV=*/true);
  auto zeroT = [&](Value buf, Value len) {
    forEach(cidx(0), len, [&](Value d) {
      for (int64_t c = 0; c < cj; ++c)
        vector::StoreOp::create(b, vsplat(0), buf, ValueRange{d, cidx(c * vl)});
    });
  };
  zeroT(dKt, Dqk);
  zeroT(dVt, Dv);
  return success();
}

/// Every (query head, q tile) pair the mask leaves non-empty against the kv
/// tile, with `partial` for the mixed ones.
LogicalResult BackwardKernelBuilder::lowerQLoop(QLoopOp op) {
  Block &step = op.getBody().front();
  LogicalResult result = success();
  forEachPair(op.getMask().empty() ? nullptr : &op.getMask(),
              [&](Value partial) {
                map.map(step.getArgument(0), pairH);
                map.map(step.getArgument(1), pairQ0);
                map.map(step.getArgument(2), partial);
                if (failed(lowerTileBackwardBlock(step, *this)))
                  result = failure();
              });
  return result;
}

void BackwardKernelBuilder::forEachPair(Region *maskRegion,
                                        function_ref<void(Value)> body) {
  Value kLo = toI64(tileK0);
  Value kHi = toI64(sub(add(tileK0, tileKn), cidx(1)));
  forEach(cidx(0), G, [&](Value g) {
    Value h = add(mul(itemHk, G), g);
    forEach(cidx(0), nQT, [&](Value qt) {
      Value q0 = mul(qt, cidx(bq));
      Value qn = minu(cidx(bq), sub(N, q0));
      Value compute, partial;
      if (!maskRegion) {
        // Every pair is full. (Computed, not constant: folding the scf.if
        // away lets LICM hoist the lane masks out of the q-tile loop, which
        // measured 30% slower on Zen 5.)
        compute = cmp(P::ne, qn, cidx(0));
        partial = arith::ConstantOp::create(b, b.getBoolAttr(false));
      } else {
        auto [lo, hi] =
            emitMaskIntervals(b, *maskRegion, toI64(itemB), toI64(h), toI64(q0),
                              toI64(sub(add(q0, qn), cidx(1))), kLo, kHi, env);
        compute = cmp(P::ne, hi, ci64(0));
        partial = cmp(P::ne, lo, ci64(1));
      }
      ifThen(compute, [&] {
        pairH = h;
        pairG = g;
        pairQ0 = q0;
        pairQn = qn;
        body(partial);
      });
    });
  });
}

void BackwardKernelBuilder::emitRowSums() {
  forEach(cidx(0), nKT, [&](Value kt) {
    tileK0 = mul(kt, cidx(bk));
    tileKn = minu(cidx(bk), sub(M, tileK0));
    emitLoadTile(/*withV=*/false);
    pendingScore = scoreRegion;
    pendingMask = mask != nullptr;
    forEachPair(mask, [&](Value partial) {
      SmallVector<Value> jIdx, inTile;
      keyLanes(jIdx, inTile);
      forEach(cidx(0), pairQn, [&](Value i) {
        Value row = add(pairQ0, i);
        Value lrow = add(mul(pairG, N), row);
        SmallVector<Value> x = rowsTimesTile(Qs, lrow, 1, Dqk, Kt);
        Value sum = vsplat(0);
        for (int64_t c = 0; c < cj; ++c) {
          auto [s, vis] =
              scoreAndVisibility(x[c], row, c, jIdx, inTile, partial);
          Value rl = fmax(s, vsplat(0)), rp = rl;
          for (int64_t e = 1, pw = tiled.getReluPower(); e < pw; ++e)
            rp = fmul(rp, rl);
          sum = fadd(sum, select(vis, rp, vsplat(0)));
        }
        Value total = vector::ReductionOp::create(
            b, vector::CombiningKind::ADD, sum, arith::FastMathFlags::reassoc);
        Value old = memref::LoadOp::create(b, Lbuf, ValueRange{lrow});
        memref::StoreOp::create(b, fadd(old, total), Lbuf, ValueRange{lrow});
      });
    });
  });
}

// The step's ops record what the fused row loop needs; attn.tile.bwd.dq,
// the step's last op, emits it.
LogicalResult BackwardKernelBuilder::lowerLoadQ(TileLoadQOp) {
  pendingScore = pendingScoreGrad = nullptr;
  pendingMask = false;
  return success();
}
LogicalResult BackwardKernelBuilder::lowerQK(TileQKOp) { return success(); }
LogicalResult BackwardKernelBuilder::lowerScore(TileScoreOp op) {
  pendingScore = &op.getScore();
  return success();
}
LogicalResult BackwardKernelBuilder::lowerMask(TileMaskOp) {
  pendingMask = mask != nullptr;
  return success();
}
LogicalResult BackwardKernelBuilder::lowerWeights(TileBwdWeightsOp) {
  return success();
}
LogicalResult BackwardKernelBuilder::lowerDP(TileBwdDPOp) { return success(); }
LogicalResult BackwardKernelBuilder::lowerDS(TileBwdDSOp) { return success(); }
LogicalResult BackwardKernelBuilder::lowerScoreGrad(TileBwdScoreOp op) {
  pendingScoreGrad = &op.getScore();
  return success();
}
LogicalResult BackwardKernelBuilder::lowerDV(TileBwdDVOp) { return success(); }
LogicalResult BackwardKernelBuilder::lowerDK(TileBwdDKOp) { return success(); }

/// The fused step of the pair, blocks of kRows query rows at a time (a
/// remainder row by row).
LogicalResult BackwardKernelBuilder::lowerDQ(TileBwdDQOp op) {
  Value partial = map.lookup(
      op->getParentOfType<QLoopOp>().getBody().front().getArgument(2));
  Value full = sub(pairQn, remu(pairQn, cidx(kRows)));
  loop(cidx(0), full, cidx(kRows), {}, [&](Value i0, ValueRange) {
    emitRowBlock(i0, kRows, pairG, partial);
    return SmallVector<Value>{};
  });
  forEach(full, pairQn, [&](Value i0) { emitRowBlock(i0, 1, pairG, partial); });
  // dV += Pᵀ dO and dK += dXᵀ Q over the pair's rows.
  Value base = add(mul(pairG, N), pairQ0);
  accumulateTile(DOs, base, pairQn, Dv, dVt, Pt);
  accumulateTile(Qs, base, pairQn, Dqk, dKt, Xt);
  return success();
}

/// dq[b, h] = scale dQs rows of head g, at the end of the item.
void BackwardKernelBuilder::emitWriteDQ(Value g, Value h) {
  forEach(cidx(0), N, [&](Value i) {
    Value row = add(mul(g, N), i);
    forEach(cidx(0), Dqk, [&](Value d) {
      Value x = memref::LoadOp::create(b, dQs, ValueRange{row, d});
      memref::StoreOp::create(b, fmul(x, scale), dq,
                              ValueRange{itemB, h, i, d});
    });
  });
}

LogicalResult BackwardKernelBuilder::lowerBwdStore(TileBwdStoreOp) {
  auto store = [&](Value buf, Value mem, Value len) {
    forEach(cidx(0), tileKn, [&](Value j) {
      Value row = add(tileK0, j);
      forEach(cidx(0), len, [&](Value d) {
        Value x = memref::LoadOp::create(b, buf, ValueRange{d, j});
        memref::StoreOp::create(b, x, mem, ValueRange{itemB, itemHk, row, d});
      });
    });
  };
  store(dKt, dk, Dqk);
  store(dVt, dv, Dv);
  return success();
}

//===----------------------------------------------------------------------===//
// The fused step of one query row
//===----------------------------------------------------------------------===//

SmallVector<Value> BackwardKernelBuilder::rowsTimesTile(Value rowsBuf, Value i0,
                                                        int64_t rows, Value len,
                                                        Value tileT) {
  SmallVector<Value> init(rows * cj, vsplat(0));
  auto l = loop(
      cidx(0), len, cidx(1), init,
      [&](Value d, ValueRange acc) -> SmallVector<Value> {
        SmallVector<Value> t;
        for (int64_t c = 0; c < cj; ++c)
          t.push_back(vector::LoadOp::create(b, vf32(), tileT,
                                             ValueRange{d, cidx(c * vl)}));
        SmallVector<Value> next;
        for (int64_t r = 0; r < rows; ++r) {
          Value x = bcast(memref::LoadOp::create(
              b, rowsBuf, ValueRange{add(i0, cidx(r)), d}));
          for (int64_t c = 0; c < cj; ++c)
            next.push_back(vector::FMAOp::create(b, x, t[c], acc[r * cj + c]));
        }
        return next;
      });
  return SmallVector<Value>(l.getResults());
}

void BackwardKernelBuilder::accumulateTile(Value rowsBuf, Value base, Value n,
                                           Value len, Value tileT, Value X) {
  auto block = [&](Value d0, int64_t nd) {
    SmallVector<Value> init;
    for (int64_t e = 0; e < nd; ++e)
      for (int64_t c = 0; c < cj; ++c)
        init.push_back(vector::LoadOp::create(
            b, vf32(), tileT, ValueRange{add(d0, cidx(e)), cidx(c * vl)}));
    auto l =
        loop(cidx(0), n, cidx(1), init,
             [&](Value i, ValueRange acc) -> SmallVector<Value> {
               SmallVector<Value> xv;
               for (int64_t c = 0; c < cj; ++c)
                 xv.push_back(vector::LoadOp::create(
                     b, vf32(), X, ValueRange{i, cidx(c * vl)}));
               SmallVector<Value> next;
               for (int64_t e = 0; e < nd; ++e) {
                 Value y = bcast(memref::LoadOp::create(
                     b, rowsBuf, ValueRange{add(base, i), add(d0, cidx(e))}));
                 for (int64_t c = 0; c < cj; ++c)
                   next.push_back(
                       vector::FMAOp::create(b, y, xv[c], acc[e * cj + c]));
               }
               return next;
             });
    for (int64_t e = 0; e < nd; ++e)
      for (int64_t c = 0; c < cj; ++c)
        vector::StoreOp::create(b, l.getResult(e * cj + c), tileT,
                                ValueRange{add(d0, cidx(e)), cidx(c * vl)});
  };
  Value full = sub(len, remu(len, cidx(4)));
  loop(cidx(0), full, cidx(4), {}, [&](Value d0, ValueRange) {
    block(d0, 4);
    return SmallVector<Value>{};
  });
  forEach(full, len, [&](Value d) { block(d, 1); });
}

/// The fused step for `rows` query rows q0 + i0 ...: S and dP as products
/// of the packed rows with the transposed tiles, then per element the
/// score, mask, P, dS and dX, then dV, dK and dq. Row blocks keep the tile
/// vectors loaded once for all their rows (the forward's register blocking,
/// along queries here).
void BackwardKernelBuilder::keyLanes(SmallVector<Value> &jIdx,
                                     SmallVector<Value> &inTile) {
  auto vidx = VectorType::get({vl}, b.getIndexType());
  Value step = vector::StepOp::create(b, vidx);
  Value last = bcast(toI64(sub(M, cidx(1))));
  for (int64_t c = 0; c < cj; ++c) {
    Value local = arith::AddIOp::create(b, bcast(cidx(c * vl)), step);
    inTile.push_back(arith::CmpIOp::create(b, P::ult, local, bcast(tileKn)));
    Value idx = arith::IndexCastOp::create(
        b, VectorType::get({vl}, b.getI64Type()),
        arith::AddIOp::create(b, bcast(tileK0), local));
    jIdx.push_back(arith::MinSIOp::create(b, idx, last));
  }
}

std::pair<Value, Value> BackwardKernelBuilder::scoreAndVisibility(
    Value x, Value row, int64_t c, ArrayRef<Value> jIdx, ArrayRef<Value> inTile,
    Value partial) {
  Value bI64 = toI64(itemB), hI64 = toI64(pairH), iI64 = toI64(row);
  Value s = x;
  if (pendingScore)
    s = emitRegion(b, *pendingScore, {x, bI64, hI64, iI64, jIdx[c]}, env);
  Value vis = inTile[c];
  if (pendingMask) {
    // Only partial pairs evaluate the mask; full ones see every key.
    Value m = emitRegion(b, *mask, {bI64, hI64, iI64, jIdx[c]}, env);
    if (!isa<VectorType>(m.getType()))
      m = bcast(m);
    Value all = bcast(arith::ConstantOp::create(b, b.getBoolAttr(true)));
    vis = arith::AndIOp::create(b, vis, select(partial, m, all));
  }
  return {s, vis};
}

void BackwardKernelBuilder::emitRowBlock(Value i0, int64_t rows, Value g,
                                         Value partial) {
  Value h = pairH;
  Value bI64 = toI64(itemB), hI64 = toI64(h);
  SmallVector<Value> jIdx, inTile;
  keyLanes(jIdx, inTile);
  // The block's first row in the item's packed rows.
  Value base = add(mul(g, N), add(pairQ0, i0));
  SmallVector<Value> x = rowsTimesTile(Qs, base, rows, Dqk, Kt);
  SmallVector<Value> dP = rowsTimesTile(DOs, base, rows, Dv, Vt);
  Value zero = vsplat(0), one = vsplat(1);
  SmallVector<Value> p(rows * cj), dx(rows * cj);
  for (int64_t r = 0; r < rows; ++r) {
    Value row = add(pairQ0, add(i0, cidx(r)));
    Value iI64 = toI64(row);
    Value lseI, dI, invL;
    if (kind == NormalizerKind::softmax)
      lseI = memref::LoadOp::create(b, lse, ValueRange{itemB, h, row});
    if (kind == NormalizerKind::softmax || rowNormalize)
      dI = memref::LoadOp::create(b, Dbuf, ValueRange{add(mul(g, N), row)});
    if (rowNormalize) {
      // 1 / l, and 0 for a row whose sum is 0 (its o is 0 and so are its
      // gradients).
      Value l =
          memref::LoadOp::create(b, Lbuf, ValueRange{add(mul(g, N), row)});
      invL = select(arith::CmpFOp::create(b, FP::OGT, l, cf32(0)),
                    arith::DivFOp::create(b, cf32(1), l), cf32(0));
    }
    for (int64_t c = 0; c < cj; ++c) {
      int64_t rc = r * cj + c;
      auto [s, vis] = scoreAndVisibility(x[rc], row, c, jIdx, inTile, partial);
      Value pc, dsc;
      switch (kind) {
      case NormalizerKind::softmax: {
        // A row with no visible key has lse = -inf and P = 0.
        Value rowEmpty = arith::CmpFOp::create(
            b, FP::OEQ, lseI, cf32(-std::numeric_limits<float>::infinity()));
        // Weights below e^-70 (relative to the row's total of 1) are
        // flushed to 0: their products with dP - D would be denormals,
        // which cost microcode assists in every FMA that reads them (ALiBi's
        // far keys: 1.5x the backward's time), for no change an fp32
        // gradient can show.
        Value z = fsub(s, bcast(lseI));
        Value tiny = arith::CmpFOp::create(b, FP::OLT, z, vsplat(-70.0f));
        Value e = select(tiny, zero, fexp(z));
        pc = select(vis, select(bcast(rowEmpty), zero, e), zero);
        dsc = fmul(pc, fsub(dP[rc], bcast(dI)));
        break;
      }
      case NormalizerKind::sigmoid: {
        Value z = fadd(s, bcast(bias));
        Value sg = arith::DivFOp::create(
            b, one, fadd(one, fexp(arith::NegFOp::create(b, z))));
        pc = select(vis, sg, zero);
        dsc = fmul(dP[rc], fmul(pc, fsub(one, pc)));
        break;
      }
      case NormalizerKind::relu: {
        int64_t power = tiled.getReluPower();
        Value rl = fmax(s, zero);
        Value rp = rl, dr = one; // r^power and power r^(power - 1)
        for (int64_t k = 1; k < power; ++k) {
          dr = fmul(dr, rl);
          rp = fmul(rp, rl);
        }
        if (power > 1)
          dr = fmul(dr, vsplat(float(power)));
        // torch.relu: derivative 0 at 0.
        dr = select(arith::CmpFOp::create(b, FP::OGT, s, zero), dr, zero);
        pc = select(vis, rp, zero);
        Value dp = dP[rc];
        if (rowNormalize) {
          // w = p / l: dp' = (dP - D) / l, and P for dV is w.
          pc = fmul(pc, bcast(invL));
          dp = fmul(fsub(dP[rc], bcast(dI)), bcast(invL));
        }
        dsc = select(vis, fmul(dp, dr), zero);
        break;
      }
      case NormalizerKind::none:
        pc = select(vis, s, zero);
        dsc = select(vis, dP[rc], zero);
        break;
      }
      p[rc] = pc;
      dx[rc] = pendingScoreGrad
                   ? emitRegionGradient(b, *pendingScoreGrad,
                                        {x[rc], bI64, hI64, iI64, jIdx[c]}, dsc,
                                        env, auxGrads)
                   : dsc;
      Value at = add(i0, cidx(r));
      vector::StoreOp::create(b, pc, Pt, ValueRange{at, cidx(c * vl)});
      vector::StoreOp::create(b, dx[rc], Xt, ValueRange{at, cidx(c * vl)});
    }
  }

  // dQs[rows] += Σ_j dX[r][j] Kn[j, :] (scaled when written out), four
  // vectors of d at a time, every row of the block at once.
  forEach(cidx(0), ceilDiv(Dpad, cidx(4 * vl)), [&](Value blk) {
    Value d0 = mul(blk, cidx(4 * vl));
    SmallVector<Value> qRows, init;
    for (int64_t r = 0; r < rows; ++r) {
      qRows.push_back(add(base, cidx(r)));
      for (int64_t e = 0; e < 4; ++e)
        init.push_back(vector::LoadOp::create(
            b, vf32(), dQs, ValueRange{qRows[r], add(d0, cidx(e * vl))}));
    }
    auto l = loop(cidx(0), tileKn, cidx(1), init,
                  [&](Value j, ValueRange acc) -> SmallVector<Value> {
                    SmallVector<Value> kv;
                    for (int64_t e = 0; e < 4; ++e)
                      kv.push_back(vector::LoadOp::create(
                          b, vf32(), Kn, ValueRange{j, add(d0, cidx(e * vl))}));
                    SmallVector<Value> next;
                    for (int64_t r = 0; r < rows; ++r) {
                      Value xj = bcast(memref::LoadOp::create(
                          b, Xt, ValueRange{add(i0, cidx(r)), j}));
                      for (int64_t e = 0; e < 4; ++e)
                        next.push_back(vector::FMAOp::create(b, xj, kv[e],
                                                             acc[r * 4 + e]));
                    }
                    return next;
                  });
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < 4; ++e)
        vector::StoreOp::create(b, l.getResult(r * 4 + e), dQs,
                                ValueRange{qRows[r], add(d0, cidx(e * vl))});
  });
}

LogicalResult mlir::attn::cpu::buildBackwardKernel(SpecOp spec,
                                                   ModuleOp module) {
  BackwardKernelBuilder kb(spec, module);
  return kb.build();
}
