//===- BackwardToNVVM.cpp - the backward tile program to a CUDA kernel ----===//
//
// The CUDA patterns of attn.tiled_attention_backward
// (TileBackwardLowering), FlashAttention-2's backward: one CTA per kv tile
// of one (b, hk), `tile_kv / 16` warps of 16 keys each. Every product is an
// mma.sync m16n8k16 with the keys as the M dim (warp-local) where the
// result stays with the keys:
//
//   Ks, Vs <- k, v rows k0 .. k0 + tile_kv            (attn.tile.bwd.init)
//   dK = dV = 0                       (mma accumulators, D/8 n-tiles each)
//   for h in the group, q tiles the mask leaves (attn.tile.q_loop):
//     Qs, dOs <- q, do rows; lse_i, D_i = rowsum(do_i ∘ o_i) - dlse_i
//     Sᵀ  = Ks Qsᵀ · scale            (attn.tile.qk; keys x queries)
//     score, mask (partial pairs only), P (attn.tile.bwd.weights)
//     dPᵀ = Vs dOsᵀ                   (attn.tile.bwd.dp)
//     dS  = P ∘ (dP - D) | the normalizer's derivative   (bwd.ds)
//     dX  = dS ∂score/∂x, aux gradients by atomics       (bwd.score)
//     dV += Pᵀ dO, dK += dXᵀ Q        (Pᵀ, dXᵀ re-used as A fragments)
//     dXs <- dX (bf16, queries x keys); dQ = dXs Ks, added to dq with
//     atomics, each warp a share of the q tile's rows and columns
//   dk = scale dK, dv = dV rows of the tile          (attn.tile.bwd.store)
//
// The kv tile owns its dk and dv rows (plain stores); dq rows are shared by
// the kv tiles (atomic adds: FlashAttention-2's choice; the runtime zeroes
// dq first). D is recomputed per (q tile, kv tile) pair from o and do
// rather than by a prologue kernel: one launch, at the cost of reading the
// q tile's o rows once per pair (as many bytes as its do rows).
//
//===----------------------------------------------------------------------===//

#include "BackwardToNVVM.h"
#include "GpuKernelBase.h"
#include "attn/Conversion/SoftmaxGpuTiles.h"
#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

/// A tile of (keys x queries) values as this thread's accumulator
/// registers: n-tile n, element e is key 16 warp + g + 8 (e / 2), query
/// 8 n + 2 t + (e % 2) of the q tile.
using TileRegs = SmallVector<Acc>;

class GpuBackwardBuilder : public GpuKernelBase, public TileBackwardLowering {
public:
  GpuBackwardBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule, int64_t headDim)
      : GpuKernelBase(spec, headDim), tiled(spec.getTiledAttentionBackward()) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

  ATTN_TILE_BACKWARD_LOWERING_PATTERNS

private:
  LogicalResult checkSchedule();
  gpu::GPUFuncOp createKernel();
  void emitPrologue(Block *entry);
  /// acc[n] = Σ_d A[warp rows][d] Bᵀ[n][d]: the keys' rows of `rowsTile`
  /// (A fragments) against the q tile's rows of `colsTile`.
  TileRegs keysTimesQueries(Value rowsTile, Value colsTile);
  /// acc[d-tile] += Σ_i X[warp keys][i] rows[i][d-tile]: X (keys x
  /// queries, registers) times a q tile in shared memory.
  void accumulateKeyRows(const TileRegs &x, Value rowsTile,
                         MutableArrayRef<Value> acc);
  /// dq[b, h, q0 + rows] += scale dXs Ks: this warp's share.
  void emitDQ(Value h, Value q0);
  BackwardElement element() {
    return {b, kind, int64_t(tiled.getReluPower()), bias};
  }
  /// Applies `fn(x, n, e)` to every element of `x`.
  TileRegs mapTile(const TileRegs &x,
                   function_ref<Value(Value, int64_t, int)> fn);
  /// The query (index in the q tile) and key (in the kv tile) of n-tile n,
  /// element e.
  Value queryOf(int64_t n, int e) {
    return add(cidx(8 * n + (e & 1)), mul(t, cidx(2)));
  }
  Value keyOf(int e) {
    return add(mul(warp, cidx(16)), add(g, cidx(8 * (e / 2))));
  }
  /// The shared f32 per-row values `buf[query]` this thread needs: per
  /// n-tile, its two query columns (element e reads [n][e % 2]).
  SmallVector<std::array<Value, 2>> rowValues(Value buf) {
    SmallVector<std::array<Value, 2>> r(BM / 8);
    for (int64_t n = 0; n < BM / 8; ++n)
      for (int c = 0; c < 2; ++c)
        r[n][c] = memref::LoadOp::create(b, buf, ValueRange{queryOf(n, c)});
    return r;
  }

  TiledAttentionBackwardOp tiled;
  int64_t BM = 64, BN = 64;
  NormalizerKind kind = NormalizerKind::softmax;
  KernelEnv env;

  Value dout, dlse, dq, dk, dv, hasDlse, scale, bias;
  llvm::StringMap<Value> auxGrads;
  Value bIdx, hk, k0, bI64;
  Value Ks, Vs, Qs, dOs, dXs, LSEs, Ds;

  // The pair being lowered.
  Value pairH, pairHI64, pairQ0;
  Value qIdx[16][2]; // clamped query index (i64) per n-tile and column
  Value kvIdx[2];    // clamped key index (i64) per row half
  /// Tile values: the tile program's tiles (keys x queries, in registers)
  /// and grads (dK then dV accumulators).
  DenseMap<Value, TileRegs> tiles;
  DenseMap<Value, SmallVector<Value>> grads;
};

} // namespace

//===----------------------------------------------------------------------===//
// The kernel shell
//===----------------------------------------------------------------------===//

LogicalResult GpuBackwardBuilder::checkSchedule() {
  ScheduleAttr sched = tiled.getSchedule();
  BM = sched.getTileQ();
  BN = sched.getTileKv();
  numWarps = BN / 16;
  numThreads = 32 * numWarps;
  if (BN != 64 && BN != 128)
    return tiled.emitError() << "the CUDA backward kernel needs tile_kv = 64 "
                                "or 128 (16 keys per warp), got "
                             << BN;
  if (BM % 16 || BM < 16 || BM > 128)
    return tiled.emitError() << "the CUDA backward kernel needs tile_q a "
                                "multiple of 16 in [16, 128], got "
                             << BM;
  if (D != 64 && D != 128)
    return tiled.emitError() << "CUDA kernels are generated for head dims 64 "
                                "and 128 (smaller ones are zero-padded), got "
                             << D;
  int64_t rowBlocks = BM / 16;
  bool split = rowBlocks < numWarps;
  if ((split && (numWarps % rowBlocks || (D / 16) % (numWarps / rowBlocks))) ||
      (!split && rowBlocks % numWarps))
    return tiled.emitError()
           << "tile_q = " << BM << " and tile_kv = " << BN
           << " do not split dq's " << rowBlocks << "x" << D / 16
           << " blocks of 16x16 evenly over " << numWarps << " warps";
  if ((BM * D / 8) % numThreads || (BN * D / 8) % numThreads)
    return tiled.emitError()
           << "tile sizes " << BM << "x" << BN << " do not split evenly over "
           << numThreads << " threads";
  kind = tiled.getNormalizer();
  if (kind == NormalizerKind::relu && tiled.getRowNormalize())
    return tiled.emitError()
           << "the row-normalized relu has no CUDA backward yet (its row "
              "sums would need a pass over every kv tile per q tile); use "
              "the CPU backend";
  return success();
}

gpu::GPUFuncOp GpuBackwardBuilder::createKernel() {
  MLIRContext *ctx = b.getContext();
  SmallVector<Type> args =
      backwardKernelArgTypes(spec, elt, tiled.getGradientInputs());
  std::string name = ("attn_" + spec.getSymName() + "_bwd_d" + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  // Ks, Vs [BN x D], Qs, dOs [BM x D], dXs [BM x BN] (bf16/f16), lse and D
  // per q row (f32).
  int64_t smemBytes = (2 * BN * D + 2 * BM * D + BM * BN) * 2 + 2 * BM * 4;
  setLaunchContract(fn, BM, numThreads, smemBytes, D);
  setBackwardContract(fn, BN, tiled.getGradientInputs());
  return fn;
}

void GpuBackwardBuilder::emitPrologue(Block *entry) {
  bindCanonical(entry);
  env.scalarLanes = true;
  env.vectorWidth = 1;
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
  emitThreadIds();
  Value Hkv = memref::DimOp::create(b, k, 1);
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  hk = remu(bh, Hkv);
  bIdx = divu(bh, Hkv);
  bI64 = toI64(bIdx);
  k0 = mul(gpu::BlockIdOp::create(b, gpu::Dimension::x), cidx(BN));
  Value lastK = sub(M, cidx(1));
  for (int r = 0; r < 2; ++r)
    kvIdx[r] = toI64(minu(add(k0, keyOf(2 * r)), lastK));

  Value smem = dynamicSharedMemory();
  int64_t off = 0;
  auto tile = [&](int64_t elems) {
    Value v = sharedView(smem, off, elems, elt);
    off += elems * 2;
    return v;
  };
  Ks = tile(BN * D);
  Vs = tile(BN * D);
  Qs = tile(BM * D);
  dOs = tile(BM * D);
  dXs = tile(BM * BN);
  LSEs = sharedView(smem, off, BM, b.getF32Type());
  Ds = sharedView(smem, off + BM * 4, BM, b.getF32Type());
}

LogicalResult GpuBackwardBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention_backward to lower";
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, " (tensor cores)");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  if (failed(checkSchedule()))
    return failure();
  gpu::GPUFuncOp fn = createKernel();
  OpBuilder::InsertionGuard guard(b);
  Block *entry = &fn.getBody().front();
  b.setInsertionPointToStart(entry);
  emitPrologue(entry);
  Block &body = tiled.getBodyBlock();
  map.map(body.getArgument(0), bIdx);
  map.map(body.getArgument(1), hk);
  map.map(body.getArgument(2), k0);
  if (failed(lowerTileBackwardBlock(body, *this)))
    return failure();
  gpu::ReturnOp::create(b);
  return success();
}

//===----------------------------------------------------------------------===//
// Tile arithmetic
//===----------------------------------------------------------------------===//

TileRegs
GpuBackwardBuilder::mapTile(const TileRegs &x,
                            function_ref<Value(Value, int64_t, int)> fn) {
  TileRegs r = x;
  for (int64_t n = 0; n < int64_t(x.size()); ++n)
    for (int e = 0; e < 4; ++e)
      r[n][e] = fn(x[n][e], n, e);
  return r;
}

TileRegs GpuBackwardBuilder::keysTimesQueries(Value rowsTile, Value colsTile) {
  Value zero = cf32(0);
  TileRegs acc(BM / 8, Acc{zero, zero, zero, zero});
  Value keyRow0 = mul(warp, cidx(16));
  for (int64_t kk = 0; kk < D / 16; ++kk) {
    SmallVector<Value> a = ldmatrix(rowsTile, cidx(0), keyRow0, kk * 16,
                                    /*transpose=*/false, /*aOrder=*/true, D);
    for (int64_t np = 0; np < BM / 16; ++np) {
      SmallVector<Value> bf = ldmatrix(colsTile, cidx(0), cidx(np * 16),
                                       kk * 16, /*transpose=*/false,
                                       /*aOrder=*/false, D);
      acc[2 * np] = mma(a, bf[0], bf[1], acc[2 * np]);
      acc[2 * np + 1] = mma(a, bf[2], bf[3], acc[2 * np + 1]);
    }
  }
  return acc;
}

void GpuBackwardBuilder::accumulateKeyRows(const TileRegs &x, Value rowsTile,
                                           MutableArrayRef<Value> acc) {
  for (int64_t j = 0; j < BM / 16; ++j) {
    SmallVector<Value> a = accsToA(x[2 * j], x[2 * j + 1]);
    for (int64_t dp = 0; dp < D / 16; ++dp) {
      SmallVector<Value> bf =
          ldmatrix(rowsTile, cidx(0), cidx(j * 16), dp * 16, /*transpose=*/true,
                   /*aOrder=*/false, D);
      for (int half = 0; half < 2; ++half) {
        int64_t n = 2 * dp + half;
        Acc c{acc[4 * n], acc[4 * n + 1], acc[4 * n + 2], acc[4 * n + 3]};
        Acc r = mma(a, bf[2 * half], bf[2 * half + 1], c);
        for (int e = 0; e < 4; ++e)
          acc[4 * n + e] = r[e];
      }
    }
  }
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

/// K and V of the CTA's kv tile (zero past M), and zero accumulators.
LogicalResult GpuBackwardBuilder::lowerBwdInit(TileBwdInitOp op) {
  Value yes = arith::ConstantOp::create(b, b.getBoolAttr(true));
  SmallVector<Value> kv =
      emitTileCopy(k, bIdx, hk, k0, BN, M, Dqk, Ks, cidx(0), yes);
  kv.append(emitTileCopy(v, bIdx, hk, k0, BN, M, Dv, Vs, cidx(0), yes));
  nvgpu::DeviceAsyncWaitOp::create(b, asyncGroup(kv), b.getI32IntegerAttr(0));
  gpu::BarrierOp::create(b);
  grads[op.getResult()].assign(D, cf32(0)); // dK: D/2, then dV: D/2
  return success();
}

/// Every (query head, q tile) pair the mask leaves non-empty, carrying the
/// accumulators.
LogicalResult GpuBackwardBuilder::lowerQLoop(QLoopOp op) {
  Block &step = op.getBody().front();
  Region *mask = op.getMask().empty() ? nullptr : &op.getMask();
  FailureOr<SmallVector<Value>> res = emitBackwardPairLoop(
      b, mask, env, bI64, hk, G, k0, N, M, BM, BN, grads[op.getInit()],
      [&](Value h, Value hI64, Value q0, Value partial,
          ValueRange acc) -> FailureOr<SmallVector<Value>> {
        pairH = h;
        pairHI64 = hI64;
        pairQ0 = q0;
        map.map(step.getArgument(0), h);
        map.map(step.getArgument(1), q0);
        map.map(step.getArgument(2), partial);
        grads[step.getArgument(3)].assign(acc.begin(), acc.end());
        if (failed(lowerTileBackwardBlock(step, *this)))
          return failure();
        auto yield = cast<YieldOp>(step.getTerminator());
        return grads[yield.getValues().front()];
      });
  if (failed(res))
    return failure();
  grads[op.getResult()] = std::move(*res);
  return success();
}

/// The pair's q and do rows (zero past N) and its rows' lse and D.
LogicalResult GpuBackwardBuilder::lowerLoadQ(TileLoadQOp op) {
  Value yes = arith::ConstantOp::create(b, b.getBoolAttr(true));
  SmallVector<Value> rows =
      emitTileCopy(q, bIdx, pairH, pairQ0, BM, N, Dqk, Qs, cidx(0), yes);
  rows.append(
      emitTileCopy(dout, bIdx, pairH, pairQ0, BM, N, Dv, dOs, cidx(0), yes));
  if (kind == NormalizerKind::softmax)
    emitBackwardRowStatistics(tid, numThreads, 32, bIdx, pairH, pairQ0, BM,
                              dout, dlse, hasDlse, LSEs, Ds);
  nvgpu::DeviceAsyncWaitOp::create(b, asyncGroup(rows), b.getI32IntegerAttr(0));
  gpu::BarrierOp::create(b);
  Value lastQ = sub(N, cidx(1));
  for (int64_t n = 0; n < BM / 8; ++n)
    for (int c = 0; c < 2; ++c)
      qIdx[n][c] = toI64(minu(add(pairQ0, queryOf(n, c)), lastQ));
  tiles[op.getResult()] = {};
  return success();
}

/// Sᵀ = K Qᵀ, scaled.
LogicalResult GpuBackwardBuilder::lowerQK(TileQKOp op) {
  TileRegs s = keysTimesQueries(Ks, Qs);
  tiles[op.getResult()] =
      mapTile(s, [&](Value x, int64_t, int) { return fmul(x, scale); });
  return success();
}

LogicalResult GpuBackwardBuilder::lowerScore(TileScoreOp op) {
  tiles[op.getResult()] =
      mapTile(tiles[op.getScores()], [&](Value x, int64_t n, int e) {
        return toF32(
            emitRegion(b, op.getScore(),
                       {x, bI64, pairHI64, qIdx[n][e & 1], kvIdx[e / 2]}, env));
      });
  return success();
}

/// Hidden elements become -inf: on partial pairs only (rows past N, keys
/// past M and the mask).
LogicalResult GpuBackwardBuilder::lowerMask(TileMaskOp op) {
  TileRegs s = tiles[op.getScores()];
  Region &mask = tiled.getQLoop().getMask();
  SmallVector<Type> types(4 * s.size(), b.getF32Type());
  auto ifOp = scf::IfOp::create(b, types, map.lookup(op.getPartial()), true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    SmallVector<Value> hidden;
    for (int64_t n = 0; n < int64_t(s.size()); ++n)
      for (int e = 0; e < 4; ++e) {
        Value visible =
            land(ult(add(pairQ0, queryOf(n, e)), N), ult(add(k0, keyOf(e)), M));
        if (!mask.empty())
          visible = land(
              visible,
              emitRegion(b, mask,
                         {bI64, pairHI64, qIdx[n][e & 1], kvIdx[e / 2]}, env));
        hidden.push_back(select(visible, s[n][e], ninf()));
      }
    scf::YieldOp::create(b, hidden);
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    SmallVector<Value> same;
    for (const Acc &x : s)
      same.append(x.begin(), x.end());
    scf::YieldOp::create(b, same);
  }
  for (int64_t n = 0; n < int64_t(s.size()); ++n)
    for (int e = 0; e < 4; ++e)
      s[n][e] = ifOp.getResult(4 * n + e);
  tiles[op.getResult()] = s;
  return success();
}

LogicalResult GpuBackwardBuilder::lowerWeights(TileBwdWeightsOp op) {
  SmallVector<std::array<Value, 2>> lseAt;
  if (kind == NormalizerKind::softmax)
    lseAt = rowValues(LSEs);
  BackwardElement el = element();
  tiles[op.getResult()] =
      mapTile(tiles[op.getScores()], [&](Value s, int64_t n, int e) {
        return el.weight(s, lseAt.empty() ? Value() : lseAt[n][e & 1]);
      });
  return success();
}

/// dPᵀ = V dOᵀ.
LogicalResult GpuBackwardBuilder::lowerDP(TileBwdDPOp op) {
  tiles[op.getResult()] = keysTimesQueries(Vs, dOs);
  return success();
}

LogicalResult GpuBackwardBuilder::lowerDS(TileBwdDSOp op) {
  const TileRegs &p = tiles[op.getWeights()];
  const TileRegs &s = tiles[op.getScores()];
  SmallVector<std::array<Value, 2>> dAt;
  if (kind == NormalizerKind::softmax)
    dAt = rowValues(Ds);
  BackwardElement el = element();
  tiles[op.getResult()] = mapTile(tiles[op.getDp()], [&](Value dp, int64_t n,
                                                         int e) {
    return el.ds(p[n][e], s[n][e], dp, dAt.empty() ? Value() : dAt[n][e & 1]);
  });
  return success();
}

/// dX = dS ∂score/∂x per element; the aux lookups' adjoints go to their
/// gradients by atomic adds (emitRegionGradient with scalar lanes).
LogicalResult GpuBackwardBuilder::lowerScoreGrad(TileBwdScoreOp op) {
  const TileRegs &raw = tiles[op.getRaw()];
  tiles[op.getResult()] =
      mapTile(tiles[op.getDs()], [&](Value ds, int64_t n, int e) {
        return emitRegionGradient(
            b, op.getScore(),
            {raw[n][e], bI64, pairHI64, qIdx[n][e & 1], kvIdx[e / 2]}, ds, env,
            auxGrads);
      });
  return success();
}

/// dV += Pᵀ dO.
LogicalResult GpuBackwardBuilder::lowerDV(TileBwdDVOp op) {
  SmallVector<Value> acc = grads[op.getGrad()];
  accumulateKeyRows(tiles[op.getWeights()], dOs,
                    MutableArrayRef<Value>(acc).drop_front(D / 2));
  grads[op.getResult()] = acc;
  return success();
}

/// dK += dXᵀ Q (unscaled: scaled once at the store).
LogicalResult GpuBackwardBuilder::lowerDK(TileBwdDKOp op) {
  SmallVector<Value> acc = grads[op.getGrad()];
  accumulateKeyRows(tiles[op.getDx()], Qs,
                    MutableArrayRef<Value>(acc).take_front(D / 2));
  grads[op.getResult()] = acc;
  return success();
}

/// dX to shared memory (queries x keys), then dq += scale dXs Ks.
LogicalResult GpuBackwardBuilder::lowerDQ(TileBwdDQOp op) {
  const TileRegs &dx = tiles[op.getDx()];
  for (int64_t n = 0; n < BM / 8; ++n)
    for (int e = 0; e < 4; ++e) {
      // Key 16 warp + 8 (e / 2) + g: chunk 2 warp + e / 2, element g.
      Value chunkCol = add(mul(warp, cidx(16)), cidx(8 * (e / 2)));
      Value off = add(swizzle(queryOf(n, e), chunkCol, BN), g);
      Value x = arith::TruncFOp::create(b, elt, dx[n][e]);
      memref::StoreOp::create(b, x, dXs, ValueRange{off});
    }
  gpu::BarrierOp::create(b);
  emitDQ(pairH, pairQ0);
  // Qs, dOs and dXs are overwritten by the next pair.
  gpu::BarrierOp::create(b);
  return success();
}

void GpuBackwardBuilder::emitDQ(Value h, Value q0) {
  int64_t rowBlocks = BM / 16, dTiles = D / 16;
  // Each warp: `blocks` row blocks of 16 queries and `dps` 16-column blocks.
  int64_t perBlock = std::max<int64_t>(1, numWarps / rowBlocks);
  int64_t blocks = std::max<int64_t>(1, rowBlocks / numWarps);
  int64_t dps = dTiles / perBlock;
  Value myBlock = remu(warp, cidx(std::min(rowBlocks, numWarps)));
  Value dp0 = mul(divu(warp, cidx(std::min(rowBlocks, numWarps))), cidx(dps));
  Value zero = cf32(0);
  for (int64_t i = 0; i < blocks; ++i) {
    Value row0 = mul(add(myBlock, cidx(i * numWarps)), cidx(16));
    SmallVector<Acc> acc(2 * dps, Acc{zero, zero, zero, zero});
    for (int64_t kk = 0; kk < BN / 16; ++kk) {
      SmallVector<Value> a = ldmatrix(dXs, cidx(0), row0, kk * 16,
                                      /*transpose=*/false, /*aOrder=*/true, BN);
      for (int64_t j = 0; j < dps; ++j) {
        Value col = mul(add(dp0, cidx(j)), cidx(16));
        SmallVector<Value> bf =
            ldmatrix(Ks, cidx(0), cidx(kk * 16), col, /*transpose=*/true,
                     /*aOrder=*/false, D);
        acc[2 * j] = mma(a, bf[0], bf[1], acc[2 * j]);
        acc[2 * j + 1] = mma(a, bf[2], bf[3], acc[2 * j + 1]);
      }
    }
    for (int64_t j = 0; j < 2 * dps; ++j)
      for (int r = 0; r < 2; ++r) {
        Value row = add(q0, add(row0, add(g, cidx(8 * r))));
        Value col0 = add(mul(add(dp0, cidx(j / 2)), cidx(16)),
                         add(cidx(8 * (j % 2)), mul(t, cidx(2))));
        ifThen(ult(row, N), [&] {
          for (int c = 0; c < 2; ++c) {
            Value col = add(col0, cidx(c));
            Value x = fmul(acc[j][2 * r + c], scale);
            ifThen(ult(col, Dqk), [&] {
              memref::AtomicRMWOp::create(b, b.getF32Type(),
                                          arith::AtomicRMWKind::addf, x, dq,
                                          ValueRange{bIdx, h, row, col});
            });
          }
        });
      }
  }
}

/// dk = scale dK, dv = dV: the tile's rows below M.
LogicalResult GpuBackwardBuilder::lowerBwdStore(TileBwdStoreOp op) {
  const SmallVector<Value> &acc = grads[op.getGrad()];
  for (int r = 0; r < 2; ++r) {
    Value row = add(k0, keyOf(2 * r));
    ifThen(ult(row, M), [&] {
      for (int64_t n = 0; n < D / 8; ++n)
        for (int c = 0; c < 2; ++c) {
          Value col = add(cidx(8 * n + c), mul(t, cidx(2)));
          Value dkx = fmul(acc[4 * n + 2 * r + c], scale);
          Value dvx = acc[D / 2 + 4 * n + 2 * r + c];
          ifThen(ult(col, Dqk), [&] {
            memref::StoreOp::create(b, dkx, dk, ValueRange{bIdx, hk, row, col});
          });
          ifThen(ult(col, Dv), [&] {
            memref::StoreOp::create(b, dvx, dv, ValueRange{bIdx, hk, row, col});
          });
        }
    });
  }
  return success();
}

LogicalResult mlir::attn::buildBackwardGpuKernels(SpecOp spec,
                                                  gpu::GPUModuleOp gpuModule,
                                                  ArrayRef<int64_t> headDims) {
  for (int64_t d : headDims) {
    GpuBackwardBuilder kb(spec, gpuModule, d);
    if (failed(kb.build()))
      return failure();
  }
  return success();
}
