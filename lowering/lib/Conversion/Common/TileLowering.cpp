//===- TileLowering.cpp - walk the tile program, one pattern per op -------===//

#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::attn;

LogicalResult mlir::attn::lowerTileBlock(Block &block, TileLowering &patterns) {
  for (Operation &op : block) {
    LogicalResult r =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](TileLoadQOp x) { return patterns.lowerLoadQ(x); })
            .Case([&](TileInitOp x) { return patterns.lowerInit(x); })
            .Case([&](KVLoopOp x) { return patterns.lowerKVLoop(x); })
            .Case([&](TileQKOp x) { return patterns.lowerQK(x); })
            .Case([&](TileScoreOp x) { return patterns.lowerScore(x); })
            .Case([&](TileMaskOp x) { return patterns.lowerMask(x); })
            .Case<TileOnlineSoftmaxOp, TileNormalizeOp>(
                [&](Operation *x) { return patterns.lowerNormalizerStep(x); })
            .Case([&](TilePVOp x) { return patterns.lowerPV(x); })
            .Case([&](TileStoreOp x) { return patterns.lowerStore(x); })
            .Case([&](YieldOp) { return success(); })
            .Default([&](Operation *other) {
              return other->emitOpError()
                     << "has no lowering in the tile program";
            });
    if (failed(r))
      return failure();
  }
  return success();
}

LogicalResult
mlir::attn::lowerTileBackwardBlock(Block &block,
                                   TileBackwardLowering &patterns) {
  for (Operation &op : block) {
    LogicalResult r =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](TileBwdInitOp x) { return patterns.lowerBwdInit(x); })
            .Case([&](QLoopOp x) { return patterns.lowerQLoop(x); })
            .Case([&](TileLoadQOp x) { return patterns.lowerLoadQ(x); })
            .Case([&](TileQKOp x) { return patterns.lowerQK(x); })
            .Case([&](TileScoreOp x) { return patterns.lowerScore(x); })
            .Case([&](TileMaskOp x) { return patterns.lowerMask(x); })
            .Case([&](TileBwdWeightsOp x) { return patterns.lowerWeights(x); })
            .Case([&](TileBwdDPOp x) { return patterns.lowerDP(x); })
            .Case([&](TileBwdDSOp x) { return patterns.lowerDS(x); })
            .Case([&](TileBwdScoreOp x) { return patterns.lowerScoreGrad(x); })
            .Case([&](TileBwdDVOp x) { return patterns.lowerDV(x); })
            .Case([&](TileBwdDKOp x) { return patterns.lowerDK(x); })
            .Case([&](TileBwdDQOp x) { return patterns.lowerDQ(x); })
            .Case([&](TileBwdStoreOp x) { return patterns.lowerBwdStore(x); })
            .Case([&](YieldOp) { return success(); })
            .Default([&](Operation *other) {
              return other->emitOpError()
                     << "has no lowering in the backward tile program";
            });
    if (failed(r))
      return failure();
  }
  return success();
}

LogicalResult mlir::attn::lowerChunkBlock(Block &block,
                                          ChunkLowering &patterns) {
  for (Operation &op : block) {
    LogicalResult r =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case(
                [&](ChunkInitStateOp x) { return patterns.lowerInitState(x); })
            .Case([&](ChunkLoopOp x) { return patterns.lowerChunkLoop(x); })
            .Case([&](ChunkFeaturesOp x) { return patterns.lowerFeatures(x); })
            .Case([&](ChunkValuesOp x) { return patterns.lowerValues(x); })
            .Case([&](ChunkLogGatesOp x) { return patterns.lowerLogGates(x); })
            .Case([&](ChunkIntraOp x) { return patterns.lowerIntra(x); })
            .Case([&](ChunkDeltaOp x) { return patterns.lowerDelta(x); })
            .Case([&](ChunkReadoutOp x) { return patterns.lowerReadout(x); })
            .Case([&](ChunkStoreOp x) { return patterns.lowerStore(x); })
            .Case([&](ChunkUpdateOp x) { return patterns.lowerUpdate(x); })
            .Case([&](ChunkStoreStateOp x) {
              return patterns.lowerStoreState(x);
            })
            .Case([&](ChunkReadoutAllOp x) {
              return patterns.lowerReadoutAll(x);
            })
            .Case([&](YieldOp) { return success(); })
            .Default([&](Operation *other) {
              return other->emitOpError()
                     << "has no lowering in the chunk program";
            });
    if (failed(r))
      return failure();
  }
  return success();
}

LogicalResult
mlir::attn::lowerChunkBackwardBlock(Block &block,
                                    ChunkBackwardLowering &patterns) {
  for (Operation &op : block) {
    LogicalResult r =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case(
                [&](ChunkInitStateOp x) { return patterns.lowerInitState(x); })
            .Case([&](ChunkLoopOp x) { return patterns.lowerChunkLoop(x); })
            .Case([&](ChunkBwdSaveOp x) { return patterns.lowerSave(x); })
            .Case([&](ChunkFeaturesOp x) { return patterns.lowerFeatures(x); })
            .Case([&](ChunkValuesOp x) { return patterns.lowerValues(x); })
            .Case([&](ChunkLogGatesOp x) { return patterns.lowerLogGates(x); })
            .Case([&](ChunkDeltaOp x) { return patterns.lowerDelta(x); })
            .Case([&](ChunkUpdateOp x) { return patterns.lowerUpdate(x); })
            .Case([&](ChunkBwdInitOp x) { return patterns.lowerBwdInit(x); })
            .Case([&](ChunkBwdReverseLoopOp x) {
              return patterns.lowerReverseLoop(x);
            })
            .Case([&](ChunkBwdRestoreOp x) { return patterns.lowerRestore(x); })
            .Case([&](ChunkBwdGradOp x) { return patterns.lowerGrad(x); })
            .Case([&](ChunkBwdFinishOp x) { return patterns.lowerFinish(x); })
            .Case([&](ChunkBwdReadoutAllOp x) {
              return patterns.lowerReadoutAllGrad(x);
            })
            .Case([&](ChunkBwdKeysAllOp x) { return patterns.lowerKeysAll(x); })
            .Case([&](YieldOp) { return success(); })
            .Default([&](Operation *other) {
              return other->emitOpError()
                     << "has no lowering in the gradients' chunk program";
            });
    if (failed(r))
      return failure();
  }
  return success();
}

LogicalResult mlir::attn::requireTiledForm(SpecOp spec, StringRef pass) {
  Operation *untiled = spec.getAttention();
  StringRef form = "attn.tiled_attention";
  if (!untiled) {
    untiled = spec.getLinearAttention();
    form = "attn.tiled_linear_attention";
  }
  if (!untiled)
    return success();
  return untiled->emitError() << pass << " needs the tiled form (" << form
                              << "); run attn-tile-attention first";
}

TiledRegions::TiledRegions(TiledAttentionOp tiled) {
  KVLoopOp loop = tiled ? tiled.getKVLoop() : KVLoopOp();
  if (!loop)
    return;
  if (!loop.getMask().empty())
    mask = &loop.getMask();
}

LogicalResult mlir::attn::lowerChunkScan(ImplicitLocOpBuilder &b, Block &body,
                                         Value numChunks, Value chunkLen,
                                         Value end, bool reverse,
                                         ChunkCursor &cursor,
                                         ChunkBackwardLowering &patterns) {
  Value zero = arith::ConstantIndexOp::create(b, 0);
  Value one = arith::ConstantIndexOp::create(b, 1);
  auto loop = scf::ForOp::create(b, zero, numChunks, one);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(loop.getBody()->getTerminator());
  Value i = loop.getInductionVar();
  cursor.idx = reverse ? arith::SubIOp::create(
                             b, arith::SubIOp::create(b, numChunks, one), i)
                       : i;
  cursor.t0 = arith::MulIOp::create(b, cursor.idx, chunkLen);
  cursor.t1 = arith::MinUIOp::create(
      b, arith::AddIOp::create(b, cursor.t0, chunkLen), end);
  patterns.map.map(body.getArgument(0), cursor.t0);
  return lowerChunkBackwardBlock(body, patterns);
}
