//===- Linear.cpp - the linear block (tier 2) -----------------------------===//
//
// `linear { ... }` becomes one attn.linear_attention op: the settings
// SpecChecker decoded become attributes, the expression-valued entries
// (gate, delta, bonus) and the scale become regions.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

LogicalResult MLIRGenImpl::emitLinearAttention() {
  FailureOr<LinearConfig> lin = checker.checkLinear();
  if (failed(lin))
    return failure();
  // The entries are written in the block, so they see the names declared
  // before it.
  size_t position = positionOf(spec, Spec::StmtKind::Linear);
  UnitAttr unit = builder.getUnitAttr();
  bool random = lin->mapQ == FeatureMapKind::random;
  auto op = LinearAttentionOp::create(
      builder, loc(spec.linear->loc), FeatureMapKindAttr::get(ctx, lin->mapQ),
      FeatureMapKindAttr::get(ctx, lin->mapK),
      lin->normalize ? unit : UnitAttr(), lin->causal ? UnitAttr() : unit,
      lin->exclusive ? unit : UnitAttr(),
      random ? FlatSymbolRefAttr::get(ctx, lin->projQ) : FlatSymbolRefAttr());
  if (spec.scale && failed(fillRegion(op.getScale(), AttnRegion::Scale,
                                      spec.scale->value.get(),
                                      positionOf(spec, Spec::StmtKind::Scale),
                                      Ty::Float, "the scale", spec.scale->loc)))
    return failure();
  const LinearEntry *gate = lin->gate, *delta = lin->delta, *bonus = lin->bonus;
  if (gate &&
      failed(fillRegion(op.getGate(), AttnRegion::Gate, gate->value.get(),
                        position, Ty::Float, "the linear gate", gate->loc)))
    return failure();
  if (delta &&
      failed(fillRegion(op.getBeta(), AttnRegion::Beta, delta->value.get(),
                        position, Ty::Float, "the linear delta", delta->loc)))
    return failure();
  if (bonus &&
      failed(fillRegion(op.getBonus(), AttnRegion::Bonus, bonus->value.get(),
                        position, Ty::Float, "the linear bonus", bonus->loc)))
    return failure();
  return success();
}
