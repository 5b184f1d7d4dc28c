//===- LinearToCPU.cpp - linear attention as a CPU kernel -----------------===//
//
// The CPU patterns of the chunk ops (attn.tiled_linear_attention, see
// ChunkLowering): one work item per (b, h), the state S
// (Dphi x Dv, Dv padded to the vector width) lives in a heap buffer. The
// recurrent form runs every step as vector code along Dv:
//
//   phi_q, phi_k = feature maps of q_t, k_t;  g = exp(gate)  (per feature d)
//   exclusive:  acc = sum_d phi_q[d] S[d,:],  bonus term added after
//   delta:      w = sum_d phi_k[d] g_d S[d,:];  u = beta (v - w)
//   S[d,:] = g_d S[d,:] + phi_k[d] (delta ? u : v);  z = g z + phi_k
//   inclusive:  acc = sum_d phi_q[d] S[d,:]  (fused into the update loop)
//   o_t = scale * acc   or   acc / (phi_q . z)   with normalize
//
// Loops run vector chunks of Dv outermost and features innermost, so the
// accumulator stays in a register. This form is also the decode kernel; the
// chunked (matmul) form for long prefills is described before
// allocChunkBuffers. The builder's members follow the algorithm: set-up
// (flags, buffers), one work item (state in and out), the chunked form
// (staging, scores, outputs, state update) and the recurrence (gates, delta
// rule, state update with readout, normalizer).
//
//===----------------------------------------------------------------------===//

#include "LinearToCPU.h"
#include "LinearKernelBase.h"
#include "attn/Conversion/TileLowering.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include <limits>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

namespace {

using P = arith::CmpIPredicate;

/// The chunk ops in one of two forms: chunked (the chunk ops one by one on
/// chunks of `chunk` steps) or the recurrence (chunks of one step, where
/// the patterns of a step fuse: the update reads out on the way, and the
/// output row is stored after it).
class LinearKernelBuilder : public LinearKernelBase,
                            public ChunkLowering,
                            private LinearForm {
public:
  LinearKernelBuilder(SpecOp spec, ModuleOp module, int64_t vectorWidth,
                      int64_t chunk)
      : LinearKernelBase(
            spec, vectorWidth,
            spec.getTiledLinearAttention().getProjection().value_or("")),
        op(spec.getTiledLinearAttention()), chunk(chunk) {
    b.setInsertionPointToEnd(module.getBody());
  }
  LogicalResult build();

  ATTN_CHUNK_LOWERING_PATTERNS

private:
  /// Values of one chunk of the chunked form.
  struct Chunk {
    Value bI64, hI64; // the gate region's b and h
    Value t0, cn;     // the first step and the number of steps
    Value last;       // cn - 1 (from the decayed features on)
    Value lane;       // vector.step over vl index lanes (the scores)
    Value vZero64;    // a vector of f64 zeros (the scores)
  };
  /// Values of one step of the recurrence.
  struct Step {
    Value t, tI64;
    Value scalarG;         // exp(gate) of a scalar gate, else 1
    Value beta;            // delta rule
    Value bonusDot;        // exclusive: sum_d phi_q[d] u[d] phi_k[d]
    Value exclusiveFactor; // exclusive and normalized: the readout factor
  };

  /// Register-blocked C[r][c] = init(r, c) + sum_{k < kEnd} a(r, k) * bv(k, c)
  /// over rows [0, rows) and column vectors [0, nCols) (c counts vectors);
  /// kEnd(rowBlockEnd) bounds k for a block of rows (causal blocks).
  void gemm(Value rows, Value nCols, function_ref<Value(Value)> kEnd,
            function_ref<Value(Value, Value)> a,
            function_ref<Value(Value, Value)> bv,
            function_ref<Value(Value, Value)> init,
            function_ref<void(Value, Value, Value)> store);
  VectorType vf64() { return VectorType::get({vl}, b.getF64Type()); }
  /// The vector at mem[row, c * vl] (c counts vectors).
  Value loadVec(Value mem, Value row, Value c) {
    return vector::LoadOp::create(
        b, vf32(), mem, ValueRange{row, arith::MulIOp::create(b, c, cidx(vl))});
  }
  void storeVec(Value x, Value mem, Value row, Value c) {
    vector::StoreOp::create(
        b, x, mem, ValueRange{row, arith::MulIOp::create(b, c, cidx(vl))});
  }

  // Set-up: the spec's flags, the buffers.
  void readSpec();
  void allocBuffers();
  void allocChunkBuffers();

  // Pieces both forms share.
  /// Loads v_t into vBuf (zero padded).
  void loadV(Value t);
  /// o[b, h, t, :] = acc chunk c (lanes below Dv) * factor.
  void storeO(Value t, Value c, Value acc, Value factor);
  /// 1 / (phi_q . z + extra), 0 when the denominator is 0 (normalize only;
  /// else the scale).
  Value normFactor(Value extra);

  // One work item (b, h).
  LogicalResult emitWorkItem(Value item);
  /// S and z start at zero, or from the carried state (decode).
  void loadState();
  /// Writes the final state back (decode).
  void writeState();
  /// uBuf[d] = bonus(h, d) (the exclusive readout's bonus).
  void stageBonus();

  // The chunked form.
  /// 1. Features, values and cumulative log gates of the chunk.
  void stageChunk(const Chunk &ch);
  void stageChunkStep(const Chunk &ch, Value i);
  void stageLogGates(const Chunk &ch, Value i, Value t);
  /// 2. The intra-chunk scores A[t][s] (s <= t).
  void emitScores(Chunk &ch);
  void emitScoreBlockVecGate(const Chunk &ch, Value rb, Value r0, Value rows);
  void emitScoreDiagonal(const Chunk &ch, Value r0, Value rows);
  void emitScoreBlock(const Chunk &ch, Value rb, Value r0, Value rows);
  /// The causal mask of columns s0 .. s0 + vl of row t: s <= t.
  Value causalKeep(const Chunk &ch, Value t, Value s0);
  /// exp(L[t] - L[s]) for those columns, exp(0) where masked.
  Value maskedDecay(const Chunk &ch, Value t, Value s0, Value lt, Value ls);
  /// A[t][s0 ..] = aV, zero where masked.
  void maskStore(const Chunk &ch, Value t, Value s0, Value aV);
  /// exp(hi - lo) with the difference in f64.
  Value expDiff(Value hi, Value lo);
  /// dst[t][d] = src[t][d] * exp(L[hi][d] - L[lo][d]) for d < w.
  void decayRow(Value dst, Value src, Value t, Value w, Value hiRow,
                Value loRow);
  /// 3. Outputs: Oc = A Vc (intra) + Qt~ S (inter), then o.
  void emitChunkOutputs(const Chunk &ch);
  void storeChunkOutputs(const Chunk &ch);
  /// The normalized readout's factor of row t: 1 / (rowsum(A) + Qt~ . z).
  Value chunkNormFactor(Value t);
  /// 4. State: z = gamma z + sum_s Kh[s]; S = gamma S + Kh^T Vc.
  void updateChunkState(const Chunk &ch);

  // The recurrence.
  /// The gates g_d = exp(gate) of the step: scalarG, or gBuf per feature.
  void stageGates(Step &st);
  Value gateAt(const Step &st, Value d) {
    return vecGate ? Value(memref::LoadOp::create(b, gBuf, ValueRange{d}))
                   : st.scalarG;
  }
  Value bonusDot();
  /// Delta rule: w = sum_d phi_k[d] g_d S[d,:]; vBuf <- beta (v - w).
  void deltaCorrection(const Step &st);
  /// z = g z + phi_k.
  void updateZ(const Step &st);
  /// S = g S + phi_k v^T, reading out into wBuf on the way (causal).
  void updateStateAndRead(const Step &st);
  void storeStepOutput(const Step &st);
  /// Non-causal: every query reads the final state.
  void emitNoncausalReadout();

  TiledLinearAttentionOp op;
  /// Time steps per chunk for the chunked form; 0 selects the recurrence.
  int64_t chunk;

  // The spec's flags are LinearForm's; and the form it runs in.
  bool chunked = false;
  Value scale;
  // Sizes: feature widths, Dv in vectors and padded, the gate width.
  Value dq, dk, nC, dvPad, gw;
  // S [Dphi x DvPad] and z; feature vectors, gates, bonus, v and readout.
  Value S, z, phiQ, phiK, gBuf, uBuf, vBuf, wBuf;
  Value zeroV, zero;
  // The chunked form: C steps per chunk (cPad padded to vl), its buffers
  // and f64 constants.
  Value C, cPad;
  Value Qc, Kc, Kt, Vc, Lc, Lt, A, Oc, Qd, Kh, Qh, Kr;
  Value cf64Zero, floorLog;
  // The work item.
  Value h, hk, bI64, hI64;
  Value stateIn, zIn;
  // The chunk (chunked form) or step (recurrence) being lowered.
  Chunk curChunk;
  Step curStep;
};

} // namespace

void LinearKernelBuilder::gemm(Value rows, Value nCols,
                               function_ref<Value(Value)> kEnd,
                               function_ref<Value(Value, Value)> a,
                               function_ref<Value(Value, Value)> bv,
                               function_ref<Value(Value, Value)> init,
                               function_ref<void(Value, Value, Value)> store) {
  constexpr int64_t R = 4, CV = 4;
  auto block = [&](Value r0, int64_t nr, Value c0, int64_t nc) {
    SmallVector<Value> acc;
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j)
        acc.push_back(init(arith::AddIOp::create(b, r0, cidx(i)),
                           arith::AddIOp::create(b, c0, cidx(j))));
    Value kn = kEnd(arith::AddIOp::create(b, r0, cidx(nr)));
    auto f = loop(cidx(0), kn, cidx(1), acc, [&](Value k, ValueRange cur) {
      SmallVector<Value> bvs;
      for (int64_t j = 0; j < nc; ++j)
        bvs.push_back(bv(k, arith::AddIOp::create(b, c0, cidx(j))));
      SmallVector<Value> next;
      for (int64_t i = 0; i < nr; ++i) {
        Value av = bcast(a(arith::AddIOp::create(b, r0, cidx(i)), k));
        for (int64_t j = 0; j < nc; ++j)
          next.push_back(vector::FMAOp::create(b, av, bvs[j], cur[i * nc + j]));
      }
      return next;
    });
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j)
        store(arith::AddIOp::create(b, r0, cidx(i)),
              arith::AddIOp::create(b, c0, cidx(j)), f.getResult(i * nc + j));
  };
  Value rFull =
      arith::SubIOp::create(b, rows, arith::RemUIOp::create(b, rows, cidx(R)));
  Value cFull = arith::SubIOp::create(
      b, nCols, arith::RemUIOp::create(b, nCols, cidx(CV)));
  auto rowsLoop = [&](Value lb, Value ub, int64_t nr) {
    loop(lb, ub, cidx(nr), {}, [&](Value r0, ValueRange) {
      loop(cidx(0), cFull, cidx(CV), {}, [&](Value c0, ValueRange) {
        block(r0, nr, c0, CV);
        return SmallVector<Value>{};
      });
      loop(cFull, nCols, cidx(1), {}, [&](Value c0, ValueRange) {
        block(r0, nr, c0, 1);
        return SmallVector<Value>{};
      });
      return SmallVector<Value>{};
    });
  };
  rowsLoop(cidx(0), rFull, R);
  rowsLoop(rFull, rows, 1);
}

//===----------------------------------------------------------------------===//
// Set-up
//===----------------------------------------------------------------------===//

void LinearKernelBuilder::readSpec() {
  static_cast<LinearForm &>(*this) = LinearForm(op);
  chunked = chunk > 0 && causal && !exclusive && !delta;
}

void LinearKernelBuilder::allocBuffers() {
  // Buffers: S [Dphi x DvPad] on the heap (taylor2 features can be large),
  // feature vectors and per-feature gates/bonus on the heap too.
  Type f32 = b.getF32Type();
  dq = dphi(op.getFeatureMapQ());
  dk = dphi(op.getFeatureMapK());
  nC = arith::CeilDivUIOp::create(b, Dv, cidx(vl));
  dvPad = arith::MulIOp::create(b, nC, cidx(vl));
  auto dyn1 = MemRefType::get({ShapedType::kDynamic}, f32);
  S = allocScratch(
      MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{dk, dvPad});
  z = allocScratch(dyn1, ValueRange{dk});
  phiQ = allocScratch(dyn1, ValueRange{dq});
  phiK = allocScratch(dyn1, ValueRange{dk});
  gBuf = allocScratch(dyn1, ValueRange{dk});
  uBuf = allocScratch(dyn1, ValueRange{dk});
  vBuf = allocScratch(dyn1, ValueRange{dvPad});
  wBuf = allocScratch(dyn1, ValueRange{dvPad});
}

// ---------------------------------------------------------------------
// The chunked form (causal, inclusive, no delta rule). Per chunk of C steps
// with cumulative log gates L (f64, each log gate clamped at -80, relative
// to the chunk start):
//   A[t][s] = sum_d phiq[t,d] phik[s,d] exp(L[t,d] - L[s,d])   (s <= t)
//   o_t     = scale (sum_s A[t][s] v_s + sum_d phiq[t,d] exp(L[t,d]) S[d,:])
//   S[d,:]  = exp(L[C-1,d]) S[d,:] + sum_s phik[s,d] exp(L[C-1,d]-L[s,d]) v_s
// Every exponent is L[a] - L[b] with b <= a inside the chunk (L[-1] = 0):
// the exact decay the recurrence applies between steps b and a, of either
// sign, so positive (growing) gates are exact too; a factor overflows only
// where the state grows by more than e^88 inside one chunk, as the
// recurrence's own state would. The masked upper triangle (s > t) takes
// exp(0) instead of its difference, which with decaying gates would
// overflow (inf * 0 = NaN).
// ---------------------------------------------------------------------
void LinearKernelBuilder::allocChunkBuffers() {
  Type f32 = b.getF32Type(), f64 = b.getF64Type();
  C = cidx(chunk > 0 ? chunk : 1);
  int64_t cPadStatic = ((std::max<int64_t>(chunk, 1) + vl - 1) / vl) * vl;
  cPad = cidx(cPadStatic);
  // Feature widths: only identity-width maps share one d range for q and k;
  // the chunked path reads phi_q and phi_k over dk (equal when both apply).
  gw = vecGate ? dk : cidx(1); // gate width
  if (chunked) {
    auto dyn2 = [&](Type t) {
      return MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, t);
    };
    Qc = allocScratch(dyn2(f32), ValueRange{C, dq});
    Kc = allocScratch(dyn2(f32), ValueRange{C, dk});
    Kt = allocScratch(dyn2(f32), ValueRange{dk, cPad});
    Vc = allocScratch(dyn2(f32), ValueRange{C, dvPad});
    Lc = allocScratch(dyn2(f64), ValueRange{C, gw});
    Lt = allocScratch(dyn2(f64), ValueRange{gw, cPad});
    A = allocScratch(dyn2(f32), ValueRange{C, cPad});
    Oc = allocScratch(dyn2(f32), ValueRange{C, dvPad});
    Qd = allocScratch(dyn2(f32), ValueRange{C, dq});
    Kh = allocScratch(dyn2(f32), ValueRange{C, dk});
    Qh = allocScratch(dyn2(f32), ValueRange{C, dk});
    Kr = allocScratch(dyn2(f32), ValueRange{dk, cPad});
  }
  cf64Zero = arith::ConstantOp::create(b, b.getF64FloatAttr(0));
  floorLog = arith::ConstantOp::create(b, b.getF64FloatAttr(-80.0));
}

//===----------------------------------------------------------------------===//
// Pieces both forms share
//===----------------------------------------------------------------------===//

void LinearKernelBuilder::loadV(Value t) {
  loop(cidx(0), dvPad, cidx(1), {}, [&](Value i, ValueRange) {
    Value inRange = arith::CmpIOp::create(b, P::ult, i, Dv);
    auto ifOp = scf::IfOp::create(b, TypeRange{b.getF32Type()}, inRange, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      scf::YieldOp::create(b, loadF32(v, ValueRange{bIdx, hk, t, i}));
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, zero);
    }
    memref::StoreOp::create(b, ifOp.getResult(0), vBuf, ValueRange{i});
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::storeO(Value t, Value c, Value acc, Value factor) {
  Value outV = arith::MulFOp::create(b, acc, bcast(factor));
  Value base = arith::MulIOp::create(b, c, cidx(vl));
  for (int64_t l = 0; l < vl; ++l) {
    Value col = arith::AddIOp::create(b, base, cidx(l));
    ifThen(arith::CmpIOp::create(b, P::ult, col, Dv), [&] {
      Value e = vector::ExtractOp::create(b, outV, ArrayRef<int64_t>{l});
      memref::StoreOp::create(b, e, o, ValueRange{bIdx, h, t, col});
    });
  }
}

Value LinearKernelBuilder::normFactor(Value extra) {
  if (!normalize)
    return scale;
  auto den = loop(cidx(0), dq, cidx(1), {zero}, [&](Value d, ValueRange a) {
    Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
    Value zd = memref::LoadOp::create(b, z, ValueRange{d});
    return SmallVector<Value>{
        arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, qd, zd))};
  });
  Value dn = den.getResult(0);
  if (extra)
    dn = arith::AddFOp::create(b, dn, extra);
  Value nz = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, dn, zero);
  return arith::SelectOp::create(b, nz, arith::DivFOp::create(b, cf32(1), dn),
                                 zero);
}

//===----------------------------------------------------------------------===//
// The kernel and its work items
//===----------------------------------------------------------------------===//

LogicalResult LinearKernelBuilder::build() {
  auto fn = createKernelFunc();
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  env.vectorWidth = vl;
  bindRegionEnv(entry, env);

  readSpec();
  scale = emitScale(op.getScale(), env);
  if (normalize)
    scale = cf32(1);
  allocBuffers();
  Value begin = toIdx(entry->getArgument(entry->getNumArguments() - 2));
  Value end = toIdx(entry->getArgument(entry->getNumArguments() - 1));
  zeroV = vsplat(0);
  zero = cf32(0);
  allocChunkBuffers();

  // The work items run only when every scratch buffer was allocated.
  beginGuardedBody();
  LogicalResult result = success();
  loop(begin, end, cidx(1), {}, [&](Value item, ValueRange) {
    if (failed(emitWorkItem(item)))
      result = failure();
    return SmallVector<Value>{};
  });
  finishKernel();
  return result;
}

LogicalResult LinearKernelBuilder::emitWorkItem(Value item) {
  h = arith::RemUIOp::create(b, item, Hq);
  bIdx = arith::DivUIOp::create(b, item, Hq);
  hk = arith::DivUIOp::create(b, h, G);
  bI64 = toI64(bIdx);
  hI64 = toI64(h);
  stateIn = env.aux.lookup("state");
  zIn = env.aux.lookup("zstate");
  Block &body = op.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), h);
  return lowerChunkBlock(body, *this);
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

LogicalResult LinearKernelBuilder::lowerInitState(ChunkInitStateOp) {
  loadState();
  if (exclusive && !op.getBonus().empty())
    stageBonus();
  return success();
}

/// Chunks of `chunk` steps, or the recurrence over every step (N, or the M
/// keys of a non-causal attention).
LogicalResult LinearKernelBuilder::lowerChunkLoop(ChunkLoopOp loopOp) {
  Block &step = loopOp.getBody().front();
  LogicalResult result = success();
  if (chunked) {
    curChunk = Chunk();
    curChunk.bI64 = toI64(bIdx);
    curChunk.hI64 = toI64(h);
    Value nChunks = arith::CeilDivUIOp::create(b, N, C);
    loop(cidx(0), nChunks, cidx(1), {}, [&](Value index, ValueRange) {
      curChunk.t0 = arith::MulIOp::create(b, index, C);
      curChunk.cn = arith::MinUIOp::create(
          b, C, arith::SubIOp::create(b, N, curChunk.t0));
      map.map(step.getArgument(0), curChunk.t0);
      if (failed(lowerChunkBlock(step, *this)))
        result = failure();
      return SmallVector<Value>{};
    });
    return result;
  }
  Value steps = causal ? N : M;
  loop(cidx(0), steps, cidx(1), {}, [&](Value t, ValueRange) {
    curStep = Step();
    curStep.t = t;
    curStep.tI64 = toI64(t);
    map.map(step.getArgument(0), t);
    if (failed(lowerChunkBlock(step, *this)))
      result = failure();
    return SmallVector<Value>{};
  });
  return result;
}

/// The chunked form stages features, values and gates in one loop when the
/// scores need them (lowerIntra); the recurrence computes them per step.
LogicalResult LinearKernelBuilder::lowerFeatures(ChunkFeaturesOp f) {
  if (chunked)
    return success();
  if (f.getQuery())
    emitFeatureMap(op.getFeatureMapQ(), q, h, curStep.t, phiQ);
  else
    emitFeatureMap(op.getFeatureMapK(), k, hk, curStep.t, phiK);
  return success();
}

LogicalResult LinearKernelBuilder::lowerValues(ChunkValuesOp) {
  if (!chunked)
    loadV(curStep.t);
  return success();
}

LogicalResult LinearKernelBuilder::lowerLogGates(ChunkLogGatesOp) {
  if (!chunked)
    stageGates(curStep);
  return success();
}

/// Chunked: stage the chunk, then A. The recurrence's "chunk" is one step:
/// its only score is the exclusive readout's bonus term.
LogicalResult LinearKernelBuilder::lowerIntra(ChunkIntraOp) {
  if (chunked) {
    stageChunk(curChunk);
    emitScores(curChunk);
    return success();
  }
  if (exclusive)
    curStep.bonusDot = bonusDot();
  return success();
}

LogicalResult LinearKernelBuilder::lowerDelta(ChunkDeltaOp d) {
  if (chunked)
    return d.emitOpError() << "the CPU's chunked form has no delta rule";
  curStep.beta =
      toF32(emitRegion(b, op.getBeta(), {bI64, hI64, curStep.tI64}, env));
  deltaCorrection(curStep);
  return success();
}

/// Chunked: the decay-weighted features, then O = A V + Qt~ S. The
/// recurrence reads out in lowerUpdate (inclusive: fused into the update
/// loop); the exclusive normalized readout's factor uses the state before.
LogicalResult LinearKernelBuilder::lowerReadout(ChunkReadoutOp) {
  if (!chunked) {
    if (exclusive && normalize)
      curStep.exclusiveFactor = normFactor(curStep.bonusDot);
    return success();
  }
  //   Qt~[t][d] = phiq[t,d] exp(L[t,d]),  Kh[s][d] = phik[s,d]
  //   exp(L[last,d] - L[s,d]), gamma[d] = exp(L[last,d]).
  Chunk &ch = curChunk;
  ch.last = arith::SubIOp::create(b, ch.cn, cidx(1));
  loop(cidx(0), ch.cn, cidx(1), {}, [&](Value t, ValueRange) {
    decayRow(Qd, Qc, t, dq, t, Value());
    decayRow(Kh, Kc, t, dk, ch.last, t);
    return SmallVector<Value>{};
  });
  emitChunkOutputs(ch);
  return success();
}

LogicalResult LinearKernelBuilder::lowerStore(ChunkStoreOp) {
  if (chunked)
    storeChunkOutputs(curChunk);
  return success(); // the recurrence stores after the update
}

LogicalResult LinearKernelBuilder::lowerUpdate(ChunkUpdateOp) {
  if (chunked) {
    updateChunkState(curChunk);
    return success();
  }
  // Update S (and z), reading out inclusive / exclusive on the way.
  updateZ(curStep);
  updateStateAndRead(curStep);
  if (causal)
    storeStepOutput(curStep);
  return success();
}

LogicalResult LinearKernelBuilder::lowerStoreState(ChunkStoreStateOp) {
  writeState();
  return success();
}

LogicalResult LinearKernelBuilder::lowerReadoutAll(ChunkReadoutAllOp) {
  emitNoncausalReadout();
  return success();
}

void LinearKernelBuilder::loadState() {
  Type f32 = b.getF32Type();
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    memref::StoreOp::create(
        b,
        zIn ? Value(memref::LoadOp::create(b, zIn, ValueRange{bIdx, h, d}))
            : zero,
        z, ValueRange{d});
    loop(cidx(0), dvPad, cidx(1), {}, [&](Value c, ValueRange) {
      Value x = zero;
      if (stateIn) {
        Value inRange = arith::CmpIOp::create(b, P::ult, c, Dv);
        auto ifOp = scf::IfOp::create(b, TypeRange{f32}, inRange, true);
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        scf::YieldOp::create(b, Value(memref::LoadOp::create(
                                    b, stateIn, ValueRange{bIdx, h, d, c})));
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, zero);
        b.setInsertionPointAfter(ifOp);
        x = ifOp.getResult(0);
      }
      memref::StoreOp::create(b, x, S, ValueRange{d, c});
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::writeState() {
  if (!stateIn)
    return;
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    if (zIn)
      memref::StoreOp::create(b, memref::LoadOp::create(b, z, ValueRange{d}),
                              zIn, ValueRange{bIdx, h, d});
    loop(cidx(0), Dv, cidx(1), {}, [&](Value c, ValueRange) {
      memref::StoreOp::create(b, memref::LoadOp::create(b, S, ValueRange{d, c}),
                              stateIn, ValueRange{bIdx, h, d, c});
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::stageBonus() {
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    Value u = emitRegion(b, op.getBonus(), {hI64, toI64(d)}, env);
    memref::StoreOp::create(b, toF32(u), uBuf, ValueRange{d});
    return SmallVector<Value>{};
  });
}

//===----------------------------------------------------------------------===//
// The chunked form
//===----------------------------------------------------------------------===//

void LinearKernelBuilder::stageChunk(const Chunk &ch) {
  loop(cidx(0), ch.cn, cidx(1), {}, [&](Value i, ValueRange) {
    stageChunkStep(ch, i);
    return SmallVector<Value>{};
  });
  // Pad columns s >= cn: zero keys (masked anyway).
  loop(ch.cn, cPad, cidx(1), {}, [&](Value i, ValueRange) {
    loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(b, zero, Kt, ValueRange{d, i});
      return SmallVector<Value>{};
    });
    loop(cidx(0), gw, cidx(1), {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(b, cf64Zero, Lt, ValueRange{d, i});
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::stageChunkStep(const Chunk &ch, Value i) {
  Value t = arith::AddIOp::create(b, ch.t0, i);
  emitFeatureMap(op.getFeatureMapQ(), q, h, t, phiQ);
  emitFeatureMap(op.getFeatureMapK(), k, hk, t, phiK);
  loadV(t);
  loop(cidx(0), dq, cidx(1), {}, [&](Value d, ValueRange) {
    memref::StoreOp::create(b, memref::LoadOp::create(b, phiQ, ValueRange{d}),
                            Qc, ValueRange{i, d});
    return SmallVector<Value>{};
  });
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
    memref::StoreOp::create(b, kd, Kc, ValueRange{i, d});
    memref::StoreOp::create(b, kd, Kt, ValueRange{d, i});
    return SmallVector<Value>{};
  });
  loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
    Value col = arith::MulIOp::create(b, c, cidx(vl));
    vector::StoreOp::create(
        b, vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col}), Vc,
        ValueRange{i, col});
    return SmallVector<Value>{};
  });
  stageLogGates(ch, i, t);
}

void LinearKernelBuilder::stageLogGates(const Chunk &ch, Value i, Value t) {
  // Lc[i][d] = Lt[d][i] = L[i-1][d] + max(gate(t, d), -80).
  loop(cidx(0), gw, cidx(1), {}, [&](Value d, ValueRange) {
    Value lg = cf64Zero;
    if (hasGate) {
      lg = emitRegion(b, op.getGate(), {ch.bI64, ch.hI64, toI64(t), toI64(d)},
                      env);
      lg = arith::MaximumFOp::create(b, lg, floorLog);
    }
    Value isFirst = arith::CmpIOp::create(b, P::eq, i, cidx(0));
    Value iPrev = arith::SelectOp::create(b, isFirst, cidx(0),
                                          arith::SubIOp::create(b, i, cidx(1)));
    Value prev = arith::SelectOp::create(
        b, isFirst, cf64Zero,
        memref::LoadOp::create(b, Lc, ValueRange{iPrev, d}));
    Value cum = arith::AddFOp::create(b, prev, lg);
    memref::StoreOp::create(b, cum, Lc, ValueRange{i, d});
    memref::StoreOp::create(b, cum, Lt, ValueRange{d, i});
    return SmallVector<Value>{};
  });
}

// 2. A[t][s] (s <= t), vectorized along s, in blocks of vl rows. For a row
// block starting at r0 and the columns s < r0 before it, with the block's
// first row as reference point:
//   A[t][s] = sum_d (phiq[t,d] e^{L[t,d]-L[r0,d]}) (phik[s,d]
//   e^{L[r0,d]-L[s,d]})
// is a GEMM of exact decays over the steps s..r0 and r0..t (each <= 1 for
// decaying gates; either one overflows only where the state of the
// recurrence grows as much). The diagonal block takes e^{L[t,d]-L[s,d]} per
// element.
void LinearKernelBuilder::emitScores(Chunk &ch) {
  auto vidx = VectorType::get({vl}, b.getIndexType());
  ch.lane = vector::StepOp::create(b, vidx);
  ch.vZero64 = vector::BroadcastOp::create(b, vf64(), cf64Zero);
  Value nRB = arith::CeilDivUIOp::create(b, ch.cn, cidx(vl));
  if (vecGate) {
    loop(cidx(0), ch.cn, cidx(1), {}, [&](Value t, ValueRange) {
      Value r0 = arith::MulIOp::create(
          b, arith::DivUIOp::create(b, t, cidx(vl)), cidx(vl));
      decayRow(Qh, Qc, t, dk, t, r0);
      return SmallVector<Value>{};
    });
  }
  loop(cidx(0), nRB, cidx(1), {}, [&](Value rb, ValueRange) {
    Value r0 = arith::MulIOp::create(b, rb, cidx(vl));
    Value rows = arith::MinUIOp::create(b, cidx(vl),
                                        arith::SubIOp::create(b, ch.cn, r0));
    if (vecGate)
      emitScoreBlockVecGate(ch, rb, r0, rows);
    else
      emitScoreBlock(ch, rb, r0, rows);
    return SmallVector<Value>{};
  });
}

Value LinearKernelBuilder::causalKeep(const Chunk &ch, Value t, Value s0) {
  auto vidx = VectorType::get({vl}, b.getIndexType());
  Value sIdx = arith::AddIOp::create(
      b, vector::BroadcastOp::create(b, vidx, s0), ch.lane);
  return arith::CmpIOp::create(b, P::ule, sIdx,
                               vector::BroadcastOp::create(b, vidx, t));
}

// The masked differences (s > t) would overflow for decaying gates.
Value LinearKernelBuilder::maskedDecay(const Chunk &ch, Value t, Value s0,
                                       Value lt, Value ls) {
  Value diff = arith::SelectOp::create(
      b, causalKeep(ch, t, s0), arith::SubFOp::create(b, lt, ls), ch.vZero64);
  return math::ExpOp::create(b, arith::TruncFOp::create(b, vf32(), diff));
}

void LinearKernelBuilder::maskStore(const Chunk &ch, Value t, Value s0,
                                    Value aV) {
  vector::StoreOp::create(
      b, arith::SelectOp::create(b, causalKeep(ch, t, s0), aV, zeroV), A,
      ValueRange{t, s0});
}

void LinearKernelBuilder::emitScoreBlockVecGate(const Chunk &ch, Value rb,
                                                Value r0, Value rows) {
  // Kr[d][s] = phik[s,d] e^{L[r0,d]-L[s,d]} for s < r0.
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    Value lr = vector::BroadcastOp::create(
        b, vf64(), memref::LoadOp::create(b, Lc, ValueRange{r0, d}));
    loop(cidx(0), r0, cidx(vl), {}, [&](Value s0, ValueRange) {
      Value diff = arith::SubFOp::create(
          b, lr, vector::LoadOp::create(b, vf64(), Lt, ValueRange{d, s0}));
      Value e =
          math::ExpOp::create(b, arith::TruncFOp::create(b, vf32(), diff));
      Value kv = vector::LoadOp::create(b, vf32(), Kt, ValueRange{d, s0});
      vector::StoreOp::create(b, arith::MulFOp::create(b, kv, e), Kr,
                              ValueRange{d, s0});
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
  gemm(
      rows, rb, [&](Value) { return dk; },
      [&](Value i, Value d) {
        return Value(memref::LoadOp::create(
            b, Qh, ValueRange{arith::AddIOp::create(b, r0, i), d}));
      },
      [&](Value d, Value sv) { return loadVec(Kr, d, sv); },
      [&](Value, Value) { return zeroV; },
      [&](Value i, Value sv, Value v) {
        storeVec(v, A, arith::AddIOp::create(b, r0, i), sv);
      });
  emitScoreDiagonal(ch, r0, rows);
}

// The diagonal block of a row block, element-wise decay.
void LinearKernelBuilder::emitScoreDiagonal(const Chunk &ch, Value r0,
                                            Value rows) {
  loop(cidx(0), rows, cidx(1), {}, [&](Value i, ValueRange) {
    Value t = arith::AddIOp::create(b, r0, i);
    auto acc = loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
      Value qd = memref::LoadOp::create(b, Qc, ValueRange{t, d});
      Value kv = vector::LoadOp::create(b, vf32(), Kt, ValueRange{d, r0});
      Value lt = vector::BroadcastOp::create(
          b, vf64(), memref::LoadOp::create(b, Lc, ValueRange{t, d}));
      Value e =
          maskedDecay(ch, t, r0, lt,
                      vector::LoadOp::create(b, vf64(), Lt, ValueRange{d, r0}));
      return SmallVector<Value>{vector::FMAOp::create(
          b, bcast(qd), arith::MulFOp::create(b, kv, e), a[0])};
    });
    maskStore(ch, t, r0, acc.getResult(0));
    return SmallVector<Value>{};
  });
}

// No gate or a scalar gate: A = phiq phik^T over the columns up to the end
// of this row block, then the scalar decay e^{L[t]-L[s]}.
void LinearKernelBuilder::emitScoreBlock(const Chunk &ch, Value rb, Value r0,
                                         Value rows) {
  Value nCols = arith::AddIOp::create(b, rb, cidx(1));
  gemm(
      rows, nCols, [&](Value) { return dk; },
      [&](Value i, Value d) {
        return Value(memref::LoadOp::create(
            b, Qc, ValueRange{arith::AddIOp::create(b, r0, i), d}));
      },
      [&](Value d, Value sv) { return loadVec(Kt, d, sv); },
      [&](Value, Value) { return zeroV; },
      [&](Value i, Value sv, Value v) {
        Value t = arith::AddIOp::create(b, r0, i);
        Value s0 = arith::MulIOp::create(b, sv, cidx(vl));
        if (hasGate) {
          Value lt = vector::BroadcastOp::create(
              b, vf64(), memref::LoadOp::create(b, Lc, ValueRange{t, cidx(0)}));
          v = arith::MulFOp::create(
              b, v,
              maskedDecay(ch, t, s0, lt,
                          vector::LoadOp::create(b, vf64(), Lt,
                                                 ValueRange{cidx(0), s0})));
        }
        maskStore(ch, t, s0, v);
      });
}

Value LinearKernelBuilder::expDiff(Value hi, Value lo) {
  // Of either sign: callers pass cumulative log gates with lo's step at or
  // before hi's.
  Value d = arith::SubFOp::create(b, hi, lo);
  return math::ExpOp::create(b, arith::TruncFOp::create(b, b.getF32Type(), d));
}

// Vectorized along d; L rows are the cumulative log gates, row lo at or
// before row hi; a null row stands for 0; without a gate this is a copy.
void LinearKernelBuilder::decayRow(Value dst, Value src, Value t, Value w,
                                   Value hiRow, Value loRow) {
  Type f32 = b.getF32Type();
  Value scalarFactor;
  if (hasGate && !vecGate) {
    Value hi =
        hiRow ? Value(memref::LoadOp::create(b, Lc, ValueRange{hiRow, cidx(0)}))
              : cf64Zero;
    Value lo =
        loRow ? Value(memref::LoadOp::create(b, Lc, ValueRange{loRow, cidx(0)}))
              : cf64Zero;
    scalarFactor = expDiff(hi, lo);
  }
  auto body = [&](Value d, bool vec) {
    Value x =
        vec ? Value(vector::LoadOp::create(b, vf32(), src, ValueRange{t, d}))
            : Value(memref::LoadOp::create(b, src, ValueRange{t, d}));
    if (hasGate && !vecGate) {
      x = arith::MulFOp::create(b, x, vec ? bcast(scalarFactor) : scalarFactor);
    } else if (vecGate) {
      auto row = [&](Value r) -> Value {
        if (!r)
          return vec ? Value(vector::BroadcastOp::create(b, vf64(), cf64Zero))
                     : cf64Zero;
        return vec ? Value(vector::LoadOp::create(b, vf64(), Lc,
                                                  ValueRange{r, d}))
                   : Value(memref::LoadOp::create(b, Lc, ValueRange{r, d}));
      };
      Value diff = arith::SubFOp::create(b, row(hiRow), row(loRow));
      Value e = math::ExpOp::create(
          b, arith::TruncFOp::create(b, vec ? Type(vf32()) : f32, diff));
      x = arith::MulFOp::create(b, x, e);
    }
    if (vec)
      vector::StoreOp::create(b, x, dst, ValueRange{t, d});
    else
      memref::StoreOp::create(b, x, dst, ValueRange{t, d});
  };
  Value full =
      arith::SubIOp::create(b, w, arith::RemUIOp::create(b, w, cidx(vl)));
  loop(cidx(0), full, cidx(vl), {}, [&](Value d, ValueRange) {
    body(d, true);
    return SmallVector<Value>{};
  });
  loop(full, w, cidx(1), {}, [&](Value d, ValueRange) {
    body(d, false);
    return SmallVector<Value>{};
  });
}

// 3. Outputs: Oc = A Vc (intra, causal blocks) + Qt~ S (inter).
void LinearKernelBuilder::emitChunkOutputs(const Chunk &ch) {
  Value cn = ch.cn;
  gemm(
      cn, nC,
      [&](Value rowEnd) {
        return Value(arith::MinUIOp::create(b, rowEnd, cn));
      },
      [&](Value t, Value s2) {
        return Value(memref::LoadOp::create(b, A, ValueRange{t, s2}));
      },
      [&](Value s2, Value c) { return loadVec(Vc, s2, c); },
      [&](Value, Value) { return zeroV; },
      [&](Value t, Value c, Value v) { storeVec(v, Oc, t, c); });
  gemm(
      cn, nC, [&](Value) { return dq; },
      [&](Value t, Value d) {
        return Value(memref::LoadOp::create(b, Qd, ValueRange{t, d}));
      },
      [&](Value d, Value c) { return loadVec(S, d, c); },
      [&](Value t, Value c) { return loadVec(Oc, t, c); },
      [&](Value t, Value c, Value v) { storeVec(v, Oc, t, c); });
}

void LinearKernelBuilder::storeChunkOutputs(const Chunk &ch) {
  loop(cidx(0), ch.cn, cidx(1), {}, [&](Value t, ValueRange) {
    Value tAbs = arith::AddIOp::create(b, ch.t0, t);
    Value factor = normalize ? chunkNormFactor(t) : scale;
    loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
      Value col = arith::MulIOp::create(b, c, cidx(vl));
      storeO(tAbs, c, vector::LoadOp::create(b, vf32(), Oc, ValueRange{t, col}),
             factor);
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

Value LinearKernelBuilder::chunkNormFactor(Value t) {
  auto den =
      loop(cidx(0), arith::AddIOp::create(b, t, cidx(1)), cidx(1), {zero},
           [&](Value s2, ValueRange a) {
             return SmallVector<Value>{arith::AddFOp::create(
                 b, a[0], memref::LoadOp::create(b, A, ValueRange{t, s2}))};
           });
  auto den2 = loop(
      cidx(0), dq, cidx(1), {den.getResult(0)}, [&](Value d, ValueRange a) {
        Value qd = memref::LoadOp::create(b, Qd, ValueRange{t, d});
        Value zd = memref::LoadOp::create(b, z, ValueRange{d});
        return SmallVector<Value>{
            arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, qd, zd))};
      });
  Value dn = den2.getResult(0);
  Value nz = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, dn, zero);
  return arith::SelectOp::create(b, nz, arith::DivFOp::create(b, cf32(1), dn),
                                 zero);
}

void LinearKernelBuilder::updateChunkState(const Chunk &ch) {
  Type f32 = b.getF32Type();
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    Value gd = vecGate ? d : cidx(0);
    Value gamma = cf32(1);
    if (hasGate)
      gamma = math::ExpOp::create(
          b,
          arith::TruncFOp::create(
              b, f32, memref::LoadOp::create(b, Lc, ValueRange{ch.last, gd})));
    memref::StoreOp::create(b, gamma, gBuf, ValueRange{d});
    auto zs =
        loop(cidx(0), ch.cn, cidx(1), {zero}, [&](Value s2, ValueRange a) {
          return SmallVector<Value>{arith::AddFOp::create(
              b, a[0], memref::LoadOp::create(b, Kh, ValueRange{s2, d}))};
        });
    Value zd = memref::LoadOp::create(b, z, ValueRange{d});
    memref::StoreOp::create(
        b,
        arith::AddFOp::create(b, arith::MulFOp::create(b, zd, gamma),
                              zs.getResult(0)),
        z, ValueRange{d});
    return SmallVector<Value>{};
  });
  gemm(
      dk, nC, [&](Value) { return ch.cn; },
      [&](Value d, Value s2) {
        return Value(memref::LoadOp::create(b, Kh, ValueRange{s2, d}));
      },
      [&](Value s2, Value c) { return loadVec(Vc, s2, c); },
      [&](Value d, Value c) {
        Value sd = loadVec(S, d, c);
        Value g = memref::LoadOp::create(b, gBuf, ValueRange{d});
        return Value(arith::MulFOp::create(b, sd, bcast(g)));
      },
      [&](Value d, Value c, Value v) { storeVec(v, S, d, c); });
}

//===----------------------------------------------------------------------===//
// The recurrence
//===----------------------------------------------------------------------===//

void LinearKernelBuilder::stageGates(Step &st) {
  st.scalarG = cf32(1);
  if (hasGate && !vecGate)
    st.scalarG = toF32(math::ExpOp::create(
        b, emitRegion(b, op.getGate(), {bI64, hI64, st.tI64, toI64(cidx(0))},
                      env)));
  if (vecGate)
    loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
      Value lg =
          emitRegion(b, op.getGate(), {bI64, hI64, st.tI64, toI64(d)}, env);
      memref::StoreOp::create(b, toF32(math::ExpOp::create(b, lg)), gBuf,
                              ValueRange{d});
      return SmallVector<Value>{};
    });
}

// Exclusive bonus scalar: sum_d phi_q[d] u[d] phi_k[d] (0 without a bonus).
Value LinearKernelBuilder::bonusDot() {
  if (op.getBonus().empty())
    return zero;
  return loop(cidx(0), dq, cidx(1), {zero},
              [&](Value d, ValueRange a) {
                Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
                Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
                Value ud = memref::LoadOp::create(b, uBuf, ValueRange{d});
                return SmallVector<Value>{arith::AddFOp::create(
                    b, a[0],
                    arith::MulFOp::create(b, qd,
                                          arith::MulFOp::create(b, ud, kd)))};
              })
      .getResult(0);
}

void LinearKernelBuilder::deltaCorrection(const Step &st) {
  loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
    Value col = arith::MulIOp::create(b, c, cidx(vl));
    auto w = loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
      Value sd = vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
      Value kd = arith::MulFOp::create(
          b, memref::LoadOp::create(b, phiK, ValueRange{d}), gateAt(st, d));
      return SmallVector<Value>{vector::FMAOp::create(b, bcast(kd), sd, a[0])};
    });
    Value vv = vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col});
    // The exclusive bonus reads this step's v itself (not the delta update
    // that replaces it in vBuf): keep its term in wBuf.
    if (exclusive)
      vector::StoreOp::create(b,
                              arith::MulFOp::create(b, bcast(st.bonusDot), vv),
                              wBuf, ValueRange{col});
    Value u = arith::MulFOp::create(
        b, bcast(st.beta), arith::SubFOp::create(b, vv, w.getResult(0)));
    vector::StoreOp::create(b, u, vBuf, ValueRange{col});
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::updateZ(const Step &st) {
  loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
    Value zd = memref::LoadOp::create(b, z, ValueRange{d});
    Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
    Value zn = arith::AddFOp::create(
        b, arith::MulFOp::create(b, zd, gateAt(st, d)), kd);
    memref::StoreOp::create(b, zn, z, ValueRange{d});
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::updateStateAndRead(const Step &st) {
  loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
    Value col = arith::MulIOp::create(b, c, cidx(vl));
    Value vv = vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col});
    auto acc = loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
      Value sd = vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
      Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
      Value sn = vector::FMAOp::create(
          b, bcast(kd), vv, arith::MulFOp::create(b, sd, bcast(gateAt(st, d))));
      vector::StoreOp::create(b, sn, S, ValueRange{d, col});
      if (!causal)
        return SmallVector<Value>{a[0]};
      // phi_q has Dq entries; Dq == Dk whenever both are read here.
      Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
      Value readS = exclusive ? sd : sn;
      return SmallVector<Value>{
          vector::FMAOp::create(b, bcast(qd), readS, a[0])};
    });
    if (causal) {
      Value a = acc.getResult(0);
      if (exclusive && delta)
        a = arith::AddFOp::create(
            b, a, vector::LoadOp::create(b, vf32(), wBuf, ValueRange{col}));
      else if (exclusive)
        a = vector::FMAOp::create(b, bcast(st.bonusDot), vv, a);
      vector::StoreOp::create(b, a, wBuf, ValueRange{col});
    }
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::storeStepOutput(const Step &st) {
  Value factor = st.exclusiveFactor ? st.exclusiveFactor : normFactor(Value());
  loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
    Value col = arith::MulIOp::create(b, c, cidx(vl));
    Value a = vector::LoadOp::create(b, vf32(), wBuf, ValueRange{col});
    storeO(st.t, c, a, factor);
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::emitNoncausalReadout() {
  loop(cidx(0), N, cidx(1), {}, [&](Value t, ValueRange) {
    emitFeatureMap(op.getFeatureMapQ(), q, h, t, phiQ);
    Value factor = normFactor(Value());
    loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
      Value col = arith::MulIOp::create(b, c, cidx(vl));
      auto acc =
          loop(cidx(0), dq, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
            Value sd = vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
            Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
            return SmallVector<Value>{
                vector::FMAOp::create(b, bcast(qd), sd, a[0])};
          });
      storeO(t, c, acc.getResult(0), factor);
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

LogicalResult mlir::attn::cpu::buildLinearKernel(SpecOp spec, ModuleOp module,
                                                 int64_t vectorWidth,
                                                 int64_t chunk) {
  return LinearKernelBuilder(spec, module, vectorWidth, chunk).build();
}
