//===- TileAttention.cpp - the tiled form of an attention -----------------===//
//
// Implements attn-tile-attention: chooses the schedule (tile sizes, block
// skipping) and rewrites attn.attention into attn.tiled_attention, the
// program of one q tile as tile ops (load_q, kv_loop, qk, score, mask,
// online_softmax or normalize, pv, store). The schedule stays data on the
// op, apart from the algorithm, for the autotuner to override; the tile
// types carry its sizes so the verifier checks every op against it.
//
//===----------------------------------------------------------------------===//

#include "TiledLinear.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/IR/Builders.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTILEATTENTION
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {
struct TileAttentionPass
    : public mlir::attn::impl::AttnTileAttentionBase<TileAttentionPass> {
  using AttnTileAttentionBase::AttnTileAttentionBase;

  void runOnOperation() override {
    SpecOp spec = getOperation();
    if (TiledAttentionOp tiled = spec.getTiledAttention()) {
      ScheduleAttr s = tiled.getSchedule();
      if ((tileQ && tileQ != s.getTileQ()) ||
          (tileKV && tileKV != s.getTileKv())) {
        tiled.emitError() << "already tiled with tile_q = " << s.getTileQ()
                          << ", tile_kv = " << s.getTileKv();
        signalPassFailure();
      }
      return;
    }
    if (LinearAttentionOp lin = spec.getLinearAttention())
      return buildTiledLinear(lin);
    AttentionOp att = spec.getAttention();
    if (!att)
      return; // already tiled
    int64_t vw = vectorWidth > 0 ? vectorWidth : 16;
    int64_t tq = tileQ, tkv = tileKV;
    if (ScheduleAttr old = att.getScheduleAttr()) {
      if (tq == 0 && tkv == 0 && old.getVectorWidth() == vw) {
        if (failed(checkMaxTiles(att, old.getTileQ(), old.getTileKv())))
          return signalPassFailure();
        buildTiled(att, old);
        return;
      }
      // A new vector width invalidates a tile_q chosen for the old one.
      if (old.getVectorWidth() != vw && tq == 0 && old.getTileQ() % vw != 0)
        tq = 4 * vw;
      tq = tq ? tq : old.getTileQ();
      tkv = tkv ? tkv : old.getTileKv();
    }
    tq = tq ? tq : 4 * vw;
    tkv = tkv ? tkv : 64;
    if (tq % vw != 0 || tq <= 0 || tkv <= 0) {
      att.emitError() << "tile_q (" << tq
                      << ") must be a positive multiple of the vector width ("
                      << vw << ") and tile_kv (" << tkv << ") must be positive";
      return signalPassFailure();
    }
    if (failed(checkMaxTiles(att, tq, tkv)))
      return signalPassFailure();
    StringRef skip = "none";
    if (!att.getMask().empty()) {
      skip = "interval";
      att.getMask().walk([&](LoadOp) { skip = "interval+scan"; });
    }
    buildTiled(att, ScheduleAttr::get(&getContext(), tq, tkv, vw, skip));
  }

  /// Replaces `att` by its tiled form under `sched`; the spec's regions
  /// move into the ops that apply them.
  static void buildTiled(AttentionOp att, ScheduleAttr sched) {
    MLIRContext *ctx = att.getContext();
    OpBuilder b(att);
    Location loc = att.getLoc();
    auto tiled = TiledAttentionOp::create(
        b, loc, att.getNormalizerAttr(), att.getLseAttr(),
        att.getReluPowerAttr(), att.getRowNormalizeAttr(), sched);
    tiled.getScale().takeBody(att.getScale());
    tiled.getBias().takeBody(att.getBias());
    Type idx = b.getIndexType(), f32 = b.getF32Type();
    Block *body =
        b.createBlock(&tiled.getBody(), {}, {idx, idx, idx}, {loc, loc, loc});
    Value bi = body->getArgument(0), h = body->getArgument(1),
          q0 = body->getArgument(2);
    int64_t tq = sched.getTileQ(), tkv = sched.getTileKv();
    auto qTy =
        TileType::get(ctx, {tq, ShapedType::kDynamic}, qElementType(att));
    auto sTy = TileType::get(ctx, {tq, tkv}, f32);
    auto accTy = AccType::get(ctx, tq, ShapedType::kDynamic);
    Value qt = TileLoadQOp::create(b, loc, qTy, bi, h, q0);
    Value init = TileInitOp::create(b, loc, accTy);
    auto loop = KVLoopOp::create(b, loc, accTy, bi, h, q0, init);
    loop.getMask().takeBody(att.getMask());
    {
      OpBuilder::InsertionGuard g(b);
      Block *step = b.createBlock(&loop.getBody(), {},
                                  {idx, b.getI1Type(), accTy}, {loc, loc, loc});
      Value k0 = step->getArgument(0), partial = step->getArgument(1);
      Value acc = step->getArgument(2);
      Value s = TileQKOp::create(b, loc, sTy, qt, bi, h, k0);
      if (!att.getScore().empty()) {
        auto score = TileScoreOp::create(b, loc, sTy, s, bi, h, q0, k0);
        score.getScore().takeBody(att.getScore());
        s = score;
      }
      // Always: targets that pad tail tiles hide the rows past M here.
      s = TileMaskOp::create(b, loc, sTy, s, partial, bi, h, q0, k0);
      Value p;
      if (att.getNormalizer() == NormalizerKind::softmax) {
        auto norm = TileOnlineSoftmaxOp::create(b, loc, sTy, accTy, s, acc);
        p = norm.getWeights();
        acc = norm.getResult();
      } else {
        auto norm = TileNormalizeOp::create(b, loc, sTy, accTy, s, acc);
        p = norm.getWeights();
        acc = norm.getResult();
      }
      acc = TilePVOp::create(b, loc, accTy, p, acc, bi, h, k0);
      YieldOp::create(b, loc, acc);
    }
    TileStoreOp::create(b, loc, loop.getResult(), bi, h, q0);
    YieldOp::create(b, loc, ValueRange{});
    att.erase();
  }

  /// Replaces `lin` by its tiled form: a scan over chunks whose length the
  /// target chooses (tiles with `?` rows); regions and attributes move to
  /// the tiled op, which the chunk ops read them from.
  static void buildTiledLinear(LinearAttentionOp lin) {
    MLIRContext *ctx = lin.getContext();
    OpBuilder b(lin);
    Location loc = lin.getLoc();
    auto tiled = createTiledLinear<TiledLinearAttentionOp>(b, lin);
    Type idx = b.getIndexType();
    int64_t dyn = ShapedType::kDynamic;
    auto tileTy = TileType::get(ctx, {dyn, dyn}, b.getF32Type());
    auto stateTy = StateType::get(ctx, dyn, dyn);
    Block *body = b.createBlock(&tiled.getBody(), {}, {idx, idx}, {loc, loc});
    Value bi = body->getArgument(0), h = body->getArgument(1);
    Value init = ChunkInitStateOp::create(b, loc, stateTy, bi, h);
    auto loop = ChunkLoopOp::create(b, loc, stateTy, bi, h, init);
    bool causal = !lin.getNoncausal();
    {
      OpBuilder::InsertionGuard guard(b);
      Block *step =
          b.createBlock(&loop.getBody(), {}, {idx, stateTy}, {loc, loc});
      Value t0 = step->getArgument(0), st = step->getArgument(1);
      Value fk = ChunkFeaturesOp::create(b, loc, tileTy, bi, h, t0, false);
      Value fq;
      if (causal)
        fq = ChunkFeaturesOp::create(b, loc, tileTy, bi, h, t0, true);
      Value v = ChunkValuesOp::create(b, loc, tileTy, bi, h, t0);
      Value g = ChunkLogGatesOp::create(b, loc, tileTy, bi, h, t0);
      if (causal) {
        Value a = ChunkIntraOp::create(b, loc, tileTy, fq, fk, g);
        if (!tiled.getBeta().empty())
          v = ChunkDeltaOp::create(b, loc, tileTy, st, fk, v, g, bi, h, t0);
        Value o = ChunkReadoutOp::create(b, loc, tileTy, fq, a, v, st, g);
        ChunkStoreOp::create(b, loc, o, bi, h, t0);
      }
      st = ChunkUpdateOp::create(b, loc, stateTy, st, fk, v, g);
      YieldOp::create(b, loc, st);
    }
    ChunkStoreStateOp::create(b, loc, loop.getResult(), bi, h);
    if (!causal)
      ChunkReadoutAllOp::create(b, loc, loop.getResult(), bi, h);
    YieldOp::create(b, loc, ValueRange{});
    lin.erase();
  }

  /// The declared element type of q (f32 when undeclared).
  static Type qElementType(AttentionOp att) {
    auto spec = att->getParentOfType<SpecOp>();
    for (auto in : spec.getBodyBlock().getOps<InputOp>())
      if (in.getSymName() == "q")
        return in.getElementType();
    return Float32Type::get(att.getContext());
  }

  static LogicalResult checkMaxTiles(AttentionOp att, int64_t tq, int64_t tkv) {
    if (tq <= kMaxTileRows && tkv <= kMaxTileRows)
      return success();
    return att.emitError() << "tile_q (" << tq << ") and tile_kv (" << tkv
                           << ") must be at most " << kMaxTileRows << " rows";
  }
};
} // namespace
