//===- MfmaBackward.cpp - the softmax family's gradients on AMD matrix cores
//===//
//
// The ROCm patterns of attn.tiled_attention_backward (TileBackwardLowering):
// FlashAttention-2's backward on MFMA 32x32x8 (MfmaOps.h), wave64. One
// work-group per kv tile (tile_kv keys of one (b, hk)), tile_kv / 32 waves
// of 32 keys each. A wave keeps its keys' K and V rows in registers as B
// operands (lane l holds key l % 32) and computes every product of a
// (query head, q tile) pair with the queries as the MFMA's M dim, so that
// its results are (queries x keys) accumulators whose lane is the key:
//
//   Ks <- k rows k0 .. k0 + tile_kv (LDS); K^T, V^T fragments (registers)
//   dK^T = dV^T = 0          (dims x keys: D / 32 accumulators of 16 each)
//   for h in the group, q tiles the mask leaves (attn.tile.q_loop):
//     Qs, dOs <- q, do rows; lse_i, D_i = rowsum(do_i o_i) - dlse_i
//     S  = Qs K^T, scaled                    (attn.tile.qk)
//     score, mask (partial pairs only), P    (bwd.weights)
//     dP = dOs V^T                            (bwd.dp)
//     dS, dX = dS dscore/dx, aux gradients by atomics (bwd.ds, bwd.score)
//     dV^T += dOs^T P, dK^T += Qs^T dX        (bwd.dv, bwd.dk)
//     dXs <- dX; dq += scale dXs Ks, by atomics (bwd.dq)
//   dk = scale dK, dv = dV                    (bwd.store)
//
// P and dX feed dV^T and dK^T straight from the accumulators: a (queries x
// keys) accumulator's elements 4c .. 4c + 3 are the B operand of queries
// 8c .. 8c + 7 (MfmaOps.h), with dO^T and Q^T as the A operands. dq needs
// dX with the queries in the lanes, so it goes through LDS, as on CUDA;
// the kv tiles share dq's rows, hence the atomic adds (the runtime zeroes
// dq first), while each tile owns its dk and dv rows.
//
// Correctness first: the LDS tiles are row-major without a swizzle, the
// transposed operands (dO^T, Q^T, and K for dq) are read 2 bytes at a
// time, global reads are plain loads. Nothing of it has run on an AMD GPU;
// attn-gpu-sim checks it against the float64 reference.
//
//===----------------------------------------------------------------------===//

#include "MfmaBackward.h"
#include "MfmaOps.h"
#include "attn/Conversion/KernelScaffold.h"
#include "attn/Conversion/SoftmaxGpuTiles.h"
#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;

/// A tile of (queries x keys) values: this lane's 16 accumulator elements
/// per 32-query sub-tile qs, element e at [16 qs + e].
using Tile = SmallVector<Value>;

class MfmaBackwardBuilder : public KernelScaffold, public TileBackwardLowering {
public:
  MfmaBackwardBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule, int64_t headDim)
      : KernelScaffold(spec), tiled(spec.getTiledAttentionBackward()),
        D(headDim) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

  ATTN_TILE_BACKWARD_LOWERING_PATTERNS

private:
  LogicalResult checkSchedule();
  void emitPrologue(Block *entry);
  /// Rows row0 .. row0 + rows of src[b, h] (columns < colLimit, rows <
  /// rowLimit; zero elsewhere) into the LDS tile `dst` [rows x D].
  void copyRows(Value src, Value h, Value row0, int64_t rows, Value rowLimit,
                Value colLimit, Value dst);
  /// 4 elements of an LDS tile from `offset` (`stride` apart): an operand.
  Value fragment(Value tile, Value offset, int64_t stride);
  /// (queries x keys): rows (an LDS tile [BM x D]) times this wave's keys
  /// (B fragments, one per 8 of the head dim).
  Tile queriesTimesKeys(Value rowsTile, ArrayRef<Value> keyFrags);
  /// acc (dims x keys, D / 32 accumulators of 16) += rows^T x.
  void accumulateDims(const Tile &x, Value rowsTile,
                      MutableArrayRef<Value> acc);
  /// dq[b, h, q0 + .., ..] += scale dXs Ks: this wave's 32x32 blocks.
  void emitDQ(Value h, Value q0);
  /// The query (in the q tile) of element e of sub-tile qs, and this lane's
  /// key (in the kv tile).
  Value queryOf(int64_t qs, int64_t e) {
    return add(cidx(kMfmaTile * qs + 8 * (e / 4) + e % 4), mul(hi, cidx(4)));
  }
  Value keyOf() { return add(mul(wave, cidx(kMfmaTile)), l32); }
  /// The f32 per-query values buf[query] of every element.
  SmallVector<Value> rowValues(Value buf);
  Tile mapTile(const Tile &x, function_ref<Value(Value, int64_t)> fn) {
    Tile r = x;
    for (int64_t i = 0; i < int64_t(x.size()); ++i)
      r[i] = fn(x[i], i);
    return r;
  }
  BackwardElement element() {
    return {b, kind, int64_t(tiled.getReluPower()), bias};
  }

  TiledAttentionBackwardOp tiled;
  int64_t D, BM = 32, BN = 64, numWaves = 2, numThreads = 128;
  NormalizerKind kind = NormalizerKind::softmax;
  Type elt;
  KernelEnv env;

  Value tid, wave, l32, hi;
  Value dout, dlse, dq, dk, dv, hasDlse, scale, bias;
  llvm::StringMap<Value> auxGrads;
  Value bIdx, hk, k0, bI64, kvIdx;
  Value Ks, Qs, dOs, dXs, LSEs, Ds;
  /// This wave's keys of k and v as B operands: lane l holds row
  /// k0 + 32 wave + l % 32, head dims 8 kk + 4 (l / 32) .. + 3.
  SmallVector<Value> kFrags, vFrags;

  // The pair being lowered.
  Value pairH, pairHI64, pairQ0;
  SmallVector<Value> qIdx; ///< clamped query (i64) per element
  DenseMap<Value, Tile> tiles;
  /// dK^T (D / 2 values), then dV^T (D / 2).
  DenseMap<Value, SmallVector<Value>> grads;
};

} // namespace

//===----------------------------------------------------------------------===//
// The kernel shell
//===----------------------------------------------------------------------===//

LogicalResult MfmaBackwardBuilder::checkSchedule() {
  ScheduleAttr sched = tiled.getSchedule();
  BM = sched.getTileQ();
  BN = sched.getTileKv();
  numWaves = BN / kMfmaTile;
  numThreads = kMfmaWave * numWaves;
  if (BN % kMfmaTile || !llvm::is_contained({1, 2, 4}, numWaves))
    return tiled.emitError() << "the ROCm backward kernel needs tile_kv = 32, "
                                "64 or 128 (32 keys per wave), got "
                             << BN;
  if (BM != 32 && BM != 64)
    return tiled.emitError()
           << "the ROCm backward kernel needs tile_q = 32 or 64, got " << BM;
  if (D != 64 && D != 128)
    return tiled.emitError() << "ROCm kernels are generated for head dims 64 "
                                "and 128 (smaller ones are zero-padded), got "
                             << D;
  kind = tiled.getNormalizer();
  if (kind == NormalizerKind::relu && tiled.getRowNormalize())
    return tiled.emitError()
           << "the row-normalized relu has no ROCm backward yet (its row "
              "sums would need a pass over every kv tile per q tile); use "
              "the CPU backend";
  return success();
}

void MfmaBackwardBuilder::emitPrologue(Block *entry) {
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
  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  wave = divu(tid, cidx(kMfmaWave));
  Value lane = remu(tid, cidx(kMfmaWave));
  l32 = remu(lane, cidx(kMfmaTile));
  hi = divu(lane, cidx(kMfmaTile));
  Value Hkv = memref::DimOp::create(b, k, 1);
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  hk = remu(bh, Hkv);
  bIdx = divu(bh, Hkv);
  bI64 = toI64(bIdx);
  k0 = mul(gpu::BlockIdOp::create(b, gpu::Dimension::x), cidx(BN));
  kvIdx = toI64(minu(add(k0, keyOf()), sub(M, cidx(1))));

  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), nullptr, wg));
  int64_t off = 0;
  auto view = [&](int64_t elems, Type t) -> Value {
    Value v =
        memref::ViewOp::create(b, MemRefType::get({elems}, t, nullptr, wg),
                               smem, cidx(off), ValueRange{});
    off += elems * (t.isF32() ? 4 : 2);
    return v;
  };
  Ks = view(BN * D, elt);
  Qs = view(BM * D, elt);
  dOs = view(BM * D, elt);
  dXs = view(BM * BN, elt);
  LSEs = view(BM, b.getF32Type());
  Ds = view(BM, b.getF32Type());
}

LogicalResult MfmaBackwardBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention_backward to lower";
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, " (matrix cores)");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  if (failed(checkSchedule()))
    return failure();
  MLIRContext *ctx = b.getContext();
  SmallVector<Type> args =
      backwardKernelArgTypes(spec, elt, tiled.getGradientInputs());
  std::string name = ("attn_" + spec.getSymName() + "_bwd_d" + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  int64_t smemBytes = (BN * D + 2 * BM * D + BM * BN) * 2 + 2 * BM * 4;
  setLaunchContract(fn, BM, numThreads, smemBytes, D);
  setBackwardContract(fn, BN, tiled.getGradientInputs());
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

void MfmaBackwardBuilder::copyRows(Value src, Value h, Value row0, int64_t rows,
                                   Value rowLimit, Value colLimit, Value dst) {
  Value zero = arith::ConstantOp::create(b, b.getFloatAttr(elt, 0.0));
  Value lastRow = sub(rowLimit, cidx(1)), lastCol = sub(colLimit, cidx(1));
  for (int64_t i = 0; i < rows * D / numThreads; ++i) {
    Value idx = add(tid, cidx(i * numThreads));
    Value r = divu(idx, cidx(D)), c = remu(idx, cidx(D));
    Value row = add(row0, r);
    Value ok = land(ult(row, rowLimit), ult(c, colLimit));
    // The address stays inside the tensor even where nothing is wanted.
    Value x = memref::LoadOp::create(
        b, src, ValueRange{bIdx, h, minu(row, lastRow), minu(c, lastCol)});
    memref::StoreOp::create(b, select(ok, x, zero), dst, ValueRange{idx});
  }
}

Value MfmaBackwardBuilder::fragment(Value tile, Value offset, int64_t stride) {
  auto fragTy = VectorType::get({4}, elt);
  if (stride == 1)
    return vector::LoadOp::create(b, fragTy, tile, ValueRange{offset},
                                  /*nontemporal=*/false, llvm::MaybeAlign(8));
  SmallVector<Value> xs;
  for (int64_t e = 0; e < 4; ++e)
    xs.push_back(memref::LoadOp::create(
        b, tile, ValueRange{add(offset, cidx(e * stride))}));
  return vector::FromElementsOp::create(b, fragTy, xs);
}

/// A[query][dim]: lane l reads 4 dims of query row 32 qs + l % 32.
Tile MfmaBackwardBuilder::queriesTimesKeys(Value rowsTile,
                                           ArrayRef<Value> keyFrags) {
  Tile acc(BM / kMfmaTile * 16, cf32(0));
  for (int64_t qs = 0; qs < BM / kMfmaTile; ++qs) {
    Value rowOff = mul(add(cidx(kMfmaTile * qs), l32), cidx(D));
    Value half = mul(hi, cidx(4));
    for (int64_t kk = 0; kk < D / kMfmaK; ++kk) {
      Value a =
          fragment(rowsTile, add(rowOff, add(cidx(kMfmaK * kk), half)), 1);
      emitMfma(b, a, keyFrags[kk],
               MutableArrayRef<Value>(acc).slice(16 * qs, 16));
    }
  }
  return acc;
}

/// A[dim][query] = rows[query][dim]: lane l reads dim 32 ds + l % 32 of 4
/// query rows; B = x's elements 4c .. 4c + 3 (queries 8c .. 8c + 7).
void MfmaBackwardBuilder::accumulateDims(const Tile &x, Value rowsTile,
                                         MutableArrayRef<Value> acc) {
  for (int64_t qs = 0; qs < BM / kMfmaTile; ++qs)
    for (int64_t c = 0; c < 4; ++c) {
      Value bOp = mfmaOperandOf(b, elt, x, 16 * qs + 4 * c);
      Value row = add(cidx(kMfmaTile * qs + 8 * c), mul(hi, cidx(4)));
      for (int64_t ds = 0; ds < D / kMfmaTile; ++ds) {
        Value col = add(cidx(kMfmaTile * ds), l32);
        Value a = fragment(rowsTile, add(mul(row, cidx(D)), col), D);
        emitMfma(b, a, bOp, acc.slice(16 * ds, 16));
      }
    }
}

SmallVector<Value> MfmaBackwardBuilder::rowValues(Value buf) {
  SmallVector<Value> r;
  for (int64_t qs = 0; qs < BM / kMfmaTile; ++qs)
    for (int64_t e = 0; e < 16; ++e)
      r.push_back(memref::LoadOp::create(b, buf, ValueRange{queryOf(qs, e)}));
  return r;
}

/// dq's (BM x D) rows of the pair in 32x32 blocks, dealt round-robin to the
/// waves: A = dXs rows (queries), B = Ks read down its columns.
void MfmaBackwardBuilder::emitDQ(Value h, Value q0) {
  int64_t dBlocks = D / kMfmaTile, blocks = BM / kMfmaTile * dBlocks;
  for (int64_t i = 0; i * numWaves < blocks; ++i) {
    Value blk = add(wave, cidx(i * numWaves));
    auto body = [&] {
      Value qb = divu(blk, cidx(dBlocks)), db = remu(blk, cidx(dBlocks));
      Value qRow = add(mul(qb, cidx(kMfmaTile)), l32);
      Value dim = add(mul(db, cidx(kMfmaTile)), l32);
      SmallVector<Value> acc(16, cf32(0));
      Value half = mul(hi, cidx(4));
      for (int64_t c = 0; c < BN / kMfmaK; ++c) {
        Value key = add(cidx(kMfmaK * c), half);
        Value a = fragment(dXs, add(mul(qRow, cidx(BN)), key), 1);
        Value bOp = fragment(Ks, add(mul(key, cidx(D)), dim), D);
        emitMfma(b, a, bOp, acc);
      }
      // D[query][dim]: lane l holds dim 32 db + l % 32.
      ifThen(ult(dim, Dqk), [&] {
        for (int64_t e = 0; e < 16; ++e) {
          Value row = add(q0, add(mul(qb, cidx(kMfmaTile)), queryOf(0, e)));
          Value x = fmul(acc[e], scale);
          ifThen(ult(row, N), [&] {
            memref::AtomicRMWOp::create(b, b.getF32Type(),
                                        arith::AtomicRMWKind::addf, x, dq,
                                        ValueRange{bIdx, h, row, dim});
          });
        }
      });
    };
    // Whole waves take a block or not: the branch is uniform per wave.
    if ((i + 1) * numWaves <= blocks)
      body();
    else
      ifThen(ult(blk, cidx(blocks)), body);
  }
}

//===----------------------------------------------------------------------===//
// The patterns
//===----------------------------------------------------------------------===//

/// K of the kv tile into LDS (zero past M), this wave's K and V rows as B
/// fragments, zero accumulators.
LogicalResult MfmaBackwardBuilder::lowerBwdInit(TileBwdInitOp op) {
  copyRows(k, hk, k0, BN, M, Dqk, Ks);
  // V straight into registers: lane l's 4 head dims of its key, zero past
  // M and Dv.
  Value zero = arith::ConstantOp::create(b, b.getFloatAttr(elt, 0.0));
  Value key = add(k0, keyOf());
  Value inRow = ult(key, M), row = minu(key, sub(M, cidx(1)));
  Value lastCol = sub(Dv, cidx(1));
  for (int64_t kk = 0; kk < D / kMfmaK; ++kk) {
    SmallVector<Value> xs;
    for (int64_t e = 0; e < 4; ++e) {
      Value col = add(cidx(kMfmaK * kk + e), mul(hi, cidx(4)));
      Value x = memref::LoadOp::create(
          b, v, ValueRange{bIdx, hk, row, minu(col, lastCol)});
      xs.push_back(select(land(inRow, ult(col, Dv)), x, zero));
    }
    vFrags.push_back(
        vector::FromElementsOp::create(b, VectorType::get({4}, elt), xs));
  }
  gpu::BarrierOp::create(b);
  Value rowOff = mul(keyOf(), cidx(D));
  for (int64_t kk = 0; kk < D / kMfmaK; ++kk)
    kFrags.push_back(
        fragment(Ks, add(rowOff, add(cidx(kMfmaK * kk), mul(hi, cidx(4)))), 1));
  grads[op.getResult()].assign(D, cf32(0)); // dK^T: D/2, then dV^T: D/2
  return success();
}

/// Every (query head, q tile) pair the mask leaves non-empty, carrying the
/// accumulators.
LogicalResult MfmaBackwardBuilder::lowerQLoop(QLoopOp op) {
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
LogicalResult MfmaBackwardBuilder::lowerLoadQ(TileLoadQOp op) {
  copyRows(q, pairH, pairQ0, BM, N, Dqk, Qs);
  copyRows(dout, pairH, pairQ0, BM, N, Dv, dOs);
  if (kind == NormalizerKind::softmax)
    emitBackwardRowStatistics(tid, numThreads, kMfmaWave, bIdx, pairH, pairQ0,
                              BM, dout, dlse, hasDlse, LSEs, Ds);
  gpu::BarrierOp::create(b);
  Value lastQ = sub(N, cidx(1));
  qIdx.clear();
  for (int64_t qs = 0; qs < BM / kMfmaTile; ++qs)
    for (int64_t e = 0; e < 16; ++e)
      qIdx.push_back(toI64(minu(add(pairQ0, queryOf(qs, e)), lastQ)));
  tiles[op.getResult()] = {};
  return success();
}

/// S = Q K^T, scaled.
LogicalResult MfmaBackwardBuilder::lowerQK(TileQKOp op) {
  tiles[op.getResult()] =
      mapTile(queriesTimesKeys(Qs, kFrags),
              [&](Value x, int64_t) { return fmul(x, scale); });
  return success();
}

LogicalResult MfmaBackwardBuilder::lowerScore(TileScoreOp op) {
  tiles[op.getResult()] =
      mapTile(tiles[op.getScores()], [&](Value x, int64_t i) {
        return toF32(emitRegion(b, op.getScore(),
                                {x, bI64, pairHI64, qIdx[i], kvIdx}, env));
      });
  return success();
}

/// Hidden elements become -inf: on partial pairs only (rows past N, keys
/// past M and the mask).
LogicalResult MfmaBackwardBuilder::lowerMask(TileMaskOp op) {
  const Tile &s = tiles[op.getScores()];
  Region &mask = tiled.getQLoop().getMask();
  SmallVector<Type> types(s.size(), b.getF32Type());
  auto ifOp = scf::IfOp::create(b, types, map.lookup(op.getPartial()), true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Value keyIn = ult(add(k0, keyOf()), M);
    Tile hidden;
    for (int64_t i = 0; i < int64_t(s.size()); ++i) {
      Value visible = land(ult(add(pairQ0, queryOf(i / 16, i % 16)), N), keyIn);
      if (!mask.empty())
        visible =
            land(visible,
                 emitRegion(b, mask, {bI64, pairHI64, qIdx[i], kvIdx}, env));
      hidden.push_back(select(visible, s[i], ninf()));
    }
    scf::YieldOp::create(b, hidden);
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, s);
  }
  tiles[op.getResult()] = Tile(ifOp.getResults());
  return success();
}

LogicalResult MfmaBackwardBuilder::lowerWeights(TileBwdWeightsOp op) {
  SmallVector<Value> lseAt;
  if (kind == NormalizerKind::softmax)
    lseAt = rowValues(LSEs);
  BackwardElement el = element();
  tiles[op.getResult()] =
      mapTile(tiles[op.getScores()], [&](Value s, int64_t i) {
        return el.weight(s, lseAt.empty() ? Value() : lseAt[i]);
      });
  return success();
}

/// dP = dO V^T.
LogicalResult MfmaBackwardBuilder::lowerDP(TileBwdDPOp op) {
  tiles[op.getResult()] = queriesTimesKeys(dOs, vFrags);
  return success();
}

LogicalResult MfmaBackwardBuilder::lowerDS(TileBwdDSOp op) {
  const Tile &p = tiles[op.getWeights()];
  const Tile &s = tiles[op.getScores()];
  SmallVector<Value> dAt;
  if (kind == NormalizerKind::softmax)
    dAt = rowValues(Ds);
  BackwardElement el = element();
  tiles[op.getResult()] = mapTile(tiles[op.getDp()], [&](Value dp, int64_t i) {
    return el.ds(p[i], s[i], dp, dAt.empty() ? Value() : dAt[i]);
  });
  return success();
}

/// dX = dS dscore/dx per element; the aux lookups' adjoints go to their
/// gradients by atomic adds.
LogicalResult MfmaBackwardBuilder::lowerScoreGrad(TileBwdScoreOp op) {
  const Tile &raw = tiles[op.getRaw()];
  tiles[op.getResult()] = mapTile(tiles[op.getDs()], [&](Value ds, int64_t i) {
    return emitRegionGradient(b, op.getScore(),
                              {raw[i], bI64, pairHI64, qIdx[i], kvIdx}, ds, env,
                              auxGrads);
  });
  return success();
}

/// dV^T += dO^T P.
LogicalResult MfmaBackwardBuilder::lowerDV(TileBwdDVOp op) {
  SmallVector<Value> acc = grads[op.getGrad()];
  accumulateDims(tiles[op.getWeights()], dOs,
                 MutableArrayRef<Value>(acc).drop_front(D / 2));
  grads[op.getResult()] = acc;
  return success();
}

/// dK^T += Q^T dX (unscaled: scaled once at the store).
LogicalResult MfmaBackwardBuilder::lowerDK(TileBwdDKOp op) {
  SmallVector<Value> acc = grads[op.getGrad()];
  accumulateDims(tiles[op.getDx()], Qs,
                 MutableArrayRef<Value>(acc).take_front(D / 2));
  grads[op.getResult()] = acc;
  return success();
}

/// dX to LDS (queries x keys), then dq += scale dXs Ks.
LogicalResult MfmaBackwardBuilder::lowerDQ(TileBwdDQOp op) {
  const Tile &dx = tiles[op.getDx()];
  Value key = keyOf();
  for (int64_t i = 0; i < int64_t(dx.size()); ++i) {
    Value off = add(mul(queryOf(i / 16, i % 16), cidx(BN)), key);
    memref::StoreOp::create(b, toMfmaOperand(b, elt, dx[i]), dXs,
                            ValueRange{off});
  }
  gpu::BarrierOp::create(b);
  emitDQ(pairH, pairQ0);
  // Qs, dOs, dXs and the row statistics are overwritten by the next pair.
  gpu::BarrierOp::create(b);
  return success();
}

/// dk = scale dK, dv = dV: this lane's key row, if below M. Accumulator
/// element e of block ds is head dim 32 ds + 8 (e / 4) + 4 (l / 32) + e % 4.
LogicalResult MfmaBackwardBuilder::lowerBwdStore(TileBwdStoreOp op) {
  const SmallVector<Value> &acc = grads[op.getGrad()];
  Value row = add(k0, keyOf());
  ifThen(ult(row, M), [&] {
    for (int64_t ds = 0; ds < D / kMfmaTile; ++ds)
      for (int64_t e = 0; e < 16; ++e) {
        Value col =
            add(cidx(kMfmaTile * ds + 8 * (e / 4) + e % 4), mul(hi, cidx(4)));
        Value dkx = fmul(acc[16 * ds + e], scale);
        Value dvx = acc[D / 2 + 16 * ds + e];
        ifThen(ult(col, Dqk), [&] {
          memref::StoreOp::create(b, dkx, dk, ValueRange{bIdx, hk, row, col});
        });
        ifThen(ult(col, Dv), [&] {
          memref::StoreOp::create(b, dvx, dv, ValueRange{bIdx, hk, row, col});
        });
      }
  });
  return success();
}

LogicalResult mlir::attn::buildMfmaBackwardKernels(SpecOp spec,
                                                   gpu::GPUModuleOp gpuModule,
                                                   ArrayRef<int64_t> headDims) {
  for (int64_t d : headDims) {
    MfmaBackwardBuilder kb(spec, gpuModule, d);
    if (failed(kb.build()))
      return failure();
  }
  return success();
}
