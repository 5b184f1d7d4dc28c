//===- LinearToGPU.cpp - linear attention as SIMT GPU kernels -------------===//
//
// The GPU kernels of attn.linear_attention (called by convert-attn-to-nvvm
// for specs whose body is a linear attention), one per head-dim variant D.
// One CTA runs the whole sequence of one (b, h): attn.block_q = 2^30, so the
// runtime's grid is (1, B * Hq, 1). Everything is f32 SIMT code over shared
// memory (no tensor cores yet); q, k, v are read from global memory (bf16 or
// f16, widened on load), o is written once per element, lse never.
//
// Two forms, as on the CPU (LinearToCPU.cpp):
//
// * Chunked (causal without the delta rule, inclusive or exclusive readout;
//   and non-causal). The state S [Dphi x W] (+ z, the normalizer state, as
//   column W when normalized) is f32 in shared memory. Per chunk of C = 32
//   steps and per feature block of P = 64 features (features are computed
//   on the fly from q and k, so any Dphi works, taylor2 and random too):
//     stage   phi(q), phi(k) [C x P], cumulative log gates L (each log gate
//             clamped at -80, sums relative to the chunk start)
//     A      += phi(q) phi(k)^T with the decay exp(Lq[t] - L[s]) for s
//               causally visible from t (exp(0) where masked; per element
//               for per-feature gates, after the sum for scalar ones; Lq =
//               L, or L[t-1] for the exclusive readout)
//     O      += (phi(q) exp(Lq)) S                       (inter-chunk)
//     S       = exp(L[last]) S + (phi(k) exp(L[last] - L))^T V   (update)
//   then O += A V (intra-chunk, A masked causally; the exclusive readout's
//   diagonal is the bonus phi(q) u . phi(k)), o = scale O or O / den with
//   den = rowsum(A) + phi(q) exp(Lq) . z. Every exponent is L[a] - L[b]
//   for steps b <= a of the chunk (L[-1] = 0): the exact decay the
//   recurrence applies between them, of either sign, so growing (positive)
//   gates are exact; a factor overflows only where the state grows by more
//   than e^88 inside one chunk, as the recurrence's state would (the CPU
//   chunked form's formulation). The products are register-tiled FMA loops
//   (each thread a RM x RN block).
//   When Dphi x (Dv + 1) floats do not fit the state buffer (8320 floats up
//   to D = 64, D (D + 1) above, less where the target's shared memory is
//   smaller: AMD's 64 KiB leaves ~4.8K floats at D = 128), Dv is processed in
//   equal slabs of W columns, each a pass over the sequence (taylor2 with a
//   large Dqk); with more features than the buffer has rows for a single column
//   (random(W) with R > 4160 at D = 64 when normalized) the kernel writes NaN
//   to o. Non-causal specs put every key into the state, then read it per query
//   chunk.
//
// * Recurrent (the delta rule): thread (c, fg) keeps rows fg, fg + FG, ... of
//   column c of S in registers (Dphi = Dqk <= D, so D / FG of them), and a
//   chunk of 32 steps' features, gates, beta and v are staged in shared
//   memory; each step is then barrier-free:
//     w = S^T (g phi(k)) (a dot over the thread's rows + xor shuffles over
//     the FG lanes of a column), u = beta (v - w), S = g S + phi(k) u^T,
//     o = scale phi(q)^T S (the exclusive readout reads S before the update
//     and adds the bonus term).
//
//===----------------------------------------------------------------------===//

#include "attn/Conversion/KernelScaffold.h"
#include "attn/Conversion/LinearGpuKernels.h"
#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include <limits>

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

/// attn.block_q of a kernel that runs a whole sequence per CTA.
constexpr int64_t kWholeSequence = int64_t(1) << 30;
/// Threads of a chunked-form CTA.
constexpr int64_t kThreads = 256;
/// Time steps per chunk (both forms) and features per feature block.
constexpr int64_t kChunk = 32;
constexpr int64_t kFeatBlock = 64;
/// Lanes sharing one state column in the recurrent form.
constexpr int64_t kLanesPerColumn = 4;

/// Thread layout of a register-tiled product with an [rows x cols] result:
/// thread (ty, tx) = (tid / TX, tid % TX) owns rows ty + i * TY (i < RM) and
/// columns tx + j * TX (j < RN). Adjacent lanes take adjacent columns, so
/// loads along a row of the B operand are conflict-free.
struct Tile {
  int64_t TY = 1, TX = 1, RM = 1, RN = 1;
  Value ty, tx;
};

/// The CUDA patterns of the chunk ops. The device's instruction mix fuses
/// more than the CPU's: the chunked form runs slabs of value columns around
/// the chunk loop (so the loop pattern also zeroes the state per slab and,
/// non-causal, reads it out per slab) and feature blocks inside a chunk
/// (so `intra` also reads the state and updates it, block by block); the
/// recurrence (the delta rule) keeps S in registers and `update` runs the
/// chunk's steps, reading out and storing o on the way. Ops whose work
/// another pattern does record nothing and say where it went.
class LinearGpuBuilder : public KernelScaffold,
                         public ChunkLowering,
                         private LinearForm {
public:
  LinearGpuBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule, int64_t headDim,
                   int64_t sharedLimitBytes)
      : KernelScaffold(spec), op(spec.getTiledLinearAttention()), D(headDim),
        Wt(headDim), sharedLimitFloats(sharedLimitBytes / 4) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

  ATTN_CHUNK_LOWERING_PATTERNS

private:
  // Small helpers (the common ones: KernelScaffold).
  /// exp(x) where `keep`, exp(0) = 1 elsewhere: a decay between two steps
  /// under the causal mask. The masked differences (key after query) would
  /// overflow for decaying gates (inf * 0 = NaN), so they never reach exp.
  Value maskedDecay(Value keep, Value x) {
    return fexp(select(keep, x, cf32(0)));
  }
  Value ld(Value buf, Value i) {
    return memref::LoadOp::create(b, buf, ValueRange{i});
  }
  void st(Value x, Value buf, Value i) {
    memref::StoreOp::create(b, x, buf, ValueRange{i});
  }
  void barrier() { gpu::BarrierOp::create(b); }
  /// cond ? then() : 0, evaluating then() only where cond holds.
  Value ifElseZero(Value cond, function_ref<Value()> then) {
    auto op = scf::IfOp::create(b, TypeRange{b.getF32Type()}, cond, true);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    scf::YieldOp::create(b, then());
    b.setInsertionPointToStart(&op.getElseRegion().front());
    scf::YieldOp::create(b, cf32(0));
    return op.getResult(0);
  }
  /// Sum of `x` over aligned groups of `lanes` adjacent lanes (a power of
  /// two <= 32), in every lane of the group.
  Value groupSum(Value x, int64_t lanes) {
    for (int64_t off = 1; off < lanes; off *= 2) {
      auto sh = gpu::ShuffleOp::create(b, x, ci32(int32_t(off)), ci32(32),
                                       gpu::ShuffleMode::XOR);
      x = fadd(x, sh.getShuffleResult());
    }
    return x;
  }
  /// A fresh f32 array of `n` elements in dynamic shared memory.
  Value allocShared(int64_t n);

  // Kernel pieces.
  LogicalResult checkSpec();
  gpu::GPUFuncOp createFunc(int64_t numThreads);
  void emitPrologue(gpu::GPUFuncOp fn);
  /// The gate region at (b, h, t, d) as f32 (d = 0 for a scalar gate).
  Value gateAt(Value tAbs, Value d);
  Value betaAt(Value tAbs);
  Value bonusAt(Value d);
  bool needsRowStat(FeatureMapKind kind) {
    return kind == FeatureMapKind::l2norm || kind == FeatureMapKind::random;
  }
  /// Feature f (index) of row `row` of `mem` ([b, head, row, :], row clamped
  /// into range by the caller); 0 where !rowOk or f >= Dphi. `stat` is the
  /// row statistic of l2norm (1/|x|) and random (|x'|^2 / 2).
  Value phiAt(FeatureMapKind kind, Value mem, Value head, Value row,
              Value rowOk, Value f, Value stat);
  /// Taylor2 feature f (< Dphi) of the row x(i) (i clamped to lastCol);
  /// fZero, fOne: f32 constants.
  Value taylor2At(Value f, function_ref<Value(Value)> x, Value lastCol,
                  Value fZero, Value fOne);
  /// One side (q or k) of stagePhi: its rows are mem[b, head, 0 .. len).
  struct PhiSide {
    FeatureMapKind kind;
    Value mem, head, len, dst, statBuf;
  };
  /// For each side, dst[t * ldDst + f] = phi feature f0 + f of row t0 + t,
  /// for t < rows and f < width (0 past `len` rows or Dphi features); the
  /// sides share one loop and its index arithmetic (taylor2's pair decoding).
  void stagePhi(ArrayRef<PhiSide> sides, Value t0, Value f0, int64_t rows,
                int64_t width, int64_t ldDst);
  /// statBuf[t] = the row statistic of row t0 + t (t < rows).
  void stageRowStat(FeatureMapKind kind, Value mem, Value head, Value t0,
                    Value len, int64_t rows, Value statBuf);
  /// For r < rows (the CTA's threads split into `rows` groups of adjacent
  /// lanes): sums of terms(r, k) over k < K, then finish(r, leader, sums) in
  /// every thread (leader: the group's first lane).
  void rowPass(int64_t rows, Value K, int64_t nSums,
               function_ref<SmallVector<Value>(Value, Value)> terms,
               function_ref<void(Value, Value, ArrayRef<Value>)> finish);
  /// The tile of an [rows x cols] product over the CTA's threads.
  Tile tileFor(int64_t rows, int64_t cols);
  Value tileRow(const Tile &t, int64_t i) { return add(t.ty, cidx(i * t.TY)); }
  Value tileCol(const Tile &t, int64_t j) { return add(t.tx, cidx(j * t.TX)); }
  /// acc (RM * RN values) updated by body(k, acc) for k < K (a multiple of
  /// 4: the loop is unrolled by 4).
  SmallVector<Value>
  productLoop(int64_t K, ValueRange acc,
              function_ref<void(Value, SmallVectorImpl<Value> &)> body);

  // The chunked form.
  /// Floats of the state buffer SB: Dphi x (W + 1) (z is column W). Room
  /// for Dphi = 2 * 64 with Dv = 64 (pos_neg) and Dphi = Dv = 128 in one
  /// slab, or what the target's shared memory leaves (allocChunkedShared):
  /// fewer columns per slab, more passes over the sequence.
  int64_t stateCapacity() const {
    return std::max<int64_t>(D * (D + 1), 2 * 64 * 65);
  }
  int64_t stateCap = 0;
  void allocChunkedShared();
  /// Sets the slabs of value columns (W, SW) and the feature blocks (nFB,
  /// lastPhi); o is NaN where a single column does not fit. Returns the
  /// number of slabs (0 then).
  Value planSlabs();
  /// Starts slab `slab` of value columns (curC0 .. curC0 + curWn): S = 0.
  void beginSlab(Value slab);
  /// Non-causal: the keys of the chunk at t0 into the slab's state.
  void emitNoncausalKeys(Value t0);
  /// Non-causal: every query reads the slab's final state.
  void emitNoncausalQueries();
  /// Causal chunk at curT0: A, the inter-chunk read and the state update,
  /// feature block by feature block; then A stored (and its row sums).
  void emitChunkScores();
  /// Values, row statistics, scalar log gates and their cumulative sums.
  void stageChunk(Value t0, Value c0, Value wn);
  /// V rows t0 .. t0 + C of the slab's columns into VB (zero padded).
  void stageV(Value t0, Value c0, Value wn);
  /// buf[0 .. C) = 0 (nothing for a null buf).
  void zeroRows(Value buf);
  /// Feature block f0 of a causal chunk: A += its scores, O += its inter-chunk
  /// read, S updated; accs holds A's then O's accumulators.
  SmallVector<Value> emitFeatureBlock(Value t0, Value f0, ValueRange accs);
  /// LG[t][f] = the per-feature log gate (clamped at -80).
  void stageVecGates(Value t0, Value f0);
  /// The query-side cumulative log gate at (row m, feature f).
  Value lqVec(Value m, Value f);
  /// Whether key row n of a chunk is visible from query row m: n <= m, or
  /// n < m for the exclusive readout (its diagonal is the bonus term).
  Value causalKeep(Value m, Value n);
  /// A += phi(q) phi(k)^T (decayed per element for vector gates).
  SmallVector<Value> accumulateScores(ValueRange accA);
  /// Decay the features in place: PQ *= exp(Lq), PK *= exp(L[last] - L).
  void decayFeatures();
  /// AM = A with the causal mask, the scalar decay and the exclusive
  /// readout's diagonal.
  void storeScores(ArrayRef<Value> accA);
  /// z[f] = S[f][W].
  Value zIdx(Value f) { return add(mul(f, SW), W); }
  /// S update of feature block f0 from PK (already decayed) and VB:
  /// S = gamma S + PK^T VB; z = gamma z + colsum(PK).
  void updateState(Value f0, function_ref<Value(Value)> gammaOf);
  /// The S update of columns cBase .. cBase + WS.
  void updateStateColumns(Value f0, Value cBase,
                          function_ref<Value(Value)> gammaOf);
  /// O += PQ S[f0 ..] (and den += PQ z) for feature block f0.
  SmallVector<Value> readState(Value f0, ValueRange acc);
  /// o[t0 + m][c0 + n] = O * (scale or 1 / den).
  void storeO(Value t0, Value cn, Value c0, Value wn, ValueRange acc);
  SmallVector<Value> zerosA() {
    return SmallVector<Value>(tA.RM * tA.RN, zero);
  }
  SmallVector<Value> zerosO() {
    return SmallVector<Value>(tO.RM * tO.RN, zero);
  }

  // The recurrent form.
  /// Its shared arrays and thread roles (lanes).
  void allocRecurrentShared();
  /// Thread (c, fg) of the recurrent form keeps rows fIdx of state column c.
  struct Lanes {
    Value c, fg;
    SmallVector<Value> fIdx;
  };
  /// Values, gates g = exp(gate) and beta of the chunk at t0.
  void stageRecurrentInputs(Value t0, Value one);
  /// Step t of the chunk at t0 from the thread's state rows Scur; returns
  /// the updated rows.
  SmallVector<Value> emitDeltaStep(Value t0, Value t, ValueRange Scur,
                                   const Lanes &lanes);
  /// sum_i a[i] x[i] in 4 interleaved partial sums (shorter dependency
  /// chains).
  Value dot4(ArrayRef<Value> a, ArrayRef<Value> x);

  /// Steps per chunk (both forms), features per feature block, the leading
  /// dims of the chunked form's feature ([C x PB]) and score ([C x C])
  /// arrays.
  static constexpr int64_t C = kChunk, PB = kFeatBlock, LDP = PB + 1,
                           LDA = C + 1;

  /// Lowered whole (one fused pattern for the chunk program): the CUDA
  /// kernels read the tiled op's attributes and regions.
  TiledLinearAttentionOp op;
  int64_t D;
  /// The widest slab of value columns (chunked form).
  int64_t Wt;
  int64_t T = kThreads;
  Type elt;
  // The spec's flags are LinearForm's; these follow from them.
  bool scalarGate = false, statQ = false, statK = false, bonusTerm = false;

  KernelEnv env;
  Value Dphi, kLen;
  Value tid, bIdx, h, hk, bI64, hI64;
  Value scale;
  // Uniform constants of the feature maps.
  Value s4;          // Dqk^(-1/4) (taylor2, random)
  Value sDiag, sOff; // taylor2: 1/sqrt(2D), 1/sqrt(D)
  Value invSqrtR;    // random: 1/sqrt(R)
  Value proj;        // random: W [R, Dqk]
  Value smem;
  int64_t smemFloats = 0;
  /// The target's shared memory per block, in floats.
  int64_t sharedLimitFloats;
  Value zero;

  // Shared arrays (null where the spec needs none): phi(q), phi(k), the
  // (log) gates, scores, values, state, denominators, bonus, row stats.
  Value PQ, PK, LG, LGraw, LGs, LQs, AM, VB, SB, DEN, BON, UB, RSQ, RSK;
  Value GB, BETA; // the recurrent form's gates and beta
  // The chunked form: slab width W (+ z: SW), feature blocks and tiles.
  Value W, SW, nFB, lastPhi;
  int64_t WS = 0;
  Tile tA, tO, tS;

  // The chunk program being lowered: the slab's columns, the chunk, and
  // the recurrence's thread roles and state rows, or the chunked form's O.
  Value curC0, curWn, curT0, curCn;
  Value one;
  SmallVector<Value> laneRows; // Lanes.fIdx
  Value laneC, laneFg;
  SmallVector<Value> curS;
  SmallVector<Value> accO;
};

} // namespace

Value LinearGpuBuilder::allocShared(int64_t n) {
  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value view = memref::ViewOp::create(
      b, MemRefType::get({n}, b.getF32Type(), nullptr, wg), smem,
      cidx(smemFloats * 4), ValueRange{});
  smemFloats += n;
  return view;
}

LogicalResult LinearGpuBuilder::checkSpec() {
  static_cast<LinearForm &>(*this) = LinearForm(op);
  scalarGate = hasGate && !vecGate;
  statQ = needsRowStat(fmQ);
  statK = needsRowStat(fmK);
  bonusTerm = exclusive && hasBonus;
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, "");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  if (failed(rejectCarriedLinearState(spec)))
    return failure();
  auto dimChanging = [](FeatureMapKind kind) {
    return kind == FeatureMapKind::pos_neg || kind == FeatureMapKind::taylor2 ||
           kind == FeatureMapKind::random;
  };
  if (delta && dimChanging(fmK))
    return spec.emitError()
           << "the CUDA backend supports the delta rule only with feature "
              "maps that keep the dimension (got '"
           << stringifyFeatureMapKind(fmK)
           << "'; pos_neg, taylor2 and random are not supported with 'delta')";
  if (D != 32 && D != 64 && D != 128)
    return spec.emitError() << "CUDA linear-attention kernels are generated "
                               "for head dims 32, 64 and 128, got "
                            << D;
  return success();
}

gpu::GPUFuncOp LinearGpuBuilder::createFunc(int64_t numThreads) {
  SmallVector<Type> args = kernelArgTypes(
      spec, [&](StringRef) { return elt; }, /*unitInnerQKV=*/true);
  std::string name = ("attn_" + spec.getSymName() + "_d" + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name,
                                   FunctionType::get(b.getContext(), args, {}));
  // The launch contract: one CTA per (b, h) runs the whole sequence.
  setLaunchContract(fn, kWholeSequence, numThreads, /*sharedBytes=*/0, D);
  return fn;
}

void LinearGpuBuilder::emitPrologue(gpu::GPUFuncOp fn) {
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  // The causal recurrence pairs q_t with k_t (N == M); rows of k and v past
  // min(N, M) read as zero, so a mismatch cannot read out of bounds.
  kLen = causal ? Value(minu(N, M)) : M;
  env.scalarLanes = true;
  env.vectorWidth = 1;
  bindRegionEnv(entry, env);
  b.setLoc(spec.getLoc());
  scale = normalize ? cf32(1) : emitScale(op.getScale(), env);
  b.setLoc(spec.getLoc());

  // Feature dimension and the maps' constants.
  Value dF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(Dqk));
  switch (fmK) {
  case FeatureMapKind::pos_neg:
    Dphi = mul(Dqk, cidx(2));
    break;
  case FeatureMapKind::taylor2:
    Dphi = add(add(cidx(1), Dqk), divu(mul(Dqk, add(Dqk, cidx(1))), cidx(2)));
    break;
  case FeatureMapKind::random:
    proj = env.aux.lookup(*op.getProjection());
    Dphi = memref::DimOp::create(b, proj, 0);
    break;
  default:
    Dphi = Dqk;
  }
  if (fmK == FeatureMapKind::taylor2 || fmK == FeatureMapKind::random)
    s4 = arith::DivFOp::create(
        b, cf32(1), math::SqrtOp::create(b, math::SqrtOp::create(b, dF)));
  if (fmK == FeatureMapKind::taylor2) {
    sDiag = arith::DivFOp::create(b, cf32(1),
                                  math::SqrtOp::create(b, fmul(cf32(2), dF)));
    sOff = arith::DivFOp::create(b, cf32(1), math::SqrtOp::create(b, dF));
  }
  if (fmK == FeatureMapKind::random) {
    Value rF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(Dphi));
    invSqrtR = arith::DivFOp::create(b, cf32(1), math::SqrtOp::create(b, rF));
  }

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  h = remu(bh, Hq);
  bIdx = divu(bh, Hq);
  hk = divu(h, G);
  bI64 = toI64(bIdx);
  hI64 = toI64(h);

  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), nullptr, wg));
}

Value LinearGpuBuilder::gateAt(Value tAbs, Value d) {
  Value g = toF32(
      emitRegion(b, op.getGate(), {bI64, hI64, toI64(tAbs), toI64(d)}, env));
  b.setLoc(spec.getLoc());
  return g;
}

Value LinearGpuBuilder::betaAt(Value tAbs) {
  Value x = toF32(emitRegion(b, op.getBeta(), {bI64, hI64, toI64(tAbs)}, env));
  b.setLoc(spec.getLoc());
  return x;
}

Value LinearGpuBuilder::bonusAt(Value d) {
  Value x = toF32(emitRegion(b, op.getBonus(), {hI64, toI64(d)}, env));
  b.setLoc(spec.getLoc());
  return x;
}

Value LinearGpuBuilder::phiAt(FeatureMapKind kind, Value mem, Value head,
                              Value row, Value rowOk, Value f, Value stat) {
  Value fZero = cf32(0), fOne = cf32(1);
  Value lastCol = sub(Dqk, cidx(1));
  auto x = [&](Value i) -> Value {
    return toF32(memref::LoadOp::create(
        b, mem, ValueRange{bIdx, head, row, minu(i, lastCol)}));
  };
  auto sigmoid = [&](Value a) -> Value {
    Value e = fexp(arith::NegFOp::create(b, a));
    return arith::DivFOp::create(b, fOne, fadd(fOne, e));
  };
  Value valid, y;
  switch (kind) {
  case FeatureMapKind::pos_neg: {
    Value pos = ult(f, Dqk);
    Value xi = x(select(pos, f, sub(f, Dqk)));
    y = select(pos, xi, arith::NegFOp::create(b, xi));
    valid = ult(f, mul(Dqk, cidx(2)));
    break;
  }
  case FeatureMapKind::taylor2:
    y = taylor2At(f, x, lastCol, fZero, fOne);
    valid = ult(f, Dphi);
    break;
  case FeatureMapKind::random: {
    // exp(w_r . x' - |x'|^2 / 2) / sqrt(R), x' = x / D^(1/4).
    Value r = minu(f, sub(Dphi, cidx(1)));
    auto dot = loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange a) {
      Value w = memref::LoadOp::create(b, proj, ValueRange{r, i});
      return SmallVector<Value>{fma(toF32(w), x(i), a[0])};
    });
    y = fmul(fexp(fsub(fmul(dot.getResult(0), s4), stat)), invSqrtR);
    valid = ult(f, Dphi);
    break;
  }
  default: {
    Value xi = x(f);
    valid = ult(f, Dqk);
    switch (kind) {
    case FeatureMapKind::elu_plus_one:
      y = select(arith::CmpFOp::create(b, F::OGT, xi, fZero), fadd(xi, fOne),
                 fexp(xi));
      break;
    case FeatureMapKind::relu:
      y = fmax(xi, fZero);
      break;
    case FeatureMapKind::relu2: {
      Value r = fmax(xi, fZero);
      y = fmul(r, r);
      break;
    }
    case FeatureMapKind::sigmoid:
      y = sigmoid(xi);
      break;
    case FeatureMapKind::silu:
      y = fmul(xi, sigmoid(xi));
      break;
    case FeatureMapKind::exp:
      y = fexp(xi);
      break;
    case FeatureMapKind::l2norm:
      y = fmul(xi, stat);
      break;
    default:
      y = xi;
    }
  }
  }
  return select(land(rowOk, valid), y, fZero);
}

Value LinearGpuBuilder::taylor2At(Value f, function_ref<Value(Value)> x,
                                  Value lastCol, Value fZero, Value fOne) {
  // f = 0: 1; 1 <= f <= D: x_{f-1} / D^(1/4); then the pairs (a <= c) in
  // row-major order, p = f - 1 - D, row a starting at a (2D - a + 1) / 2.
  Value isLin = ult(f, add(Dqk, cidx(1)));
  Value lin = fmul(x(sub(maxu(f, cidx(1)), cidx(1))), s4);
  Value p = select(isLin, cidx(0), sub(f, add(Dqk, cidx(1))));
  Value twoD1 = add(mul(Dqk, cidx(2)), cidx(1));
  auto startOf = [&](Value a) { return divu(mul(a, sub(twoD1, a)), cidx(2)); };
  Value tw = arith::UIToFPOp::create(b, b.getF32Type(), toI64(twoD1));
  Value pF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(p));
  Value disc = fsub(fmul(tw, tw), fmul(cf32(8), pF));
  Value est =
      fmul(fsub(tw, math::SqrtOp::create(b, fmax(disc, fZero))), cf32(0.5f));
  Value a = arith::FPToUIOp::create(b, b.getI64Type(), fmax(est, fZero));
  a = arith::IndexCastUIOp::create(b, b.getIndexType(), a);
  a = minu(a, lastCol);
  // The estimate is within one of the row: fix it up exactly.
  Value up = land(ult(a, lastCol), cmp(P::ule, startOf(add(a, cidx(1))), p));
  a = select(up, add(a, cidx(1)), a);
  Value down = land(cmp(P::ugt, a, cidx(0)), cmp(P::ugt, startOf(a), p));
  a = select(down, sub(a, cidx(1)), a);
  Value c = add(a, sub(p, minu(startOf(a), p)));
  Value pair = fmul(fmul(x(a), x(c)), select(cmp(P::eq, a, c), sDiag, sOff));
  return select(cmp(P::eq, f, cidx(0)), fOne, select(isLin, lin, pair));
}

void LinearGpuBuilder::rowPass(
    int64_t rows, Value K, int64_t nSums,
    function_ref<SmallVector<Value>(Value, Value)> terms,
    function_ref<void(Value, Value, ArrayRef<Value>)> finish) {
  int64_t parts = T / rows;
  assert(parts * rows == T && parts <= 32 && llvm::isPowerOf2_64(parts));
  Value r = divu(tid, cidx(parts)), part = remu(tid, cidx(parts));
  Value last = sub(maxu(K, cidx(1)), cidx(1));
  SmallVector<Value> init(nSums, cf32(0));
  auto sums = loop(cidx(0), ceilDiv(K, cidx(parts)), cidx(1), init,
                   [&](Value j, ValueRange acc) {
                     Value kk = add(part, mul(j, cidx(parts)));
                     Value ok = ult(kk, K);
                     SmallVector<Value> ts = terms(r, minu(kk, last));
                     SmallVector<Value> next;
                     for (int64_t i = 0; i < nSums; ++i)
                       next.push_back(fadd(acc[i], select(ok, ts[i], cf32(0))));
                     return next;
                   });
  SmallVector<Value> res;
  for (int64_t i = 0; i < nSums; ++i)
    res.push_back(groupSum(sums.getResult(i), parts));
  finish(r, cmp(P::eq, part, cidx(0)), res);
}

void LinearGpuBuilder::stageRowStat(FeatureMapKind kind, Value mem, Value head,
                                    Value t0, Value len, int64_t rows,
                                    Value statBuf) {
  Value lastRow = sub(len, cidx(1));
  rowPass(
      rows, Dqk, 1,
      [&](Value r, Value i) {
        Value row = minu(add(t0, r), lastRow);
        Value x = toF32(
            memref::LoadOp::create(b, mem, ValueRange{bIdx, head, row, i}));
        return SmallVector<Value>{fmul(x, x)};
      },
      [&](Value r, Value leader, ArrayRef<Value> sums) {
        Value sq = sums[0], stat;
        if (kind == FeatureMapKind::l2norm) {
          Value norm = math::SqrtOp::create(b, sq);
          stat = select(arith::CmpFOp::create(b, F::OGT, norm, cf32(0)),
                        arith::DivFOp::create(b, cf32(1), norm), cf32(0));
        } else {
          // |x'|^2 / 2 with x' = x / D^(1/4).
          stat = fmul(fmul(sq, fmul(s4, s4)), cf32(0.5f));
        }
        ifThen(leader, [&] { st(stat, statBuf, r); });
      });
}

void LinearGpuBuilder::stagePhi(ArrayRef<PhiSide> sides, Value t0, Value f0,
                                int64_t rows, int64_t width, int64_t ldDst) {
  int64_t perPass = T / width;
  assert(perPass * width == T && rows % perPass == 0);
  Value f = remu(tid, cidx(width)), tr = divu(tid, cidx(width));
  Value fa = add(f0, f);
  forEach(cidx(0), cidx(rows / perPass), [&](Value i) {
    Value t = add(tr, mul(i, cidx(perPass)));
    Value tAbs = add(t0, t);
    Value idx = add(mul(t, cidx(ldDst)), f);
    for (const PhiSide &sd : sides) {
      Value rowOk = ult(tAbs, sd.len);
      Value row = minu(tAbs, sub(sd.len, cidx(1)));
      Value stat = sd.statBuf ? ld(sd.statBuf, t) : Value();
      st(phiAt(sd.kind, sd.mem, sd.head, row, rowOk, fa, stat), sd.dst, idx);
    }
  });
}

Tile LinearGpuBuilder::tileFor(int64_t rows, int64_t cols) {
  Tile t;
  t.RN = cols >= 64 ? 4 : 2;
  t.TX = cols / t.RN;
  t.TY = T / t.TX;
  t.RM = rows / t.TY;
  assert(t.TX * t.RN == cols && t.TX * t.TY == T && t.RM * t.TY == rows &&
         t.RM >= 1);
  t.ty = divu(tid, cidx(t.TX));
  t.tx = remu(tid, cidx(t.TX));
  return t;
}

SmallVector<Value> LinearGpuBuilder::productLoop(
    int64_t K, ValueRange acc,
    function_ref<void(Value, SmallVectorImpl<Value> &)> body) {
  constexpr int64_t U = 4;
  assert(K % U == 0);
  auto f = loop(cidx(0), cidx(K), cidx(U), acc, [&](Value k0, ValueRange a) {
    SmallVector<Value> cur(a.begin(), a.end());
    for (int64_t u = 0; u < U; ++u)
      body(add(k0, cidx(u)), cur);
    return cur;
  });
  return SmallVector<Value>(f.getResults().begin(), f.getResults().end());
}

//===----------------------------------------------------------------------===//
// The chunked form
//===----------------------------------------------------------------------===//

void LinearGpuBuilder::allocChunkedShared() {
  PQ = allocShared(C * LDP);
  PK = allocShared(C * LDP);
  LG = vecGate ? allocShared(C * LDP) : Value();
  if (scalarGate) {
    LGraw = allocShared(C);
    LGs = allocShared(C);
    LQs = allocShared(C);
  }
  AM = causal ? allocShared(C * LDA) : Value();
  VB = allocShared(C * Wt);
  DEN = normalize ? allocShared(C) : Value();
  BON = bonusTerm ? allocShared(C) : Value();
  UB = bonusTerm ? allocShared(PB) : Value();
  RSQ = statQ ? allocShared(C) : Value();
  RSK = statK ? allocShared(C) : Value();
  // The state takes what is left (checkSharedLimit refuses a kernel that
  // does not fit at all).
  stateCap = std::max<int64_t>(
      std::min(stateCapacity(), sharedLimitFloats - smemFloats - Wt), 1);
  SB = allocShared(stateCap + Wt);
}

Value LinearGpuBuilder::planSlabs() {
  // Slabs of W value columns: Dphi * (W + 1) <= SCAP with normalize (z is
  // column W), Dphi * W <= SCAP otherwise.
  int64_t zCols = normalize ? 1 : 0;
  Value dphi1 = maxu(Dphi, cidx(1));
  Value cap = divu(cidx(stateCap), dphi1);
  Value supported = cmp(P::uge, cap, cidx(1 + zCols));
  // The widest slab, then slabs of equal width.
  Value dv1 = maxu(Dv, cidx(1));
  Value wMax =
      minu(minu(cidx(Wt), dv1), sub(maxu(cap, cidx(1 + zCols)), cidx(zCols)));
  Value nSlabs = ceilDiv(dv1, wMax);
  W = ceilDiv(dv1, nSlabs);
  SW = add(W, cidx(zCols));
  nSlabs = select(supported, ceilDiv(Dv, W), cidx(0));
  nFB = ceilDiv(Dphi, cidx(PB));
  lastPhi = sub(dphi1, cidx(1));
  Value nan = cf32(std::numeric_limits<float>::quiet_NaN());
  // More features than the state buffer holds rows: o is NaN.
  ifThen(arith::XOrIOp::create(
             b, supported, arith::ConstantOp::create(b, b.getBoolAttr(true))),
         [&] {
           Value total = mul(N, Dv);
           forEach(cidx(0), ceilDiv(total, cidx(T)), [&](Value i) {
             Value e = add(tid, mul(i, cidx(T)));
             ifThen(ult(e, total), [&] {
               memref::StoreOp::create(
                   b, nan, o, ValueRange{bIdx, h, divu(e, Dv), remu(e, Dv)});
             });
           });
         });
  return nSlabs;
}

void LinearGpuBuilder::beginSlab(Value slab) {
  curC0 = mul(slab, W);
  curWn = minu(W, sub(Dv, curC0));
  // S = 0, z = 0.
  Value sElems = mul(Dphi, SW);
  forEach(cidx(0), ceilDiv(sElems, cidx(T)), [&](Value i) {
    Value e = add(tid, mul(i, cidx(T)));
    ifThen(ult(e, sElems), [&] { st(zero, SB, e); });
  });
  barrier();
}

void LinearGpuBuilder::emitNoncausalKeys(Value t0) {
  stageV(t0, curC0, curWn);
  if (statK)
    stageRowStat(fmK, k, hk, t0, M, C, RSK);
  barrier();
  forEach(cidx(0), nFB, [&](Value fb) {
    Value f0 = mul(fb, cidx(PB));
    stagePhi({{fmK, k, hk, M, PK, RSK}}, t0, f0, C, PB, LDP);
    barrier();
    updateState(f0, [&](Value) { return cf32(1); });
    barrier();
  });
}

void LinearGpuBuilder::emitNoncausalQueries() {
  forEach(cidx(0), ceilDiv(N, cidx(C)), [&](Value ch) {
    Value t0 = mul(ch, cidx(C));
    Value cn = minu(cidx(C), sub(N, t0));
    if (statQ)
      stageRowStat(fmQ, q, h, t0, N, C, RSQ);
    zeroRows(DEN);
    barrier();
    auto fbLoop =
        loop(cidx(0), nFB, cidx(1), zerosO(), [&](Value fb, ValueRange acc) {
          Value f0 = mul(fb, cidx(PB));
          stagePhi({{fmQ, q, h, N, PQ, RSQ}}, t0, f0, C, PB, LDP);
          barrier();
          SmallVector<Value> res = readState(f0, acc);
          barrier();
          return res;
        });
    storeO(t0, cn, curC0, curWn, fbLoop.getResults());
    barrier();
  });
}

void LinearGpuBuilder::emitChunkScores() {
  Value t0 = curT0;
  curCn = minu(cidx(C), sub(N, t0));
  stageChunk(t0, curC0, curWn);
  SmallVector<Value> init(zerosA());
  init.append(zerosO());
  size_t nA = tA.RM * tA.RN;
  auto fbLoop =
      loop(cidx(0), nFB, cidx(1), init, [&](Value fb, ValueRange accs) {
        return emitFeatureBlock(t0, mul(fb, cidx(PB)), accs);
      });
  SmallVector<Value> accA(fbLoop.getResults().begin(),
                          fbLoop.getResults().begin() + nA);
  accO.assign(fbLoop.getResults().begin() + nA, fbLoop.getResults().end());
  storeScores(accA);
  barrier();
  if (normalize)
    rowPass(
        C, cidx(C), 1,
        [&](Value t, Value s) {
          return SmallVector<Value>{ld(AM, add(mul(t, cidx(LDA)), s))};
        },
        [&](Value t, Value leader, ArrayRef<Value> sums) {
          ifThen(leader, [&] { st(fadd(ld(DEN, t), sums[0]), DEN, t); });
        });
}

void LinearGpuBuilder::stageChunk(Value t0, Value c0, Value wn) {
  // Staging: values, row statistics, scalar log gates, accumulators.
  stageV(t0, c0, wn);
  if (statQ)
    stageRowStat(fmQ, q, h, t0, N, C, RSQ);
  if (statK)
    stageRowStat(fmK, k, hk, t0, kLen, C, RSK);
  if (scalarGate)
    ifThen(ult(tid, cidx(C)), [&] {
      Value tAbs = add(t0, tid);
      Value g = fmax(gateAt(minu(tAbs, sub(N, cidx(1))), cidx(0)), cf32(-80));
      st(select(ult(tAbs, N), g, zero), LGraw, tid);
    });
  zeroRows(DEN);
  zeroRows(BON);
  barrier();
  // Cumulative scalar log gates: L[t] = sum_{i <= t}, Lq[t] the same or
  // (exclusive readout) sum_{i < t}.
  if (scalarGate)
    rowPass(
        C, cidx(C), 2,
        [&](Value t, Value i) {
          Value g = ld(LGraw, i);
          return SmallVector<Value>{select(cmp(P::ule, i, t), g, zero),
                                    select(ult(i, t), g, zero)};
        },
        [&](Value t, Value leader, ArrayRef<Value> sums) {
          ifThen(leader, [&] {
            st(sums[0], LGs, t);
            st(exclusive ? sums[1] : sums[0], LQs, t);
          });
        });
}

void LinearGpuBuilder::stageV(Value t0, Value c0, Value wn) {
  int64_t perPass = T / Wt;
  Value c = remu(tid, cidx(Wt)), sr = divu(tid, cidx(Wt));
  Value lastRow = sub(kLen, cidx(1));
  Value colOk = ult(c, wn);
  Value col = minu(add(c0, c), sub(Dv, cidx(1)));
  forEach(cidx(0), cidx(C / perPass), [&](Value i) {
    Value s = add(sr, mul(i, cidx(perPass)));
    Value tAbs = add(t0, s);
    Value ok = land(colOk, ult(tAbs, kLen));
    Value x = toF32(memref::LoadOp::create(
        b, v, ValueRange{bIdx, hk, minu(tAbs, lastRow), col}));
    st(select(ok, x, zero), VB, add(mul(s, cidx(Wt)), c));
  });
}

void LinearGpuBuilder::zeroRows(Value buf) {
  if (buf)
    ifThen(ult(tid, cidx(C)), [&] { st(zero, buf, tid); });
}

SmallVector<Value> LinearGpuBuilder::emitFeatureBlock(Value t0, Value f0,
                                                      ValueRange accs) {
  size_t nA = tA.RM * tA.RN;
  SmallVector<Value> accA(accs.begin(), accs.begin() + nA);
  SmallVector<Value> accO(accs.begin() + nA, accs.end());
  // Features (and per-feature log gates, bonus) of the block.
  stagePhi({{fmQ, q, h, N, PQ, RSQ}, {fmK, k, hk, kLen, PK, RSK}}, t0, f0, C,
           PB, LDP);
  if (vecGate)
    stageVecGates(t0, f0);
  if (bonusTerm)
    ifThen(ult(tid, cidx(PB)), [&] {
      Value fa = add(f0, tid);
      Value u = bonusAt(minu(fa, lastPhi));
      st(select(ult(fa, Dphi), u, zero), UB, tid);
    });
  barrier();
  if (vecGate) {
    // Prefix sums along t, one feature per thread.
    ifThen(ult(tid, cidx(PB)), [&] {
      loop(cidx(0), cidx(C), cidx(1), {zero}, [&](Value t, ValueRange acc) {
        Value idx = add(mul(t, cidx(LDP)), tid);
        Value s = fadd(acc[0], ld(LG, idx));
        st(s, LG, idx);
        return SmallVector<Value>{s};
      });
    });
    barrier();
  }
  accA = accumulateScores(accA);
  if (bonusTerm)
    rowPass(
        C, cidx(PB), 1,
        [&](Value t, Value f) {
          Value idx = add(mul(t, cidx(LDP)), f);
          return SmallVector<Value>{
              fmul(fmul(ld(PQ, idx), ld(UB, f)), ld(PK, idx))};
        },
        [&](Value t, Value leader, ArrayRef<Value> sums) {
          ifThen(leader, [&] { st(fadd(ld(BON, t), sums[0]), BON, t); });
        });
  barrier();
  if (hasGate) {
    decayFeatures();
    barrier();
  }
  // Inter-chunk: O += PQ S, den += PQ z.
  accO = readState(f0, accO);
  barrier();
  // State update.
  updateState(f0, [&](Value m) -> Value {
    if (vecGate)
      return fexp(ld(LG, add(cidx((C - 1) * LDP), m)));
    if (scalarGate)
      return fexp(ld(LGs, cidx(C - 1)));
    return cf32(1);
  });
  barrier();
  SmallVector<Value> res(accA);
  res.append(accO);
  return res;
}

void LinearGpuBuilder::stageVecGates(Value t0, Value f0) {
  int64_t perPass = T / PB;
  Value f = remu(tid, cidx(PB)), tr = divu(tid, cidx(PB));
  Value fa = add(f0, f);
  forEach(cidx(0), cidx(C / perPass), [&](Value i) {
    Value t = add(tr, mul(i, cidx(perPass)));
    Value tAbs = add(t0, t);
    Value g =
        fmax(gateAt(minu(tAbs, sub(N, cidx(1))), minu(fa, lastPhi)), cf32(-80));
    st(select(land(ult(tAbs, N), ult(fa, Dphi)), g, zero), LG,
       add(mul(t, cidx(LDP)), f));
  });
}

Value LinearGpuBuilder::lqVec(Value m, Value f) {
  if (!exclusive)
    return ld(LG, add(mul(m, cidx(LDP)), f));
  Value prev = sub(maxu(m, cidx(1)), cidx(1));
  return select(cmp(P::ugt, m, cidx(0)), ld(LG, add(mul(prev, cidx(LDP)), f)),
                zero);
}

Value LinearGpuBuilder::causalKeep(Value m, Value n) {
  return exclusive ? ult(n, m) : cmp(P::ule, n, m);
}

SmallVector<Value> LinearGpuBuilder::accumulateScores(ValueRange accA) {
  return productLoop(PB, accA, [&](Value f, SmallVectorImpl<Value> &a) {
    SmallVector<Value> av, bv, la, lb, rows, cols;
    for (int64_t i = 0; i < tA.RM; ++i) {
      Value m = tileRow(tA, i);
      rows.push_back(m);
      av.push_back(ld(PQ, add(mul(m, cidx(LDP)), f)));
      if (vecGate)
        la.push_back(lqVec(m, f));
    }
    for (int64_t j = 0; j < tA.RN; ++j) {
      Value n = tileCol(tA, j);
      cols.push_back(n);
      Value idx = add(mul(n, cidx(LDP)), f);
      bv.push_back(ld(PK, idx));
      if (vecGate)
        lb.push_back(ld(LG, idx));
    }
    for (int64_t i = 0; i < tA.RM; ++i)
      for (int64_t j = 0; j < tA.RN; ++j) {
        Value &x = a[i * tA.RN + j];
        Value p = av[i];
        if (vecGate)
          p = fmul(
              p, maskedDecay(causalKeep(rows[i], cols[j]), fsub(la[i], lb[j])));
        x = fma(p, bv[j], x);
      }
  });
}

void LinearGpuBuilder::decayFeatures() {
  int64_t perPass = T / PB;
  Value f = remu(tid, cidx(PB)), tr = divu(tid, cidx(PB));
  forEach(cidx(0), cidx(C / perPass), [&](Value i) {
    Value t = add(tr, mul(i, cidx(perPass)));
    Value idx = add(mul(t, cidx(LDP)), f);
    Value lq, lk;
    if (vecGate) {
      lq = lqVec(t, f);
      lk = fsub(ld(LG, add(cidx((C - 1) * LDP), f)), ld(LG, idx));
    } else {
      lq = ld(LQs, t);
      lk = fsub(ld(LGs, cidx(C - 1)), ld(LGs, t));
    }
    st(fmul(ld(PQ, idx), fexp(lq)), PQ, idx);
    st(fmul(ld(PK, idx), fexp(lk)), PK, idx);
  });
}

void LinearGpuBuilder::storeScores(ArrayRef<Value> accA) {
  for (int64_t i = 0; i < tA.RM; ++i) {
    Value m = tileRow(tA, i);
    for (int64_t j = 0; j < tA.RN; ++j) {
      Value n = tileCol(tA, j);
      Value a = accA[i * tA.RN + j];
      Value keep = causalKeep(m, n);
      if (scalarGate)
        a = fmul(a, maskedDecay(keep, fsub(ld(LQs, m), ld(LGs, n))));
      a = select(keep, a, zero);
      if (bonusTerm)
        a = select(cmp(P::eq, n, m), ld(BON, m), a);
      st(a, AM, add(mul(m, cidx(LDA)), n));
    }
  }
}

void LinearGpuBuilder::updateState(Value f0,
                                   function_ref<Value(Value)> gammaOf) {
  // Column passes of at most 64 columns keep the tile at 4 x 4.
  forEach(cidx(0), ceilDiv(W, cidx(WS)), [&](Value cp) {
    updateStateColumns(f0, mul(cp, cidx(WS)), gammaOf);
  });
  if (normalize)
    rowPass(
        PB, cidx(C), 1,
        [&](Value f, Value s) {
          return SmallVector<Value>{ld(PK, add(mul(s, cidx(LDP)), f))};
        },
        [&](Value f, Value leader, ArrayRef<Value> sums) {
          Value fa = add(f0, f);
          ifThen(land(leader, ult(fa, Dphi)), [&] {
            Value zi = zIdx(fa);
            st(fma(gammaOf(f), ld(SB, zi), sums[0]), SB, zi);
          });
        });
}

void LinearGpuBuilder::updateStateColumns(Value f0, Value cBase,
                                          function_ref<Value(Value)> gammaOf) {
  SmallVector<Value> rowBase, rowOk, gam;
  for (int64_t i = 0; i < tS.RM; ++i) {
    Value m = tileRow(tS, i);
    Value f = add(f0, m);
    rowBase.push_back(add(mul(f, SW), cBase));
    rowOk.push_back(ult(f, Dphi));
    gam.push_back(gammaOf(m));
  }
  SmallVector<Value> colOk;
  for (int64_t j = 0; j < tS.RN; ++j)
    colOk.push_back(ult(add(cBase, tileCol(tS, j)), W));
  // Rows past Dphi and columns past W are neither read nor written.
  SmallVector<Value> init;
  for (int64_t i = 0; i < tS.RM; ++i)
    for (int64_t j = 0; j < tS.RN; ++j) {
      Value s = ifElseZero(land(rowOk[i], colOk[j]), [&] {
        return ld(SB, add(rowBase[i], tileCol(tS, j)));
      });
      init.push_back(fmul(gam[i], s));
    }
  SmallVector<Value> res =
      productLoop(C, init, [&](Value s, SmallVectorImpl<Value> &acc) {
        SmallVector<Value> av, bv;
        for (int64_t i = 0; i < tS.RM; ++i)
          av.push_back(ld(PK, add(mul(s, cidx(LDP)), tileRow(tS, i))));
        Value vRow = add(mul(s, cidx(Wt)), cBase);
        for (int64_t j = 0; j < tS.RN; ++j)
          bv.push_back(ld(VB, add(vRow, tileCol(tS, j))));
        for (int64_t i = 0; i < tS.RM; ++i)
          for (int64_t j = 0; j < tS.RN; ++j)
            acc[i * tS.RN + j] = fma(av[i], bv[j], acc[i * tS.RN + j]);
      });
  for (int64_t i = 0; i < tS.RM; ++i)
    for (int64_t j = 0; j < tS.RN; ++j)
      ifThen(land(rowOk[i], colOk[j]), [&] {
        st(res[i * tS.RN + j], SB, add(rowBase[i], tileCol(tS, j)));
      });
}

SmallVector<Value> LinearGpuBuilder::readState(Value f0, ValueRange acc) {
  // Columns past W read whatever follows in the buffer (it is padded by
  // Wt floats): those results are never stored.
  SmallVector<Value> res =
      productLoop(PB, acc, [&](Value f, SmallVectorImpl<Value> &a) {
        Value srow = mul(minu(add(f0, f), lastPhi), SW);
        SmallVector<Value> av, bv;
        for (int64_t i = 0; i < tO.RM; ++i)
          av.push_back(ld(PQ, add(mul(tileRow(tO, i), cidx(LDP)), f)));
        for (int64_t j = 0; j < tO.RN; ++j)
          bv.push_back(ld(SB, add(srow, tileCol(tO, j))));
        for (int64_t i = 0; i < tO.RM; ++i)
          for (int64_t j = 0; j < tO.RN; ++j)
            a[i * tO.RN + j] = fma(av[i], bv[j], a[i * tO.RN + j]);
      });
  if (normalize)
    rowPass(
        C, cidx(PB), 1,
        [&](Value t, Value f) {
          Value fa = add(f0, f);
          Value z = ld(SB, zIdx(minu(fa, lastPhi)));
          z = select(ult(fa, Dphi), z, zero);
          return SmallVector<Value>{fmul(ld(PQ, add(mul(t, cidx(LDP)), f)), z)};
        },
        [&](Value t, Value leader, ArrayRef<Value> sums) {
          ifThen(leader, [&] { st(fadd(ld(DEN, t), sums[0]), DEN, t); });
        });
  return res;
}

void LinearGpuBuilder::storeO(Value t0, Value cn, Value c0, Value wn,
                              ValueRange acc) {
  for (int64_t i = 0; i < tO.RM; ++i) {
    Value m = tileRow(tO, i);
    Value factor = scale;
    if (normalize) {
      Value den = ld(DEN, m);
      factor = select(arith::CmpFOp::create(b, F::UNE, den, zero),
                      arith::DivFOp::create(b, cf32(1), den), zero);
    }
    for (int64_t j = 0; j < tO.RN; ++j) {
      Value n = tileCol(tO, j);
      Value x = fmul(acc[i * tO.RN + j], factor);
      ifThen(land(ult(m, cn), ult(n, wn)), [&] {
        memref::StoreOp::create(b, x, o,
                                ValueRange{bIdx, h, add(t0, m), add(c0, n)});
      });
    }
  }
}

//===----------------------------------------------------------------------===//
// The recurrent form (delta rule)
//===----------------------------------------------------------------------===//

void LinearGpuBuilder::allocRecurrentShared() {
  one = cf32(1);
  PQ = allocShared(C * D);
  PK = allocShared(C * D);
  GB = hasGate ? allocShared(vecGate ? C * D : C) : Value();
  BETA = allocShared(C);
  VB = allocShared(C * D);
  UB = bonusTerm ? allocShared(D) : Value();
  RSQ = statQ ? allocShared(C) : Value();
  RSK = statK ? allocShared(C) : Value();
}

void LinearGpuBuilder::stageRecurrentInputs(Value t0, Value one) {
  // Values, gates g = exp(gate), beta.
  int64_t perPass = T / D;
  Value col = remu(tid, cidx(D)), tr = divu(tid, cidx(D));
  Value lastRow = sub(kLen, cidx(1));
  forEach(cidx(0), cidx(C / perPass), [&](Value i) {
    Value t = add(tr, mul(i, cidx(perPass)));
    Value tAbs = add(t0, t);
    Value ok = land(ult(tAbs, kLen), ult(col, Dv));
    Value x =
        toF32(memref::LoadOp::create(b, v,
                                     ValueRange{bIdx, hk, minu(tAbs, lastRow),
                                                minu(col, sub(Dv, cidx(1)))}));
    Value idx = add(mul(t, cidx(D)), col);
    st(select(ok, x, zero), VB, idx);
    if (vecGate) {
      Value g = fexp(gateAt(minu(tAbs, sub(N, cidx(1))),
                            minu(col, sub(maxu(Dphi, cidx(1)), cidx(1)))));
      st(select(land(ult(tAbs, N), ult(col, Dphi)), g, one), GB, idx);
    }
  });
  ifThen(ult(tid, cidx(C)), [&] {
    Value tAbs = add(t0, tid);
    Value tc = minu(tAbs, sub(N, cidx(1)));
    Value ok = ult(tAbs, N);
    if (scalarGate)
      st(select(ok, fexp(gateAt(tc, cidx(0))), one), GB, tid);
    st(select(ok, betaAt(tc), zero), BETA, tid);
  });
}

SmallVector<Value> LinearGpuBuilder::emitDeltaStep(Value t0, Value t,
                                                   ValueRange Scur,
                                                   const Lanes &lanes) {
  const int64_t FG = kLanesPerColumn, NR = D / FG;
  Value row = mul(t, cidx(D));
  Value vt = ld(VB, add(row, lanes.c));
  Value beta = ld(BETA, t);
  Value gs = scalarGate ? ld(GB, t) : Value();
  SmallVector<Value> kd, g, qd;
  for (int64_t i = 0; i < NR; ++i) {
    Value idx = add(row, lanes.fIdx[i]);
    kd.push_back(ld(PK, idx));
    qd.push_back(ld(PQ, idx));
    g.push_back(vecGate ? ld(GB, idx) : gs);
  }
  // w = S^T (g phi_k): the decayed state's prediction of v.
  SmallVector<Value> Sd;
  for (int64_t i = 0; i < NR; ++i)
    Sd.push_back(g[i] ? fmul(g[i], Scur[i]) : Scur[i]);
  Value w = groupSum(dot4(kd, Sd), FG);
  Value u = fmul(beta, fsub(vt, w));
  SmallVector<Value> next, read;
  for (int64_t i = 0; i < NR; ++i) {
    next.push_back(fma(kd[i], u, Sd[i]));
    if (!exclusive) {
      read.push_back(next[i]);
    } else {
      // The state before this step, plus the bonus term.
      Value s = Scur[i];
      if (bonusTerm)
        s = fma(fmul(ld(UB, lanes.fIdx[i]), kd[i]), vt, s);
      read.push_back(s);
    }
  }
  Value out = fmul(groupSum(dot4(qd, read), FG), scale);
  ifThen(land(cmp(P::eq, lanes.fg, cidx(0)), ult(lanes.c, Dv)), [&] {
    memref::StoreOp::create(b, out, o,
                            ValueRange{bIdx, h, add(t0, t), lanes.c});
  });
  return next;
}

Value LinearGpuBuilder::dot4(ArrayRef<Value> a, ArrayRef<Value> x) {
  Value acc[4] = {zero, zero, zero, zero};
  for (size_t i = 0; i < a.size(); ++i)
    acc[i % 4] = fma(a[i], x[i], acc[i % 4]);
  return fadd(fadd(acc[0], acc[1]), fadd(acc[2], acc[3]));
}

LogicalResult LinearGpuBuilder::build() {
  if (failed(checkSpec()))
    return failure();
  // The delta rule runs the recurrence (a thread group per state column);
  // everything else the chunked form.
  T = delta ? kLanesPerColumn * D : kThreads;
  gpu::GPUFuncOp fn = createFunc(T);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&fn.getBody().front());
  emitPrologue(fn);
  zero = cf32(0);
  if (delta)
    allocRecurrentShared();
  else
    allocChunkedShared();
  fn->setAttr("attn.shared_bytes", b.getI64IntegerAttr(smemFloats * 4));
  if (delta) {
    // Thread (c, fg) keeps rows fIdx of state column c.
    laneC = divu(tid, cidx(kLanesPerColumn));
    laneFg = remu(tid, cidx(kLanesPerColumn));
    for (int64_t i = 0; i < D / kLanesPerColumn; ++i)
      laneRows.push_back(add(laneFg, cidx(kLanesPerColumn * i)));
  }
  Block &body = op.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), h);
  if (failed(lowerChunkBlock(body, *this)))
    return failure();
  gpu::ReturnOp::create(b);
  return success();
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

/// The recurrence starts from S = 0 in registers (and stages the bonus);
/// the chunked form zeroes S per slab, in the loop pattern.
LogicalResult LinearGpuBuilder::lowerInitState(ChunkInitStateOp) {
  if (!delta)
    return success();
  if (bonusTerm)
    ifThen(ult(tid, cidx(D)), [&] {
      Value u = bonusAt(minu(tid, sub(maxu(Dphi, cidx(1)), cidx(1))));
      st(select(ult(tid, Dphi), u, zero), UB, tid);
    });
  curS.assign(laneRows.size(), zero);
  return success();
}

LogicalResult LinearGpuBuilder::lowerChunkLoop(ChunkLoopOp loopOp) {
  Block &step = loopOp.getBody().front();
  LogicalResult result = success();
  auto runStep = [&](Value t0) {
    curT0 = t0;
    map.map(step.getArgument(0), t0);
    if (failed(lowerChunkBlock(step, *this)))
      result = failure();
  };
  if (delta) {
    loop(cidx(0), ceilDiv(N, cidx(C)), cidx(1), curS,
         [&](Value ch, ValueRange S) {
           Value t0 = mul(ch, cidx(C));
           curCn = minu(cidx(C), sub(N, t0));
           curS.assign(S.begin(), S.end());
           runStep(t0);
           return curS;
         });
    return result;
  }
  Value nSlabs = planSlabs();
  // Tiles: A [C x C], O [C x Wt], S block [PB x WS] (WS columns a pass).
  WS = std::min<int64_t>(Wt, 64);
  tA = tileFor(C, C);
  tO = tileFor(C, Wt);
  tS = tileFor(PB, WS);
  forEach(cidx(0), nSlabs, [&](Value slab) {
    beginSlab(slab);
    if (causal) {
      forEach(cidx(0), ceilDiv(N, cidx(C)),
              [&](Value ch) { runStep(mul(ch, cidx(C))); });
      return;
    }
    // Every key into the state, then every query reads it (readout_all,
    // per slab).
    forEach(cidx(0), ceilDiv(M, cidx(C)),
            [&](Value ch) { runStep(mul(ch, cidx(C))); });
    emitNoncausalQueries();
  });
  return result;
}

/// Features, values and gates are staged where they are consumed: by
/// `intra` (causal) or `update` (non-causal keys, the recurrence's steps).
LogicalResult LinearGpuBuilder::lowerFeatures(ChunkFeaturesOp) {
  return success();
}
LogicalResult LinearGpuBuilder::lowerValues(ChunkValuesOp) { return success(); }
LogicalResult LinearGpuBuilder::lowerLogGates(ChunkLogGatesOp) {
  return success();
}

/// Chunked: A, fused with the inter-chunk read and the state update per
/// feature block. The recurrence: stage the chunk's features and inputs.
LogicalResult LinearGpuBuilder::lowerIntra(ChunkIntraOp) {
  if (!delta) {
    emitChunkScores();
    return success();
  }
  if (statQ)
    stageRowStat(fmQ, q, h, curT0, N, C, RSQ);
  if (statK)
    stageRowStat(fmK, k, hk, curT0, kLen, C, RSK);
  if (statQ || statK)
    barrier();
  stagePhi({{fmQ, q, h, N, PQ, RSQ}, {fmK, k, hk, kLen, PK, RSK}}, curT0,
           cidx(0), C, D, D);
  stageRecurrentInputs(curT0, one);
  barrier();
  return success();
}

/// The delta rule's values are computed step by step in `update`.
LogicalResult LinearGpuBuilder::lowerDelta(ChunkDeltaOp) { return success(); }

/// Chunked: O += A V (the inter-chunk part came with `intra`). The
/// recurrence reads out in `update`.
LogicalResult LinearGpuBuilder::lowerReadout(ChunkReadoutOp) {
  if (delta)
    return success();
  accO = productLoop(C, accO, [&](Value s, SmallVectorImpl<Value> &a) {
    SmallVector<Value> av, bv;
    for (int64_t i = 0; i < tO.RM; ++i)
      av.push_back(ld(AM, add(mul(tileRow(tO, i), cidx(LDA)), s)));
    for (int64_t j = 0; j < tO.RN; ++j)
      bv.push_back(ld(VB, add(mul(s, cidx(Wt)), tileCol(tO, j))));
    for (int64_t i = 0; i < tO.RM; ++i)
      for (int64_t j = 0; j < tO.RN; ++j)
        a[i * tO.RN + j] = fma(av[i], bv[j], a[i * tO.RN + j]);
  });
  barrier();
  return success();
}

LogicalResult LinearGpuBuilder::lowerStore(ChunkStoreOp) {
  if (delta)
    return success(); // each step stores its row
  storeO(curT0, curCn, curC0, curWn, accO);
  barrier();
  return success();
}

/// Chunked, causal: done block by block in `intra`. Non-causal: the keys
/// into the slab's state. The recurrence: the chunk's steps.
LogicalResult LinearGpuBuilder::lowerUpdate(ChunkUpdateOp) {
  if (!delta) {
    if (!causal)
      emitNoncausalKeys(curT0);
    return success();
  }
  Lanes lanes;
  lanes.c = laneC;
  lanes.fg = laneFg;
  lanes.fIdx = laneRows;
  auto steps =
      loop(cidx(0), curCn, cidx(1), curS, [&](Value t, ValueRange Scur) {
        return emitDeltaStep(curT0, t, Scur, lanes);
      });
  barrier();
  curS.assign(steps.getResults().begin(), steps.getResults().end());
  return success();
}

/// CUDA kernels carry no decode state (the backend refuses --linear-state).
LogicalResult LinearGpuBuilder::lowerStoreState(ChunkStoreStateOp s) {
  if (spec.lookupSymbol("state"))
    return s.emitOpError() << "CUDA kernels have no carried state";
  return success();
}

/// Non-causal queries are read per slab of value columns, in the loop
/// pattern.
LogicalResult LinearGpuBuilder::lowerReadoutAll(ChunkReadoutAllOp) {
  return success();
}

LogicalResult mlir::attn::rejectCarriedLinearState(SpecOp spec) {
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (in.getSymName() == "state" || in.getSymName() == "zstate")
      return spec.emitError()
             << "the CUDA backend does not support a carried linear-attention "
                "state yet (input '"
             << in.getSymName()
             << "', from --linear-state / attn-add-linear-state); use the CPU "
                "target for decoding";
  return success();
}

LogicalResult mlir::attn::buildLinearGpuKernels(SpecOp spec,
                                                gpu::GPUModuleOp gpuModule,
                                                ArrayRef<int64_t> headDims,
                                                int64_t sharedLimitBytes) {
  for (int64_t d : headDims) {
    LinearGpuBuilder kb(spec, gpuModule, d, sharedLimitBytes);
    if (failed(kb.build()))
      return failure();
  }
  return success();
}
