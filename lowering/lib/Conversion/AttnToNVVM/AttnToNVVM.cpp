//===- AttnToNVVM.cpp - tiled attn specs to tensor-core CUDA kernels ------===//
//
// Implements convert-attn-to-nvvm: the CUDA patterns of the tile ops
// (TileLowering), a FlashAttention-2-style forward kernel per head-dim
// variant, written with gpu, nvgpu (ldmatrix, cp.async) and NVVM (mma.sync)
// ops. One CTA computes `tile_q` query rows of one (b, h):
//
//   Qs <- q tile (cp.async, zero-filled)
//   Ks/Vs[0] <- first visible kv tile
//   while tile != end:
//     Ks/Vs[stage ^ 1] <- next visible tile (in flight during the compute)
//     wait for the current tile; barrier
//     S  = Qs Ksᵀ                 (ldmatrix + mma.sync m16n8k16, f32 acc.)
//     S  = score(scale * S); masked -> -inf (partial tiles only)
//     m' = max(m, rowmax S); P = exp(S - m'); l = l exp(m - m') + rowsum P
//     O  = O exp(m - m') + P Vs    (P rounded to bf16/f16 in registers)
//     barrier
//   o = O / l; lse = m + log l
//
// Fragment layouts and the shared tiles' swizzle: GpuKernelBase.h.
//
//===----------------------------------------------------------------------===//

#include "BackwardToNVVM.h"
#include "GpuKernelBase.h"
#include "MergeToNVVM.h"
#include "attn/Conversion/KernelScaffold.h"
#include "attn/Conversion/LinearGpuKernels.h"
#include "attn/Conversion/Passes.h"
#include "attn/Conversion/SoftmaxGpuTiles.h"
#include "attn/Conversion/TileLowering.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include <limits>

namespace mlir::attn {
#define GEN_PASS_DEF_CONVERTATTNTONVVM
#include "attn/Conversion/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

/// The CUDA patterns of the tile ops. The q tile sits in shared memory,
/// K/V tiles in a two-stage cp.async ring; S, P and the accumulator are
/// mma fragments in registers: an !attn.acc value maps to its registers
/// (m0, m1, l0, l1, then the O accumulators) in `accs`, the scores of the
/// current kv tile are `tileS`.
class GpuKernelBuilder : public GpuKernelBase, public TileLowering {
public:
  /// Which kernel of the spec to build.
  enum class Kind {
    Forward, ///< attn_<name>_d<D>: one dense batch
    Decode,  ///< attn_<name>_decode_d<D>: split-KV (emitDecodePrologue)
    Batch,   ///< attn_<name>_batch_d<D>: forward over the batch tables
  };
  GpuKernelBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule, int64_t headDim,
                   Kind kernelKind = Kind::Forward)
      : GpuKernelBase(spec, headDim), tiled(spec.getTiledAttention()),
        regions(tiled), sched(tiled ? tiled.getSchedule() : ScheduleAttr()),
        decode(kernelKind == Kind::Decode), batch(kernelKind == Kind::Batch) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

  ATTN_TILE_LOWERING_PATTERNS

private:
  void emitPrologue(gpu::GPUFuncOp fn);
  /// The decode kernel's work item and rows (see build()); `entry` holds
  /// the batch tables last.
  void emitDecodePrologue(Block *entry);
  /// The batch prefill kernel's q tile and sequence (see build()).
  void emitBatchPrologue(Block *entry);
  /// The forward grid's CTA: sets (b, h, hk) from blockIdx.y and returns
  /// its q tile.
  Value emitForwardCta();
  /// The batch tables (the last four arguments of `entry`) and whether k
  /// and v are page pools; returns the kv heads.
  Value bindTables(Block *entry);
  /// Decode and batch: sequence bIdx's queries and keys from the batch
  /// tables (see emitDecodePrologue), and what depends on N and M.
  void bindSequence(Value hkv);
  /// Decode and batch: where key row j of sequence bIdx lives in k and v
  /// (all but the column index): {b, hk, kBase + j} or, paged, {page,
  /// slot, hk}.
  SmallVector<Value> sequenceKVRow(Value j);
  /// The cp.async copies of the kv tile from row k0 of `src` (k or v).
  SmallVector<Value> emitKVCopy(Value src, Value k0, Value colLimit, Value base,
                                Value enable);
  /// This CTA's walk over the kv tiles (classification, next visible).
  GpuTileWalk walk();
  /// S = Q Kᵀ of the kv tile in `stage` (mma fragments).
  SmallVector<Acc> emitQK(Value stage);
  /// Score, mask (partial tiles) and normalizer of `s` (left as P) and the
  /// row-state update; `state` = m0, m1, l0, l1, O accumulators.
  SmallVector<Value> emitNormalizerStep(Value kt, Value k0, SmallVector<Acc> &s,
                                        ValueRange state);
  /// The normalizer's row-state update from P (`s`): returns the next state.
  SmallVector<Value> emitRowState(SmallVector<Acc> &s, ValueRange state);
  /// O += P V of the kv tile in `stage`, on `next`.
  void emitPV(Value stage, ArrayRef<Acc> s, SmallVector<Value> &next);
  /// Score, mask and normalizer of the S accumulators (softmax statistics
  /// in `stat`); returns P.
  SmallVector<Acc> emitFinish(Value k0, bool withMask, SmallVector<Acc> s);
  void emitStore(ValueRange state);
  /// The decode kernel's partial rows: O * inv to o_part, lse to lse_part.
  void emitDecodeStore(ValueRange state, Value inv[2], Value lseVal[2]);

  TiledAttentionOp tiled;
  TiledRegions regions;
  ScheduleAttr sched;
  int64_t BM = 64, BN = 64;
  NormalizerKind kind = NormalizerKind::softmax;
  bool decode, batch;

  KernelEnv env;
  Value nKT;
  Value bIdx, h, hk, q0;
  Value bI64, hI64;
  Value scale, bias, hasLse;
  Value Qs, Ks, Vs;
  /// Query index of this thread's two rows, clamped to N - 1 (for regions).
  /// Decode: qRow is the flat row f of the GQA group (query f % N of head
  /// hk * G + f / N), qIdx and hIdx (i64) those of min(f, G * N - 1).
  Value qRow[2], qIdx[2], hIdx[2];
  /// The kv tiles this CTA visits: [ktBegin, ktEnd) (decode: its split's).
  Value ktBegin, ktEnd;
  // Decode: the kv split, the G * N rows of the group, this CTA's first row,
  // and the tile box's last head and query range (i64).
  Value split, groupRows, f0, boxHHi, boxQLo, boxQHi;
  // Decode and batch: the batch tables (null memrefs when absent: a dense
  // batch),
  // whether k and v are page pools, the sequence's first query and key
  // rows, max(N, 1) (a divisor); paged, as i32 (kept in registers through
  // the kv loop, and 32-bit division is the cheaper): the page size and
  // the last page of the pool.
  Value cuQ, cuK, blockTable, kvLens, paged;
  Value qBase, kBase, nDiv;
  Value pageSize32, lastPage32;

  // The tile program's values.
  DenseMap<Value, SmallVector<Value>> accs; // !attn.acc -> registers
  SmallVector<Acc> tileS;                   // S, then P, of the kv tile
  Value curKt, curStage;                    // kv tile index, smem stage
  Region *pendingScore = nullptr;           // set by tile.score
  bool pendingMask = false;                 // set by tile.mask
};

} // namespace

void GpuKernelBuilder::emitPrologue(gpu::GPUFuncOp fn) {
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  env.scalarLanes = true;
  env.vectorWidth = 1;
  bindRegionEnv(entry, env);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
  Value lsePtr = memref::ExtractAlignedPointerAsIndexOp::create(b, lse);
  hasLse = arith::CmpIOp::create(b, P::ne, lsePtr, cidx(0));

  emitThreadIds();
  if (decode) {
    emitDecodePrologue(entry);
  } else if (batch) {
    emitBatchPrologue(entry);
  } else {
    q0 = mul(emitForwardCta(), cidx(BM));
    nKT = arith::CeilDivUIOp::create(b, M, cidx(BN));
    Value lastQ = arith::SubIOp::create(b, N, cidx(1));
    for (int r = 0; r < 2; ++r) {
      qRow[r] = add(add(q0, mul(warp, cidx(16))), add(g, cidx(r * 8)));
      qIdx[r] = toI64(minu(qRow[r], lastQ));
    }
    ktBegin = cidx(0);
    ktEnd = nKT;
  }

  // Shared memory: Qs [BM x D], Ks [2][BN x D], Vs [2][BN x D].
  Value smem = dynamicSharedMemory();
  int64_t eltBytes = 2;
  Qs = sharedView(smem, 0, BM * D, elt);
  Ks = sharedView(smem, BM * D * eltBytes, 2 * BN * D, elt);
  Vs = sharedView(smem, (BM * D + 2 * BN * D) * eltBytes, 2 * BN * D, elt);
}

/// One CTA per work item ((b * Hkv + hk) * C + chunk) * S + split (the
/// CPU decode's order, runtime.h): chunk c of kv head hk's G * N query rows
/// (16 per chunk, C = dim(o_part, 3) / 16, head-major: row f is query f % N
/// of head hk * G + f / N) over split s of the kv tiles (S = dim(o_part, 2),
/// T = ceil(tiles / S) each). o and lse are the partials o_part
/// [B, Hkv, S, C * 16, Dv] and lse_part [B, Hkv, S, C * 16]; the merge
/// kernel (MergeToNVVM.cpp) combines them.
///
/// A batch of sequences of different lengths is one launch: the last four
/// arguments are the batch tables of runtime.h (cu_seqlens_q, cu_seqlens_k,
/// block_table, kv_lens; null when absent). Packed q (and ragged k, v) come
/// as views [B, H, rows, D] with a zero batch stride, so q[b, h, qBase + i]
/// is query i of sequence b; paged k and v are the pools [pages,
/// page_size, Hkv, D] themselves. Grids are sized for the longest sequence:
/// a chunk past its sequence's rows visits no kv tile and stores nothing.
Value GpuKernelBuilder::emitForwardCta() {
  // Query tiles run last-first: under causal-like masks the last tiles
  // have the most kv tiles, and starting them first shortens the tail of
  // the launch (as FlashAttention-2 does).
  Value qt = sub(sub(gpu::GridDimOp::create(b, gpu::Dimension::x), cidx(1)),
                 gpu::BlockIdOp::create(b, gpu::Dimension::x));
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  h = remu(bh, Hq);
  bIdx = divu(bh, Hq);
  hk = divu(h, G);
  bI64 = toI64(bIdx);
  hI64 = toI64(h);
  return qt;
}

Value GpuKernelBuilder::bindTables(Block *entry) {
  ValueRange tables = entry->getArguments().take_back(4);
  cuQ = tables[0];
  cuK = tables[1];
  blockTable = tables[2];
  kvLens = tables[3];
  paged = present(blockTable);
  // Paged k is [pages, page_size, Hkv, D].
  Value hkv = select(paged, memref::DimOp::create(b, k, 2),
                     memref::DimOp::create(b, k, 1));
  G = divu(Hq, hkv);
  return hkv;
}

void GpuKernelBuilder::emitDecodePrologue(Block *entry) {
  Value hkv = bindTables(entry);
  auto dim = [&](Value m, int64_t d) -> Value {
    return memref::DimOp::create(b, m, d);
  };
  Value numSplits = dim(o, 2);
  Value chunks = divu(dim(o, 3), cidx(BM));
  Value item = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  split = remu(item, numSplits);
  Value rest = divu(item, numSplits);
  Value chunk = remu(rest, chunks);
  rest = divu(rest, chunks);
  hk = remu(rest, hkv);
  bIdx = divu(rest, hkv);
  bI64 = toI64(bIdx);
  bindSequence(hkv);
  nKT = arith::CeilDivUIOp::create(b, M, cidx(BN));
  h = mul(hk, G);
  q0 = cidx(0);
  groupRows = mul(G, N);
  // N may be 0 (an empty sequence): divide by max(N, 1), clamp rows to
  // max(G * N, 1) - 1.
  nDiv = maxu(N, cidx(1));
  Value lastF = sub(maxu(groupRows, cidx(1)), cidx(1));
  f0 = mul(chunk, cidx(BM));
  for (int r = 0; r < 2; ++r) {
    qRow[r] = add(add(f0, mul(warp, cidx(16))), add(g, cidx(r * 8)));
    Value f = minu(qRow[r], lastF);
    hIdx[r] = toI64(add(h, divu(f, nDiv)));
    qIdx[r] = toI64(remu(f, nDiv));
  }
  // The tile box: rows [f0, f1] hold heads f0 / N .. f1 / N; one head holds
  // queries f0 % N .. f1 % N, several all of 0 .. N - 1 (a superset is
  // sound: the mask's intervals only widen). As the CPU's decodeTileBox.
  Value fLo = minu(f0, lastF);
  Value f1 = minu(add(f0, cidx(BM - 1)), lastF);
  Value g0 = divu(fLo, nDiv), g1 = divu(f1, nDiv);
  hI64 = toI64(add(h, g0));
  boxHHi = toI64(add(h, g1));
  Value oneHead = cmp(P::eq, g0, g1);
  boxQLo = toI64(select(oneHead, remu(fLo, nDiv), cidx(0)));
  boxQHi = toI64(select(oneHead, remu(f1, nDiv), sub(nDiv, cidx(1))));
  // Split s covers kv tiles [s * T, (s + 1) * T): an empty range (or one the
  // mask hides) leaves the partial o = 0, lse = -inf. A chunk past the
  // sequence's rows visits none.
  Value per = ceilDiv(nKT, numSplits);
  ktBegin = minu(mul(split, per), nKT);
  ktEnd = select(ult(f0, groupRows), minu(add(ktBegin, per), nKT), ktBegin);
}

/// The forward kernel's CTA (q tile gridDim.x - 1 - blockIdx.x, longest
/// first, of (b, h) = blockIdx.y / Hq, % Hq) over a batch of sequences of
/// different lengths: the arguments are the forward's (q, k, v, o, lse as
/// the packed views of emitDecodePrologue: o[b, h, qBase + i] is output row
/// i of sequence b; lse [B, Hq, rows]) and the batch tables. The grid is
/// sized for the longest sequence: a q tile past its sequence's queries
/// visits no kv tile and stores nothing. Masks and scores see positions
/// within the sequence and its own N and M (bindSequence).
void GpuKernelBuilder::emitBatchPrologue(Block *entry) {
  Value hkv = bindTables(entry);
  q0 = mul(emitForwardCta(), cidx(BM));
  bindSequence(hkv);
  nKT = arith::CeilDivUIOp::create(b, M, cidx(BN));
  Value lastQ = sub(maxu(N, cidx(1)), cidx(1));
  for (int r = 0; r < 2; ++r) {
    qRow[r] = add(add(q0, mul(warp, cidx(16))), add(g, cidx(r * 8)));
    qIdx[r] = toI64(minu(qRow[r], lastQ));
  }
  ktBegin = cidx(0);
  ktEnd = select(ult(q0, N), nKT, cidx(0));
}

/// As the CPU's bindSequence: dense when the tables are null (N = dim(q, 2),
/// M = dim(k, 2)). Every table value is clamped, so a bad table computes
/// wrong rows but addresses nothing outside the tensors: N to the rows the
/// partials hold per head, M of a paged sequence to its table's pages, page
/// ids into the pool. The tables' shapes are the caller's to check (B + 1
/// offsets, B rows of at least one page, page sizes below 2^31), as the
/// runtime does.
void GpuKernelBuilder::bindSequence(Value hkv) {
  auto dim = [&](Value m, int64_t d) -> Value {
    return memref::DimOp::create(b, m, d);
  };
  auto [qBegin, qEnd] = sequenceRows(cuQ, bIdx, dim(q, 2));
  // Decode: no more rows than the partials hold per head; batch: o has
  // q's rows (the caller's to check).
  N = sub(qEnd, qBegin);
  if (decode)
    N = minu(N, divu(dim(o, 3), G));
  // An empty sequence may start past the last row: its (zero-filled)
  // copies read row 0.
  qBase = select(cmp(P::eq, N, cidx(0)), cidx(0), qBegin);
  // Paged: k is [pages, page_size, Hkv, D].
  Value pageSize = dim(k, 1);
  pageSize32 = arith::IndexCastOp::create(b, b.getI32Type(), pageSize);
  lastPage32 =
      arith::IndexCastOp::create(b, b.getI32Type(), sub(dim(k, 0), cidx(1)));
  SmallVector<Value> kr = ifIndices(
      paged, 2,
      [&]() -> SmallVector<Value> {
        Value cap = mul(dim(blockTable, 1), pageSize);
        return {cidx(0), minu(tableEntry(kvLens, bIdx), cap)};
      },
      [&]() -> SmallVector<Value> {
        auto [kBegin, kEnd] = sequenceRows(cuK, bIdx, dim(k, 2));
        return {kBegin, sub(kEnd, kBegin)};
      });
  M = kr[1];
  kBase = select(cmp(P::eq, M, cidx(0)), cidx(0), kr[0]);
  // What the prologue derived from N and M: the regions' dims, the params
  // (sigmoid's bias = -log(M)), the scale and the normalizer's bias.
  env.dims["N"] = toI64(N);
  env.dims["M"] = toI64(M);
  env.dims["Hkv"] = toI64(hkv);
  env.dims["G"] = toI64(G);
  bindParams(b, spec, env);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
}

/// j < max(M, 1) (emitTileCopy clamps it), so kBase + j is a row of the
/// sequence (or row 0) and j / page_size a column of its table row; only
/// the page id read from the table needs a clamp. The paged arithmetic is
/// 32-bit (kv_lens is int32).
SmallVector<Value> GpuKernelBuilder::sequenceKVRow(Value j) {
  return ifIndices(
      paged, 3,
      [&]() -> SmallVector<Value> {
        Value j32 = arith::IndexCastOp::create(b, b.getI32Type(), j);
        Value col = arith::DivUIOp::create(b, j32, pageSize32);
        Value slot = arith::RemUIOp::create(b, j32, pageSize32);
        Value id =
            memref::LoadOp::create(b, blockTable, ValueRange{bIdx, toIdx(col)});
        // Unsigned: a negative id is huge and becomes the last page.
        Value page = arith::MinUIOp::create(b, id, lastPage32);
        return {toIdx(page), toIdx(slot), hk};
      },
      [&]() -> SmallVector<Value> { return {bIdx, hk, add(kBase, j)}; });
}

SmallVector<Value> GpuKernelBuilder::emitKVCopy(Value src, Value k0,
                                                Value colLimit, Value base,
                                                Value enable) {
  Value dst = src == k ? Ks : Vs;
  if (!decode && !batch)
    return emitTileCopy(src, bIdx, hk, k0, BN, M, colLimit, dst, base, enable);
  return emitTileCopy(
      src, [&](Value j) { return sequenceKVRow(j); }, k0, BN, M, colLimit, dst,
      base, enable);
}

GpuTileWalk GpuKernelBuilder::walk() {
  GpuTileWalk w{b, regions.mask, env, bI64, hI64, q0, N, M, ktEnd, BM, BN};
  if (decode)
    w.box = GpuTileWalk::Box{boxHHi, boxQLo, boxQHi};
  return w;
}

SmallVector<Acc> GpuKernelBuilder::emitFinish(Value k0, bool withMask,
                                              SmallVector<Acc> s) {
  ScoreElement se(b, tiled, pendingScore, regions.mask, env, scale, bias, bI64,
                  hI64, M);
  for (int64_t n = 0; n < BN / 8; ++n)
    for (int e = 0; e < 4; ++e) {
      Value kv = add(k0, add(cidx(8 * n), add(mul(t, cidx(2)), cidx(e & 1))));
      s[n][e] = decode
                    ? se.emit(s[n][e], hIdx[e / 2], qIdx[e / 2], kv, withMask)
                    : se.emit(s[n][e], qIdx[e / 2], kv, withMask);
    }
  return s;
}

SmallVector<Acc> GpuKernelBuilder::emitQK(Value stage) {
  Value kBase = mul(stage, cidx(BN * D));
  Value zero = cf32(0);
  // S = Q Kᵀ.
  SmallVector<Acc> s(BN / 8, Acc{zero, zero, zero, zero});
  // Q fragments are re-read from shared memory each tile (8 ldmatrix per
  // warp for D = 128) rather than pinned in 32 registers for the whole
  // loop: with the O and S accumulators that left too few registers for
  // mask arithmetic (spills at 255 registers for neighborhood masks).
  Value qRowBase = mul(warp, cidx(16));
  for (int64_t kk = 0; kk < D / 16; ++kk) {
    SmallVector<Value> qFrag =
        ldmatrix(Qs, cidx(0), qRowBase, kk * 16,
                 /*transpose=*/false, /*aOrder=*/true, D);
    for (int64_t np = 0; np < BN / 16; ++np) {
      SmallVector<Value> kf =
          ldmatrix(Ks, kBase, cidx(np * 16), kk * 16,
                   /*transpose=*/false, /*aOrder=*/false, D);
      s[2 * np] = mma(qFrag, kf[0], kf[1], s[2 * np]);
      s[2 * np + 1] = mma(qFrag, kf[2], kf[3], s[2 * np + 1]);
    }
  }
  return s;
}

SmallVector<Value> GpuKernelBuilder::emitNormalizerStep(Value kt, Value k0,
                                                        SmallVector<Acc> &s,
                                                        ValueRange state) {
  // Score, mask, normalizer: the masked version only on partial tiles.
  if (!pendingMask) {
    s = emitFinish(k0, false, s);
    return emitRowState(s, state);
  }
  Value partial = walk().classify(kt).second;
  SmallVector<Type> accTypes(BN / 2, b.getF32Type());
  auto ifOp = scf::IfOp::create(b, accTypes, partial, true);
  auto flat = [](ArrayRef<Acc> a) {
    SmallVector<Value> r;
    for (const Acc &x : a)
      r.append(x.begin(), x.end());
    return r;
  };
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, flat(emitFinish(k0, true, s)));
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, flat(emitFinish(k0, false, s)));
  }
  for (int64_t n = 0; n < BN / 8; ++n)
    for (int e = 0; e < 4; ++e)
      s[n][e] = ifOp.getResult(4 * n + e);
  return emitRowState(s, state);
}

SmallVector<Value> GpuKernelBuilder::emitRowState(SmallVector<Acc> &s,
                                                  ValueRange state) {
  Value zero = cf32(0);
  SmallVector<Value> next(state.begin(), state.end());
  // next = m0, m1, l0, l1, O...
  auto quadReduce = [&](Value x, bool isMax) {
    for (int32_t off : {1, 2}) {
      auto sh = gpu::ShuffleOp::create(b, x, ci32(off), ci32(32),
                                       gpu::ShuffleMode::XOR);
      x = isMax ? fmax(x, sh.getShuffleResult())
                : Value(arith::AddFOp::create(b, x, sh.getShuffleResult()));
    }
    return x;
  };
  bool softmax = kind == NormalizerKind::softmax;
  bool rowSum = kind == NormalizerKind::relu && tiled.getRowNormalize();
  if (softmax) {
    const float log2e = 1.4426950408889634f;
    Value alpha[2], mScaled[2];
    for (int r = 0; r < 2; ++r) {
      Value mx = ninf();
      for (int64_t n = 0; n < BN / 8; ++n)
        mx = fmax(mx, fmax(s[n][2 * r], s[n][2 * r + 1]));
      mx = quadReduce(mx, true);
      Value mOld = state[r];
      Value mNew = fmax(mOld, mx);
      // A row without a visible key so far keeps m = -inf; use 0 then.
      Value isInf = arith::CmpFOp::create(b, F::OEQ, mNew, ninf());
      Value safe = select(isInf, zero, mNew);
      alpha[r] = math::Exp2Op::create(
          b, arith::MulFOp::create(b, arith::SubFOp::create(b, mOld, safe),
                                   cf32(log2e)));
      mScaled[r] = arith::MulFOp::create(b, safe, cf32(-log2e));
      next[r] = mNew;
    }
    Value sum[2] = {zero, zero};
    for (int64_t n = 0; n < BN / 8; ++n)
      for (int e = 0; e < 4; ++e) {
        Value p = math::Exp2Op::create(
            b, math::FmaOp::create(b, s[n][e], cf32(log2e), mScaled[e / 2]));
        s[n][e] = p;
        sum[e / 2] = arith::AddFOp::create(b, sum[e / 2], p);
      }
    for (int r = 0; r < 2; ++r)
      next[2 + r] = math::FmaOp::create(b, state[2 + r], alpha[r], sum[r]);
    for (int64_t n = 0; n < D / 8; ++n)
      for (int e = 0; e < 4; ++e)
        next[4 + 4 * n + e] =
            arith::MulFOp::create(b, next[4 + 4 * n + e], alpha[e / 2]);
  } else if (rowSum) {
    for (int64_t n = 0; n < BN / 8; ++n)
      for (int e = 0; e < 4; ++e)
        next[2 + e / 2] = arith::AddFOp::create(b, next[2 + e / 2], s[n][e]);
  }
  return next;
}

void GpuKernelBuilder::emitPV(Value stage, ArrayRef<Acc> s,
                              SmallVector<Value> &next) {
  // O += P V: two accumulators of adjacent kv n-tiles form one A fragment.
  Value vBase = mul(stage, cidx(BN * D));
  for (int64_t j = 0; j < BN / 16; ++j) {
    SmallVector<Value> a = accsToA(s[2 * j], s[2 * j + 1]);
    for (int64_t dp = 0; dp < D / 16; ++dp) {
      SmallVector<Value> vf = ldmatrix(Vs, vBase, cidx(j * 16), dp * 16,
                                       /*transpose=*/true, /*aOrder=*/false, D);
      for (int half = 0; half < 2; ++half) {
        int64_t n = 2 * dp + half;
        Acc c{next[4 + 4 * n], next[5 + 4 * n], next[6 + 4 * n],
              next[7 + 4 * n]};
        Acc r = mma(a, vf[2 * half], vf[2 * half + 1], c);
        for (int e = 0; e < 4; ++e)
          next[4 + 4 * n + e] = r[e];
      }
    }
  }
}

void GpuKernelBuilder::emitStore(ValueRange state) {
  bool softmax = kind == NormalizerKind::softmax;
  bool divide =
      softmax || (kind == NormalizerKind::relu && tiled.getRowNormalize());
  Value zero = cf32(0);
  Value inv[2] = {cf32(1), cf32(1)};
  Value lseVal[2];
  for (int r = 0; r < 2; ++r) {
    if (!divide)
      continue;
    Value l = state[2 + r];
    for (int32_t off : {1, 2}) {
      auto sh = gpu::ShuffleOp::create(b, l, ci32(off), ci32(32),
                                       gpu::ShuffleMode::XOR);
      l = arith::AddFOp::create(b, l, sh.getShuffleResult());
    }
    Value pos = arith::CmpFOp::create(b, F::OGT, l, zero);
    inv[r] = select(pos, arith::DivFOp::create(b, cf32(1), l), zero);
    if (softmax)
      lseVal[r] = select(
          pos, arith::AddFOp::create(b, state[r], math::LogOp::create(b, l)),
          ninf());
  }
  auto ifThen = [&](Value cond, function_ref<void()> body) {
    auto op = scf::IfOp::create(b, TypeRange{}, cond, false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    body();
  };
  if (decode)
    return emitDecodeStore(state, inv, lseVal);
  for (int r = 0; r < 2; ++r) {
    ifThen(arith::CmpIOp::create(b, P::ult, qRow[r], N), [&] {
      // Batch: row qRow of the sequence is row qBase + qRow of o and lse.
      Value row = batch ? add(qBase, qRow[r]) : qRow[r];
      for (int64_t n = 0; n < D / 8; ++n) {
        Value col0 = add(cidx(8 * n), mul(t, cidx(2)));
        for (int c = 0; c < 2; ++c) {
          Value col = add(col0, cidx(c));
          Value x =
              arith::MulFOp::create(b, state[4 + 4 * n + 2 * r + c], inv[r]);
          ifThen(arith::CmpIOp::create(b, P::ult, col, Dv), [&] {
            memref::StoreOp::create(b, x, o, ValueRange{bIdx, h, row, col});
          });
        }
      }
      if (softmax) {
        Value first = arith::CmpIOp::create(b, P::eq, t, cidx(0));
        ifThen(arith::AndIOp::create(b, first, hasLse), [&] {
          memref::StoreOp::create(b, lseVal[r], lse, ValueRange{bIdx, h, row});
        });
      }
    });
  }
}

void GpuKernelBuilder::emitDecodeStore(ValueRange state, Value inv[2],
                                       Value lseVal[2]) {
  // Rows past the group's G * N are padding: never stored, never merged.
  for (int r = 0; r < 2; ++r) {
    Value f = qRow[r];
    ifThen(ult(f, groupRows), [&] {
      for (int64_t n = 0; n < D / 8; ++n) {
        Value col0 = add(cidx(8 * n), mul(t, cidx(2)));
        for (int c = 0; c < 2; ++c) {
          Value col = add(col0, cidx(c));
          Value x = fmul(state[4 + 4 * n + 2 * r + c], inv[r]);
          ifThen(ult(col, Dv), [&] {
            memref::StoreOp::create(b, x, o,
                                    ValueRange{bIdx, hk, split, f, col});
          });
        }
      }
      ifThen(cmp(P::eq, t, cidx(0)), [&] {
        memref::StoreOp::create(b, lseVal[r], lse,
                                ValueRange{bIdx, hk, split, f});
      });
    });
  }
}

LogicalResult GpuKernelBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention to lower";
  // Decode: one warp's 16 rows of a GQA group per CTA (the m16 mma tile),
  // and kv tiles of at most 4096 / D rows: at D = 128 the 64-row tile's S
  // accumulators, with the group's head and query intervals held for the
  // tile classification, spilled (255 registers on sm_90); 32 rows do not,
  // and halve the shared memory of these one-warp CTAs.
  BM = decode ? 16 : sched.getTileQ();
  BN = decode ? std::min<int64_t>(sched.getTileKv(), 4096 / D)
              : sched.getTileKv();
  numWarps = BM / 16;
  numThreads = 32 * numWarps;
  if (BM % 16 || !llvm::is_contained({1, 2, 4, 8}, numWarps))
    return tiled.emitError() << "CUDA kernels need tile_q = 16, 32, 64 or 128 "
                                "(16 query rows per warp), got "
                             << BM;
  if (BN % 16 || BN < 16 || BN > 128)
    return tiled.emitError()
           << "CUDA kernels need tile_kv a multiple of 16 in [16, 128], got "
           << BN;
  if (D != 64 && D != 128)
    return tiled.emitError() << "CUDA kernels are generated for head dims 64 "
                                "and 128 (smaller ones are zero-padded), got "
                             << D;
  kind = tiled.getNormalizer();
  if (decode && kind != NormalizerKind::softmax)
    return tiled.emitError() << "the split-KV decode kernel merges softmax "
                                "partials by their lse; this spec's "
                                "normalizer has none";
  MLIRContext *ctx = b.getContext();
  // Element type of q, k, v (the pipeline declares them; see
  // attn-set-element-type).
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, " (tensor cores)");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  // Every tile is copied in 16-byte chunks by all threads evenly.
  if ((BM * D / 8) % numThreads || (BN * D / 8) % numThreads)
    return tiled.emitError()
           << "tile sizes " << BM << "x" << BN << " do not split evenly over "
           << numThreads << " threads";

  SmallVector<Type> args = kernelArgTypes(
      spec, [&](StringRef) { return elt; }, /*unitInnerQKV=*/true);
  if (decode) {
    args[3] = decodePartialType(ctx, 5); // o_part
    args[4] = decodePartialType(ctx, 4); // lse_part
  }
  if (decode || batch) // cu_seqlens_q, cu_seqlens_k, block_table, kv_lens.
    args.append({batchTableType(ctx, 1), batchTableType(ctx, 1),
                 batchTableType(ctx, 2), batchTableType(ctx, 1)});
  StringRef infix = decode ? "_decode_d" : batch ? "_batch_d" : "_d";
  std::string name = ("attn_" + spec.getSymName() + infix + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  // What the runtime needs to launch it (read back by the driver); one CTA
  // per SM at least: the accumulators of one warp's 16 rows want more than
  // the 128 registers ptxas may cap them at to fit more CTAs (seen for dense
  // d64 on sm_80).
  int64_t smemBytes = (BM * D + 4 * BN * D) * 2;
  setLaunchContract(fn, BM, numThreads, smemBytes, D);
  if (decode || batch)
    fn->setAttr(kRoleAttr, b.getStringAttr(decode ? "decode" : "batch"));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&fn.getBody().front());
  emitPrologue(fn);

  Block &body = tiled.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), h);
  map.map(body.getArgument(2), q0);
  if (failed(lowerTileBlock(body, *this)))
    return failure();
  gpu::ReturnOp::create(b);
  return success();
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

/// The q tile: its own cp.async group, waited for by the kv loop.
LogicalResult GpuKernelBuilder::lowerLoadQ(TileLoadQOp op) {
  Value yes = arith::ConstantOp::create(b, b.getBoolAttr(true));
  if (decode) {
    // Row f of the tile is query f % N of head hk * G + f / N (row
    // qBase + f % N of a packed q).
    // f < max(G * N, 1) (emitTileCopy clamps it).
    auto at = [&](Value f) -> SmallVector<Value> {
      return {bIdx, add(h, divu(f, nDiv)), add(qBase, remu(f, nDiv))};
    };
    asyncGroup(emitTileCopy(q, at, f0, BM, groupRows, Dqk, Qs, cidx(0), yes));
    return success();
  }
  if (batch) {
    // Query i of the sequence is row qBase + i of a packed q.
    auto at = [&](Value i) -> SmallVector<Value> {
      return {bIdx, h, add(qBase, i)};
    };
    asyncGroup(emitTileCopy(q, at, q0, BM, N, Dqk, Qs, cidx(0), yes));
    return success();
  }
  asyncGroup(emitTileCopy(q, map.lookup(op.getB()), map.lookup(op.getH()),
                          map.lookup(op.getQ0()), BM, N, Dqk, Qs, cidx(0),
                          yes));
  return success();
}

LogicalResult GpuKernelBuilder::lowerInit(TileInitOp op) {
  bool softmax = kind == NormalizerKind::softmax;
  SmallVector<Value> &init = accs[op.getResult()];
  init.push_back(softmax ? ninf() : cf32(0));
  init.push_back(softmax ? ninf() : cf32(0));
  init.push_back(cf32(0));
  init.push_back(cf32(0));
  for (int64_t i = 0; i < D / 2; ++i)
    init.push_back(cf32(0));
  return success();
}

/// The visible kv tiles in a while loop, two K/V stages: the next visible
/// tile is copied while the current one computes.
LogicalResult GpuKernelBuilder::lowerKVLoop(KVLoopOp op) {
  Value first = walk().firstVisible(ktBegin);
  Value firstValid = arith::CmpIOp::create(b, P::ult, first, ktEnd);
  Value firstK0 =
      mul(minu(first, arith::SubIOp::create(b, nKT, cidx(1))), cidx(BN));
  SmallVector<Value> kv0 = emitKVCopy(k, firstK0, Dqk, cidx(0), firstValid);
  kv0.append(emitKVCopy(v, firstK0, Dv, cidx(0), firstValid));
  // Wait for Q only: the first K/V group stays in flight.
  nvgpu::DeviceAsyncWaitOp::create(b, asyncGroup(kv0), b.getI32IntegerAttr(1));
  gpu::BarrierOp::create(b);
  // The kv loop: (tile, stage, m0, m1, l0, l1, O...).
  Type f32 = b.getF32Type(), idx = b.getIndexType();
  SmallVector<Value> init = {first, cidx(0)};
  init.append(accs[op.getInit()]);
  SmallVector<Type> types = {idx, idx};
  types.append(init.size() - 2, f32);
  SmallVector<Location> locs(types.size(), b.getLoc());
  auto loop = scf::WhileOp::create(b, types, init);
  {
    OpBuilder::InsertionGuard g2(b);
    Block *before = b.createBlock(&loop.getBefore(), {}, types, locs);
    Value more =
        arith::CmpIOp::create(b, P::ult, before->getArgument(0), ktEnd);
    scf::ConditionOp::create(b, more, before->getArguments());
    Block *after = b.createBlock(&loop.getAfter(), {}, types, locs);
    Value cur = after->getArgument(0), stage = after->getArgument(1);
    Value other = arith::XOrIOp::create(b, stage, cidx(1));
    // Prefetch the next visible tile into the other stage (zero rows when
    // there is none, which keeps one group per iteration).
    Value nxt = walk().firstVisible(add(cur, cidx(1)));
    Value hasNext = arith::CmpIOp::create(b, P::ult, nxt, ktEnd);
    Value nk0 =
        mul(minu(nxt, arith::SubIOp::create(b, nKT, cidx(1))), cidx(BN));
    Value otherBase = mul(other, cidx(BN * D));
    SmallVector<Value> kv = emitKVCopy(k, nk0, Dqk, otherBase, hasNext);
    kv.append(emitKVCopy(v, nk0, Dv, otherBase, hasNext));
    // The current tile's group is complete once at most the one just
    // issued is pending.
    nvgpu::DeviceAsyncWaitOp::create(b, asyncGroup(kv), b.getI32IntegerAttr(1));
    gpu::BarrierOp::create(b);
    // The step: `partial` is classified where the mask needs it.
    Block &step = op.getBody().front();
    map.map(step.getArgument(0), mul(cur, cidx(BN)));
    accs[step.getArgument(2)].assign(after->getArguments().begin() + 2,
                                     after->getArguments().end());
    curKt = cur;
    curStage = stage;
    if (failed(lowerTileBlock(step, *this)))
      return failure();
    auto yield = cast<YieldOp>(step.getTerminator());
    SmallVector<Value> res = accs[yield.getValues().front()];
    gpu::BarrierOp::create(b);
    SmallVector<Value> next = {nxt, other};
    next.append(res);
    scf::YieldOp::create(b, next);
  }
  accs[op.getResult()].assign(loop.getResults().begin() + 2,
                              loop.getResults().end());
  return success();
}

LogicalResult GpuKernelBuilder::lowerQK(TileQKOp) {
  pendingScore = nullptr;
  pendingMask = false;
  tileS = emitQK(curStage);
  return success();
}

LogicalResult GpuKernelBuilder::lowerScore(TileScoreOp op) {
  pendingScore = &op.getScore();
  return success();
}

/// Tiles are padded to tile_kv rows: a tail tile is partial too (classify).
LogicalResult GpuKernelBuilder::lowerMask(TileMaskOp) {
  pendingMask = true;
  return success();
}

/// Both normalizer steps: the finished scores and the row-state update.
LogicalResult GpuKernelBuilder::lowerNormalizerStep(Operation *op) {
  auto loop = op->getParentOfType<KVLoopOp>();
  Value k0 = map.lookup(loop.getBody().getArgument(0));
  Value acc = op->getOperand(1), result = op->getResult(1);
  accs[result] = emitNormalizerStep(curKt, k0, tileS, accs[acc]);
  return success();
}

LogicalResult GpuKernelBuilder::lowerPV(TilePVOp op) {
  SmallVector<Value> next = accs[op.getAcc()];
  emitPV(curStage, tileS, next);
  accs[op.getResult()] = std::move(next);
  return success();
}

LogicalResult GpuKernelBuilder::lowerStore(TileStoreOp op) {
  emitStore(accs[op.getAcc()]);
  return success();
}

namespace {
struct ConvertAttnToNVVMPass
    : public mlir::attn::impl::ConvertAttnToNVVMBase<ConvertAttnToNVVMPass> {
  using ConvertAttnToNVVMBase::ConvertAttnToNVVMBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<int64_t> dims(headDims.begin(), headDims.end());
    if (dims.empty())
      dims = {64, 128};
    SmallVector<SpecOp> specs(module.getBody()->getOps<SpecOp>());
    if (!specs.empty())
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      UnitAttr::get(&getContext()));
    for (SpecOp spec : specs) {
      OpBuilder b(spec);
      auto gpuModule = gpu::GPUModuleOp::create(
          b, spec.getLoc(), ("attn_" + spec.getSymName() + "_cuda").str());
      if (failed(requireTiledForm(spec, "convert-attn-to-nvvm")))
        return signalPassFailure();
      if (batchKernels && !spec.getTiledAttention()) {
        spec.emitError()
            << "batch-kernels: the batch prefill kernel is the forward "
               "kernel of the softmax family (softmax, sigmoid, relu, none); "
               "this spec "
            << (spec.getTiledLinearAttention() ? "is linear attention"
                                               : "is a gradients' kernel");
        return signalPassFailure();
      }
      if (spec.getTiledAttentionBackward()) {
        if (failed(buildBackwardGpuKernels(spec, gpuModule, dims)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      if (spec.getTiledLinearAttentionBackward()) {
        if (failed(buildLinearBackwardGpuKernels(spec, gpuModule, dims)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      if (spec.getTiledLinearAttention()) {
        if (failed(buildLinearGpuKernels(spec, gpuModule, dims, sharedLimit)))
          return signalPassFailure();
        spec->erase();
        continue;
      }
      using Kind = GpuKernelBuilder::Kind;
      for (int64_t d : dims) {
        if (failed(GpuKernelBuilder(spec, gpuModule, d).build()))
          return signalPassFailure();
        if (batchKernels &&
            failed(GpuKernelBuilder(spec, gpuModule, d, Kind::Batch).build()))
          return signalPassFailure();
      }
      if (decodeKernels &&
          spec.getTiledAttention().getNormalizer() == NormalizerKind::softmax) {
        for (int64_t d : dims)
          if (failed(
                  GpuKernelBuilder(spec, gpuModule, d, Kind::Decode).build()))
            return signalPassFailure();
        if (failed(
                buildMergeGpuKernel(spec, gpuModule, *llvm::max_element(dims))))
          return signalPassFailure();
      }
      spec->erase();
    }
    if (failed(checkSharedLimit(module, sharedLimit)))
      return signalPassFailure();
    // One CTA per SM at least: without it ptxas may cap the registers to
    // fit more CTAs, and spill.
    module.walk([](gpu::GPUFuncOp fn) {
      if (fn.isKernel())
        fn->setAttr("nvvm.minctasm",
                    IntegerAttr::get(IntegerType::get(fn.getContext(), 32), 1));
    });
  }
};
} // namespace
