//===- MfmaAttention.cpp - the softmax family on AMD matrix cores ---------===//
//
// The ROCm patterns of the tile ops: a FlashAttention-2-style forward
// kernel on MFMA 32x32x8 (v_mfma_f32_32x32x8{bf16_1k,f16}, both gfx90a and
// gfx942), wave64. A work-group of tile_q / 32 waves computes tile_q query
// rows of one (b, h); each wave owns 32 of them.
//
// Lane layouts (AMD's matrix instruction calculator; IREE's MMA layouts;
// docs/architecture.md, "ROCm"), lane l in [0, 64), element e:
//   A[i][k] (32x8):  lane i + 32 (k / 4), element k % 4
//   B[k][j] (8x32):  lane j + 32 (k / 4), element k % 4
//   D[i][j] (32x32): lane j + 32 ((i / 4) % 2), element 4 (i / 8) + i % 4
//
// The scores are computed transposed, S^T = K Q^T (A = a K tile, B = Q^T),
// as CK, Triton and IREE do: then D's layout is B's, so the accumulator's
// elements 4c..4c+3 are, rounded to bf16/f16, the B operand P^T of keys
// 8c..8c+7 of O^T = V^T P^T, and P never leaves the registers. Every value
// a lane holds belongs to query l % 32: the row max and sum are in-lane
// over its 16 keys of a 32-key tile plus one xor-32 shuffle with the lane
// holding the other 16, and the rescale of O and the final division are
// in-lane. A lane of O^T holds its query's head dims 8 (e / 4) + 4 (l / 32)
// + e % 4 of each 32-wide slice.
//
//   Q^T fragments <- q rows (registers, for the whole kv loop)
//   regs <- K, V rows of the first visible kv tile (buffer loads)
//   for each visible kv tile (the mask's interval classification):
//     Ks <- regs (K rows), Vt <- regs transposed (V^T rows)   (LDS)
//     regs <- K, V rows of the next visible tile   (in flight meanwhile)
//     S^T = Ks Q^T                     (MFMA, f32 accumulators)
//     score, mask (partial tiles only), normalizer; m, l per query
//     O^T = O^T alpha + Vt P^T         (MFMA, P^T from the accumulators)
//   o = O / l, lse = m + log l
//
// Global reads are buffer loads (amdgpu.fat_raw_buffer_cast of the (b, hk)
// slice of k and v, 16 bytes per load): the buffer's extent ends at key M,
// so rows past the sequence's end read as 0 with no compare, and a tile
// past the last one can be prefetched unconditionally. The head-dim tail
// (Dqk, Dv below the kernel's D) is the only guarded case: a 16-byte chunk
// that straddles it is read element by element, so no load is ever partly
// out of bounds (whose result is chip-dependent).
//
// LDS holds K row-major and V transposed (keys contiguous), so that every
// MFMA operand is one 8-byte ds_read_b64: lane l reads 4 consecutive
// elements of row l % 32. Rows are 128 or 256 bytes apart, a multiple of
// the 32 4-byte banks' period, so without a swizzle the 32 rows of a read
// would hit the same banks; chunks are XOR-swizzled by the row (see
// kSwizzle* below) to spread them over all 32 banks.
//
// Nothing of it has run on an AMD GPU. Its numerics, LDS races and buffer
// semantics are checked in attn-gpu-sim, which implements the MFMA layouts
// above and raw-buffer range checking from AMD's ISA documentation.
//
//===----------------------------------------------------------------------===//

#include "MfmaAttention.h"
#include "MfmaOps.h"
#include "attn/Conversion/KernelScaffold.h"
#include "attn/Conversion/SoftmaxGpuTiles.h"
#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

constexpr int64_t kWave = kMfmaWave, kTile = kMfmaTile, kK = kMfmaK;

class MfmaKernelBuilder : public KernelScaffold, public TileLowering {
public:
  MfmaKernelBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule, int64_t headDim)
      : KernelScaffold(spec), tiled(spec.getTiledAttention()), regions(tiled),
        sched(tiled ? tiled.getSchedule() : ScheduleAttr()), D(headDim) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }

  LogicalResult build();

  ATTN_TILE_LOWERING_PATTERNS

private:
  void emitPrologue(gpu::GPUFuncOp fn);
  GpuTileWalk walk() {
    return GpuTileWalk{b, regions.mask, env, bI64, hI64, q0, N, M, nKT, BM, BN};
  }
  /// The (b, hk) slice of k or v, [M, dim], as a raw buffer whose extent
  /// ends with key M - 1.
  Value sliceBuffer(Value src, Value colLimit);
  /// Eight elements of row `row` of a slice buffer from this thread's column
  /// chunk, zero past `colLimit` (and past M: the buffer's range). With
  /// `aligned` (the head dims are multiples of 8, so a chunk is wholly
  /// inside or wholly past them) one 16-byte load, else eight 2-byte ones;
  /// `want` false reads zeros.
  Value loadChunk(Value buf, Value row, Value want, Value colLimit,
                  bool aligned);
  /// This thread's K and V chunks of the kv tile starting at key k0:
  /// numKLoads + 4 numVUnits vector<8 x elt>.
  SmallVector<Value> loadTile(Value k0, bool aligned);
  /// The kv loop with loadTile(aligned); returns its accumulators.
  FailureOr<SmallVector<Value>> emitKVLoop(KVLoopOp op, bool aligned);
  /// Writes what loadTile returned into Ks (rows) and Vt (transposed).
  void storeTile(ArrayRef<Value> regs);
  /// Element offsets of the swizzled layouts: Ks[key][16-byte chunk c16]
  /// and Vt[dim][8-byte chunk c8].
  Value ksOffset(Value key, Value c16);
  Value vtOffset(Value dim, Value c8);
  /// An MFMA operand: 4 elements at `offset` of an LDS tile.
  Value ldsFragment(Value tile, Value offset);
  void mfma(Value a, Value bOp, MutableArrayRef<Value> acc) {
    emitMfma(b, a, bOp, acc);
  }
  /// Score, mask and normalizer of the S^T elements; the row state update.
  SmallVector<Value> emitNormalizerStep(Value kt, Value k0, ValueRange state);
  SmallVector<Value> finish(Value k0, bool withMask, ArrayRef<Value> s);
  /// The key of element `e` of S^T tile `st` (relative to the kv tile).
  Value keyOf(int64_t st, int64_t e) {
    return add(cidx(st * kTile + 8 * (e / 4) + e % 4), mul(hi, cidx(4)));
  }
  /// 2^x by v_exp_f32 (llvm.amdgcn.exp2): what ROCm's math library calls
  /// for exp2 anyway, without linking it. Its arguments here are <= 0
  /// (score - row max), where a result below 2^-126 may flush to 0: a
  /// weight that small does not change a sum whose largest term is 1.
  Value exp2(Value x) { return ROCDL::ROCDLExp2::create(b, b.getF32Type(), x); }
  /// Sum (or max) with the lane 32 apart: the other half of a query's keys.
  Value acrossHalves(Value x, bool isMax);
  /// max(x, y) as v_max_f32: the scores' maxima need no NaN propagation
  /// (a NaN score makes its row NaN through the sum anyway), and
  /// arith.maximumf costs a compare and a select per element on gfx9.
  Value maxNum(Value x, Value y) { return arith::MaxNumFOp::create(b, x, y); }

  TiledAttentionOp tiled;
  TiledRegions regions;
  ScheduleAttr sched;
  int64_t D, BM = 128, BN = 32, numWaves = 4, numThreads = 256;
  NormalizerKind kind = NormalizerKind::softmax;
  Type elt;

  KernelEnv env;
  Value tid, lane, l32, hi, wave;
  Value nKT, bIdx, h, hk, q0, bI64, hI64;
  Value scale, bias, hasLse;
  Value Ks, Vt;
  /// Global -> LDS staging: the k and v slice buffers; this thread's 16-byte
  /// column chunk and first key row; whether its chunk is wholly, or partly,
  /// inside Dqk and Dv.
  Value kBuf, vBuf, chunk, chunkRow, kFull, vFull;
  /// K chunks per thread; V units (4 keys x 8 dims) per thread, and whether
  /// this thread has one (fewer units than threads for small tiles).
  int64_t numKLoads = 1, numVUnits = 1;
  Value hasVUnit;
  /// This lane's query row (may be >= N) and its index for the regions
  /// (clamped to N - 1).
  Value qRow, qIdx;
  /// Q^T's B fragments, one vector<4 x elt> per 8 of the head dim.
  SmallVector<Value> qFrag;

  // The tile program's values: an !attn.acc is (m, l, O^T...) per lane.
  DenseMap<Value, SmallVector<Value>> accs;
  SmallVector<Value> tileS; ///< S^T, then P^T: 16 per 32-key sub-tile
  Value curKt;
  Region *pendingScore = nullptr;
  bool pendingMask = false;
};

} // namespace

void MfmaKernelBuilder::emitPrologue(gpu::GPUFuncOp fn) {
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  env.scalarLanes = true;
  env.vectorWidth = 1;
  bindRegionEnv(entry, env);
  scale = emitScale(tiled.getScale(), env);
  bias = emitBias(tiled.getBias(), env);
  Value lsePtr = memref::ExtractAlignedPointerAsIndexOp::create(b, lse);
  hasLse = cmp(P::ne, lsePtr, cidx(0));

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  wave = divu(tid, cidx(kWave));
  lane = remu(tid, cidx(kWave));
  l32 = remu(lane, cidx(kTile));
  hi = divu(lane, cidx(kTile));
  // Query tiles run last-first, as on CUDA: under causal-like masks the
  // last ones have the most kv tiles.
  Value qt = sub(sub(gpu::GridDimOp::create(b, gpu::Dimension::x), cidx(1)),
                 gpu::BlockIdOp::create(b, gpu::Dimension::x));
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  h = remu(bh, Hq);
  bIdx = divu(bh, Hq);
  hk = divu(h, G);
  bI64 = toI64(bIdx);
  hI64 = toI64(h);
  q0 = mul(qt, cidx(BM));
  nKT = ceilDiv(M, cidx(BN));
  qRow = add(add(q0, mul(wave, cidx(kTile))), l32);
  qIdx = toI64(minu(qRow, sub(N, cidx(1))));

  // LDS: Ks [BN x D], Vt [D x BN], both swizzled.
  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), nullptr, wg));
  auto view = [&](int64_t byteOffset) -> Value {
    return memref::ViewOp::create(b,
                                  MemRefType::get({BN * D}, elt, nullptr, wg),
                                  smem, cidx(byteOffset), ValueRange{});
  };
  Ks = view(0);
  Vt = view(BN * D * 2);

  // Staging: a thread copies 16-byte chunk `chunk` of key rows chunkRow +
  // i T / (D / 8); as T is a multiple of D / 8 the chunk is the same for all
  // its rows, so the head-dim guards are computed once.
  int64_t chunksPerRow = D / 8;
  chunk = remu(tid, cidx(chunksPerRow));
  chunkRow = divu(tid, cidx(chunksPerRow));
  numKLoads = BN * chunksPerRow / numThreads;
  int64_t vUnits = BN / 4 * chunksPerRow;
  numVUnits = std::max<int64_t>(1, vUnits / numThreads);
  hasVUnit =
      vUnits < numThreads
          ? ult(tid, cidx(vUnits))
          : arith::ConstantOp::create(b, b.getBoolAttr(true)).getResult();
  Value c0 = mul(chunk, cidx(8)), c8 = add(c0, cidx(8));
  (void)c0;
  kFull = cmp(P::ule, c8, Dqk);
  vFull = cmp(P::ule, c8, Dv);
  kBuf = sliceBuffer(k, Dqk);
  vBuf = sliceBuffer(v, Dv);
}

Value MfmaKernelBuilder::sliceBuffer(Value src, Value colLimit) {
  auto srcTy = cast<MemRefType>(src.getType());
  SmallVector<OpFoldResult> offsets = {bIdx, hk, b.getIndexAttr(0),
                                       b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(1), M,
                                     colLimit};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  auto sliceTy = memref::SubViewOp::inferRankReducedResultType(
      {ShapedType::kDynamic, ShapedType::kDynamic}, srcTy, offsets, sizes,
      strides);
  Value slice = memref::SubViewOp::create(b, cast<MemRefType>(sliceTy), src,
                                          offsets, sizes, strides);
  // resetOffset: the slice's start becomes the buffer's base, so its extent
  // (max over dims of size x stride) ends with row M - 1.
  return amdgpu::FatRawBufferCastOp::create(b, slice, /*validBytes=*/Value(),
                                            /*cacheSwizzleStride=*/Value(),
                                            /*boundsCheck=*/true,
                                            /*resetOffset=*/true);
}

Value MfmaKernelBuilder::loadChunk(Value buf, Value row, Value want,
                                   Value colLimit, bool aligned) {
  // What is not wanted is read from row M, wholly outside the buffer's
  // range: zeros, without a branch or a select on the data.
  Value c0 = mul(chunk, cidx(8));
  if (aligned)
    return vector::LoadOp::create(b, VectorType::get({8}, elt), buf,
                                  ValueRange{select(want, row, M), c0});
  SmallVector<Value> xs;
  for (int64_t e = 0; e < 8; ++e) {
    Value c = add(c0, cidx(e));
    Value r = select(land(want, ult(c, colLimit)), row, M);
    xs.push_back(memref::LoadOp::create(b, buf, ValueRange{r, c}));
  }
  return vector::FromElementsOp::create(b, VectorType::get({8}, elt), xs);
}

SmallVector<Value> MfmaKernelBuilder::loadTile(Value k0, bool aligned) {
  SmallVector<Value> regs;
  int64_t rowStep = numThreads / (D / 8);
  // Past Dqk (aligned: a whole chunk) nothing is wanted.
  Value kWant =
      aligned ? kFull
              : arith::ConstantOp::create(b, b.getBoolAttr(true)).getResult();
  Value vWant = aligned ? land(hasVUnit, vFull) : hasVUnit;
  for (int64_t i = 0; i < numKLoads; ++i)
    regs.push_back(loadChunk(kBuf, add(k0, add(chunkRow, cidx(i * rowStep))),
                             kWant, Dqk, aligned));
  // A V unit is 4 consecutive keys of the chunk; a thread without one (the
  // smallest tiles) reads zeros.
  for (int64_t i = 0; i < numVUnits; ++i) {
    Value key = add(k0, mul(add(chunkRow, cidx(i * rowStep)), cidx(4)));
    for (int64_t j = 0; j < 4; ++j)
      regs.push_back(loadChunk(vBuf, add(key, cidx(j)), vWant, Dv, aligned));
  }
  return regs;
}

Value MfmaKernelBuilder::ksOffset(Value key, Value c16) {
  // 16-byte chunks XOR the key mod 8: eight consecutive keys' chunk c16 lie
  // in eight different 16-byte bank groups.
  Value swz = arith::XOrIOp::create(b, c16, remu(key, cidx(8)));
  return add(mul(key, cidx(D)), mul(swz, cidx(8)));
}

Value MfmaKernelBuilder::vtOffset(Value dim, Value c8) {
  // 8-byte chunks of a V^T row (BN keys, 64 or 128 bytes) XOR a function of
  // the dim that differs between the rows sharing a 128-byte bank period:
  // dims 0..15 (BN = 64) or 0..31 in pairs (BN = 32) all land apart.
  Value f = BN == 64 ? remu(dim, cidx(16)) : remu(divu(dim, cidx(2)), cidx(8));
  Value swz = arith::XOrIOp::create(b, c8, f);
  return add(mul(dim, cidx(BN)), mul(swz, cidx(4)));
}

void MfmaKernelBuilder::storeTile(ArrayRef<Value> regs) {
  int64_t rowStep = numThreads / (D / 8);
  for (int64_t i = 0; i < numKLoads; ++i) {
    Value key = add(chunkRow, cidx(i * rowStep));
    vector::StoreOp::create(b, regs[i], Ks, ValueRange{ksOffset(key, chunk)},
                            /*nontemporal=*/false, llvm::MaybeAlign(16));
  }
  // V unit (keys 4g .. 4g + 3, dims 8 chunk .. + 7) -> eight 4-key rows of
  // V^T: chunk g of dims 8 chunk + j.
  auto fragTy = VectorType::get({4}, elt);
  for (int64_t i = 0; i < numVUnits; ++i)
    ifThen(hasVUnit, [&] {
      Value g = add(chunkRow, cidx(i * rowStep));
      ArrayRef<Value> rows = regs.slice(numKLoads + 4 * i, 4);
      for (int64_t j = 0; j < 8; ++j) {
        SmallVector<Value> xs;
        for (Value r : rows)
          xs.push_back(vector::ExtractOp::create(b, r, ArrayRef<int64_t>{j}));
        Value dim = add(mul(chunk, cidx(8)), cidx(j));
        vector::StoreOp::create(b,
                                vector::FromElementsOp::create(b, fragTy, xs),
                                Vt, ValueRange{vtOffset(dim, g)},
                                /*nontemporal=*/false, llvm::MaybeAlign(8));
      }
    });
}

Value MfmaKernelBuilder::ldsFragment(Value tile, Value offset) {
  return vector::LoadOp::create(b, VectorType::get({4}, elt), tile,
                                ValueRange{offset}, /*nontemporal=*/false,
                                llvm::MaybeAlign(8));
}

Value MfmaKernelBuilder::acrossHalves(Value x, bool isMax) {
  auto sh = gpu::ShuffleOp::create(b, x, ci32(kTile), ci32(kWave),
                                   gpu::ShuffleMode::XOR);
  Value y = sh.getShuffleResult();
  return isMax ? maxNum(x, y) : fadd(x, y);
}

SmallVector<Value> MfmaKernelBuilder::finish(Value k0, bool withMask,
                                             ArrayRef<Value> s) {
  ScoreElement se(b, tiled, pendingScore, regions.mask, env, scale, bias, bI64,
                  hI64, M);
  SmallVector<Value> out;
  for (int64_t st = 0; st < BN / kTile; ++st)
    for (int64_t e = 0; e < 16; ++e)
      out.push_back(
          se.emit(s[st * 16 + e], qIdx, add(k0, keyOf(st, e)), withMask));
  return out;
}

SmallVector<Value> MfmaKernelBuilder::emitNormalizerStep(Value kt, Value k0,
                                                         ValueRange state) {
  // Score, mask, normalizer: the masked version only on partial tiles.
  if (!pendingMask) {
    tileS = finish(k0, false, tileS);
  } else {
    Value partial = walk().classify(kt).second;
    SmallVector<Type> types(tileS.size(), b.getF32Type());
    auto ifOp = scf::IfOp::create(b, types, partial, true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      scf::YieldOp::create(b, finish(k0, true, tileS));
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(b, finish(k0, false, tileS));
    }
    tileS.assign(ifOp.getResults().begin(), ifOp.getResults().end());
  }
  // The row state: next = m, l (this lane's partial sum), O^T...
  SmallVector<Value> next(state.begin(), state.end());
  Value zero = cf32(0);
  if (kind == NormalizerKind::softmax) {
    const float log2e = 1.4426950408889634f;
    Value mx = ninf();
    for (Value x : tileS)
      mx = maxNum(mx, x);
    mx = acrossHalves(mx, true);
    Value mOld = state[0];
    Value mNew = maxNum(mOld, mx);
    // A row without a visible key so far keeps m = -inf; use 0 then.
    Value safe =
        select(arith::CmpFOp::create(b, F::OEQ, mNew, ninf()), zero, mNew);
    Value alpha = exp2(fmul(fsub(mOld, safe), cf32(log2e)));
    Value mScaled = fmul(safe, cf32(-log2e));
    Value sum = zero;
    for (Value &x : tileS) {
      x = exp2(fma(x, cf32(log2e), mScaled));
      sum = fadd(sum, x);
    }
    next[0] = mNew;
    next[1] = fma(state[1], alpha, sum);
    for (size_t i = 2; i < next.size(); ++i)
      next[i] = fmul(next[i], alpha);
  } else if (kind == NormalizerKind::relu && tiled.getRowNormalize()) {
    for (Value x : tileS)
      next[1] = fadd(next[1], x);
  }
  return next;
}

LogicalResult MfmaKernelBuilder::build() {
  if (!tiled)
    return spec.emitError() << "no attn.tiled_attention to lower";
  BM = sched.getTileQ();
  BN = sched.getTileKv();
  numWaves = BM / kTile;
  numThreads = kWave * numWaves;
  if (BM % kTile || !llvm::is_contained({1, 2, 4}, numWaves))
    return tiled.emitError() << "ROCm kernels need tile_q = 32, 64 or 128 "
                                "(32 query rows per wave), got "
                             << BM;
  if (BN != 32 && BN != 64)
    return tiled.emitError()
           << "ROCm kernels need tile_kv = 32 or 64, got " << BN;
  if (D != 64 && D != 128)
    return tiled.emitError() << "ROCm kernels are generated for head dims 64 "
                                "and 128 (smaller ones are zero-padded), got "
                             << D;
  kind = tiled.getNormalizer();
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, " (matrix cores)");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  // Staging: whole 16-byte chunks per thread, the same chunk in all rows.
  if ((BN * D / 8) % numThreads || numThreads % (D / 8))
    return tiled.emitError()
           << "tile sizes " << BM << "x" << BN << " do not split evenly over "
           << numThreads << " threads";

  MLIRContext *ctx = b.getContext();
  SmallVector<Type> args = kernelArgTypes(
      spec, [&](StringRef) { return elt; }, /*unitInnerQKV=*/true);
  std::string name = ("attn_" + spec.getSymName() + "_d" + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  setLaunchContract(fn, BM, numThreads, 2 * BN * D * 2, D);
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

/// Q^T's B fragments, straight from global memory into registers: lane l
/// holds q[qRow][8 kk + 4 (l / 32) + e], zero past N and Dqk.
LogicalResult MfmaKernelBuilder::lowerLoadQ(TileLoadQOp) {
  Value zero = arith::ConstantOp::create(b, b.getFloatAttr(elt, 0.0));
  Value inRow = ult(qRow, N);
  Value row = minu(qRow, sub(N, cidx(1))), lastCol = sub(Dqk, cidx(1));
  for (int64_t kk = 0; kk < D / kK; ++kk) {
    SmallVector<Value> xs;
    for (int64_t e = 0; e < 4; ++e) {
      Value col = add(cidx(kK * kk + e), mul(hi, cidx(4)));
      Value x = memref::LoadOp::create(
          b, q, ValueRange{bIdx, h, row, minu(col, lastCol)});
      xs.push_back(select(land(inRow, ult(col, Dqk)), x, zero));
    }
    qFrag.push_back(
        vector::FromElementsOp::create(b, VectorType::get({4}, elt), xs));
  }
  return success();
}

LogicalResult MfmaKernelBuilder::lowerInit(TileInitOp op) {
  SmallVector<Value> &init = accs[op.getResult()];
  init.push_back(kind == NormalizerKind::softmax ? ninf() : cf32(0));
  init.push_back(cf32(0));
  for (int64_t i = 0; i < D / 2; ++i)
    init.push_back(cf32(0));
  return success();
}

/// The visible kv tiles in a while loop carrying (tile, the next tile's K
/// and V chunks in registers, the accumulators): each iteration writes its
/// tile into LDS, then issues the loads of the next visible tile before
/// computing on this one, so that they are in flight during the MFMAs.
FailureOr<SmallVector<Value>> MfmaKernelBuilder::emitKVLoop(KVLoopOp op,
                                                            bool aligned) {
  Value first = walk().firstVisible(cidx(0));
  // A tile index at or past nKT reads only rows >= M: zeros, no fault.
  SmallVector<Value> regs0 = loadTile(mul(first, cidx(BN)), aligned);
  size_t numRegs = regs0.size();
  Type f32 = b.getF32Type(), idx = b.getIndexType();
  SmallVector<Value> init = {first};
  init.append(regs0);
  init.append(accs[op.getInit()]);
  SmallVector<Type> types = {idx};
  types.append(numRegs, VectorType::get({8}, elt));
  types.append(init.size() - 1 - numRegs, f32);
  SmallVector<Location> locs(types.size(), b.getLoc());
  auto loop = scf::WhileOp::create(b, types, init);
  OpBuilder::InsertionGuard guard(b);
  Block *before = b.createBlock(&loop.getBefore(), {}, types, locs);
  scf::ConditionOp::create(b, ult(before->getArgument(0), nKT),
                           before->getArguments());
  Block *after = b.createBlock(&loop.getAfter(), {}, types, locs);
  Value cur = after->getArgument(0);
  Value k0 = mul(cur, cidx(BN));
  SmallVector<Value> regs(after->getArguments().begin() + 1,
                          after->getArguments().begin() + 1 + numRegs);
  storeTile(regs);
  gpu::BarrierOp::create(b);
  Value next = walk().firstVisible(add(cur, cidx(1)));
  SmallVector<Value> nextRegs = loadTile(mul(next, cidx(BN)), aligned);
  Block &step = op.getBody().front();
  map.map(step.getArgument(0), k0);
  accs[step.getArgument(2)].assign(after->getArguments().begin() + 1 + numRegs,
                                   after->getArguments().end());
  curKt = cur;
  if (failed(lowerTileBlock(step, *this)))
    return failure();
  auto yield = cast<YieldOp>(step.getTerminator());
  SmallVector<Value> yielded = {next};
  yielded.append(nextRegs);
  yielded.append(accs[yield.getValues().front()]);
  // Every wave is done with Ks and Vt before the next tile overwrites them.
  gpu::BarrierOp::create(b);
  scf::YieldOp::create(b, yielded);
  return SmallVector<Value>(loop.getResults().begin() + 1 + numRegs,
                            loop.getResults().end());
}

/// Two versions of the kv loop behind one uniform branch: 16-byte loads
/// when Dqk and Dv are multiples of 8 (nearly always), 2-byte loads
/// otherwise. Keeping the general case out of the common loop keeps its
/// instructions out of the MFMAs' way.
LogicalResult MfmaKernelBuilder::lowerKVLoop(KVLoopOp op) {
  auto multipleOf8 = [&](Value x) {
    return cmp(P::eq, remu(x, cidx(8)), cidx(0));
  };
  Value aligned = land(multipleOf8(Dqk), multipleOf8(Dv));
  SmallVector<Type> types(accs[op.getInit()].size(), b.getF32Type());
  auto ifOp = scf::IfOp::create(b, types, aligned, true);
  for (bool version : {true, false}) {
    OpBuilder::InsertionGuard guard(b);
    Region &r = version ? ifOp.getThenRegion() : ifOp.getElseRegion();
    b.setInsertionPointToStart(&r.front());
    FailureOr<SmallVector<Value>> res = emitKVLoop(op, version);
    if (failed(res))
      return failure();
    scf::YieldOp::create(b, *res);
  }
  accs[op.getResult()].assign(ifOp.getResults().begin(),
                              ifOp.getResults().end());
  return success();
}

/// S^T = K Q^T, one 32x32 accumulator per 32 keys of the tile.
LogicalResult MfmaKernelBuilder::lowerQK(TileQKOp) {
  pendingScore = nullptr;
  pendingMask = false;
  tileS.assign(BN / kTile * 16, cf32(0));
  for (int64_t st = 0; st < BN / kTile; ++st) {
    MutableArrayRef<Value> acc(tileS.data() + st * 16, 16);
    Value keyRow = add(cidx(st * kTile), l32);
    // Lane l's A operand: K[key l % 32][8 kk + 4 (l / 32) .. + 3], half
    // l / 32 of 16-byte chunk kk.
    Value half = mul(hi, cidx(4));
    for (int64_t kk = 0; kk < D / kK; ++kk) {
      Value a = ldsFragment(Ks, add(ksOffset(keyRow, cidx(kk)), half));
      mfma(a, qFrag[kk], acc);
    }
  }
  return success();
}

LogicalResult MfmaKernelBuilder::lowerScore(TileScoreOp op) {
  pendingScore = &op.getScore();
  return success();
}

/// The tail tile is partial too (GpuTileWalk::classify).
LogicalResult MfmaKernelBuilder::lowerMask(TileMaskOp) {
  pendingMask = true;
  return success();
}

LogicalResult MfmaKernelBuilder::lowerNormalizerStep(Operation *op) {
  auto loop = op->getParentOfType<KVLoopOp>();
  Value k0 = map.lookup(loop.getBody().getArgument(0));
  accs[op->getResult(1)] =
      emitNormalizerStep(curKt, k0, accs[op->getOperand(1)]);
  return success();
}

/// O^T += V^T P^T: accumulator elements 4c..4c+3 of a 32-key sub-tile are
/// the B operand of its keys 8c..8c+7; lane l's A operand is V^T[dim
/// 32 ds + l % 32][key 8c + 4 (l / 32) + e], 4 consecutive keys of Vt.
LogicalResult MfmaKernelBuilder::lowerPV(TilePVOp op) {
  SmallVector<Value> next = accs[op.getAcc()];
  for (int64_t st = 0; st < BN / kTile; ++st)
    for (int64_t c = 0; c < 4; ++c) {
      Value pB = mfmaOperandOf(b, elt, tileS, st * 16 + 4 * c);
      // Keys st * 32 + 8 c + 4 (l / 32) .. + 3: 8-byte chunk 8 st + 2 c +
      // l / 32 of V^T row (dim) 32 ds + l % 32.
      Value c8 = add(cidx(8 * st + 2 * c), hi);
      for (int64_t ds = 0; ds < D / kTile; ++ds) {
        Value dim = add(cidx(ds * kTile), l32);
        Value vA = ldsFragment(Vt, vtOffset(dim, c8));
        mfma(vA, pB, MutableArrayRef<Value>(next.data() + 2 + ds * 16, 16));
      }
    }
  accs[op.getResult()] = std::move(next);
  return success();
}

LogicalResult MfmaKernelBuilder::lowerStore(TileStoreOp op) {
  ArrayRef<Value> state = accs[op.getAcc()];
  bool softmax = kind == NormalizerKind::softmax;
  bool divide =
      softmax || (kind == NormalizerKind::relu && tiled.getRowNormalize());
  Value zero = cf32(0), inv = cf32(1), lseVal;
  if (divide) {
    Value l = acrossHalves(state[1], false);
    Value pos = arith::CmpFOp::create(b, F::OGT, l, zero);
    inv = select(pos, arith::DivFOp::create(b, cf32(1), l), zero);
    if (softmax)
      lseVal = select(pos, fadd(state[0], math::LogOp::create(b, l)), ninf());
  }
  ifThen(ult(qRow, N), [&] {
    for (int64_t ds = 0; ds < D / kTile; ++ds)
      for (int64_t e = 0; e < 16; ++e) {
        Value dim =
            add(cidx(ds * kTile + 8 * (e / 4) + e % 4), mul(hi, cidx(4)));
        Value x = fmul(state[2 + ds * 16 + e], inv);
        ifThen(ult(dim, Dv), [&] {
          memref::StoreOp::create(b, x, o, ValueRange{bIdx, h, qRow, dim});
        });
      }
    if (softmax)
      ifThen(land(cmp(P::eq, hi, cidx(0)), hasLse), [&] {
        memref::StoreOp::create(b, lseVal, lse, ValueRange{bIdx, h, qRow});
      });
  });
  return success();
}

LogicalResult
mlir::attn::buildMfmaAttentionKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                      ArrayRef<int64_t> headDims) {
  for (int64_t d : headDims) {
    MfmaKernelBuilder kb(spec, gpuModule, d);
    if (failed(kb.build()))
      return failure();
  }
  return success();
}
