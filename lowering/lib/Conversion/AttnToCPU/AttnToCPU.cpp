//===- AttnToCPU.cpp - tiled attn specs to vectorized CPU kernels ---------===//
//
// Implements convert-attn-to-cpu: the CPU patterns of the tile ops
// (TileLowering). The kernel for one work item (b, h, q-tile):
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
// bf16-dot (bf16 q and k, a CPU with AVX512-BF16): vdpbf16ps adds two
// products per f32 lane, acc[i] += a[2i] * b[2i] + a[2i+1] * b[2i+1], so
// Q is kept unscaled in bf16 pairs along d, Qp[d/2][i][2], each kv tile's
// K rows are copied to Kp[j][d] (an odd Dqk padded with a zero), and one
// dot with the broadcast pair (k[j][d], k[j][d+1]) does two d-steps for
// vl queries; S is scaled in f32 afterwards (q * scale is not rounded to
// bf16). With a bf16 v, pass 3 does the same along j: P is rounded to bf16
// (l sums the rounded values, so o's weights sum to 1; lse comes from a
// second sum of the unrounded ones) and packed in pairs of kv rows,
// Pp[j/2][i][2], and V in pairs of rows, Vp[j/2][dv][2] (an odd tile padded
// with zeros). K and V rows are copied with vector loads when their
// innermost stride is 1, else element by element.
//
//===----------------------------------------------------------------------===//

#include "BackwardToCPU.h"
#include "HeadDimLanes.h"
#include "KernelBase.h"
#include "LinearBackwardToCPU.h"
#include "LinearToCPU.h"
#include "attn/Conversion/Passes.h"
#include "attn/Conversion/TileLowering.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
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

/// The CPU patterns of the tile ops. A work item's tiles live in heap
/// scratch with queries in SIMD lanes (Qt, St, Ot and the row vectors m, l):
/// the tile values of the program map to those buffers, so the patterns
/// update them in place. qk, score and mask only record what the scores
/// need; the normalizer step emits them fused with its row statistic.
class KernelBuilder : public KernelBase, public TileLowering {
public:
  KernelBuilder(SpecOp spec, ModuleOp module, bool bf16Dot, bool bf16DotPV,
                bool tileStats, bool decode = false, bool paged = false,
                bool wide = false)
      : KernelBase(spec, 16), bf16Dot(bf16Dot), bf16DotPV(bf16DotPV),
        tileStats(tileStats && !decode), decode(decode), wide(decode && wide),
        paged(paged), tiled(spec.getTiledAttention()), regions(tiled),
        sched(tiled ? tiled.getSchedule() : ScheduleAttr()), module(module) {
    // build() reports a missing schedule; keep the sizes valid until then.
    vl = sched ? sched.getVectorWidth() : 16;
    // The decode schedule's tile is one vector of (head, query) lanes, the
    // wide decode kernel's kCPUDecodeWideVectors.
    bq = decode  ? vl * (this->wide ? kCPUDecodeWideVectors : 1)
         : sched ? sched.getTileQ()
                 : 64;
    bk = sched ? sched.getTileKv() : 64;
    ci = bq / vl;
    // Register blocking: keep at most ~24 vector accumulators live.
    // (build() rejects tile_q below or not a multiple of vl.)
    rj = std::max<int64_t>(1,
                           std::min<int64_t>(8, 24 / std::max<int64_t>(ci, 1)));
    rd = rj;
    b.setInsertionPointToEnd(module.getBody());
  }

  LogicalResult build();

  ATTN_TILE_LOWERING_PATTERNS

private:
  void emitPrologue(func::FuncOp fn);
  LogicalResult emitItem(Value item);
  void emitTileStat(Value bIdx, Value h, Value qt, Value kt, Value partial);
  /// Where the i-th row of the work item's q tile comes from.
  struct QueryRow {
    Value h, row; ///< q[b, h, row, :] (index; clamped into range)
    Value valid;  ///< i1: a real query (else a zero padding row)
  };
  QueryRow queryRow(Value i);
  /// Per lane block c: the query index (i64 vector, clamped into [0, N))
  /// and the query head (i64: a scalar when the item has one head, else a
  /// vector) the score and mask regions see.
  void laneIndices(SmallVector<Value> &qIdx, SmallVector<Value> &hIdx);
  LogicalResult emitDecodeItem(Value item);
  /// Decode, head dim in lanes: Qr[g, :] = scale * q row of lane g, for
  /// the lanes those micro-kernels take.
  void emitLoadQRows(Value bIdx);
  /// The head-dim-in-lanes micro-kernels for this call's G * N: body(1)
  /// when G * N = 1, else body(HeadDimLanes::maxQueries(vl)) (the query
  /// rows past G * N are zero).
  SmallVector<Value>
  switchQueries(TypeRange types,
                function_ref<SmallVector<Value>(int64_t)> body);
  /// The (head, query) box of a decode item's valid lanes, as i64 bounds.
  void decodeTileBox(Value &hLo, Value &hHi, Value &qLo, Value &qHi);
  void emitLoadQ(Value bIdx);
  void emitScoresAndNormalize(Value bIdx, Value hk, Value k0, Value kn,
                              Value partial);
  void emitPass1Block(Value bIdx, ArrayRef<Value> h, Value hk, Value k0,
                      Value jb, int64_t nj, Value partial, ArrayRef<Value> qIdx,
                      SmallVector<Value> &stat);
  void finishElement(Value bIdx, ArrayRef<Value> h, Value kvIdx, Value jRow,
                     int64_t c, Value x, bool withMask, ArrayRef<Value> qIdx,
                     SmallVector<Value> &stat);
  void emitFinishRows(Value bIdx, ArrayRef<Value> h, Value k0, Value kn,
                      Value partial, ArrayRef<Value> qIdx,
                      SmallVector<Value> &stat);
  void emitPV(Value hk, Value bIdx, Value k0, Value kn, bool rescale);
  /// emitPV by the lane micro-kernel (Ot[dv][lane]).
  void emitPVLanes(Value hk, Value bIdx, Value k0, Value kn, bool rescale);
  void emitPrefetchNextTile(Value bIdx, Value hk, Value k0, Value jb,
                            int64_t nj);
  // Where kv rows live (contiguous k[b, hk, row, :], or paged).
  /// A kv row of the tile being lowered: the memref and its leading indices
  /// (the column index follows).
  struct KVRow : RowRef {
    KVRow(Value mem, SmallVector<Value, 3> idx) : RowRef{mem, idx} {}
    SmallVector<Value, 4> at(Value d) const {
      SmallVector<Value, 4> r(idx.begin(), idx.end());
      r.push_back(d);
      return r;
    }
  };
  /// Row `row` = tileK0 + j of k (or v) of head hk, through the unit-stride
  /// view when `unit`.
  KVRow kvRow(bool isV, bool unit, Value bIdx, Value hk, Value row, Value j);
  /// Paged: the element offsets in the k and v pools of head hk's rows
  /// k0 .. k0 + kn (decode: also the next tile's, for its prefetch, up to
  /// row M - 1) into kRowOff and vRowOff.
  void emitRowOffsets(Value bIdx, Value hk, Value k0, Value kn);
  /// Paged: binds the item's sequence length M = kv_lens[b] (and nKT).
  void bindSequence(Value bIdx);
  void emitStore(Value bIdx, Value h, Value q0, Value qn);
  // The bf16-dot path.
  void emitLoadQPairs(Value bIdx);
  void emitPackK(Value bIdx, Value hk, Value k0, Value kn);
  void emitPackPV(Value bIdx, Value hk, Value k0, Value kn);
  SmallVector<Value> dotQKBlock(Value jb, int64_t nj, ValueRange init);
  /// x rounded to bf16 and back (P of the bf16 PV product).
  Value roundBF16(Value x) {
    if (!dotPV)
      return x;
    Value t =
        arith::TruncFOp::create(b, VectorType::get({vl}, b.getBF16Type()), x);
    return arith::ExtFOp::create(b, vf32(), t);
  }
  /// The 32-bit pair (mem[i0, i1], mem[i0, i1 + 1]) of a unit-stride bf16
  /// buffer broadcast to all lanes, as 2 * vl bf16.
  Value bcastPair(Value mem, Value i0, Value i1);
  VectorType vbf16(int64_t n) { return VectorType::get({n}, b.getBF16Type()); }
  Value cbf16(float v) {
    return arith::ConstantOp::create(b, b.getFloatAttr(b.getBF16Type(), v));
  }

  bool bf16Dot, bf16DotPV;
  /// Debugging: report every visited (q tile, kv tile) on stderr
  /// (debug-tile-stats); normal kernels have no trace of it.
  bool tileStats = false;
  /// The decode schedule (attn_<name>_decode): one work item is (b, kv head,
  /// lane chunk, kv split); its q tile packs the queries of every head of the
  /// GQA group, query (g, i) in flat lane g * N + i, so each K and V row is
  /// read once per group; it writes a partial (o, lse) per split for the
  /// runtime's LSE merge.
  bool decode = false;
  /// The wide decode kernel (attn_<name>_decode_wide, _paged_decode_wide):
  /// a q tile of kCPUDecodeWideVectors vectors of (head, query) lanes, for
  /// calls whose
  /// G * N exceeds one vector (GQA 32/8 at N = 16: 64 lanes). One vector per
  /// item would read each K and V row once per vector, and with one FMA per
  /// broadcast K element run at a fraction of the FMA units; four share each
  /// load (the prefill tile's blocking). Only the lane micro-kernel.
  bool wide = false;
  /// Paged K/V (attn_<name>_paged, _paged_decode): k and v are page pools
  /// [pages, page_size, Hkv, D] and the kernel takes block_table i32
  /// [B, max_pages] and kv_lens i32 [B] after the aux inputs. M is per
  /// item (kv_lens[b]); each kv tile first computes its rows' element
  /// offsets in the pools (one block-table lookup per row per tile, not per
  /// access), and the loads index 2-D views (offset, column) of the pools.
  bool paged = false;
  Value blockTable, kvLens, pageSize; // paged
  Value kFlat, vFlat, kUFlat, vUFlat; // paged: [rows, D] views
  Value kRowOff, vRowOff; // paged: [bk] (decode: [2 * bk]) index scratch
  SmallVector<Value, 3> kPoolStrides, vPoolStrides; // page, slot, head
  Value Hkv;
  TiledAttentionOp tiled;
  TiledRegions regions;
  ScheduleAttr sched;
  ModuleOp module;
  int64_t bq, bk, ci, rj, rd;

  // Kernel values (q, k, v, o, lse and the dims: KernelScaffold).
  KernelEnv env;
  Value nQT, nKT;                             // index
  Value scale, bias;                          // f32 scalars
  Value hasLse;                               // i1
  Value Qt, St, Ot, mBuf, lBuf, aBuf, invBuf; // local buffers
  Value lxBuf; // the row sum for lse (lBuf but with dotPV: unrounded P)
  // bf16-dot: S = Q K^T (dotQK) and O += P V (dotPV) by vdpbf16ps.
  bool dotQK = false, dotPV = false;
  Value D2;             // ceil(Dqk / 2)
  Value Qp, Kp, Pp, Vp; // bf16 pair buffers
  Value kUnit, vUnit;   // i1: unit innermost stride
  Value kU, vU;         // k, v cast to a unit innermost stride
  NormalizerKind kind;
  /// Score/mask regions present: finish S in a separate row loop.
  bool deferFinish = false;

  // Decode: the splits per (b, kv head, chunk) (the partials' dim 2), the
  // lane chunks per (b, kv head) and G * N, the group's queries.
  Value numSplits, numChunks, groupRows;
  /// Decode: the kernel has the head-dim-in-lanes micro-kernels
  /// (HeadDimLanes.h); `lanesHD` (i1, per call) says a call uses them: G * N
  /// at most HeadDimLanes::maxQueries(vl) and unit-stride K and V rows;
  /// `notLanesHD` is its negation. Their state: Qr [maxQueries,
  /// ceil(Dqk / vl) * vl] (scaled q rows) and Or [maxQueries,
  /// ceil(Dv / vl) * vl] (o rows, stored from there to the partials).
  bool useLanesHD = false;
  Value lanesHD, notLanesHD, Qr, Or;

  // The work item and kv tile being lowered.
  Value itemHk, itemQn;       // kv head, valid rows of the q tile
  Value itemH, itemQ0;        // query head and first row (decode: group, 0)
  Value itemChunk, itemSplit; // decode: first flat lane / bq, kv split
  Value tileK0, tileKn;       // first row and valid rows of the kv tile
  // What the pending scores need (set by qk, score and mask).
  Region *pendingScore = nullptr;
  bool pendingMask = false;
};

} // namespace

void KernelBuilder::emitPrologue(func::FuncOp fn) {
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  env.vectorWidth = vl;
  Hkv = memref::DimOp::create(b, k, 1);
  if (paged) {
    // k, v: [pages, page_size, Hkv, D]. Until an item binds its sequence,
    // M is the block table's capacity (what params evaluated here see).
    unsigned numAux = entry->getNumArguments() - 9;
    blockTable = entry->getArgument(5 + numAux);
    kvLens = entry->getArgument(6 + numAux);
    pageSize = memref::DimOp::create(b, k, 1);
    Hkv = memref::DimOp::create(b, k, 2);
    G = arith::DivUIOp::create(b, Hq, Hkv);
    M = arith::MulIOp::create(b, memref::DimOp::create(b, blockTable, 1),
                              pageSize);
    bindRegionEnv(entry, env, toI64(M), toI64(Hkv));
  } else {
    bindRegionEnv(entry, env);
  }
  auto isBF16 = [](Value m) {
    return cast<MemRefType>(m.getType()).getElementType().isBF16();
  };
  // vdpbf16ps exists for 4, 8 and 16 f32 lanes. Not in the decode kernels:
  // their items are one q tile against the whole kv range, so packing each
  // K and V tile into pairs is paid per 16 or 64 lanes; rows widened to f32
  // on load ran as fast or faster (bf16 GQA 32/8, 2 AVX-512 cores, call by
  // call against the dot kernels: N = 1 1.04x, N = 4 0.95-1.04x, N = 16 on
  // the wide kernel 1.32-1.45x; docs/benchmarks.md), with P in f32.
  dotQK = bf16Dot && !decode && isBF16(q) && isBF16(k) &&
          (vl == 4 || vl == 8 || vl == 16);
  dotPV = dotQK && bf16DotPV && isBF16(v);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
  Value lsePtr = memref::ExtractAlignedPointerAsIndexOp::create(b, lse);
  hasLse = arith::CmpIOp::create(b, P::ne, lsePtr, cidx(0));

  nQT = arith::CeilDivUIOp::create(b, N, cidx(bq));
  nKT = arith::CeilDivUIOp::create(b, M, cidx(bk));
  if (decode) {
    numSplits = memref::DimOp::create(b, o, 2);
    groupRows = arith::MulIOp::create(b, G, N);
    numChunks = arith::CeilDivUIOp::create(b, groupRows, cidx(bq));
  }
  // Local buffers, allocated once per call (not per item).
  Type f32 = b.getF32Type();
  Type bf16 = b.getBF16Type();
  int64_t dyn = ShapedType::kDynamic;
  // A unit innermost stride lets the packing copy rows with vector loads
  // (any other stride takes scalar loads); the view with the static unit
  // stride is only used under that check. (Not memref.cast: canonicalization
  // folds that cast into the loads, which then fail to verify.)
  auto unitInner = [&](Value m, Value &isUnit, Value &view) {
    auto meta = memref::ExtractStridedMetadataOp::create(b, m);
    isUnit = arith::CmpIOp::create(b, P::eq, meta.getStrides().back(), cidx(1));
    auto layout = StridedLayoutAttr::get(b.getContext(), dyn,
                                         ArrayRef<int64_t>{dyn, dyn, dyn, 1});
    SmallVector<OpFoldResult> sizes(meta.getSizes().begin(),
                                    meta.getSizes().end());
    SmallVector<OpFoldResult> strides(meta.getStrides().begin(),
                                      meta.getStrides().end());
    strides.back() = b.getIndexAttr(1);
    Type elt = cast<MemRefType>(m.getType()).getElementType();
    view = memref::ReinterpretCastOp::create(
        b, MemRefType::get({dyn, dyn, dyn, dyn}, elt, layout),
        meta.getBaseBuffer(), OpFoldResult(meta.getOffset()), sizes, strides);
  };
  // Paged: 2-D views (element offset of the row, column) of the pools:
  // strides [1, column stride], and [1, 1] for the unit-stride view.
  auto flatView = [&](Value m, Value cols, bool unit,
                      SmallVector<Value, 3> &poolStrides) {
    auto meta = memref::ExtractStridedMetadataOp::create(b, m);
    poolStrides.assign(meta.getStrides().begin(),
                       meta.getStrides().begin() + 3);
    auto layout = StridedLayoutAttr::get(b.getContext(), dyn,
                                         ArrayRef<int64_t>{1, unit ? 1 : dyn});
    Value rows =
        arith::MulIOp::create(b, meta.getSizes()[0], meta.getStrides()[0]);
    SmallVector<OpFoldResult> sizes{rows, cols};
    SmallVector<OpFoldResult> strides{
        b.getIndexAttr(1), unit ? OpFoldResult(b.getIndexAttr(1))
                                : OpFoldResult(meta.getStrides()[3])};
    Type elt = cast<MemRefType>(m.getType()).getElementType();
    return Value(memref::ReinterpretCastOp::create(
        b, MemRefType::get({dyn, dyn}, elt, layout), meta.getBaseBuffer(),
        OpFoldResult(meta.getOffset()), sizes, strides));
  };
  if (paged) {
    kFlat = flatView(k, Dqk, false, kPoolStrides);
    vFlat = flatView(v, Dv, false, vPoolStrides);
    int64_t rows = decode ? 2 * bk : bk;
    kRowOff = allocScratch(MemRefType::get({rows}, b.getIndexType()));
    vRowOff = allocScratch(MemRefType::get({rows}, b.getIndexType()));
  }
  // Scratch on the heap, once per call (allocScratch): Qt and Ot scale with
  // the head dims, St with the tiles.
  useLanesHD = decode && !wide && HeadDimLanes::maxQueries(vl) >= 1;
  if (dotQK) {
    D2 = arith::CeilDivUIOp::create(b, Dqk, cidx(2));
    Value D2x2 = arith::MulIOp::create(b, D2, cidx(2));
    Qp = allocScratch(MemRefType::get({dyn, 2 * bq}, bf16), ValueRange{D2});
    Kp = allocScratch(MemRefType::get({bk, dyn}, bf16), ValueRange{D2x2});
  } else {
    Qt = allocScratch(MemRefType::get({dyn, bq}, f32), ValueRange{Dqk});
  }
  if (dotQK || useLanesHD) {
    unitInner(k, kUnit, kU);
    if (paged)
      kUFlat = flatView(k, Dqk, true, kPoolStrides);
  }
  if (dotPV) {
    int64_t bk2 = (bk + 1) / 2;
    Pp = allocScratch(MemRefType::get({bk2, 2 * bq}, bf16));
    Vp = allocScratch(MemRefType::get({bk2, dyn}, bf16),
                      ValueRange{arith::MulIOp::create(b, Dv, cidx(2))});
  }
  if (dotPV || useLanesHD) {
    unitInner(v, vUnit, vU);
    if (paged)
      vUFlat = flatView(v, Dv, true, vPoolStrides);
  }
  if (useLanesHD) {
    int64_t gnMax = HeadDimLanes::maxQueries(vl);
    auto padded = [&](Value d) {
      return arith::MulIOp::create(
          b, arith::CeilDivUIOp::create(b, d, cidx(vl)), cidx(vl));
    };
    Qr = allocScratch(MemRefType::get({gnMax, dyn}, f32),
                      ValueRange{padded(Dqk)});
    Or = allocScratch(MemRefType::get({gnMax, dyn}, f32),
                      ValueRange{padded(Dv)});
    lanesHD = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, P::ule, groupRows, cidx(gnMax)),
        arith::AndIOp::create(b, kUnit, vUnit));
    notLanesHD = arith::XOrIOp::create(
        b, lanesHD, arith::ConstantOp::create(b, b.getBoolAttr(true)));
  }

  // With dotPV an odd tile_kv gets one more (zero) row for the last pair.
  St = allocScratch(MemRefType::get({dotPV ? bk + bk % 2 : bk, bq}, f32));
  Ot = allocScratch(MemRefType::get({dyn, bq}, f32), ValueRange{Dv});
  mBuf = allocScratch(MemRefType::get({bq}, f32));
  lBuf = allocScratch(MemRefType::get({bq}, f32));
  lxBuf = dotPV && kind == NormalizerKind::softmax
              ? allocScratch(MemRefType::get({bq}, f32))
              : lBuf;
  aBuf = allocScratch(MemRefType::get({bq}, f32));
  invBuf = allocScratch(MemRefType::get({bq}, f32));
}

KernelBuilder::QueryRow KernelBuilder::queryRow(Value i) {
  if (!decode)
    return {itemH, arith::AddIOp::create(b, itemQ0, i),
            arith::CmpIOp::create(b, P::ult, i, itemQn)};
  // Flat lane f = chunk * bq + i is query (g, r) = (f / N, f % N) of the
  // group; lanes past G * N are padding (clamped for the address).
  Value f = arith::AddIOp::create(
      b, arith::MulIOp::create(b, itemChunk, cidx(bq)), i);
  Value valid = arith::CmpIOp::create(b, P::ult, f, groupRows);
  Value fc = arith::MinUIOp::create(
      b, f, arith::SubIOp::create(b, groupRows, cidx(1)));
  Value h = arith::AddIOp::create(b, arith::MulIOp::create(b, itemHk, G),
                                  arith::DivUIOp::create(b, fc, N));
  return {h, arith::RemUIOp::create(b, fc, N), valid};
}

void KernelBuilder::laneIndices(SmallVector<Value> &qIdx,
                                SmallVector<Value> &hIdx) {
  auto vidx = VectorType::get({vl}, b.getIndexType());
  auto vi64 = VectorType::get({vl}, b.getI64Type());
  Value step = vector::StepOp::create(b, vidx);
  if (!decode) {
    // Clamped to N - 1 so padding lanes of a tail tile never index aux
    // tensors out of range (their results are discarded).
    Value last = toI64(arith::SubIOp::create(b, N, cidx(1)));
    for (int64_t c = 0; c < ci; ++c) {
      Value base = bcast(arith::AddIOp::create(b, itemQ0, cidx(c * vl)));
      Value idx = arith::AddIOp::create(b, base, step);
      Value i64v = arith::IndexCastOp::create(b, vi64, idx);
      qIdx.push_back(arith::MinSIOp::create(b, i64v, bcast(last)));
      hIdx.push_back(toI64(itemH));
    }
    return;
  }
  // Lane f of block c -> (h, q) = (hk * G + f / N, f % N), f = chunk * bq +
  // c * vl + lane, clamped to G * N - 1.
  Value fLast = bcast(arith::SubIOp::create(b, groupRows, cidx(1)));
  Value n = bcast(N);
  Value h0 = bcast(arith::MulIOp::create(b, itemHk, G));
  for (int64_t c = 0; c < ci; ++c) {
    Value base = bcast(arith::AddIOp::create(
        b, arith::MulIOp::create(b, itemChunk, cidx(bq)), cidx(c * vl)));
    Value f =
        arith::MinUIOp::create(b, arith::AddIOp::create(b, base, step), fLast);
    qIdx.push_back(
        arith::IndexCastOp::create(b, vi64, arith::RemUIOp::create(b, f, n)));
    Value h = arith::AddIOp::create(b, h0, arith::DivUIOp::create(b, f, n));
    hIdx.push_back(arith::IndexCastOp::create(b, vi64, h));
  }
}

void KernelBuilder::decodeTileBox(Value &hLo, Value &hHi, Value &qLo,
                                  Value &qHi) {
  // Lanes [f0, f1] of the group hold heads f0 / N .. f1 / N; one head holds
  // queries f0 % N .. f1 % N, several hold all of 0 .. N - 1 (a superset is
  // sound: the mask's intervals only widen).
  Value f0 = arith::MulIOp::create(b, itemChunk, cidx(bq));
  Value f1 = arith::SubIOp::create(
      b,
      arith::MinUIOp::create(b, arith::AddIOp::create(b, f0, cidx(bq)),
                             groupRows),
      cidx(1));
  Value g0 = arith::DivUIOp::create(b, f0, N);
  Value g1 = arith::DivUIOp::create(b, f1, N);
  Value h0 = arith::MulIOp::create(b, itemHk, G);
  hLo = toI64(arith::AddIOp::create(b, h0, g0));
  hHi = toI64(arith::AddIOp::create(b, h0, g1));
  Value oneHead = arith::CmpIOp::create(b, P::eq, g0, g1);
  qLo = toI64(arith::SelectOp::create(
      b, oneHead, arith::RemUIOp::create(b, f0, N), cidx(0)));
  qHi = toI64(arith::SelectOp::create(b, oneHead,
                                      arith::RemUIOp::create(b, f1, N),
                                      arith::SubIOp::create(b, N, cidx(1))));
}

void KernelBuilder::emitLoadQRows(Value bIdx) {
  Value cols = memref::DimOp::create(b, Qr, 1);
  for (int64_t i = 0, e = HeadDimLanes::maxQueries(vl); i < e; ++i) {
    QueryRow qr = queryRow(cidx(i));
    // Padding lanes and the columns past Dqk are 0.
    Value n = arith::SelectOp::create(b, qr.valid, Dqk, cidx(0));
    loop(cidx(0), n, cidx(1), {}, [&](Value d, ValueRange) {
      Value x = toF32(
          memref::LoadOp::create(b, q, ValueRange{bIdx, qr.h, qr.row, d}));
      memref::StoreOp::create(b, arith::MulFOp::create(b, x, scale), Qr,
                              ValueRange{cidx(i), d});
      return SmallVector<Value>{};
    });
    loop(n, cols, cidx(1), {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(b, cf32(0), Qr, ValueRange{cidx(i), d});
      return SmallVector<Value>{};
    });
  }
}

SmallVector<Value>
KernelBuilder::switchQueries(TypeRange types,
                             function_ref<SmallVector<Value>(int64_t)> body) {
  // Two versions, not one per G * N: each is a copy of both micro-kernels
  // (compile time), and 2 <= G * N < maxQueries takes the widest, whose
  // extra query rows are zero.
  int64_t gnMax = HeadDimLanes::maxQueries(vl);
  if (gnMax == 1)
    return body(1);
  auto ifOp = scf::IfOp::create(
      b, types, arith::CmpIOp::create(b, P::eq, groupRows, cidx(1)), true);
  OpBuilder::InsertionGuard g(b);
  for (auto [block, gn] : {std::pair(&ifOp.getThenRegion().front(), int64_t{1}),
                           std::pair(&ifOp.getElseRegion().front(), gnMax)}) {
    // Without results the scf.if comes with its yields; build our own.
    if (!block->empty())
      block->getTerminator()->erase();
    b.setInsertionPointToEnd(block);
    scf::YieldOp::create(b, body(gn));
  }
  return SmallVector<Value>(ifOp.getResults());
}

void KernelBuilder::emitLoadQ(Value bIdx) {
  Value zero = cf32(0);
  loop(cidx(0), cidx(bq), cidx(1), {}, [&](Value i, ValueRange) {
    QueryRow qr = queryRow(i);
    Value h = qr.h, row = qr.row;
    auto ifOp = scf::IfOp::create(b, TypeRange{}, qr.valid, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
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

KernelBuilder::KVRow KernelBuilder::kvRow(bool isV, bool unit, Value bIdx,
                                          Value hk, Value row, Value j) {
  if (!paged)
    return {unit ? (isV ? vU : kU) : (isV ? v : k), {bIdx, hk, row}};
  Value off = memref::LoadOp::create(b, isV ? vRowOff : kRowOff, j);
  return {unit ? (isV ? vUFlat : kUFlat) : (isV ? vFlat : kFlat), {off}};
}

void KernelBuilder::emitRowOffsets(Value bIdx, Value hk, Value k0, Value kn) {
  // Rows k0 + j, j < count, walking (page index, slot) from (k0 / P, k0 % P):
  // no division per row (a dynamic division is ~20-40 cycles, and a tile's
  // rows would take several thousand cycles of them). The runtime checked
  // every page id these rows use: in [0, pages).
  Value count = kn;
  if (decode)
    count = arith::MinUIOp::create(b, cidx(2 * bk),
                                   arith::SubIOp::create(b, M, k0));
  Value p0 = arith::DivUIOp::create(b, k0, pageSize);
  Value s0 = arith::RemUIOp::create(b, k0, pageSize);
  Value kHead = arith::MulIOp::create(b, hk, kPoolStrides[2]);
  Value vHead = arith::MulIOp::create(b, hk, vPoolStrides[2]);
  loop(cidx(0), count, cidx(1), {p0, s0}, [&](Value j, ValueRange ps) {
    Value page = arith::IndexCastOp::create(
        b, b.getIndexType(),
        memref::LoadOp::create(b, blockTable, ValueRange{bIdx, ps[0]}));
    auto offset = [&](ArrayRef<Value> st, Value head) -> Value {
      return arith::AddIOp::create(
          b,
          arith::AddIOp::create(b, arith::MulIOp::create(b, page, st[0]),
                                arith::MulIOp::create(b, ps[1], st[1])),
          head);
    };
    memref::StoreOp::create(b, offset(kPoolStrides, kHead), kRowOff, j);
    memref::StoreOp::create(b, offset(vPoolStrides, vHead), vRowOff, j);
    Value s1 = arith::AddIOp::create(b, ps[1], cidx(1));
    Value wrap = arith::CmpIOp::create(b, P::eq, s1, pageSize);
    return SmallVector<Value>{
        arith::SelectOp::create(
            b, wrap, arith::AddIOp::create(b, ps[0], cidx(1)), ps[0]),
        arith::SelectOp::create(b, wrap, cidx(0), s1)};
  });
}

void KernelBuilder::bindSequence(Value bIdx) {
  // The runtime checked 0 <= kv_lens[b] <= max_pages * page_size.
  M = arith::IndexCastOp::create(b, b.getIndexType(),
                                 memref::LoadOp::create(b, kvLens, bIdx));
  nKT = arith::CeilDivUIOp::create(b, M, cidx(bk));
  env.dims["M"] = toI64(M);
  // What the prologue derived from M: the params (sigmoid's bias = -log(M)),
  // the scale and the normalizer's bias.
  bindParams(b, spec, env);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
}

/// Pass 1 for `nj` kv rows starting at jb (relative to k0): S rows, score,
/// mask, and the running row statistic (max for softmax, sum for relu with
/// row normalization) in `stat`.
void KernelBuilder::emitPass1Block(Value bIdx, ArrayRef<Value> h, Value hk,
                                   Value k0, Value jb, int64_t nj,
                                   Value partial, ArrayRef<Value> qIdx,
                                   SmallVector<Value> &stat) {
  if (decode)
    emitPrefetchNextTile(bIdx, hk, k0, jb, nj);
  SmallVector<Value> init(nj * ci, vsplat(0));
  SmallVector<Value> rows;
  for (int64_t r = 0; r < nj; ++r)
    rows.push_back(
        arith::AddIOp::create(b, arith::AddIOp::create(b, k0, jb), cidx(r)));
  // S rows += K[row r, d] * Q[d] over d, row r from kRows[r].
  auto qkLoop = [&](ArrayRef<KVRow> kRows) {
    auto dLoop =
        loop(cidx(0), Dqk, cidx(1), init, [&](Value d, ValueRange acc) {
          SmallVector<Value> qv;
          for (int64_t c = 0; c < ci; ++c)
            qv.push_back(vector::LoadOp::create(b, vf32(), Qt,
                                                ValueRange{d, cidx(c * vl)}));
          SmallVector<Value> next;
          for (int64_t r = 0; r < nj; ++r) {
            Value kv = bcast(
                toF32(memref::LoadOp::create(b, kRows[r].mem, kRows[r].at(d))));
            for (int64_t c = 0; c < ci; ++c)
              next.push_back(
                  vector::FMAOp::create(b, kv, qv[c], acc[r * ci + c]));
          }
          return next;
        });
    return SmallVector<Value>(dLoop.getResults());
  };
  auto tableRows = [&] {
    SmallVector<KVRow> kRows;
    for (int64_t r = 0; r < nj; ++r)
      kRows.push_back(kvRow(false, false, bIdx, hk, rows[r],
                            arith::AddIOp::create(b, jb, cidx(r))));
    return kRows;
  };
  // S by the lane micro-kernel (queries in lanes).
  auto lanesS = [&] {
    SmallVector<Value> sAcc;
    if (dotQK) {
      sAcc = dotQKBlock(jb, nj, init);
    } else if (!paged) {
      sAcc = qkLoop(tableRows());
    } else {
      // Paged: a block whose rows share a page steps by the slot stride from
      // its first row (one base register, as contiguous K); one that crosses
      // a page takes each row's offset (nj base registers, which spill).
      Value slot = arith::RemUIOp::create(b, rows[0], pageSize);
      Value onePage = arith::CmpIOp::create(
          b, P::ule, arith::AddIOp::create(b, slot, cidx(nj)), pageSize);
      SmallVector<Type> types(nj * ci, vf32());
      auto ifOp = scf::IfOp::create(b, types, onePage, true);
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value base = memref::LoadOp::create(b, kRowOff, ValueRange{jb});
      SmallVector<KVRow> affine;
      for (int64_t r = 0; r < nj; ++r)
        affine.push_back(
            {kFlat,
             {arith::AddIOp::create(
                 b, base,
                 arith::MulIOp::create(b, cidx(r), kPoolStrides[1]))}});
      scf::YieldOp::create(b, qkLoop(affine));
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, qkLoop(tableRows()));
      b.setInsertionPointAfter(ifOp);
      sAcc.assign(ifOp.getResults().begin(), ifOp.getResults().end());
    }
    return sAcc;
  };
  SmallVector<Value> sAcc;
  if (useLanesHD) {
    // Decode with few queries: the head-dim-in-lanes micro-kernel.
    SmallVector<Type> types(nj * ci, vf32());
    auto ifOp = scf::IfOp::create(b, types, lanesHD, true);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    SmallVector<RowRef> kRows;
    for (int64_t r = 0; r < nj; ++r)
      kRows.push_back(kvRow(false, true, bIdx, hk, rows[r],
                            arith::AddIOp::create(b, jb, cidx(r))));
    scf::YieldOp::create(b, switchQueries(types, [&](int64_t gn) {
                           return HeadDimLanes(b, vl).scores(Qr, gn, kRows,
                                                             Dqk);
                         }));
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, lanesS());
    b.setInsertionPointAfter(ifOp);
    sAcc.assign(ifOp.getResults().begin(), ifOp.getResults().end());
  } else {
    sAcc = lanesS();
  }
  for (int64_t r = 0; r < nj; ++r) {
    Value jRow = arith::AddIOp::create(b, jb, cidx(r));
    for (int64_t c = 0; c < ci; ++c) {
      Value x = sAcc[r * ci + c];
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

/// Decode: prefetches into L2 the K and V rows jb .. jb + nj of the next kv
/// tile. A decode step reads every K and V byte once, so the kernel is
/// bound by memory; the rj rows a block reads in lockstep are too short a
/// stream each (one row, Dqk elements) for the hardware prefetchers, which
/// left one core at ~5 GB/s (measured at M = 8k, D = 128). One tile ahead
/// is ~2 us of work, far more than a miss takes; L2 (locality 2), since
/// the tile in use already fills most of L1. Rows clamp to M - 1 (the last
/// tile prefetches its own last row again).
void KernelBuilder::emitPrefetchNextTile(Value bIdx, Value hk, Value k0,
                                         Value jb, int64_t nj) {
  Value lastRow = arith::SubIOp::create(b, M, cidx(1));
  auto lines = [&](bool isV, Value dim, Value row) {
    KVRow at{isV ? v : k, {bIdx, hk, row}};
    if (paged) // emitRowOffsets covered rows up to min(k0 + 2 bk, M) - 1
      at = {isV ? vFlat : kFlat,
            {Value(memref::LoadOp::create(
                b, isV ? vRowOff : kRowOff,
                ValueRange{arith::SubIOp::create(b, row, k0)}))}};
    int64_t bytes = cast<MemRefType>(at.mem.getType())
                        .getElementType()
                        .getIntOrFloatBitWidth() /
                    8;
    // d < dim by the loop bound: no clamp.
    loop(cidx(0), dim, cidx(64 / bytes), {}, [&](Value d, ValueRange) {
      memref::PrefetchOp::create(b, at.mem, at.at(d), b.getBoolAttr(false),
                                 b.getI32IntegerAttr(2), b.getBoolAttr(true));
      return SmallVector<Value>{};
    });
  };
  Value base =
      arith::AddIOp::create(b, arith::AddIOp::create(b, k0, cidx(bk)), jb);
  for (int64_t r = 0; r < nj; ++r) {
    Value row = arith::MinUIOp::create(
        b, arith::AddIOp::create(b, base, cidx(r)), lastRow);
    lines(false, Dqk, row);
    lines(true, Dv, row);
  }
}

/// Score, mask and normalizer of one vector of S (kv row jRow, lanes of
/// query block c); writes P to St and updates the row statistic.
void KernelBuilder::finishElement(Value bIdx, ArrayRef<Value> h, Value kvIdx,
                                  Value jRow, int64_t c, Value x, bool withMask,
                                  ArrayRef<Value> qIdx,
                                  SmallVector<Value> &stat) {
  Value hI64 = h[c], bI64 = toI64(bIdx);
  if (pendingScore)
    x = emitRegion(b, *pendingScore, {x, bI64, hI64, qIdx[c], kvIdx}, env);
  // Visibility: evaluated only on partial tiles (the caller emits one
  // version of the row loop per tile class).
  Value visible;
  if (withMask) {
    visible = emitRegion(b, *regions.mask, {bI64, hI64, qIdx[c], kvIdx}, env);
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
    for (int64_t i = 1, e = tiled.getReluPower(); i < e; ++i)
      p = arith::MulFOp::create(b, p, r0);
    break;
  }
  case NormalizerKind::none:
    break;
  }
  if (kind != NormalizerKind::softmax && visible)
    p = arith::SelectOp::create(b, visible, p, vsplat(0));
  if (kind != NormalizerKind::softmax)
    p = roundBF16(p);
  if (kind == NormalizerKind::relu && tiled.getRowNormalize())
    stat[c] = arith::AddFOp::create(b, stat[c], p);
  vector::StoreOp::create(b, p, St, ValueRange{jRow, cidx(c * vl)});
}

void KernelBuilder::emitFinishRows(Value bIdx, ArrayRef<Value> h, Value k0,
                                   Value kn, Value partial,
                                   ArrayRef<Value> qIdx,
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
  if (!pendingMask) {
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
  if (!useLanesHD)
    return emitPVLanes(hk, bIdx, k0, kn, rescale);
  auto ifOp = scf::IfOp::create(b, TypeRange{}, lanesHD, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  switchQueries({}, [&](int64_t gn) {
    HeadDimLanes(b, vl).accumulatePV(
        Or, St, aBuf, gn, kn, Dv,
        [&](Value j) -> RowRef {
          return kvRow(true, true, bIdx, hk, arith::AddIOp::create(b, k0, j),
                       j);
        },
        rescale);
    return SmallVector<Value>{};
  });
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  emitPVLanes(hk, bIdx, k0, kn, rescale);
}

void KernelBuilder::emitPVLanes(Value hk, Value bIdx, Value k0, Value kn,
                                bool rescale) {
  // Pass 3: Ot[dv][i] (* alpha[i] for softmax) + sum_j V[j, dv] * P[j][i],
  // rd value columns at a time so the accumulators stay in registers.
  Value kn2;
  if (dotPV) {
    emitPackPV(bIdx, hk, k0, kn);
    kn2 = arith::CeilDivUIOp::create(b, kn, cidx(2));
  }
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
    // bf16: two kv rows per dot with the pair (V[j][dv], V[j+1][dv]).
    auto dotLoop = [&] {
      return loop(cidx(0), kn2, cidx(1), init, [&](Value j2, ValueRange acc) {
        SmallVector<Value> pv;
        for (int64_t c = 0; c < ci; ++c)
          pv.push_back(vector::LoadOp::create(
              b, vbf16(2 * vl), Pp, ValueRange{j2, cidx(c * 2 * vl)}));
        SmallVector<Value> next;
        for (int64_t r = 0; r < nd; ++r) {
          Value col = arith::MulIOp::create(
              b, arith::AddIOp::create(b, dvb, cidx(r)), cidx(2));
          Value vv = bcastPair(Vp, j2, col);
          for (int64_t c = 0; c < ci; ++c)
            next.push_back(x86vector::DotBF16Op::create(
                b, vf32(), acc[r * ci + c], pv[c], vv));
        }
        return next;
      });
    };
    // acc + P[j] * V[j, dvb .. dvb + nd) for the rows j in [lo, hi); the
    // row comes from vRow(j).
    auto rowsLoop = [&](Value lo, Value hi, ValueRange init,
                        function_ref<KVRow(Value)> vRow) {
      return loop(lo, hi, cidx(1), init, [&](Value j, ValueRange acc) {
        SmallVector<Value> pv;
        for (int64_t c = 0; c < ci; ++c)
          pv.push_back(vector::LoadOp::create(b, vf32(), St,
                                              ValueRange{j, cidx(c * vl)}));
        KVRow row = vRow(j);
        SmallVector<Value> next;
        for (int64_t r = 0; r < nd; ++r) {
          Value col = arith::AddIOp::create(b, dvb, cidx(r));
          Value vv =
              bcast(toF32(memref::LoadOp::create(b, row.mem, row.at(col))));
          for (int64_t c = 0; c < ci; ++c)
            next.push_back(
                vector::FMAOp::create(b, vv, pv[c], acc[r * ci + c]));
        }
        return next;
      });
    };
    auto fp32Loop = [&]() -> scf::ForOp {
      if (!paged)
        return rowsLoop(cidx(0), kn, init, [&](Value j) {
          return kvRow(true, false, bIdx, hk, arith::AddIOp::create(b, k0, j),
                       j);
        });
      // Paged: the tile's rows run by run, a run being the rows in one page
      // (rows [r * P - s0, (r + 1) * P - s0) of the tile, s0 = k0 % P), so
      // the inner loop steps by the slot stride from the run's first row, as
      // the contiguous loop does, instead of loading every row's offset.
      Value s0 = arith::RemUIOp::create(b, k0, pageSize);
      Value runs = arith::CeilDivUIOp::create(
          b, arith::AddIOp::create(b, s0, kn), pageSize);
      return loop(cidx(0), runs, cidx(1), init, [&](Value r, ValueRange acc) {
        Value start = arith::MulIOp::create(b, r, pageSize);
        Value lo =
            arith::SubIOp::create(b, arith::MaxUIOp::create(b, start, s0), s0);
        Value hi = arith::MinUIOp::create(
            b,
            arith::SubIOp::create(b, arith::AddIOp::create(b, start, pageSize),
                                  s0),
            kn);
        Value base = memref::LoadOp::create(b, vRowOff, ValueRange{lo});
        auto inner = rowsLoop(lo, hi, acc, [&](Value j) {
          Value off = arith::AddIOp::create(
              b, base,
              arith::MulIOp::create(b, arith::SubIOp::create(b, j, lo),
                                    vPoolStrides[1]));
          return KVRow{vFlat, {off}};
        });
        return SmallVector<Value>(inner.getResults());
      });
    };
    auto jLoop = dotPV ? dotLoop() : fp32Loop();
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

Value KernelBuilder::bcastPair(Value mem, Value i0, Value i1) {
  Type i32 = b.getI32Type();
  Value pair = vector::LoadOp::create(b, vbf16(2), mem, ValueRange{i0, i1});
  Value word = vector::ExtractOp::create(
      b, vector::BitCastOp::create(b, VectorType::get({1}, i32), pair),
      ArrayRef<int64_t>{0});
  return vector::BitCastOp::create(
      b, vbf16(2 * vl),
      vector::BroadcastOp::create(b, VectorType::get({vl}, i32), word));
}

/// Qp[d/2][2i + d%2] = q[b, h, row, d] of the item's row i (bf16,
/// unscaled); an odd Dqk and padding rows are zero.
void KernelBuilder::emitLoadQPairs(Value bIdx) {
  Value zero = cbf16(0);
  Value dLast = arith::SubIOp::create(b, Dqk, cidx(1));
  loop(cidx(0), cidx(bq), cidx(1), {}, [&](Value i, ValueRange) {
    Value i0 = arith::MulIOp::create(b, i, cidx(2));
    Value i1 = arith::AddIOp::create(b, i0, cidx(1));
    QueryRow qr = queryRow(i);
    Value h = qr.h, row = qr.row;
    auto ifOp = scf::IfOp::create(b, TypeRange{}, qr.valid, true);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    loop(cidx(0), D2, cidx(1), {}, [&](Value d2, ValueRange) {
      Value d = arith::MulIOp::create(b, d2, cidx(2));
      Value d1 = arith::AddIOp::create(b, d, cidx(1));
      Value x0 = memref::LoadOp::create(b, q, ValueRange{bIdx, h, row, d});
      Value x1 = memref::LoadOp::create(
          b, q, ValueRange{bIdx, h, row, arith::MinUIOp::create(b, d1, dLast)});
      x1 = arith::SelectOp::create(b, arith::CmpIOp::create(b, P::ult, d1, Dqk),
                                   x1, zero);
      memref::StoreOp::create(b, x0, Qp, ValueRange{d2, i0});
      memref::StoreOp::create(b, x1, Qp, ValueRange{d2, i1});
      return SmallVector<Value>{};
    });
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    loop(cidx(0), D2, cidx(1), {}, [&](Value d2, ValueRange) {
      memref::StoreOp::create(b, zero, Qp, ValueRange{d2, i0});
      memref::StoreOp::create(b, zero, Qp, ValueRange{d2, i1});
      return SmallVector<Value>{};
    });
    return SmallVector<Value>{};
  });
}

/// Kp[j][d] = k[b, hk, k0 + j, d] for j < kn, d < 2 * D2 (an odd Dqk padded
/// with a zero): vector copies for a unit innermost stride, else scalars.
void KernelBuilder::emitPackK(Value bIdx, Value hk, Value k0, Value kn) {
  int64_t w = 2 * vl;
  Value D2x2 = arith::MulIOp::create(b, D2, cidx(2));
  auto ifOp = scf::IfOp::create(b, TypeRange{}, kUnit, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  {
    Value full =
        arith::SubIOp::create(b, Dqk, arith::RemUIOp::create(b, Dqk, cidx(w)));
    Value tail = arith::SubIOp::create(b, D2x2, full);
    Value hasTail = arith::CmpIOp::create(b, P::ugt, tail, cidx(0));
    auto maskTy = VectorType::get({w}, b.getI1Type());
    Value ldMask = vector::CreateMaskOp::create(
        b, maskTy, ValueRange{arith::SubIOp::create(b, Dqk, full)});
    Value stMask = vector::CreateMaskOp::create(b, maskTy, ValueRange{tail});
    Value pass = arith::ConstantOp::create(b, b.getZeroAttr(vbf16(w)));
    loop(cidx(0), kn, cidx(1), {}, [&](Value j, ValueRange) {
      KVRow row =
          kvRow(false, true, bIdx, hk, arith::AddIOp::create(b, k0, j), j);
      loop(cidx(0), full, cidx(w), {}, [&](Value d, ValueRange) {
        Value x = vector::LoadOp::create(b, vbf16(w), row.mem, row.at(d));
        vector::StoreOp::create(b, x, Kp, ValueRange{j, d});
        return SmallVector<Value>{};
      });
      ifThen(hasTail, [&] {
        Value x = vector::MaskedLoadOp::create(b, vbf16(w), row.mem,
                                               row.at(full), ldMask, pass);
        vector::MaskedStoreOp::create(b, Kp, ValueRange{j, full}, stMask, x);
      });
      return SmallVector<Value>{};
    });
  }
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  {
    Value zero = cbf16(0);
    Value dLast = arith::SubIOp::create(b, Dqk, cidx(1));
    loop(cidx(0), kn, cidx(1), {}, [&](Value j, ValueRange) {
      KVRow row =
          kvRow(false, false, bIdx, hk, arith::AddIOp::create(b, k0, j), j);
      loop(cidx(0), D2x2, cidx(1), {}, [&](Value d, ValueRange) {
        Value x = memref::LoadOp::create(
            b, row.mem, row.at(arith::MinUIOp::create(b, d, dLast)));
        x = arith::SelectOp::create(b, arith::CmpIOp::create(b, P::ult, d, Dqk),
                                    x, zero);
        memref::StoreOp::create(b, x, Kp, ValueRange{j, d});
        return SmallVector<Value>{};
      });
      return SmallVector<Value>{};
    });
  }
}

/// S for kv rows [jb, jb + nj) of the tile: sum over d pairs of
/// dot(Qp[d/2], (Kp[j][d], Kp[j][d + 1])), then * scale.
SmallVector<Value> KernelBuilder::dotQKBlock(Value jb, int64_t nj,
                                             ValueRange init) {
  SmallVector<Value> rows;
  for (int64_t r = 0; r < nj; ++r)
    rows.push_back(arith::AddIOp::create(b, jb, cidx(r)));
  auto dLoop = loop(cidx(0), D2, cidx(1), init, [&](Value d2, ValueRange acc) {
    SmallVector<Value> qv;
    for (int64_t c = 0; c < ci; ++c)
      qv.push_back(vector::LoadOp::create(b, vbf16(2 * vl), Qp,
                                          ValueRange{d2, cidx(c * 2 * vl)}));
    Value col = arith::MulIOp::create(b, d2, cidx(2));
    SmallVector<Value> next;
    for (int64_t r = 0; r < nj; ++r) {
      Value kv = bcastPair(Kp, rows[r], col);
      for (int64_t c = 0; c < ci; ++c)
        next.push_back(x86vector::DotBF16Op::create(b, vf32(), acc[r * ci + c],
                                                    qv[c], kv));
    }
    return next;
  });
  SmallVector<Value> out;
  Value sc = bcast(scale);
  for (Value x : dLoop.getResults())
    out.push_back(arith::MulFOp::create(b, x, sc));
  return out;
}

/// P (St rows [0, kn), f32, already bf16-exact) to Pp[j/2][2i + j%2], V
/// rows to Vp[j/2][2dv + j%2]; an odd kn pairs its last row with zeros.
void KernelBuilder::emitPackPV(Value bIdx, Value hk, Value k0, Value kn) {
  Value kn2 = arith::CeilDivUIOp::create(b, kn, cidx(2));
  Value pairs = arith::DivUIOp::create(b, kn, cidx(2));
  Value odd = arith::CmpIOp::create(b, P::ne, pairs, kn2);
  ifThen(odd, [&] {
    for (int64_t c = 0; c < ci; ++c)
      vector::StoreOp::create(b, vsplat(0), St, ValueRange{kn, cidx(c * vl)});
  });
  // Lanes (x0, y0, x1, y1, ...) of two vl-vectors.
  SmallVector<int64_t> zip;
  for (int64_t i = 0; i < vl; ++i) {
    zip.push_back(i);
    zip.push_back(vl + i);
  }
  auto interleave = [&](Value x, Value y) -> Value {
    return vector::ShuffleOp::create(b, x, y, zip);
  };
  loop(cidx(0), kn2, cidx(1), {}, [&](Value j2, ValueRange) {
    Value j = arith::MulIOp::create(b, j2, cidx(2));
    Value j1 = arith::AddIOp::create(b, j, cidx(1));
    for (int64_t c = 0; c < ci; ++c) {
      auto half = [&](Value row) -> Value {
        Value p = vector::LoadOp::create(b, vf32(), St,
                                         ValueRange{row, cidx(c * vl)});
        return arith::TruncFOp::create(b, vbf16(vl), p);
      };
      vector::StoreOp::create(b, interleave(half(j), half(j1)), Pp,
                              ValueRange{j2, cidx(c * 2 * vl)});
    }
    return SmallVector<Value>{};
  });

  auto ifOp = scf::IfOp::create(b, TypeRange{}, vUnit, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  {
    Value full =
        arith::SubIOp::create(b, Dv, arith::RemUIOp::create(b, Dv, cidx(vl)));
    Value rem = arith::SubIOp::create(b, Dv, full);
    Value hasTail = arith::CmpIOp::create(b, P::ugt, rem, cidx(0));
    Value ldMask = vector::CreateMaskOp::create(
        b, VectorType::get({vl}, b.getI1Type()), ValueRange{rem});
    Value stMask = vector::CreateMaskOp::create(
        b, VectorType::get({2 * vl}, b.getI1Type()),
        ValueRange{arith::MulIOp::create(b, rem, cidx(2))});
    Value zeroV = arith::ConstantOp::create(b, b.getZeroAttr(vbf16(vl)));
    Value fullX2 = arith::MulIOp::create(b, full, cidx(2));
    // One pair of V rows (the second one zero for the odd last row).
    auto packRows = [&](Value j2, bool second) {
      Value j0 = arith::MulIOp::create(b, j2, cidx(2));
      Value j1 = arith::AddIOp::create(b, j0, cidx(1));
      KVRow r0 =
          kvRow(true, true, bIdx, hk, arith::AddIOp::create(b, k0, j0), j0);
      KVRow r1 = second ? kvRow(true, true, bIdx, hk,
                                arith::AddIOp::create(b, k0, j1), j1)
                        : r0;
      loop(cidx(0), full, cidx(vl), {}, [&](Value dv, ValueRange) {
        Value x = vector::LoadOp::create(b, vbf16(vl), r0.mem, r0.at(dv));
        Value y =
            second
                ? Value(vector::LoadOp::create(b, vbf16(vl), r1.mem, r1.at(dv)))
                : zeroV;
        vector::StoreOp::create(
            b, interleave(x, y), Vp,
            ValueRange{j2, arith::MulIOp::create(b, dv, cidx(2))});
        return SmallVector<Value>{};
      });
      ifThen(hasTail, [&] {
        Value x = vector::MaskedLoadOp::create(b, vbf16(vl), r0.mem,
                                               r0.at(full), ldMask, zeroV);
        Value y = second
                      ? Value(vector::MaskedLoadOp::create(
                            b, vbf16(vl), r1.mem, r1.at(full), ldMask, zeroV))
                      : zeroV;
        vector::MaskedStoreOp::create(b, Vp, ValueRange{j2, fullX2}, stMask,
                                      interleave(x, y));
      });
    };
    loop(cidx(0), pairs, cidx(1), {}, [&](Value j2, ValueRange) {
      packRows(j2, true);
      return SmallVector<Value>{};
    });
    ifThen(odd, [&] { packRows(pairs, false); });
  }
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  {
    Value zero = cbf16(0);
    Value jLast = arith::SubIOp::create(b, kn, cidx(1));
    loop(cidx(0), kn2, cidx(1), {}, [&](Value j2, ValueRange) {
      Value j = arith::MulIOp::create(b, j2, cidx(2));
      Value j1 = arith::AddIOp::create(b, j, cidx(1));
      Value has1 = arith::CmpIOp::create(b, P::ult, j1, kn);
      Value j1c = arith::MinUIOp::create(b, j1, jLast);
      KVRow r0 =
          kvRow(true, false, bIdx, hk, arith::AddIOp::create(b, k0, j), j);
      KVRow r1 =
          kvRow(true, false, bIdx, hk, arith::AddIOp::create(b, k0, j1c), j1c);
      loop(cidx(0), Dv, cidx(1), {}, [&](Value dv, ValueRange) {
        Value x = memref::LoadOp::create(b, r0.mem, r0.at(dv));
        Value y = memref::LoadOp::create(b, r1.mem, r1.at(dv));
        y = arith::SelectOp::create(b, has1, y, zero);
        Value col = arith::MulIOp::create(b, dv, cidx(2));
        memref::StoreOp::create(b, x, Vp, ValueRange{j2, col});
        memref::StoreOp::create(
            b, y, Vp, ValueRange{j2, arith::AddIOp::create(b, col, cidx(1))});
        return SmallVector<Value>{};
      });
      return SmallVector<Value>{};
    });
  }
}

/// Pass 1 (S with the pending score and mask, the row statistic) and the
/// normalizer's update of the row state; O += P V is lowerPV's.
void KernelBuilder::emitScoresAndNormalize(Value bIdx, Value hk, Value k0,
                                           Value kn, Value partial) {
  // h below is what the score and mask regions see (laneIndices).
  SmallVector<Value> qIdx, h;
  laneIndices(qIdx, h);
  bool softmax = kind == NormalizerKind::softmax;
  bool rowSum = kind == NormalizerKind::relu && tiled.getRowNormalize();
  if (dotQK && useLanesHD)
    ifThen(notLanesHD, [&] { emitPackK(bIdx, hk, k0, kn); });
  else if (dotQK)
    emitPackK(bIdx, hk, k0, kn);
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
    // With bf16 P, l sums the rounded P (o's weights then sum to 1) and
    // lxBuf the exact ones (for lse).
    SmallVector<Value> zero(dotPV ? 2 * ci : ci, vsplat(0));
    auto sumLoop =
        loop(cidx(0), kn, cidx(1), zero, [&](Value j, ValueRange acc) {
          SmallVector<Value> next(acc.size());
          for (int64_t c = 0; c < ci; ++c) {
            Value s = vector::LoadOp::create(b, vf32(), St,
                                             ValueRange{j, cidx(c * vl)});
            Value p =
                math::ExpOp::create(b, arith::SubFOp::create(b, s, mSafe[c]));
            if (dotPV) {
              next[ci + c] = arith::AddFOp::create(b, acc[ci + c], p);
              p = roundBF16(p);
            }
            vector::StoreOp::create(b, p, St, ValueRange{j, cidx(c * vl)});
            next[c] = arith::AddFOp::create(b, acc[c], p);
          }
          return next;
        });
    auto update = [&](Value buf, Value sum, int64_t c) {
      Value lOld =
          vector::LoadOp::create(b, vf32(), buf, ValueRange{cidx(c * vl)});
      Value lNew = vector::FMAOp::create(b, lOld, alpha[c], sum);
      vector::StoreOp::create(b, lNew, buf, ValueRange{cidx(c * vl)});
    };
    for (int64_t c = 0; c < ci; ++c) {
      update(lBuf, sumLoop.getResult(c), c);
      if (dotPV)
        update(lxBuf, sumLoop.getResult(ci + c), c);
      vector::StoreOp::create(b, alpha[c], aBuf, ValueRange{cidx(c * vl)});
    }
    return;
  }
  if (rowSum)
    for (int64_t c = 0; c < ci; ++c) {
      Value lOld =
          vector::LoadOp::create(b, vf32(), lBuf, ValueRange{cidx(c * vl)});
      vector::StoreOp::create(b, arith::AddFOp::create(b, lOld, stat[c]), lBuf,
                              ValueRange{cidx(c * vl)});
    }
}

void KernelBuilder::emitStore(Value bIdx, Value h, Value q0, Value qn) {
  bool softmax = kind == NormalizerKind::softmax;
  bool divide =
      softmax || (kind == NormalizerKind::relu && tiled.getRowNormalize());
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
        Value lx = lxBuf == lBuf
                       ? l
                       : Value(vector::LoadOp::create(
                             b, vf32(), lxBuf, ValueRange{cidx(c * vl)}));
        Value lse = arith::SelectOp::create(
            b, pos, arith::AddFOp::create(b, m, math::LogOp::create(b, lx)),
            vsplat(-std::numeric_limits<float>::infinity()));
        vector::StoreOp::create(b, lse, mBuf, ValueRange{cidx(c * vl)});
      }
    }
    vector::StoreOp::create(b, inv, invBuf, ValueRange{cidx(c * vl)});
  }
  if (decode) {
    // The split's partial (o, lse) of every lane, padding lanes included
    // (finite: their q rows are 0); the runtime merges the valid ones.
    Value base = arith::MulIOp::create(b, itemChunk, cidx(bq));
    auto storeLanes = [&](Value lo, Value hi,
                          function_ref<Value(Value i, Value d)> acc) {
      loop(lo, hi, cidx(1), {}, [&](Value i, ValueRange) {
        Value lane = arith::AddIOp::create(b, base, i);
        Value inv = memref::LoadOp::create(b, invBuf, ValueRange{i});
        loop(cidx(0), Dv, cidx(1), {}, [&](Value d, ValueRange) {
          memref::StoreOp::create(b, arith::MulFOp::create(b, acc(i, d), inv),
                                  o,
                                  ValueRange{bIdx, itemHk, itemSplit, lane, d});
          return SmallVector<Value>{};
        });
        Value x = memref::LoadOp::create(b, mBuf, ValueRange{i});
        memref::StoreOp::create(b, x, lse,
                                ValueRange{bIdx, itemHk, itemSplit, lane});
        return SmallVector<Value>{};
      });
    };
    auto fromOt = [&](Value i, Value d) -> Value {
      return memref::LoadOp::create(b, Ot, ValueRange{d, i});
    };
    if (!useLanesHD) {
      storeLanes(cidx(0), cidx(bq), fromOt);
      return;
    }
    // The head-dim-in-lanes micro-kernel's rows are in Or; Ot's lanes past
    // the group's queries are still 0.
    ifThenElse(
        lanesHD,
        [&] {
          storeLanes(cidx(0), groupRows, [&](Value i, Value d) -> Value {
            return memref::LoadOp::create(b, Or, ValueRange{i, d});
          });
          storeLanes(groupRows, cidx(bq), fromOt);
        },
        [&] { storeLanes(cidx(0), cidx(bq), fromOt); });
    return;
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

/// ATTN_DEBUG_TILE_STATS: writes "attn-tile B H QT KT P\n" (10-digit
/// fields; P 1 partial, 0 full) to stderr with one write(2) per visited
/// tile, so lines of concurrent work items do not interleave. Only func and
/// memref ops: the pass does not load the LLVM dialect.
void KernelBuilder::emitTileStat(Value bIdx, Value h, Value qt, Value kt,
                                 Value partial) {
  auto i64 = b.getI64Type();
  auto writeTy = b.getFunctionType({b.getI32Type(), i64, i64}, {i64});
  if (!module.lookupSymbol<func::FuncOp>("write")) {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(module.getBody());
    auto decl = func::FuncOp::create(b, "write", writeTy);
    decl.setPrivate();
  }
  auto scope = memref::AllocaScopeOp::create(b, TypeRange{});
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&scope.getBodyRegion().emplaceBlock());
  {
    const std::string prefix = "attn-tile ";
    constexpr int64_t kDigits = 10;
    SmallVector<Value> fields = {bIdx, h, qt, kt,
                                 arith::ExtUIOp::create(b, i64, partial)};
    int64_t len = prefix.size() + fields.size() * (kDigits + 1);
    auto bufTy = MemRefType::get({len}, b.getI8Type());
    Value buf = memref::AllocaOp::create(b, bufTy);
    auto put = [&](int64_t pos, Value byte) {
      memref::StoreOp::create(b, byte, buf, ValueRange{cidx(pos)});
    };
    auto ci8 = [&](char c) -> Value {
      return arith::ConstantOp::create(b, b.getI8IntegerAttr(c));
    };
    int64_t pos = 0;
    for (char c : prefix)
      put(pos++, ci8(c));
    for (auto [f, v] : llvm::enumerate(fields)) {
      int64_t p10 = 1;
      for (int d = 1; d < kDigits; ++d)
        p10 *= 10;
      for (int d = 0; d < kDigits; ++d, p10 /= 10) {
        Value digit = arith::RemUIOp::create(
            b, arith::DivUIOp::create(b, v, ci64(p10)), ci64(10));
        put(pos++,
            arith::AddIOp::create(
                b, arith::TruncIOp::create(b, b.getI8Type(), digit), ci8('0')));
      }
      put(pos++, ci8(f + 1 == fields.size() ? '\n' : ' '));
    }
    Value ptr = arith::IndexCastOp::create(
        b, i64, memref::ExtractAlignedPointerAsIndexOp::create(b, buf));
    func::CallOp::create(
        b, "write", TypeRange{i64},
        ValueRange{arith::ConstantOp::create(b, b.getI32IntegerAttr(2)), ptr,
                   ci64(len)});
    memref::AllocaScopeReturnOp::create(b, ValueRange{});
  }
}

LogicalResult KernelBuilder::emitItem(Value item) {
  if (decode)
    return emitDecodeItem(item);
  Value qt = arith::RemUIOp::create(b, item, nQT);
  Value bh = arith::DivUIOp::create(b, item, nQT);
  Value h = arith::RemUIOp::create(b, bh, Hq);
  Value bIdx = arith::DivUIOp::create(b, bh, Hq);
  if (paged)
    bindSequence(bIdx);
  itemHk = arith::DivUIOp::create(b, h, G);
  Value q0 = arith::MulIOp::create(b, qt, cidx(bq));
  itemQn = arith::MinUIOp::create(b, cidx(bq), arith::SubIOp::create(b, N, q0));
  itemH = h;
  itemQ0 = q0;
  Block &body = tiled.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), h);
  map.map(body.getArgument(2), q0);
  return lowerTileBlock(body, *this);
}

/// item = ((b * Hkv + hk) * chunks + chunk) * splits + split (runtime.h).
/// The tile program runs as for prefill; queryRow, laneIndices, the kv
/// loop and the store read the item's lanes and split instead of its
/// (h, q0), which are bound to the group's first head and row 0.
LogicalResult KernelBuilder::emitDecodeItem(Value item) {
  itemSplit = arith::RemUIOp::create(b, item, numSplits);
  Value t = arith::DivUIOp::create(b, item, numSplits);
  itemChunk = arith::RemUIOp::create(b, t, numChunks);
  Value bh = arith::DivUIOp::create(b, t, numChunks);
  itemHk = arith::RemUIOp::create(b, bh, Hkv);
  Value bIdx = arith::DivUIOp::create(b, bh, Hkv);
  if (paged)
    bindSequence(bIdx);
  itemQn = cidx(bq);
  itemH = arith::MulIOp::create(b, itemHk, G);
  itemQ0 = cidx(0);
  Block &body = tiled.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), itemH);
  map.map(body.getArgument(2), itemQ0);
  return lowerTileBlock(body, *this);
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

LogicalResult KernelBuilder::lowerLoadQ(TileLoadQOp op) {
  Value bIdx = map.lookup(op.getB());
  auto loadLanes = [&] {
    if (dotQK)
      emitLoadQPairs(bIdx);
    else
      emitLoadQ(bIdx);
  };
  // The head-dim-in-lanes micro-kernel reads only its q rows.
  if (useLanesHD)
    ifThenElse(lanesHD, [&] { emitLoadQRows(bIdx); }, loadLanes);
  else
    loadLanes();
  return success();
}

LogicalResult KernelBuilder::lowerInit(TileInitOp) {
  // Row state: m = -inf, l = 0, Ot = 0.
  for (int64_t c = 0; c < ci; ++c) {
    vector::StoreOp::create(b, vsplat(-std::numeric_limits<float>::infinity()),
                            mBuf, ValueRange{cidx(c * vl)});
    vector::StoreOp::create(b, vsplat(0), lBuf, ValueRange{cidx(c * vl)});
    if (lxBuf != lBuf)
      vector::StoreOp::create(b, vsplat(0), lxBuf, ValueRange{cidx(c * vl)});
  }
  loop(cidx(0), Dv, cidx(1), {}, [&](Value d, ValueRange) {
    for (int64_t c = 0; c < ci; ++c)
      vector::StoreOp::create(b, vsplat(0), Ot, ValueRange{d, cidx(c * vl)});
    return SmallVector<Value>{};
  });
  if (useLanesHD)
    ifThen(lanesHD, [&] {
      Value cols = memref::DimOp::create(b, Or, 1);
      for (int64_t g = 0, e = HeadDimLanes::maxQueries(vl); g < e; ++g)
        loop(cidx(0), cols, cidx(vl), {}, [&](Value d, ValueRange) {
          vector::StoreOp::create(b, vsplat(0), Or, ValueRange{cidx(g), d});
          return SmallVector<Value>{};
        });
    });
  return success();
}

/// Every kv tile in order, classified by the mask's intervals; the step
/// runs on non-empty tiles (scf.if), with `partial` for not-full ones.
LogicalResult KernelBuilder::lowerKVLoop(KVLoopOp op) {
  Value bIdx = map.lookup(op.getB()), h = map.lookup(op.getH());
  Value q0 = map.lookup(op.getQ0());
  Value qt =
      tileStats ? Value(arith::DivUIOp::create(b, q0, cidx(bq))) : Value();
  Value qLo = toI64(q0);
  Value qHi = toI64(
      arith::SubIOp::create(b, arith::AddIOp::create(b, q0, itemQn), cidx(1)));
  Value bI64 = toI64(bIdx), hI64 = toI64(h);
  Value hLo, hHi;
  if (decode)
    decodeTileBox(hLo, hHi, qLo, qHi);
  Block &step = op.getBody().front();
  LogicalResult result = success();
  Value ktBegin = cidx(0), ktEnd = nKT;
  if (decode) {
    // Split s covers kv tiles [s * T, (s + 1) * T), T = ceil(tiles / splits);
    // a split past the end (or whose tiles the mask hides) leaves lse = -inf.
    Value per = arith::CeilDivUIOp::create(b, nKT, numSplits);
    ktBegin = arith::MinUIOp::create(
        b, arith::MulIOp::create(b, itemSplit, per), nKT);
    ktEnd =
        arith::MinUIOp::create(b, arith::AddIOp::create(b, ktBegin, per), nKT);
  }
  loop(ktBegin, ktEnd, cidx(1), {}, [&](Value kt, ValueRange) {
    Value k0 = arith::MulIOp::create(b, kt, cidx(bk));
    Value kn =
        arith::MinUIOp::create(b, cidx(bk), arith::SubIOp::create(b, M, k0));
    Value compute, partial;
    if (op.getMask().empty()) {
      compute = arith::ConstantOp::create(b, b.getBoolAttr(true));
      partial = arith::ConstantOp::create(b, b.getBoolAttr(false));
    } else {
      Value kLo = toI64(k0);
      Value kHi = toI64(
          arith::SubIOp::create(b, arith::AddIOp::create(b, k0, kn), cidx(1)));
      auto [lo, hi] = decode ? emitMaskIntervals(b, op.getMask(), bI64, hLo,
                                                 hHi, qLo, qHi, kLo, kHi, env)
                             : emitMaskIntervals(b, op.getMask(), bI64, hI64,
                                                 qLo, qHi, kLo, kHi, env);
      compute = arith::CmpIOp::create(b, P::ne, hi, ci64(0)); // not empty
      partial = arith::CmpIOp::create(b, P::ne, lo, ci64(1)); // not full
    }
    ifThen(compute, [&] {
      if (tileStats)
        emitTileStat(bI64, hI64, toI64(qt), toI64(kt), partial);
      if (paged)
        emitRowOffsets(bIdx, itemHk, k0, kn);
      map.map(step.getArgument(0), k0);
      map.map(step.getArgument(1), partial);
      tileK0 = k0;
      tileKn = kn;
      if (failed(lowerTileBlock(step, *this)))
        result = failure();
    });
    return SmallVector<Value>{};
  });
  return result;
}

LogicalResult KernelBuilder::lowerQK(TileQKOp) {
  pendingScore = nullptr;
  pendingMask = false;
  return success();
}

LogicalResult KernelBuilder::lowerScore(TileScoreOp op) {
  pendingScore = &op.getScore();
  return success();
}

/// CPU tiles have no padding rows (loops stop at kn): only the mask hides.
LogicalResult KernelBuilder::lowerMask(TileMaskOp) {
  pendingMask = regions.mask != nullptr;
  return success();
}

/// Both normalizer steps: the scores with what qk, score and mask
/// recorded, then the row-state update of the tiled attention's normalizer.
LogicalResult KernelBuilder::lowerNormalizerStep(Operation *op) {
  auto loop = op->getParentOfType<KVLoopOp>();
  deferFinish = pendingScore || pendingMask;
  emitScoresAndNormalize(map.lookup(loop.getB()), itemHk, tileK0, tileKn,
                         map.lookup(loop.getBody().getArgument(1)));
  return success();
}

LogicalResult KernelBuilder::lowerPV(TilePVOp op) {
  emitPV(itemHk, map.lookup(op.getB()), tileK0, tileKn,
         /*rescale=*/kind == NormalizerKind::softmax);
  return success();
}

LogicalResult KernelBuilder::lowerStore(TileStoreOp op) {
  emitStore(map.lookup(op.getB()), map.lookup(op.getH()),
            map.lookup(op.getQ0()), itemQn);
  return success();
}

LogicalResult KernelBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention to lower";
  if (bq <= 0 || bk <= 0 || bq % vl != 0 || bq > kMaxTileRows ||
      bk > kMaxTileRows)
    return tiled.emitError() << "the CPU kernel needs tile_q (" << bq
                             << ") a positive multiple of the vector width ("
                             << vl << ") and tile_q, tile_kv (" << bk
                             << ") at most " << kMaxTileRows << " rows";
  kind = tiled.getNormalizer();
  // Paged: block_table i32 [B, max_pages] and kv_lens i32 [B] after the
  // aux inputs.
  SmallVector<Type> extra;
  if (paged)
    extra = {stridedType(b.getContext(), 2, b.getI32Type()),
             stridedType(b.getContext(), 1, b.getI32Type())};
  std::string suffix = std::string(paged ? "_paged" : "") +
                       (decode ? "_decode" : "") + (wide ? "_wide" : "");
  func::FuncOp fn;
  if (decode) {
    // The partials take o's and lse's places: o [B, Hkv, splits, chunks *
    // bq, Dv] and lse [B, Hkv, splits, chunks * bq], f32.
    Type f32 = b.getF32Type();
    fn = createKernelFunc(extra, suffix,
                          {stridedType(b.getContext(), 5, f32),
                           stridedType(b.getContext(), 4, f32)});
  } else {
    fn = createKernelFunc(extra, suffix);
  }
  emitPrologue(fn);
  Block &entry = fn.getBody().front();
  Value begin = toIdx(entry.getArgument(entry.getNumArguments() - 2));
  Value end = toIdx(entry.getArgument(entry.getNumArguments() - 1));
  beginGuardedBody();
  LogicalResult result = success();
  loop(begin, end, cidx(1), {}, [&](Value item, ValueRange) {
    if (failed(emitItem(item)))
      result = failure();
    return SmallVector<Value>{};
  });
  finishKernel();
  return result;
}

namespace {
struct ConvertAttnToCPUPass
    : public mlir::attn::impl::ConvertAttnToCPUBase<ConvertAttnToCPUPass> {
  using ConvertAttnToCPUBase::ConvertAttnToCPUBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<SpecOp> specs(module.getBody()->getOps<SpecOp>());
    for (SpecOp spec : specs) {
      if (failed(requireTiledForm(spec, "convert-attn-to-cpu")))
        return signalPassFailure();
      if (pagedKV && !spec.getTiledAttention()) {
        spec.emitError()
            << "paged-kv: a paged KV cache is for the forward kernels of the "
               "softmax family (softmax, sigmoid, relu, none); this spec "
            << (spec.getTiledLinearAttention() ? "is linear attention"
                                               : "is a gradients' kernel");
        return signalPassFailure();
      }
      if (spec.getTiledAttentionBackward()) {
        if (failed(buildBackwardKernel(spec, module)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      if (spec.getTiledLinearAttentionBackward()) {
        if (failed(buildLinearBackwardKernel(spec, module, vectorWidth)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      if (spec.getTiledLinearAttention()) {
        if (linearChunk < 0 || linearChunk > kMaxTileRows) {
          spec.emitError() << "linear-chunk (" << int64_t(linearChunk)
                           << ") must be between 0 (the recurrent form) and "
                           << kMaxTileRows << " time steps";
          return signalPassFailure();
        }
        if (failed(buildLinearKernel(spec, module, vectorWidth, linearChunk)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      TiledAttentionOp tiled = spec.getTiledAttention();
      bool withDecode =
          decodeKernel && tiled.getNormalizer() == NormalizerKind::softmax;
      // Prefill and decode, each with contiguous and (pagedKV) paged K/V.
      for (bool paged : {false, true}) {
        if (paged && !pagedKV)
          break;
        // Prefill, decode, wide decode.
        for (int kernel = 0; kernel < 3; ++kernel) {
          if (kernel > 0 && !withDecode)
            break;
          KernelBuilder kb(spec, module, bf16Dot, bf16DotPV, debugTileStats,
                           /*decode=*/kernel > 0, paged, /*wide=*/kernel == 2);
          if (failed(kb.build()))
            return signalPassFailure();
        }
      }
      spec->erase();
    }
  }
};
} // namespace
