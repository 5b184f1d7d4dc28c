//===- AttnTileBackwardOps.cpp - the backward tile program's verifiers ----===//

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::attn;
using mlir::attn::detail::checkScoreTile;
using mlir::attn::detail::checkTileRows;
using mlir::attn::detail::verifyRegionSignature;

/// Checks that a dK/dV accumulator has the schedule's tile_kv rows.
static LogicalResult checkGradRows(Operation *op, GradType g) {
  auto tiled = op->getParentOfType<TiledAttentionBackwardOp>();
  if (!tiled)
    return success(); // HasParent reports the misplaced op
  int64_t tkv = tiled.getSchedule().getTileKv();
  if (g.getRows() != tkv)
    return op->emitOpError() << "the gradient accumulator has " << g.getRows()
                             << " rows, but the schedule's tile_kv is " << tkv;
  return success();
}

//===----------------------------------------------------------------------===//
// TiledAttentionBackwardOp
//===----------------------------------------------------------------------===//

QLoopOp TiledAttentionBackwardOp::getQLoop() {
  for (Operation &op : getBodyBlock())
    if (auto loop = dyn_cast<QLoopOp>(op))
      return loop;
  return {};
}

SmallVector<InputOp> TiledAttentionBackwardOp::getGradientInputs() {
  SmallVector<Region *> scores;
  walk([&](TileBwdScoreOp op) { scores.push_back(&op.getScore()); });
  return detail::floatInputsRead(*this, scores);
}

LogicalResult TiledAttentionBackwardOp::verify() {
  if (failed(mlir::attn::detail::verifyNormalizerAttrs(
          *this, getNormalizer(), /*lse=*/false, getReluPower(),
          getRowNormalize(), !getBias().empty())))
    return failure();
  ScheduleAttr s = getSchedule();
  if (s.getTileQ() <= 0 || s.getTileKv() <= 0 || s.getVectorWidth() <= 0)
    return emitOpError() << "schedule sizes must be positive";
  return success();
}

LogicalResult TiledAttentionBackwardOp::verifyRegions() {
  Builder b(getContext());
  Type f64 = b.getF64Type(), idx = b.getIndexType();
  if (failed(
          verifyRegionSignature(*this, getScale(), "scale", {}, f64, true)) ||
      failed(verifyRegionSignature(*this, getBias(), "bias", {}, f64, true)) ||
      failed(verifyRegionSignature(*this, getBody(), "body", {idx, idx, idx},
                                   {}, false)))
    return failure();
  unsigned loops = 0, stores = 0;
  for (Operation &op : getBodyBlock()) {
    loops += isa<QLoopOp>(op);
    stores += isa<TileBwdStoreOp>(op);
  }
  if (loops != 1 || stores != 1)
    return emitOpError() << "body must have one 'attn.tile.q_loop' and one "
                            "'attn.tile.bwd.store', found "
                         << loops << " and " << stores;
  return success();
}

//===----------------------------------------------------------------------===//
// Ops of one kv tile
//===----------------------------------------------------------------------===//

LogicalResult TileBwdInitOp::verify() {
  return checkGradRows(*this, getResult().getType());
}

LogicalResult QLoopOp::verifyRegions() {
  Builder b(getContext());
  Type i64 = b.getI64Type(), idx = b.getIndexType();
  Type grad = getInit().getType();
  if (failed(checkGradRows(*this, cast<GradType>(grad))) ||
      failed(verifyRegionSignature(*this, getMask(), "mask",
                                   {i64, i64, i64, i64}, b.getI1Type(),
                                   true)) ||
      failed(verifyRegionSignature(*this, getBody(), "do",
                                   {idx, idx, b.getI1Type(), grad}, grad,
                                   false)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Ops of one (query head, q tile) step
//===----------------------------------------------------------------------===//

LogicalResult TileBwdWeightsOp::verify() {
  return checkScoreTile(*this, getScores().getType());
}

LogicalResult TileBwdDPOp::verify() {
  return checkScoreTile(*this, getResult().getType());
}

LogicalResult TileBwdDSOp::verify() {
  return checkScoreTile(*this, getWeights().getType());
}

LogicalResult TileBwdScoreOp::verifyRegions() {
  Builder b(getContext());
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  if (failed(checkScoreTile(*this, getDs().getType())))
    return failure();
  return verifyRegionSignature(*this, getScore(), "score",
                               {f64, i64, i64, i64, i64}, f64, false);
}

LogicalResult TileBwdDVOp::verify() {
  if (failed(checkScoreTile(*this, getWeights().getType())))
    return failure();
  return checkGradRows(*this, getGrad().getType());
}

LogicalResult TileBwdDKOp::verify() {
  if (failed(checkScoreTile(*this, getDx().getType())) ||
      failed(checkTileRows(*this, "the q tile", getQ().getType().getRows())))
    return failure();
  return checkGradRows(*this, getGrad().getType());
}

LogicalResult TileBwdDQOp::verify() {
  return checkScoreTile(*this, getDx().getType());
}

//===----------------------------------------------------------------------===//
// Names in the printed IR (%b, %hk, %k0, %h, %q0, %partial, %p, %dp, %ds)
//===----------------------------------------------------------------------===//

void TiledAttentionBackwardOp::getAsmBlockArgumentNames(
    Region &region, OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"b", "hk", "k0"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void QLoopOp::getAsmBlockArgumentNames(Region &region,
                                       OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"h", "q0", "partial", "grad"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void QLoopOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "grad");
}
void TileBwdInitOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "init");
}
void TileBwdWeightsOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "p");
}
void TileBwdDPOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dp");
}
void TileBwdDSOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "ds");
}
void TileBwdScoreOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dx");
}
void TileBwdDVOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "grad");
}
void TileBwdDKOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "grad");
}
