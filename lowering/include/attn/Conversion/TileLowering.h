//===- TileLowering.h - lowering the tile ops, op by op ---------*- C++ -*-===//
//
// The backends lower attn.tiled_attention (the tile-level IR) with one
// pattern per tile op: a TileLowering implements a hook per op, and
// lowerTileBlock() walks a block of the tile program in order and hands
// each op to its hook. What a tile value is on a target stays the
// target's (vector lanes and scratch buffers on the CPU, mma fragments in
// registers on CUDA); the index operands (b, h, q0, k0, partial) are
// mapped to the target's values in `map`.
//
// Targets fuse where their instruction mix needs it: the element-wise ops
// (qk, score, mask) record what to apply and the normalizer step, which
// needs the finished scores, emits them in one loop. The kernel shell
// (signature, argument binding, loops, scale and bias) is KernelScaffold.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_TILELOWERING_H
#define ATTN_CONVERSION_TILELOWERING_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::attn {

/// One target's patterns for the tile ops.
class TileLowering {
public:
  virtual ~TileLowering() = default;

  virtual LogicalResult lowerLoadQ(TileLoadQOp op) = 0;
  virtual LogicalResult lowerInit(TileInitOp op) = 0;
  /// Visits the kv tiles; for each, maps the step block's (k0, partial)
  /// and calls lowerTileBlock() on it.
  virtual LogicalResult lowerKVLoop(KVLoopOp op) = 0;
  virtual LogicalResult lowerQK(TileQKOp op) = 0;
  virtual LogicalResult lowerScore(TileScoreOp op) = 0;
  virtual LogicalResult lowerMask(TileMaskOp op) = 0;
  /// The normalizer steps (attn.tile.online_softmax, attn.tile.normalize:
  /// operands scores and acc, results weights and acc).
  virtual LogicalResult lowerNormalizerStep(Operation *op) = 0;
  virtual LogicalResult lowerPV(TilePVOp op) = 0;
  virtual LogicalResult lowerStore(TileStoreOp op) = 0;

  /// Tile-program values (block arguments of the body and of the kv step)
  /// to the target's index and i1 values.
  IRMapping map;
};

/// The declarations of a target's patterns in its TileLowering subclass.
#define ATTN_TILE_LOWERING_PATTERNS                                            \
  LogicalResult lowerLoadQ(TileLoadQOp op) override;                           \
  LogicalResult lowerInit(TileInitOp op) override;                             \
  LogicalResult lowerKVLoop(KVLoopOp op) override;                             \
  LogicalResult lowerQK(TileQKOp op) override;                                 \
  LogicalResult lowerScore(TileScoreOp op) override;                           \
  LogicalResult lowerMask(TileMaskOp op) override;                             \
  LogicalResult lowerNormalizerStep(Operation *op) override;                   \
  LogicalResult lowerPV(TilePVOp op) override;                                 \
  LogicalResult lowerStore(TileStoreOp op) override;

/// Lowers the ops of `block` (the tiled_attention body or a kv_loop step)
/// in order through `patterns`; its attn.yield ends the walk. An op with
/// no pattern is an error on that op.
LogicalResult lowerTileBlock(Block &block, TileLowering &patterns);

/// One target's patterns for the backward tile program
/// (attn.tiled_attention_backward). The score recompute (load_q, qk, score,
/// mask) has the same ops as the forward; a target may share their
/// patterns or fuse them into its backward step as it likes.
class TileBackwardLowering {
public:
  virtual ~TileBackwardLowering() = default;

  virtual LogicalResult lowerBwdInit(TileBwdInitOp op) = 0;
  /// Visits the (query head, q tile) pairs; for each, maps the step block's
  /// (h, q0, partial) and calls lowerTileBackwardBlock() on it.
  virtual LogicalResult lowerQLoop(QLoopOp op) = 0;
  virtual LogicalResult lowerLoadQ(TileLoadQOp op) = 0;
  virtual LogicalResult lowerQK(TileQKOp op) = 0;
  virtual LogicalResult lowerScore(TileScoreOp op) = 0;
  virtual LogicalResult lowerMask(TileMaskOp op) = 0;
  virtual LogicalResult lowerWeights(TileBwdWeightsOp op) = 0;
  virtual LogicalResult lowerDP(TileBwdDPOp op) = 0;
  virtual LogicalResult lowerDS(TileBwdDSOp op) = 0;
  virtual LogicalResult lowerScoreGrad(TileBwdScoreOp op) = 0;
  virtual LogicalResult lowerDV(TileBwdDVOp op) = 0;
  virtual LogicalResult lowerDK(TileBwdDKOp op) = 0;
  virtual LogicalResult lowerDQ(TileBwdDQOp op) = 0;
  virtual LogicalResult lowerBwdStore(TileBwdStoreOp op) = 0;

  IRMapping map;
};

#define ATTN_TILE_BACKWARD_LOWERING_PATTERNS                                   \
  LogicalResult lowerBwdInit(TileBwdInitOp op) override;                       \
  LogicalResult lowerQLoop(QLoopOp op) override;                               \
  LogicalResult lowerLoadQ(TileLoadQOp op) override;                           \
  LogicalResult lowerQK(TileQKOp op) override;                                 \
  LogicalResult lowerScore(TileScoreOp op) override;                           \
  LogicalResult lowerMask(TileMaskOp op) override;                             \
  LogicalResult lowerWeights(TileBwdWeightsOp op) override;                    \
  LogicalResult lowerDP(TileBwdDPOp op) override;                              \
  LogicalResult lowerDS(TileBwdDSOp op) override;                              \
  LogicalResult lowerScoreGrad(TileBwdScoreOp op) override;                    \
  LogicalResult lowerDV(TileBwdDVOp op) override;                              \
  LogicalResult lowerDK(TileBwdDKOp op) override;                              \
  LogicalResult lowerDQ(TileBwdDQOp op) override;                              \
  LogicalResult lowerBwdStore(TileBwdStoreOp op) override;

/// Lowers the ops of `block` (the tiled_attention_backward body or a
/// q_loop step) in order through `patterns`, as lowerTileBlock does.
LogicalResult lowerTileBackwardBlock(Block &block,
                                     TileBackwardLowering &patterns);

/// One target's patterns for the chunk ops of the linear family
/// (attn.tiled_linear_attention).
class ChunkLowering {
public:
  virtual ~ChunkLowering() = default;

  virtual LogicalResult lowerInitState(ChunkInitStateOp op) = 0;
  /// Visits the chunks; for each, maps the step block's t0 and calls
  /// lowerChunkBlock() on it.
  virtual LogicalResult lowerChunkLoop(ChunkLoopOp op) = 0;
  virtual LogicalResult lowerFeatures(ChunkFeaturesOp op) = 0;
  virtual LogicalResult lowerValues(ChunkValuesOp op) = 0;
  virtual LogicalResult lowerLogGates(ChunkLogGatesOp op) = 0;
  virtual LogicalResult lowerIntra(ChunkIntraOp op) = 0;
  virtual LogicalResult lowerDelta(ChunkDeltaOp op) = 0;
  virtual LogicalResult lowerReadout(ChunkReadoutOp op) = 0;
  virtual LogicalResult lowerStore(ChunkStoreOp op) = 0;
  virtual LogicalResult lowerUpdate(ChunkUpdateOp op) = 0;
  virtual LogicalResult lowerStoreState(ChunkStoreStateOp op) = 0;
  virtual LogicalResult lowerReadoutAll(ChunkReadoutAllOp op) = 0;

  IRMapping map;
};

#define ATTN_CHUNK_LOWERING_PATTERNS                                           \
  LogicalResult lowerInitState(ChunkInitStateOp op) override;                  \
  LogicalResult lowerChunkLoop(ChunkLoopOp op) override;                       \
  LogicalResult lowerFeatures(ChunkFeaturesOp op) override;                    \
  LogicalResult lowerValues(ChunkValuesOp op) override;                        \
  LogicalResult lowerLogGates(ChunkLogGatesOp op) override;                    \
  LogicalResult lowerIntra(ChunkIntraOp op) override;                          \
  LogicalResult lowerDelta(ChunkDeltaOp op) override;                          \
  LogicalResult lowerReadout(ChunkReadoutOp op) override;                      \
  LogicalResult lowerStore(ChunkStoreOp op) override;                          \
  LogicalResult lowerUpdate(ChunkUpdateOp op) override;                        \
  LogicalResult lowerStoreState(ChunkStoreStateOp op) override;                \
  LogicalResult lowerReadoutAll(ChunkReadoutAllOp op) override;

/// Lowers the ops of `block` (the tiled_linear_attention body or a chunk
/// step) in order through `patterns`, as lowerTileBlock does.
LogicalResult lowerChunkBlock(Block &block, ChunkLowering &patterns);

/// One target's patterns for the gradients' program of the linear family
/// (attn.tiled_linear_attention_backward): the forward scan's ops (the
/// forward's, plus the checkpoint) and the reverse scan's.
class ChunkBackwardLowering {
public:
  virtual ~ChunkBackwardLowering() = default;

  virtual LogicalResult lowerInitState(ChunkInitStateOp op) = 0;
  /// The forward scan: visits the chunks in order, as ChunkLowering's.
  virtual LogicalResult lowerChunkLoop(ChunkLoopOp op) = 0;
  virtual LogicalResult lowerSave(ChunkBwdSaveOp op) = 0;
  virtual LogicalResult lowerFeatures(ChunkFeaturesOp op) = 0;
  virtual LogicalResult lowerValues(ChunkValuesOp op) = 0;
  virtual LogicalResult lowerLogGates(ChunkLogGatesOp op) = 0;
  virtual LogicalResult lowerDelta(ChunkDeltaOp op) = 0;
  virtual LogicalResult lowerUpdate(ChunkUpdateOp op) = 0;
  virtual LogicalResult lowerBwdInit(ChunkBwdInitOp op) = 0;
  /// The reverse scan: visits the chunks from last to first, mapping the
  /// step block's t0 and calling lowerChunkBackwardBlock() on it.
  virtual LogicalResult lowerReverseLoop(ChunkBwdReverseLoopOp op) = 0;
  virtual LogicalResult lowerRestore(ChunkBwdRestoreOp op) = 0;
  virtual LogicalResult lowerGrad(ChunkBwdGradOp op) = 0;
  virtual LogicalResult lowerFinish(ChunkBwdFinishOp op) = 0;
  virtual LogicalResult lowerReadoutAllGrad(ChunkBwdReadoutAllOp op) = 0;
  virtual LogicalResult lowerKeysAll(ChunkBwdKeysAllOp op) = 0;

  IRMapping map;
};

#define ATTN_CHUNK_BACKWARD_LOWERING_PATTERNS                                  \
  LogicalResult lowerInitState(ChunkInitStateOp op) override;                  \
  LogicalResult lowerChunkLoop(ChunkLoopOp op) override;                       \
  LogicalResult lowerSave(ChunkBwdSaveOp op) override;                         \
  LogicalResult lowerFeatures(ChunkFeaturesOp op) override;                    \
  LogicalResult lowerValues(ChunkValuesOp op) override;                        \
  LogicalResult lowerLogGates(ChunkLogGatesOp op) override;                    \
  LogicalResult lowerDelta(ChunkDeltaOp op) override;                          \
  LogicalResult lowerUpdate(ChunkUpdateOp op) override;                        \
  LogicalResult lowerBwdInit(ChunkBwdInitOp op) override;                      \
  LogicalResult lowerReverseLoop(ChunkBwdReverseLoopOp op) override;           \
  LogicalResult lowerRestore(ChunkBwdRestoreOp op) override;                   \
  LogicalResult lowerGrad(ChunkBwdGradOp op) override;                         \
  LogicalResult lowerFinish(ChunkBwdFinishOp op) override;                     \
  LogicalResult lowerReadoutAllGrad(ChunkBwdReadoutAllOp op) override;         \
  LogicalResult lowerKeysAll(ChunkBwdKeysAllOp op) override;

/// Lowers the ops of `block` (the tiled_linear_attention_backward body, a
/// forward-scan chunk or a reverse-scan chunk) in order through `patterns`,
/// as lowerTileBlock does.
LogicalResult lowerChunkBackwardBlock(Block &block,
                                      ChunkBackwardLowering &patterns);

/// The chunk a scan is lowering: its index and steps [t0, t1).
struct ChunkCursor {
  Value idx, t0, t1;
};
/// Lowers a scan's step block `body` (its argument: the chunk's first step)
/// once per chunk inside an scf.for over the `numChunks` chunks of
/// `chunkLen` steps of [0, end), in order or from the last (`reverse`),
/// with `cursor` set to the chunk being lowered: the loop both backends'
/// lowerChunkLoop and lowerReverseLoop share.
LogicalResult lowerChunkScan(ImplicitLocOpBuilder &b, Block &body,
                             Value numChunks, Value chunkLen, Value end,
                             bool reverse, ChunkCursor &cursor,
                             ChunkBackwardLowering &patterns);

/// Fails, with an error naming `pass`, when `spec` still holds an
/// attn.attention or attn.linear_attention (the conversions take the tiled
/// forms that attn-tile-attention makes).
LogicalResult requireTiledForm(SpecOp spec, StringRef pass);

/// The mask region a kernel builder reads from a tiled attention (null
/// without a mask): the kv loop classifies tiles with it and tile.mask
/// applies it. (The score region is tile.score's, read by its pattern.)
struct TiledRegions {
  explicit TiledRegions(TiledAttentionOp tiled);
  Region *mask = nullptr;
};

} // namespace mlir::attn

#endif // ATTN_CONVERSION_TILELOWERING_H
