//===- MLIRGen.cpp - .attn AST to the attn dialect ------------------------===//
//
// Name resolution, type checking and IR construction in one walk (the files
// of the walk are listed in MLIRGenImpl.h). Each attn region (param
// defaults, scale, mask, score, bias) is isolated, so let-bindings are
// re-emitted in every region that uses them (CSE tidies up).
// Types: int -> i64, float -> f64, bool -> i1; int promotes to float.
//
// This file drives the walk: declarations, then lets, then the attention op
// with its regions.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/MLIRGen.h"
#include "MLIRGenImpl.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/ScopeExit.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

llvm::StringRef mlirgen::tyName(Ty t) {
  switch (t) {
  case Ty::Int:
    return "int";
  case Ty::Float:
    return "float";
  case Ty::Bool:
    return "bool";
  }
  return "?";
}

llvm::StringRef mlirgen::regionName(AttnRegion k) {
  switch (k) {
  case AttnRegion::ParamDefault:
    return "a param default";
  case AttnRegion::Scale:
    return "the scale";
  case AttnRegion::Bias:
    return "the normalizer bias";
  case AttnRegion::Mask:
    return "the mask";
  case AttnRegion::Score:
    return "the score";
  case AttnRegion::Gate:
    return "the linear gate";
  case AttnRegion::Beta:
    return "the linear delta";
  case AttnRegion::Bonus:
    return "the linear bonus";
  case AttnRegion::LetCheck:
    return "a let";
  }
  return "?";
}

OwningOpRef<ModuleOp> MLIRGenImpl::run() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc(spec.loc));
  builder.setInsertionPointToEnd(module->getBody());
  specOp = SpecOp::create(builder, loc(spec.loc), spec.name);
  builder.setInsertionPointToEnd(&specOp.getBodyBlock());
  scope.isLinear = spec.linear.has_value();

  if (failed(checker.declareNames()))
    return nullptr;
  // Inputs first: their dims are visible everywhere, whatever the order.
  for (const InputDecl &in : spec.inputs)
    if (failed(emitInput(in)))
      return nullptr;
  for (size_t pos = 0; pos < spec.order.size(); ++pos)
    if (spec.order[pos].first == Spec::StmtKind::Param &&
        failed(emitParam(spec.params[spec.order[pos].second], pos)))
      return nullptr;
  if (failed(checkLets()))
    return nullptr;
  if (failed(scope.isLinear ? emitLinearAttention() : emitAttention()))
    return nullptr;
  if (failed(mlir::verify(*module)))
    return nullptr;
  return module;
}

/// Lets are emitted where used; check each once so an unused let with an
/// error is still reported. The check happens in a scratch score region
/// (lets may use indices) of a detached op destroyed right after. All lets
/// share it, so each is emitted once and later lets reuse the result.
LogicalResult MLIRGenImpl::checkLets() {
  if (spec.lets.empty())
    return success();
  OpBuilder detached(ctx);
  auto scratch = AttentionOp::create(
      detached, loc(spec.loc),
      NormalizerKindAttr::get(ctx, NormalizerKind::softmax), UnitAttr(),
      detached.getI64IntegerAttr(1), UnitAttr(), ScheduleAttr());
  llvm::scope_exit destroyScratch([&] { scratch->destroy(); });
  Block *block = new Block();
  scratch.getScore().push_back(block);
  Type i64 = builder.getI64Type(), f64 = builder.getF64Type();
  block->addArgument(f64, loc(spec.loc));
  for (int i = 0; i < 6; ++i)
    block->addArgument(i64, loc(spec.loc));
  RegionCtx rc(AttnRegion::LetCheck, OpBuilder::atBlockBegin(block), 0);
  rc.score = block->getArgument(0);
  rc.b = block->getArgument(1);
  rc.h = block->getArgument(2);
  rc.qIdx = block->getArgument(3);
  rc.kvIdx = block->getArgument(4);
  if (scope.isLinear) {
    rc.t = block->getArgument(5);
    rc.d = block->getArgument(6);
  }
  for (size_t pos = 0; pos < spec.order.size(); ++pos) {
    if (spec.order[pos].first != Spec::StmtKind::Let)
      continue;
    const LetDecl &let = spec.lets[spec.order[pos].second];
    rc.position = pos;
    FailureOr<TValue> v = emit(*let.value, rc);
    if (failed(v))
      return failure();
    rc.letCache[let.name] = *v;
  }
  return success();
}

/// Adds the index arguments of a region of `kind` to `block`, in the order
/// the attn ops define them, and makes them visible through `rc`.
static void addIndexArguments(Block *block, AttnRegion kind, RegionCtx &rc,
                              Location l) {
  Type i64 = rc.builder.getI64Type(), f64 = rc.builder.getF64Type();
  if (kind == AttnRegion::Score)
    rc.score = block->addArgument(f64, l);
  if (kind == AttnRegion::Mask || kind == AttnRegion::Score) {
    rc.b = block->addArgument(i64, l);
    rc.h = block->addArgument(i64, l);
    rc.qIdx = block->addArgument(i64, l);
    rc.kvIdx = block->addArgument(i64, l);
  }
  // Linear regions: gate (b, h, t, d), beta (b, h, t), bonus (h, d).
  if (kind == AttnRegion::Gate || kind == AttnRegion::Beta) {
    rc.b = block->addArgument(i64, l);
    rc.h = block->addArgument(i64, l);
    rc.t = block->addArgument(i64, l);
    if (kind == AttnRegion::Gate)
      rc.d = block->addArgument(i64, l);
  }
  if (kind == AttnRegion::Bonus) {
    rc.h = block->addArgument(i64, l);
    rc.d = block->addArgument(i64, l);
  }
}

LogicalResult MLIRGenImpl::fillRegion(Region &region, AttnRegion kind,
                                      const Expr *expr, size_t position,
                                      Ty resultTy, llvm::StringRef what,
                                      llvm::SMLoc whatLoc) {
  if (!expr)
    return success(); // empty region: the op's default
  Block *block = new Block();
  region.push_back(block);
  Location l = loc(whatLoc);
  RegionCtx rc(kind, OpBuilder::atBlockBegin(block), position);
  addIndexArguments(block, kind, rc, l);
  FailureOr<TValue> v = emit(*expr, rc);
  if (failed(v))
    return failure();
  if (resultTy == Ty::Bool && v->ty != Ty::Bool) {
    emitError(expr->getLoc())
        << what << " must be a boolean predicate, got " << tyName(v->ty);
    return failure();
  }
  FailureOr<Value> value = coerce(*v, resultTy, rc, expr->getLoc(), what);
  if (failed(value))
    return failure();
  YieldOp::create(rc.builder, l, *value);
  return success();
}

LogicalResult MLIRGenImpl::emitAttention() {
  FailureOr<NormalizerConfig> norm = checker.checkNormalizer();
  if (failed(norm))
    return failure();
  auto op = AttentionOp::create(
      builder, loc(spec.loc), NormalizerKindAttr::get(ctx, norm->kind),
      norm->lse ? builder.getUnitAttr() : UnitAttr(),
      builder.getI64IntegerAttr(norm->power),
      norm->rowNormalize ? builder.getUnitAttr() : UnitAttr(), ScheduleAttr());
  size_t end = spec.order.size();
  if (spec.scale && failed(fillRegion(op.getScale(), AttnRegion::Scale,
                                      spec.scale->value.get(),
                                      positionOf(spec, Spec::StmtKind::Scale),
                                      Ty::Float, "the scale", spec.scale->loc)))
    return failure();
  if (spec.mask &&
      failed(fillRegion(op.getMask(), AttnRegion::Mask, spec.mask->value.get(),
                        positionOf(spec, Spec::StmtKind::Mask), Ty::Bool,
                        "the mask", spec.mask->loc)))
    return failure();
  if (spec.score && failed(fillRegion(op.getScore(), AttnRegion::Score,
                                      spec.score->value.get(),
                                      positionOf(spec, Spec::StmtKind::Score),
                                      Ty::Float, "the score", spec.score->loc)))
    return failure();
  if (norm->biasExpr &&
      failed(fillRegion(
          op.getBias(), AttnRegion::Bias, norm->biasExpr,
          spec.normalizer ? positionOf(spec, Spec::StmtKind::Normalizer) : end,
          Ty::Float, "the sigmoid bias", norm->biasLoc)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Conversions
//===----------------------------------------------------------------------===//

Value MLIRGenImpl::toFloat(TValue v, RegionCtx &rc, Location l) {
  if (v.ty == Ty::Float)
    return v.value;
  return arith::SIToFPOp::create(rc.builder, l, rc.builder.getF64Type(),
                                 v.value);
}

Type MLIRGenImpl::mlirType(Ty t) {
  switch (t) {
  case Ty::Int:
    return builder.getI64Type();
  case Ty::Float:
    return builder.getF64Type();
  case Ty::Bool:
    return builder.getI1Type();
  }
  return {};
}

FailureOr<Value> MLIRGenImpl::coerce(TValue v, Ty want, RegionCtx &rc,
                                     llvm::SMLoc at, llvm::StringRef what) {
  if (v.ty == want)
    return v.value;
  if (v.ty == Ty::Int && want == Ty::Float)
    return toFloat(v, rc, loc(at));
  emitError(at) << what << " must be " << tyName(want) << ", got "
                << tyName(v.ty);
  return failure();
}

OwningOpRef<ModuleOp> mlir::attn::mlirGen(const SourceLocator &locator,
                                          const Spec &spec) {
  return MLIRGenImpl(locator, spec).run();
}
