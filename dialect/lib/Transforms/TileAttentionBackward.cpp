//===- TileAttentionBackward.cpp - the tiled program of the gradients -----===//
//
// Implements attn-tile-attention-backward: rewrites attn.attention into
// attn.tiled_attention_backward, the FlashAttention-2 backward pass as the
// program of one kv tile (docs/architecture.md, "The backward tile
// program"). The scores are recomputed by the forward's own tile ops, so a
// backend lowers them once for both directions.
//
//===----------------------------------------------------------------------===//

#include "TiledLinear.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTILEATTENTIONBACKWARD
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

/// The declared element type of q (f32 when undeclared).
Type qElementType(SpecOp spec) {
  for (auto in : spec.getBodyBlock().getOps<InputOp>())
    if (in.getSymName() == "q")
      return in.getElementType();
  return Float32Type::get(spec.getContext());
}

struct TileAttentionBackwardPass
    : public mlir::attn::impl::AttnTileAttentionBackwardBase<
          TileAttentionBackwardPass> {
  using AttnTileAttentionBackwardBase::AttnTileAttentionBackwardBase;

  void runOnOperation() override {
    SpecOp spec = getOperation();
    if (spec.getTiledAttentionBackward() ||
        spec.getTiledLinearAttentionBackward())
      return; // already tiled
    if (LinearAttentionOp lin = spec.getLinearAttention()) {
      for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
        if (in.getSymName() == "state" || in.getSymName() == "zstate") {
          lin.emitError() << "a linear attention with a carried state "
                             "(decode) has no backward pass";
          return signalPassFailure();
        }
      return buildLinear(lin);
    }
    AttentionOp att = spec.getAttention();
    if (!att) {
      spec.emitError() << "attn-tile-attention-backward needs an "
                          "'attn.attention' (run it instead of "
                          "attn-tile-attention, not after it)";
      return signalPassFailure();
    }
    int64_t vw = vectorWidth > 0 ? vectorWidth : 16;
    int64_t tq = tileQ > 0 ? tileQ : 64;
    int64_t tkv = tileKV > 0 ? tileKV : 4 * vw;
    if (tq <= 0 || tkv <= 0 || tkv % vw != 0) {
      att.emitError() << "tile_kv (" << tkv
                      << ") must be a positive multiple of the vector width ("
                      << vw << ") and tile_q (" << tq << ") positive";
      return signalPassFailure();
    }
    if (tq > kMaxTileRows || tkv > kMaxTileRows) {
      att.emitError() << "tile_q (" << tq << ") and tile_kv (" << tkv
                      << ") must be at most " << kMaxTileRows << " rows";
      return signalPassFailure();
    }
    StringRef skip = "none";
    if (!att.getMask().empty()) {
      skip = "interval";
      att.getMask().walk([&](LoadOp) { skip = "interval+scan"; });
    }
    build(att, ScheduleAttr::get(&getContext(), tq, tkv, vw, skip));
  }

  static void build(AttentionOp att, ScheduleAttr sched) {
    MLIRContext *ctx = att.getContext();
    OpBuilder b(att);
    Location loc = att.getLoc();
    auto tiled = TiledAttentionBackwardOp::create(
        b, loc, att.getNormalizerAttr(), att.getReluPowerAttr(),
        att.getRowNormalizeAttr(), sched);
    tiled.getScale().takeBody(att.getScale());
    tiled.getBias().takeBody(att.getBias());
    Type idx = b.getIndexType(), f32 = b.getF32Type();
    Block *body =
        b.createBlock(&tiled.getBody(), {}, {idx, idx, idx}, {loc, loc, loc});
    Value bi = body->getArgument(0), hk = body->getArgument(1),
          k0 = body->getArgument(2);
    int64_t tq = sched.getTileQ(), tkv = sched.getTileKv();
    int64_t dyn = ShapedType::kDynamic;
    auto qTy = TileType::get(ctx, {tq, dyn},
                             qElementType(att->getParentOfType<SpecOp>()));
    auto sTy = TileType::get(ctx, {tq, tkv}, f32);
    auto gradTy = GradType::get(ctx, tkv, dyn, dyn);
    Value init = TileBwdInitOp::create(b, loc, gradTy);
    auto loop = QLoopOp::create(b, loc, gradTy, bi, hk, k0, init);
    loop.getMask().takeBody(att.getMask());
    {
      OpBuilder::InsertionGuard g(b);
      Block *step =
          b.createBlock(&loop.getBody(), {}, {idx, idx, b.getI1Type(), gradTy},
                        {loc, loc, loc, loc});
      Value h = step->getArgument(0), q0 = step->getArgument(1),
            partial = step->getArgument(2), grad = step->getArgument(3);
      Value qt = TileLoadQOp::create(b, loc, qTy, bi, h, q0);
      Value x = TileQKOp::create(b, loc, sTy, qt, bi, h, k0);
      Value s = x;
      TileBwdScoreOp scoreGrad;
      if (!att.getScore().empty()) {
        auto score = TileScoreOp::create(b, loc, sTy, x, bi, h, q0, k0);
        IRMapping map;
        att.getScore().cloneInto(&score.getScore(), map);
        s = score;
      }
      s = TileMaskOp::create(b, loc, sTy, s, partial, bi, h, q0, k0);
      Value p = TileBwdWeightsOp::create(b, loc, sTy, s, bi, h, q0);
      Value dp = TileBwdDPOp::create(b, loc, sTy, bi, h, q0, k0);
      Value ds = TileBwdDSOp::create(b, loc, sTy, p, dp, s, bi, h, q0);
      Value dx = ds;
      if (!att.getScore().empty()) {
        scoreGrad = TileBwdScoreOp::create(b, loc, sTy, ds, x, bi, h, q0, k0);
        scoreGrad.getScore().takeBody(att.getScore());
        dx = scoreGrad;
      }
      grad = TileBwdDVOp::create(b, loc, gradTy, p, grad, bi, h, q0);
      grad = TileBwdDKOp::create(b, loc, gradTy, dx, qt, grad);
      TileBwdDQOp::create(b, loc, dx, bi, h, q0, k0);
      YieldOp::create(b, loc, grad);
    }
    TileBwdStoreOp::create(b, loc, loop.getResult(), bi, hk, k0);
    YieldOp::create(b, loc, ValueRange{});
    att.erase();
  }

  /// Replaces `lin` by the program of its gradients: the forward's chunk
  /// scan keeping checkpoints, then the reverse scan (docs/architecture.md,
  /// "The linear family's backward").
  static void buildLinear(LinearAttentionOp lin) {
    MLIRContext *ctx = lin.getContext();
    OpBuilder b(lin);
    Location loc = lin.getLoc();
    auto tiled = createTiledLinear<TiledLinearAttentionBackwardOp>(b, lin);
    Type idx = b.getIndexType();
    int64_t dyn = ShapedType::kDynamic;
    auto tileTy = TileType::get(ctx, {dyn, dyn}, b.getF32Type());
    auto stateTy = StateType::get(ctx, dyn, dyn);
    bool causal = !lin.getNoncausal(), delta = !tiled.getBeta().empty();
    Block *body = b.createBlock(&tiled.getBody(), {}, {idx, idx}, {loc, loc});
    Value bi = body->getArgument(0), h = body->getArgument(1);

    // The forward scan: the forward's ops, a checkpoint per chunk.
    Value init = ChunkInitStateOp::create(b, loc, stateTy, bi, h);
    auto loop = ChunkLoopOp::create(b, loc, stateTy, bi, h, init);
    {
      OpBuilder::InsertionGuard guard(b);
      Block *step =
          b.createBlock(&loop.getBody(), {}, {idx, stateTy}, {loc, loc});
      Value t0 = step->getArgument(0), st = step->getArgument(1);
      if (causal)
        ChunkBwdSaveOp::create(b, loc, st, bi, h, t0);
      Value fk = ChunkFeaturesOp::create(b, loc, tileTy, bi, h, t0, false);
      Value v = ChunkValuesOp::create(b, loc, tileTy, bi, h, t0);
      Value g = ChunkLogGatesOp::create(b, loc, tileTy, bi, h, t0);
      if (delta)
        v = ChunkDeltaOp::create(b, loc, tileTy, st, fk, v, g, bi, h, t0);
      st = ChunkUpdateOp::create(b, loc, stateTy, st, fk, v, g);
      YieldOp::create(b, loc, st);
    }
    if (!causal) {
      Value dst = ChunkBwdReadoutAllOp::create(b, loc, stateTy,
                                               loop.getResult(), bi, h);
      ChunkBwdKeysAllOp::create(b, loc, dst, bi, h);
      YieldOp::create(b, loc, ValueRange{});
      lin.erase();
      return;
    }

    // The reverse scan.
    Value dinit = ChunkBwdInitOp::create(b, loc, stateTy, bi, h);
    auto rev = ChunkBwdReverseLoopOp::create(b, loc, stateTy, bi, h, dinit);
    {
      OpBuilder::InsertionGuard guard(b);
      Block *step =
          b.createBlock(&rev.getBody(), {}, {idx, stateTy}, {loc, loc});
      Value t0 = step->getArgument(0), dst = step->getArgument(1);
      Value st = ChunkBwdRestoreOp::create(b, loc, stateTy, bi, h, t0);
      Value fk = ChunkFeaturesOp::create(b, loc, tileTy, bi, h, t0, false);
      Value fq = ChunkFeaturesOp::create(b, loc, tileTy, bi, h, t0, true);
      Value v = ChunkValuesOp::create(b, loc, tileTy, bi, h, t0);
      Value g = ChunkLogGatesOp::create(b, loc, tileTy, bi, h, t0);
      dst = ChunkBwdGradOp::create(b, loc, stateTy, st, dst, fq, fk, v, g, bi,
                                   h, t0);
      YieldOp::create(b, loc, dst);
    }
    ChunkBwdFinishOp::create(b, loc, rev.getResult(), bi, h);
    YieldOp::create(b, loc, ValueRange{});
    lin.erase();
  }
};

} // namespace
