//===- AttnTileOps.cpp - the tile-level IR: types and verifiers -----------===//

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

static void printDims(AsmPrinter &p, ArrayRef<int64_t> dims) {
  llvm::interleave(
      dims, p,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          p << '?';
        else
          p << d;
      },
      "x");
}

Type TileType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  Type elt;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true) ||
      parser.parseType(elt) || parser.parseGreater())
    return {};
  return parser.getChecked<TileType>(parser.getContext(),
                                     ArrayRef<int64_t>(shape), elt);
}

void TileType::print(AsmPrinter &p) const {
  p << '<';
  printDims(p, getShape());
  p << 'x' << getElementType() << '>';
}

LogicalResult TileType::verify(function_ref<InFlightDiagnostic()> emitError,
                               ArrayRef<int64_t> shape, Type elementType) {
  if (shape.size() != 2)
    return emitError() << "a tile has two dims, got " << shape.size();
  for (int64_t d : shape)
    if (!ShapedType::isDynamic(d) && d <= 0)
      return emitError() << "tile dims must be positive or '?', got " << d;
  if (!isa<FloatType>(elementType))
    return emitError() << "tile elements must be floats, got " << elementType;
  return success();
}

/// `<R x C>` of the accumulator and state types (`?` for run-time sizes).
static bool parseRowsCols(AsmParser &parser, StringRef what, int64_t &rows,
                          int64_t &cols) {
  SmallVector<int64_t> shape;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseGreater())
    return false;
  if (shape.size() != 2) {
    parser.emitError(parser.getNameLoc()) << what << " has two dims";
    return false;
  }
  rows = shape[0];
  cols = shape[1];
  return true;
}

Type AccType::parse(AsmParser &parser) {
  int64_t rows, cols;
  if (!parseRowsCols(parser, "an accumulator", rows, cols))
    return {};
  return AccType::get(parser.getContext(), rows, cols);
}

void AccType::print(AsmPrinter &p) const {
  p << '<';
  printDims(p, {getRows(), getCols()});
  p << '>';
}

Type StateType::parse(AsmParser &parser) {
  int64_t rows, cols;
  if (!parseRowsCols(parser, "a state", rows, cols))
    return {};
  return StateType::get(parser.getContext(), rows, cols);
}

void StateType::print(AsmPrinter &p) const {
  p << '<';
  printDims(p, {getRows(), getCols()});
  p << '>';
}

Type GradType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseGreater())
    return {};
  if (shape.size() != 3) {
    parser.emitError(parser.getNameLoc())
        << "a gradient accumulator has three dims (rows x Dqk x Dv)";
    return {};
  }
  return GradType::get(parser.getContext(), shape[0], shape[1], shape[2]);
}

void GradType::print(AsmPrinter &p) const {
  p << '<';
  printDims(p, {getRows(), getDqk(), getDv()});
  p << '>';
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// The attn.tiled_attention an op of the tile program belongs to.
static TiledAttentionOp parentTiled(Operation *op) {
  return op->getParentOfType<TiledAttentionOp>();
}

/// The schedule of the forward or backward tile program `op` belongs to.
static ScheduleAttr parentSchedule(Operation *op) {
  if (TiledAttentionOp t = parentTiled(op))
    return t.getSchedule();
  if (auto t = op->getParentOfType<TiledAttentionBackwardOp>())
    return t.getSchedule();
  return {};
}

LogicalResult mlir::attn::detail::checkTileRows(Operation *op, StringRef what,
                                                int64_t rows) {
  ScheduleAttr sched = parentSchedule(op);
  if (!sched)
    return success(); // HasParent reports the misplaced op
  int64_t tq = sched.getTileQ();
  if (rows != tq)
    return op->emitOpError() << what << " has " << rows
                             << " rows, but the schedule's tile_q is " << tq;
  return success();
}

static LogicalResult checkRows(Operation *op, StringRef what, int64_t rows) {
  return mlir::attn::detail::checkTileRows(op, what, rows);
}

LogicalResult mlir::attn::detail::checkScoreTile(Operation *op, TileType t) {
  if (failed(checkRows(op, "the score tile", t.getRows())))
    return failure();
  ScheduleAttr sched = parentSchedule(op);
  if (!sched)
    return success();
  int64_t tkv = sched.getTileKv();
  if (t.getCols() != tkv)
    return op->emitOpError()
           << "the score tile has " << t.getCols()
           << " columns, but the schedule's tile_kv is " << tkv;
  if (!t.getElementType().isF32())
    return op->emitOpError()
           << "score tiles are f32, got " << t.getElementType();
  return success();
}

static LogicalResult checkRegion(Operation *op, Region &region, StringRef name,
                                 TypeRange argTypes, ArrayRef<Type> results,
                                 bool allowEmpty) {
  return mlir::attn::detail::verifyRegionSignature(op, region, name, argTypes,
                                                   results, allowEmpty);
}

//===----------------------------------------------------------------------===//
// TiledAttentionOp
//===----------------------------------------------------------------------===//

KVLoopOp TiledAttentionOp::getKVLoop() {
  for (Operation &op : getBodyBlock())
    if (auto loop = dyn_cast<KVLoopOp>(op))
      return loop;
  return {};
}

LogicalResult TiledAttentionOp::verify() {
  if (failed(mlir::attn::detail::verifyNormalizerAttrs(
          *this, getNormalizer(), getLse(), getReluPower(), getRowNormalize(),
          !getBias().empty())))
    return failure();
  ScheduleAttr s = getSchedule();
  if (s.getTileQ() <= 0 || s.getTileKv() <= 0 || s.getVectorWidth() <= 0)
    return emitOpError() << "schedule sizes must be positive";
  return success();
}

LogicalResult TiledAttentionOp::verifyRegions() {
  Builder b(getContext());
  Type f64 = b.getF64Type(), idx = b.getIndexType();
  if (failed(checkRegion(*this, getScale(), "scale", {}, f64, true)) ||
      failed(checkRegion(*this, getBias(), "bias", {}, f64, true)) ||
      failed(checkRegion(*this, getBody(), "body", {idx, idx, idx}, {}, false)))
    return failure();
  unsigned loops = 0, stores = 0;
  for (Operation &op : getBodyBlock()) {
    loops += isa<KVLoopOp>(op);
    stores += isa<TileStoreOp>(op);
  }
  if (loops != 1 || stores != 1)
    return emitOpError() << "body must have one 'attn.tile.kv_loop' and one "
                            "'attn.tile.store', found "
                         << loops << " and " << stores;
  return success();
}

//===----------------------------------------------------------------------===//
// Ops of the q tile
//===----------------------------------------------------------------------===//

LogicalResult TileLoadQOp::verify() {
  return checkRows(*this, "the q tile", getResult().getType().getRows());
}

LogicalResult TileInitOp::verify() {
  return checkRows(*this, "the accumulator", getResult().getType().getRows());
}

LogicalResult KVLoopOp::verifyRegions() {
  Builder b(getContext());
  Type i64 = b.getI64Type();
  Type acc = getInit().getType();
  if (failed(
          checkRows(*this, "the accumulator", cast<AccType>(acc).getRows())) ||
      failed(checkRegion(*this, getMask(), "mask", {i64, i64, i64, i64},
                         b.getI1Type(), true)) ||
      failed(checkRegion(*this, getBody(), "do",
                         {b.getIndexType(), b.getI1Type(), acc}, acc, false)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Ops of one kv tile
//===----------------------------------------------------------------------===//

LogicalResult TileQKOp::verify() {
  if (getQ().getType().getRows() != getResult().getType().getRows())
    return emitOpError() << "scores must have the q tile's rows";
  return mlir::attn::detail::checkScoreTile(*this, getResult().getType());
}

LogicalResult TileScoreOp::verifyRegions() {
  Builder b(getContext());
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  if (failed(mlir::attn::detail::checkScoreTile(*this, getScores().getType())))
    return failure();
  return checkRegion(*this, getScore(), "score", {f64, i64, i64, i64, i64}, f64,
                     false);
}

LogicalResult TileMaskOp::verify() {
  return mlir::attn::detail::checkScoreTile(*this, getScores().getType());
}

/// The normalizer steps: a score tile and an accumulator with its rows.
static LogicalResult checkNormalizerStep(Operation *op, TileType scores,
                                         AccType acc, bool softmaxStep) {
  if (failed(mlir::attn::detail::checkScoreTile(op, scores)) ||
      failed(checkRows(op, "the accumulator", acc.getRows())))
    return failure();
  TiledAttentionOp tiled = parentTiled(op);
  bool softmax = tiled.getNormalizer() == NormalizerKind::softmax;
  if (softmax != softmaxStep)
    return op->emitOpError()
           << "does not apply to the "
           << stringifyNormalizerKind(tiled.getNormalizer()) << " normalizer";
  return success();
}

LogicalResult TileOnlineSoftmaxOp::verify() {
  return checkNormalizerStep(*this, getScores().getType(), getAcc().getType(),
                             /*softmaxStep=*/true);
}

LogicalResult TileNormalizeOp::verify() {
  return checkNormalizerStep(*this, getScores().getType(), getAcc().getType(),
                             /*softmaxStep=*/false);
}

LogicalResult TilePVOp::verify() {
  if (failed(mlir::attn::detail::checkScoreTile(*this, getWeights().getType())))
    return failure();
  return checkRows(*this, "the accumulator", getAcc().getType().getRows());
}

//===----------------------------------------------------------------------===//
// Names in the printed IR (%b, %h, %q0, %k0, %partial, %s, %p, %acc)
//===----------------------------------------------------------------------===//

void TiledAttentionOp::getAsmBlockArgumentNames(Region &region,
                                                OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"b", "h", "q0"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void KVLoopOp::getAsmBlockArgumentNames(Region &region,
                                        OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"k0", "partial", "acc"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void KVLoopOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "acc");
}
void TileLoadQOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "q");
}
void TileInitOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "acc");
}
void TileQKOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "s");
}
void TileScoreOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "s");
}
void TileMaskOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "s");
}
void TileOnlineSoftmaxOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getWeights(), "p");
  setName(getResult(), "acc");
}
void TileNormalizeOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getWeights(), "p");
  setName(getResult(), "acc");
}
void TilePVOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "acc");
}

//===----------------------------------------------------------------------===//
// The linear family (attn.chunk.*)
//===----------------------------------------------------------------------===//

LogicalResult ChunkLoopOp::verifyRegions() {
  Type state = getInit().getType();
  return mlir::attn::detail::verifyRegionSignature(
      *this, getBody(), "do", {IndexType::get(getContext()), state}, state,
      false);
}

void TiledLinearAttentionOp::getAsmBlockArgumentNames(
    Region &region, OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"b", "h"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void ChunkLoopOp::getAsmBlockArgumentNames(Region &region,
                                           OpAsmSetValueNameFn setName) {
  if (region.empty())
    return;
  static constexpr const char *kNames[] = {"t0", "st"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void ChunkLoopOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "state");
}
void ChunkInitStateOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "state");
}
void ChunkFeaturesOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), getQuery() ? "fq" : "fk");
}
void ChunkValuesOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "v");
}
void ChunkLogGatesOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "g");
}
void ChunkIntraOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "a");
}
void ChunkDeltaOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "u");
}
void ChunkReadoutOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "o");
}
void ChunkUpdateOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "st");
}
