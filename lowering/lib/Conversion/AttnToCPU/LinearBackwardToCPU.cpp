//===- LinearBackwardToCPU.cpp - the linear family's gradients on CPU -----===//
//
// The CPU patterns of attn.tiled_linear_attention_backward (see
// ChunkBackwardLowering): one work item per (b, hk) runs the query heads of
// its group one after the other (they add to the same dk, dv rows). The
// chunk length is r = ceil(sqrt(N)) steps, shortened to fit one chunk's
// states in 1 MiB where r / 4 steps or more fit: the checkpoints (one state
// per chunk) and the states of one chunk (one per step) take at most
// 5 sqrt(N) states, and 2 sqrt(N) for states too large to fit; inside a chunk
// the CPU runs the recurrence, forward to recompute the chunk's states, then
// backward step by step:
//
//   St = g Sp + phi_k corr^T, corr = v or beta (v - (g Sp)^T phi_k)
//   readout adjoint: dnum = scale do, or do / den and dden = -do.num / den^2
//   pass A (per feature row d, vector code along Dv):
//     inclusive: dS_d += phi_q[d] dnum;  dphi_q[d] = St_d . dnum + dden z_d
//     dcorr += phi_k[d] dS_d;  dphi_k[d] = dS_d . corr + dz_d
//   delta: dbeta = dcorr . (v - pred); dv += beta dcorr; dpred = -beta dcorr
//   pass B (per row d; fused into A without the delta rule):
//     delta: dS_d += phi_k[d] dpred;  dphi_k[d] += g_d Sp_d . dpred
//     gate:  dlog g_d = g_d (dS_d . Sp_d + dz_d zp_d);  dS_d *= g_d
//     exclusive: dS_d += phi_q[d] dnum;  dphi_q[d] += Sp_d . dnum + dden zp_d
//   then the feature maps' VJPs into dq, dk, and the gate's and beta's
//   chain rule through their regions into the aux gradients.
//
// The per-row dot products are vector accumulators reduced once per row.
// The state's adjoint (dS, dz) and the bonus's (du) live in scratch.
//
//===----------------------------------------------------------------------===//

#include "LinearBackwardToCPU.h"
#include "LinearKernelBase.h"
#include "attn/Conversion/RegionEmitter.h"
#include "attn/Conversion/TileLowering.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

namespace {

using P = arith::CmpIPredicate;

class LinearBackwardBuilder : public LinearKernelBase,
                              public ChunkBackwardLowering,
                              private LinearForm {
public:
  LinearBackwardBuilder(SpecOp spec, ModuleOp module, int64_t vectorWidth)
      : LinearKernelBase(
            spec, vectorWidth,
            spec.getTiledLinearAttentionBackward().getProjection().value_or(
                "")),
        LinearForm(spec.getTiledLinearAttentionBackward()),
        op(spec.getTiledLinearAttentionBackward()) {
    b.setInsertionPointToEnd(module.getBody());
  }
  LogicalResult build();

  ATTN_CHUNK_BACKWARD_LOWERING_PATTERNS

private:
  /// What a step computes before its state products.
  struct Step {
    Value tI64;
    Value g;    // a scalar gate's exp(gate), else 1 (vector gates: gBuf)
    Value beta; // delta rule
    Value c;    // exclusive: the bonus term's sum_d phi_q[d] u[d] phi_k[d]
  };
  /// A state (S and z) at row `row0` of the buffers S [rows, DvPad], z.
  struct StateRef {
    Value S, z, row0;
  };

  // Set-up.
  func::FuncOp createFunc();
  void emitPrologue(Block *entry);
  void allocBuffers();
  void emitItem(Value item);

  // Pieces of a step.
  /// phi_k (and phi_q), v_t, the gates, beta and the bonus term of step t.
  Step stageStep(Value t, bool withQuery);
  /// With the delta rule, corr = beta (v - pred), pred = (g Sp)^T
  /// phi_k (kept in predBuf).
  void emitCorrection(const Step &st, StateRef sp);
  /// to = g from + phi_k corr^T (S and z); `to` may be `from`.
  void advance(const Step &st, StateRef from, StateRef to);
  void forwardStep(Value t, StateRef from, StateRef to);
  /// One step backwards from the state before it (`sp`).
  void reverseStep(Value t, StateRef sp);
  /// dnumBuf and dden of the readout of step t: inclusive (the state after
  /// the step, `st` gives its rows) or exclusive (sp, plus c v_t).
  Value readoutAdjoint(const Step &st, StateRef sp, bool afterStep);
  /// dq[b, h, t] = vjp(phi_q); dk[b, hk, t] += vjp(phi_k); dv += dvRow.
  void storeRowGrads(Value t, bool query, bool key);
  void addGateGrad(const Step &st, Value d, Value dlogG);
  /// Pieces of reverseStep: the delta rule's adjoint into v and beta, the
  /// exclusive readout's bonus term.
  void emitDeltaValueAdjoint(const Step &st);
  void emitBonusAdjoint(const Step &st, Value dden);
  /// The per-feature gate's chain rule for dGbuf, d in SIMD lanes.
  void addVectorGateGrads(const Step &st);
  /// The feature indices c * vl + lane (i64 lanes), and a region's value
  /// as f32 lanes.
  Value featureLanes(Value c);
  Value toLanes(Value x);

  // Small helpers.
  Value gateAt(const Step &st, Value d) {
    return vecGate ? Value(memref::LoadOp::create(b, gBuf, ValueRange{d}))
                   : st.g;
  }
  Value ld(Value mem, ValueRange idx) {
    return memref::LoadOp::create(b, mem, idx);
  }
  void st(Value x, Value mem, ValueRange idx) {
    memref::StoreOp::create(b, x, mem, idx);
  }
  Value vecAt(Value mem, Value row, Value c) {
    return vector::LoadOp::create(b, vf32(), mem,
                                  ValueRange{row, mul(c, cidx(vl))});
  }
  void vecPut(Value x, Value mem, Value row, Value c) {
    vector::StoreOp::create(b, x, mem, ValueRange{row, mul(c, cidx(vl))});
  }
  Value vec1(Value mem, Value c) {
    return vector::LoadOp::create(b, vf32(), mem, ValueRange{mul(c, cidx(vl))});
  }
  void vec1Put(Value x, Value mem, Value c) {
    vector::StoreOp::create(b, x, mem, ValueRange{mul(c, cidx(vl))});
  }
  Value vfma(Value a, Value x, Value y) {
    return vector::FMAOp::create(b, a, x, y);
  }
  Value hsum(Value v) {
    // reassoc: a tree of shuffles, not 16 dependent scalar adds.
    return vector::ReductionOp::create(b, vector::CombiningKind::ADD, v,
                                       arith::FastMathFlags::reassoc);
  }
  /// mem[0 .. n) = 0 (1-D) or rows [r0, r0 + rows) of a 2-D buffer.
  void zero1(Value mem, Value n);
  /// A Dv-padded row buffer, vector by vector.
  void zeroVecs(Value mem) {
    forEach(cidx(0), nC, [&](Value c) { vec1Put(zeroV, mem, c); });
  }
  void zeroRows(Value mem, Value r0, Value rows);
  void copyState(StateRef from, StateRef to);
  /// buf[0 .. DvPad) = row [b, head, t, :] of `mem` (0 past Dv).
  void loadRow(Value mem, Value head, Value t, Value buf);
  /// mem[b, head, t, i] (+)= buf[i] for i < n.
  void storeRow(Value buf, Value mem, Value head, Value t, Value n,
                bool accumulate);

  /// The bytes one chunk's recomputed states may take (an L2's worth).
  static constexpr int64_t kChunkStatesBytes = int64_t(1) << 20;

  TiledLinearAttentionBackwardOp op;
  KernelEnv env1; // the regions' gradients, scalar (one lane)
  // Kernel arguments beyond the forward's, the aux gradients by name.
  Value dout, dq, dk, dv;
  llvm::StringMap<Value> auxGrads;
  Value scale, Hkv, dphiV, nD, nC, dvPad, chunkLen, nChunks;
  // Scratch: checkpoints and one chunk's states; the working state and its
  // adjoint; per-step rows.
  Value Ck, zCk, Seg, zSeg, S, z, dS, dz;
  Value phiQ, phiK, gBuf, dGbuf, uBuf, du, dfq, dfk, dxBuf;
  Value vBuf, doBuf, corr, predBuf, dnumBuf, dcorr, dvRow;
  Value zeroV, fZero;
  // The work item and the head and chunk being lowered.
  Value hk, h, bI64, hI64;
  ChunkCursor chunk;
};

} // namespace

//===----------------------------------------------------------------------===//
// Set-up
//===----------------------------------------------------------------------===//

func::FuncOp LinearBackwardBuilder::createFunc() {
  return createBackwardKernelFunc(op.getGradientInputs());
}

void LinearBackwardBuilder::emitPrologue(Block *entry) {
  bindCanonical(entry);
  env.vectorWidth = vl;
  bindRegionEnv(entry, env);
  env1 = env;
  env1.vectorWidth = 1;
  // dlse is not read: a linear attention has no lse.
  BackwardArgs args = bindBackwardArgs(entry, op.getGradientInputs());
  dout = args.dout;
  dq = args.dq;
  dk = args.dk;
  dv = args.dv;
  auxGrads = std::move(args.auxGrads);
  scale = normalize ? cf32(1) : emitScale(op.getScale(), env);
  Hkv = memref::DimOp::create(b, k, 1);
  zeroV = vsplat(0);
  fZero = cf32(0);
  allocBuffers();
}

void LinearBackwardBuilder::allocBuffers() {
  Type f32 = b.getF32Type(), f64 = b.getF64Type();
  int64_t dyn = ShapedType::kDynamic;
  // The verifier makes the q and k maps agree whenever they change the
  // dimension, so phi_k's width is phi_q's.
  dphiV = dphi(fmK);
  nC = ceilDiv(Dv, cidx(vl));
  dvPad = mul(nC, cidx(vl));
  // Chunks of r = ceil(sqrt(N)) steps (causal), shortened so that one
  // chunk's states fit a 1 MiB L2 (the reverse steps read them back), but
  // not below r / 4 (the checkpoints, N / C states, stay within 4 sqrt(N)).
  // The non-causal key scan is one chunk of M keys.
  Value nF = arith::UIToFPOp::create(b, f64, toI64(N));
  Value root = math::CeilOp::create(b, math::SqrtOp::create(b, nF));
  Value r =
      maxu(cidx(1), toIdx(arith::FPToUIOp::create(b, b.getI64Type(), root)));
  // States too large for that (one over 4 MiB / sqrt(N)) keep r: shorter
  // chunks would only add checkpoints.
  Value stateBytes = mul(mul(dphiV, dvPad), cidx(4));
  Value fitL2 = divu(cidx(kChunkStatesBytes), stateBytes);
  Value shortest = ceilDiv(r, cidx(4));
  chunkLen = select(cmp(P::uge, fitL2, shortest), minu(r, fitL2), r);
  if (!causal)
    chunkLen = maxu(cidx(1), M);
  nChunks = ceilDiv(causal ? N : M, chunkLen);
  auto mat = MemRefType::get({dyn, dyn}, f32);
  auto vec = MemRefType::get({dyn}, f32);
  Value ckRows = causal ? mul(nChunks, dphiV) : cidx(1);
  Value segRows = causal ? mul(chunkLen, dphiV) : cidx(1);
  Ck = allocScratch(mat, ValueRange{ckRows, dvPad});
  zCk = allocScratch(vec, ValueRange{ckRows});
  Seg = allocScratch(mat, ValueRange{segRows, dvPad});
  zSeg = allocScratch(vec, ValueRange{segRows});
  S = allocScratch(mat, ValueRange{dphiV, dvPad});
  z = allocScratch(vec, ValueRange{dphiV});
  dS = allocScratch(mat, ValueRange{dphiV, dvPad});
  dz = allocScratch(vec, ValueRange{dphiV});
  for (Value *buf : {&phiQ, &phiK, &uBuf, &du, &dfq, &dfk})
    *buf = allocScratch(vec, ValueRange{dphiV});
  // Feature vectors in whole SIMD vectors (the per-feature gates).
  nD = ceilDiv(dphiV, cidx(vl));
  gBuf = allocScratch(vec, ValueRange{mul(nD, cidx(vl))});
  dGbuf = allocScratch(vec, ValueRange{mul(nD, cidx(vl))});
  dxBuf = allocScratch(vec, ValueRange{Dqk});
  for (Value *buf : {&vBuf, &doBuf, &dnumBuf, &dcorr})
    *buf = allocScratch(vec, ValueRange{dvPad});
  // Without the delta rule the update's values are v itself and v's
  // gradient is the update's (dcorr): the same buffers, no copies per step.
  corr = vBuf;
  dvRow = dcorr;
  if (delta)
    for (Value *buf : {&corr, &predBuf, &dvRow})
      *buf = allocScratch(vec, ValueRange{dvPad});
}

LogicalResult LinearBackwardBuilder::build() {
  if (!op)
    return spec.emitError() << "no attn.tiled_linear_attention_backward to "
                               "lower";
  auto fn = createFunc();
  Block *entry = &fn.getBody().front();
  emitPrologue(entry);
  Value begin = toIdx(entry->getArgument(entry->getNumArguments() - 2));
  Value end = toIdx(entry->getArgument(entry->getNumArguments() - 1));
  beginGuardedBody();
  LogicalResult result = success();
  forEach(begin, end, [&](Value item) {
    emitItem(item);
    // The group's query heads one after the other: they add to the same
    // dk, dv rows.
    forEach(cidx(0), G, [&](Value g) {
      h = add(mul(hk, G), g);
      hI64 = toI64(h);
      Block &body = op.getBodyBlock();
      map.map(body.getArgument(0), bIdx);
      map.map(body.getArgument(1), h);
      if (failed(lowerChunkBackwardBlock(body, *this)))
        result = failure();
    });
  });
  finishKernel();
  return result;
}

/// The item's dk, dv rows start at zero: its heads add to them.
void LinearBackwardBuilder::emitItem(Value item) {
  bIdx = divu(item, Hkv);
  hk = remu(item, Hkv);
  bI64 = toI64(bIdx);
  forEach(cidx(0), M, [&](Value j) {
    forEach(cidx(0), Dqk,
            [&](Value i) { st(fZero, dk, ValueRange{bIdx, hk, j, i}); });
    forEach(cidx(0), Dv,
            [&](Value i) { st(fZero, dv, ValueRange{bIdx, hk, j, i}); });
  });
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

void LinearBackwardBuilder::zero1(Value mem, Value n) {
  forEach(cidx(0), n, [&](Value i) { st(fZero, mem, ValueRange{i}); });
}

void LinearBackwardBuilder::zeroRows(Value mem, Value r0, Value rows) {
  forEach(cidx(0), rows, [&](Value r) {
    forEach(cidx(0), nC, [&](Value c) { vecPut(zeroV, mem, add(r0, r), c); });
  });
}

void LinearBackwardBuilder::copyState(StateRef from, StateRef to) {
  forEach(cidx(0), dphiV, [&](Value d) {
    forEach(cidx(0), nC, [&](Value c) {
      vecPut(vecAt(from.S, add(from.row0, d), c), to.S, add(to.row0, d), c);
    });
    st(ld(from.z, ValueRange{add(from.row0, d)}), to.z,
       ValueRange{add(to.row0, d)});
  });
}

void LinearBackwardBuilder::loadRow(Value mem, Value head, Value t, Value buf) {
  vec1Put(zeroV, buf, sub(nC, cidx(1)));
  forEach(cidx(0), Dv, [&](Value i) {
    st(loadF32(mem, ValueRange{bIdx, head, t, i}), buf, ValueRange{i});
  });
}

void LinearBackwardBuilder::storeRow(Value buf, Value mem, Value head, Value t,
                                     Value n, bool accumulate) {
  forEach(cidx(0), n, [&](Value i) {
    Value x = ld(buf, ValueRange{i});
    if (accumulate)
      x = fadd(x, ld(mem, ValueRange{bIdx, head, t, i}));
    st(x, mem, ValueRange{bIdx, head, t, i});
  });
}

//===----------------------------------------------------------------------===//
// Pieces of a step
//===----------------------------------------------------------------------===//

LinearBackwardBuilder::Step LinearBackwardBuilder::stageStep(Value t,
                                                             bool withQuery) {
  Step s;
  s.tI64 = toI64(t);
  s.g = cf32(1);
  emitFeatureMap(fmK, k, hk, t, phiK);
  if (withQuery)
    emitFeatureMap(fmQ, q, h, t, phiQ);
  loadRow(v, hk, t, vBuf);
  if (hasGate && !vecGate)
    s.g = toF32(fexp(toF32(emitRegion(
        b, op.getGate(), {bI64, hI64, s.tI64, toI64(cidx(0))}, env))));
  // Per-feature gates in SIMD lanes over d (gBuf is padded to whole
  // vectors; the lanes past Dphi read clamped indices and are never used).
  if (vecGate)
    forEach(cidx(0), nD, [&](Value c) {
      Value lg = emitRegion(b, op.getGate(),
                            {bI64, hI64, s.tI64, featureLanes(c)}, env);
      vec1Put(math::ExpOp::create(b, toLanes(lg)), gBuf, c);
    });
  if (delta)
    s.beta = toF32(emitRegion(b, op.getBeta(), {bI64, hI64, s.tI64}, env));
  s.c = fZero;
  if (exclusive && hasBonus && withQuery)
    s.c = loop(cidx(0), dphiV, cidx(1), {fZero}, [&](Value d, ValueRange a) {
            Value x = fmul(ld(phiQ, ValueRange{d}), ld(uBuf, ValueRange{d}));
            return SmallVector<Value>{fma(x, ld(phiK, ValueRange{d}), a[0])};
          }).getResult(0);
  return s;
}

void LinearBackwardBuilder::emitCorrection(const Step &s, StateRef sp) {
  if (!delta)
    return; // corr is vBuf
  // pred = sum_d phi_k[d] g_d Sp_d, vector chunks outermost so the
  // accumulator stays in a register.
  forEach(cidx(0), nC, [&](Value c) {
    auto acc =
        loop(cidx(0), dphiV, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
          Value w = fmul(ld(phiK, ValueRange{d}), gateAt(s, d));
          Value x = vecAt(sp.S, add(sp.row0, d), c);
          return SmallVector<Value>{vfma(bcast(w), x, a[0])};
        });
    Value pred = acc.getResult(0);
    vec1Put(pred, predBuf, c);
    Value diff = arith::SubFOp::create(b, vec1(vBuf, c), pred);
    vec1Put(arith::MulFOp::create(b, diff, bcast(s.beta)), corr, c);
  });
}

void LinearBackwardBuilder::advance(const Step &s, StateRef from, StateRef to) {
  forEach(cidx(0), dphiV, [&](Value d) {
    Value g = gateAt(s, d), fk = ld(phiK, ValueRange{d});
    Value gv = bcast(g), fkv = bcast(fk);
    Value src = add(from.row0, d), dst = add(to.row0, d);
    forEach(cidx(0), nC, [&](Value c) {
      Value sv = arith::MulFOp::create(b, vecAt(from.S, src, c), gv);
      vecPut(vfma(fkv, vec1(corr, c), sv), to.S, dst, c);
    });
    st(fma(g, ld(from.z, ValueRange{src}), fk), to.z, ValueRange{dst});
  });
}

void LinearBackwardBuilder::forwardStep(Value t, StateRef from, StateRef to) {
  Step step = stageStep(t, /*withQuery=*/false);
  emitCorrection(step, from);
  advance(step, from, to);
}

Value LinearBackwardBuilder::readoutAdjoint(const Step &s, StateRef sp,
                                            bool afterStep) {
  if (!normalize) {
    forEach(cidx(0), nC, [&](Value c) {
      vec1Put(arith::MulFOp::create(b, vec1(doBuf, c), bcast(scale)), dnumBuf,
              c);
    });
    return fZero;
  }
  // num = sum_d phi_q[d] S_d (+ c v_t), den = phi_q . z (+ c), with S the
  // state after the step (inclusive: g Sp + phi_k corr^T) or before it.
  bool bonusTerm = !afterStep && exclusive && hasBonus;
  Value extra = bonusTerm ? s.c : fZero;
  forEach(cidx(0), nC, [&](Value c) {
    vec1Put(bonusTerm
                ? Value(arith::MulFOp::create(b, vec1(vBuf, c), bcast(extra)))
                : zeroV,
            dnumBuf, c);
  });
  auto den = loop(cidx(0), dphiV, cidx(1), {extra}, [&](Value d, ValueRange a) {
    Value fq = ld(phiQ, ValueRange{d}), row = add(sp.row0, d);
    Value g = gateAt(s, d), fk = ld(phiK, ValueRange{d});
    Value fqv = bcast(fq), gv = bcast(g), fkv = bcast(fk);
    forEach(cidx(0), nC, [&](Value c) {
      Value x = vecAt(sp.S, row, c);
      if (afterStep)
        x = vfma(fkv, vec1(corr, c), arith::MulFOp::create(b, x, gv));
      vec1Put(vfma(fqv, x, vec1(dnumBuf, c)), dnumBuf, c);
    });
    Value zd = ld(sp.z, ValueRange{row});
    if (afterStep)
      zd = fma(g, zd, fk);
    return SmallVector<Value>{fma(fq, zd, a[0])};
  });
  Value dn = den.getResult(0);
  // dnum = do / den, dden = -(do . num) / den^2; both 0 where den = 0 (the
  // output is 0 there).
  Value nz = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, dn, fZero);
  Value inv = select(nz, arith::DivFOp::create(b, cf32(1), dn), fZero);
  auto dotNum = loop(cidx(0), nC, cidx(1), {zeroV}, [&](Value c, ValueRange a) {
    Value dov = vec1(doBuf, c);
    Value num = vec1(dnumBuf, c);
    vec1Put(arith::MulFOp::create(b, dov, bcast(inv)), dnumBuf, c);
    return SmallVector<Value>{vfma(dov, num, a[0])};
  });
  Value dden =
      arith::NegFOp::create(b, fmul(hsum(dotNum.getResult(0)), fmul(inv, inv)));
  return dden;
}

void LinearBackwardBuilder::addGateGrad(const Step &s, Value d, Value dlogG) {
  if (auxGrads.empty())
    return;
  Value seed = vector::BroadcastOp::create(
      b, VectorType::get({1}, b.getF32Type()), dlogG);
  emitRegionGradient(b, op.getGate(), {bI64, hI64, s.tI64, toI64(d)}, seed,
                     env1, auxGrads, /*itemOwnsBH=*/true);
}

void LinearBackwardBuilder::addVectorGateGrads(const Step &s) {
  if (auxGrads.empty())
    return;
  // dGbuf's lanes past Dphi are 0: their clamped lookups add nothing.
  forEach(cidx(0), nD, [&](Value c) {
    emitRegionGradient(b, op.getGate(), {bI64, hI64, s.tI64, featureLanes(c)},
                       vec1(dGbuf, c), env, auxGrads, /*itemOwnsBH=*/true);
  });
}

Value LinearBackwardBuilder::featureLanes(Value c) {
  auto vidx = VectorType::get({vl}, b.getIndexType());
  Value lanes = arith::AddIOp::create(b, bcast(mul(c, cidx(vl))),
                                      vector::StepOp::create(b, vidx));
  return arith::IndexCastOp::create(b, VectorType::get({vl}, b.getI64Type()),
                                    lanes);
}

Value LinearBackwardBuilder::toLanes(Value x) {
  auto t = VectorType::get({vl}, b.getF32Type());
  if (isa<VectorType>(x.getType()))
    return x.getType() == t ? x : Value(arith::TruncFOp::create(b, t, x));
  return bcast(toF32(x));
}

void LinearBackwardBuilder::reverseStep(Value t, StateRef sp) {
  Step s = stageStep(t, /*withQuery=*/true);
  emitCorrection(s, sp);
  loadRow(dout, h, t, doBuf);
  Value dden = readoutAdjoint(s, sp, /*afterStep=*/!exclusive);
  bool fuse = !delta;
  // dvRow: dcorr without the delta rule, else written whole below.
  zeroVecs(dcorr);

  // Pass B's work on row d with dS_d's vectors `ds` (loaded): delta, gate
  // and exclusive readout; returns the new ds and the row's dot products.
  auto rowB = [&](Value d, Value row, Value c, Value ds, Value dpred,
                  SmallVector<Value> &acc) {
    Value sp1 = vecAt(sp.S, row, c);
    if (delta) {
      ds = vfma(bcast(ld(phiK, ValueRange{d})), dpred, ds);
      acc[2] = vfma(sp1, dpred, acc[2]);
    }
    if (hasGate) {
      acc[3] = vfma(ds, sp1, acc[3]);
      ds = arith::MulFOp::create(b, ds, bcast(gateAt(s, d)));
    }
    if (exclusive) {
      Value dn = vec1(dnumBuf, c);
      ds = vfma(bcast(ld(phiQ, ValueRange{d})), dn, ds);
      acc[0] = vfma(sp1, dn, acc[0]);
    }
    return ds;
  };
  // After a row's vectors: its scalar results from the accumulators
  // acc = {dphi_q dot, dphi_k dot, delta dot, gate dot}.
  auto finishRowB = [&](Value d, Value row, ArrayRef<Value> acc,
                        Value gateSum) -> Value {
    Value g = gateAt(s, d), fq = ld(phiQ, ValueRange{d});
    Value dzd = ld(dz, ValueRange{d});
    if (delta)
      st(fma(g, hsum(acc[2]), ld(dfk, ValueRange{d})), dfk, ValueRange{d});
    if (hasGate) {
      Value dl = fmul(g, fma(dzd, ld(sp.z, ValueRange{row}), hsum(acc[3])));
      dzd = fmul(dzd, g);
      if (vecGate)
        st(dl, dGbuf, ValueRange{d});
      else
        gateSum = fadd(gateSum, dl);
    }
    if (exclusive) {
      Value q = fma(dden, ld(sp.z, ValueRange{row}), hsum(acc[0]));
      st(fadd(ld(dfq, ValueRange{d}), q), dfq, ValueRange{d});
      dzd = fma(dden, fq, dzd);
    }
    st(dzd, dz, ValueRange{d});
    return gateSum;
  };

  // Pass A: the readout (inclusive) and the update's adjoints; pass B fused
  // in when there is no delta rule (nothing waits for dcorr then).
  auto passA =
      loop(cidx(0), dphiV, cidx(1), {fZero}, [&](Value d, ValueRange gs) {
        Value row = add(sp.row0, d);
        Value fq = ld(phiQ, ValueRange{d}), fk = ld(phiK, ValueRange{d});
        Value g = gateAt(s, d);
        Value fqv = bcast(fq), fkv = bcast(fk), gv = bcast(g);
        SmallVector<Value> init(4, zeroV);
        auto vecs =
            loop(cidx(0), nC, cidx(1), init, [&](Value c, ValueRange a) {
              SmallVector<Value> acc(a.begin(), a.end());
              Value ds = vecAt(dS, d, c);
              if (!exclusive) {
                Value dn = vec1(dnumBuf, c);
                Value stv =
                    vfma(fkv, vec1(corr, c),
                         arith::MulFOp::create(b, vecAt(sp.S, row, c), gv));
                ds = vfma(fqv, dn, ds);
                acc[0] = vfma(stv, dn, acc[0]);
              }
              vec1Put(vfma(fkv, ds, vec1(dcorr, c)), dcorr, c);
              acc[1] = vfma(ds, vec1(corr, c), acc[1]);
              if (fuse)
                ds = rowB(d, row, c, ds, Value(), acc);
              vecPut(ds, dS, d, c);
              return acc;
            });
        SmallVector<Value> acc(vecs.getResults());
        Value dzd = ld(dz, ValueRange{d});
        if (!exclusive) {
          Value zt = fma(g, ld(sp.z, ValueRange{row}), fk);
          st(fma(dden, zt, hsum(acc[0])), dfq, ValueRange{d});
          dzd = fma(dden, fq, dzd);
          st(dzd, dz, ValueRange{d});
        } else {
          st(fZero, dfq, ValueRange{d});
        }
        st(fadd(hsum(acc[1]), dzd), dfk, ValueRange{d});
        Value gateSum = gs[0];
        if (fuse)
          gateSum = finishRowB(d, row, acc, gateSum);
        return SmallVector<Value>{gateSum};
      });
  Value dlogGScalar = passA.getResult(0);

  // The update's adjoint into v (and beta), then pass B with the delta
  // rule's dpred = -beta dcorr.
  if (delta) {
    emitDeltaValueAdjoint(s);
    auto passB =
        loop(cidx(0), dphiV, cidx(1), {fZero}, [&](Value d, ValueRange gs) {
          Value row = add(sp.row0, d);
          SmallVector<Value> init(4, zeroV);
          auto vecs =
              loop(cidx(0), nC, cidx(1), init, [&](Value c, ValueRange a) {
                SmallVector<Value> acc(a.begin(), a.end());
                Value ds =
                    rowB(d, row, c, vecAt(dS, d, c), vec1(dcorr, c), acc);
                vecPut(ds, dS, d, c);
                return acc;
              });
          SmallVector<Value> acc(vecs.getResults());
          return SmallVector<Value>{finishRowB(d, row, acc, gs[0])};
        });
    dlogGScalar = passB.getResult(0);
  }
  if (hasGate && !vecGate)
    addGateGrad(s, cidx(0), dlogGScalar);
  if (vecGate)
    addVectorGateGrads(s);

  if (exclusive && hasBonus)
    emitBonusAdjoint(s, dden);
  storeRowGrads(t, /*query=*/true, /*key=*/true);
}

/// The delta rule's update adjoint into v and beta: dv = beta dcorr,
/// dbeta = dcorr . (v - pred) through the beta region; dcorr becomes
/// dpred = -beta dcorr for pass B.
void LinearBackwardBuilder::emitDeltaValueAdjoint(const Step &s) {
  auto dbeta = loop(cidx(0), nC, cidx(1), {zeroV}, [&](Value c, ValueRange a) {
    Value dc = vec1(dcorr, c);
    Value diff = arith::SubFOp::create(b, vec1(vBuf, c), vec1(predBuf, c));
    vec1Put(arith::MulFOp::create(b, dc, bcast(s.beta)), dvRow, c);
    vec1Put(
        arith::MulFOp::create(b, dc, bcast(arith::NegFOp::create(b, s.beta))),
        dcorr, c);
    return SmallVector<Value>{vfma(dc, diff, a[0])};
  });
  if (!auxGrads.empty()) {
    Value seed = vector::BroadcastOp::create(
        b, VectorType::get({1}, b.getF32Type()), hsum(dbeta.getResult(0)));
    emitRegionGradient(b, op.getBeta(), {bI64, hI64, s.tI64}, seed, env1,
                       auxGrads, /*itemOwnsBH=*/true);
  }
}

/// The exclusive readout's bonus term c v_t, c = sum_d phi_q u phi_k: into
/// dv, dphi_q, dphi_k and the bonus's adjoint du.
void LinearBackwardBuilder::emitBonusAdjoint(const Step &s, Value dden) {
  auto dcv = loop(cidx(0), nC, cidx(1), {zeroV}, [&](Value c, ValueRange a) {
    Value dn = vec1(dnumBuf, c);
    vec1Put(vfma(bcast(s.c), dn, vec1(dvRow, c)), dvRow, c);
    return SmallVector<Value>{vfma(dn, vec1(vBuf, c), a[0])};
  });
  Value dc = fadd(dden, hsum(dcv.getResult(0)));
  forEach(cidx(0), dphiV, [&](Value d) {
    Value u = ld(uBuf, ValueRange{d}), fq = ld(phiQ, ValueRange{d}),
          fk = ld(phiK, ValueRange{d});
    Value dcu = fmul(dc, u);
    st(fma(dcu, fk, ld(dfq, ValueRange{d})), dfq, ValueRange{d});
    st(fma(dcu, fq, ld(dfk, ValueRange{d})), dfk, ValueRange{d});
    st(fma(fmul(dc, fq), fk, ld(du, ValueRange{d})), du, ValueRange{d});
  });
}

void LinearBackwardBuilder::storeRowGrads(Value t, bool query, bool key) {
  if (query) {
    zero1(dxBuf, Dqk);
    emitFeatureVJP(fmQ, q, h, t, dfq, dxBuf);
    storeRow(dxBuf, dq, h, t, Dqk, /*accumulate=*/false);
  }
  if (key) {
    zero1(dxBuf, Dqk);
    emitFeatureVJP(fmK, k, hk, t, dfk, dxBuf);
    storeRow(dxBuf, dk, hk, t, Dqk, /*accumulate=*/true);
    storeRow(dvRow, dv, hk, t, Dv, /*accumulate=*/true);
  }
}

//===----------------------------------------------------------------------===//
// The forward scan
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardBuilder::lowerInitState(ChunkInitStateOp) {
  zeroRows(S, cidx(0), dphiV);
  zero1(z, dphiV);
  if (exclusive && hasBonus)
    forEach(cidx(0), dphiV, [&](Value d) {
      st(toF32(emitRegion(b, op.getBonus(), {hI64, toI64(d)}, env)), uBuf,
         ValueRange{d});
    });
  return success();
}

LogicalResult LinearBackwardBuilder::lowerChunkLoop(ChunkLoopOp loopOp) {
  return lowerChunkScan(b, loopOp.getBody().front(), nChunks, chunkLen,
                        causal ? N : M, /*reverse=*/false, chunk, *this);
}

LogicalResult LinearBackwardBuilder::lowerSave(ChunkBwdSaveOp) {
  copyState({S, z, cidx(0)}, {Ck, zCk, mul(chunk.idx, dphiV)});
  return success();
}

// The chunk's features, values and gates are computed step by step where
// the update and the gradient need them.
LogicalResult LinearBackwardBuilder::lowerFeatures(ChunkFeaturesOp) {
  return success();
}
LogicalResult LinearBackwardBuilder::lowerValues(ChunkValuesOp) {
  return success();
}
LogicalResult LinearBackwardBuilder::lowerLogGates(ChunkLogGatesOp) {
  return success();
}
LogicalResult LinearBackwardBuilder::lowerDelta(ChunkDeltaOp) {
  return success(); // advance() applies it (emitCorrection)
}

LogicalResult LinearBackwardBuilder::lowerUpdate(ChunkUpdateOp) {
  StateRef st{S, z, cidx(0)};
  forEach(chunk.t0, chunk.t1, [&](Value t) { forwardStep(t, st, st); });
  return success();
}

//===----------------------------------------------------------------------===//
// The reverse scan
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardBuilder::lowerBwdInit(ChunkBwdInitOp) {
  zeroRows(dS, cidx(0), dphiV);
  zero1(dz, dphiV);
  zero1(du, dphiV);
  if (vecGate)
    zero1(dGbuf, mul(nD, cidx(vl)));
  return success();
}

LogicalResult
LinearBackwardBuilder::lowerReverseLoop(ChunkBwdReverseLoopOp loopOp) {
  return lowerChunkScan(b, loopOp.getBody().front(), nChunks, chunkLen, N,
                        /*reverse=*/true, chunk, *this);
}

/// The chunk's checkpoint into Seg's first slot, then each step from its
/// slot into the next: Seg[i] is the state before step t0 + i.
LogicalResult LinearBackwardBuilder::lowerRestore(ChunkBwdRestoreOp) {
  copyState({Ck, zCk, mul(chunk.idx, dphiV)}, {Seg, zSeg, cidx(0)});
  forEach(chunk.t0, sub(chunk.t1, cidx(1)), [&](Value t) {
    Value slot = mul(sub(t, chunk.t0), dphiV);
    forwardStep(t, {Seg, zSeg, slot}, {Seg, zSeg, add(slot, dphiV)});
  });
  return success();
}

LogicalResult LinearBackwardBuilder::lowerGrad(ChunkBwdGradOp) {
  Value n = sub(chunk.t1, chunk.t0);
  forEach(cidx(0), n, [&](Value i) {
    Value local = sub(sub(n, cidx(1)), i);
    reverseStep(add(chunk.t0, local), {Seg, zSeg, mul(local, dphiV)});
  });
  return success();
}

LogicalResult LinearBackwardBuilder::lowerFinish(ChunkBwdFinishOp) {
  if (!hasBonus || auxGrads.empty())
    return success();
  forEach(cidx(0), dphiV, [&](Value d) {
    Value seed = vector::BroadcastOp::create(
        b, VectorType::get({1}, b.getF32Type()), ld(du, ValueRange{d}));
    // The bonus's arguments are (h, d): not the (b, h) an item owns.
    emitRegionGradient(b, op.getBonus(), {hI64, toI64(d)}, seed, env1, auxGrads,
                       /*itemOwnsBH=*/false);
  });
  return success();
}

//===----------------------------------------------------------------------===//
// Non-causal: every query reads the final state S = sum_j phi_k v_j^T
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardBuilder::lowerReadoutAllGrad(ChunkBwdReadoutAllOp) {
  zeroRows(dS, cidx(0), dphiV);
  zero1(dz, dphiV);
  StateRef fin{S, z, cidx(0)};
  forEach(cidx(0), N, [&](Value t) {
    Step s;
    s.tI64 = toI64(t);
    s.g = cf32(1);
    s.c = fZero;
    emitFeatureMap(fmQ, q, h, t, phiQ);
    loadRow(dout, h, t, doBuf);
    Value dden = readoutAdjoint(s, fin, /*afterStep=*/false);
    forEach(cidx(0), dphiV, [&](Value d) {
      Value fq = ld(phiQ, ValueRange{d}), fqv = bcast(fq);
      auto acc =
          loop(cidx(0), nC, cidx(1), {zeroV}, [&](Value c, ValueRange a) {
            Value dn = vec1(dnumBuf, c);
            vecPut(vfma(fqv, dn, vecAt(dS, d, c)), dS, d, c);
            return SmallVector<Value>{vfma(vecAt(S, d, c), dn, a[0])};
          });
      st(fma(dden, ld(z, ValueRange{d}), hsum(acc.getResult(0))), dfq,
         ValueRange{d});
      st(fma(dden, fq, ld(dz, ValueRange{d})), dz, ValueRange{d});
    });
    storeRowGrads(t, /*query=*/true, /*key=*/false);
  });
  return success();
}

LogicalResult LinearBackwardBuilder::lowerKeysAll(ChunkBwdKeysAllOp) {
  forEach(cidx(0), M, [&](Value j) {
    emitFeatureMap(fmK, k, hk, j, phiK);
    loadRow(v, hk, j, vBuf);
    zeroVecs(dvRow);
    forEach(cidx(0), dphiV, [&](Value d) {
      Value fkv = bcast(ld(phiK, ValueRange{d}));
      auto acc =
          loop(cidx(0), nC, cidx(1), {zeroV}, [&](Value c, ValueRange a) {
            Value ds = vecAt(dS, d, c);
            vec1Put(vfma(fkv, ds, vec1(dvRow, c)), dvRow, c);
            return SmallVector<Value>{vfma(ds, vec1(vBuf, c), a[0])};
          });
      st(fadd(hsum(acc.getResult(0)), ld(dz, ValueRange{d})), dfk,
         ValueRange{d});
    });
    storeRowGrads(j, /*query=*/false, /*key=*/true);
  });
  return success();
}

LogicalResult mlir::attn::cpu::buildLinearBackwardKernel(SpecOp spec,
                                                         ModuleOp module,
                                                         int64_t vectorWidth) {
  LinearBackwardBuilder builder(spec, module, vectorWidth);
  return builder.build();
}
