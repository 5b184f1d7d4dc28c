//===- TiledLinear.h - a linear attention's regions onto its tiled op -----===//
//
// Private to the tiling passes: attn-tile-attention and
// attn-tile-attention-backward both replace attn.linear_attention by a
// (b, h) program op with the same attributes and regions.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LIB_TRANSFORMS_TILEDLINEAR_H
#define ATTN_LIB_TRANSFORMS_TILEDLINEAR_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::attn {

/// Creates `TiledOp` (attn.tiled_linear_attention or its backward) before
/// `lin` with its attributes, and moves `lin`'s scale, gate, beta and bonus
/// regions onto it; the body is the caller's to write.
template <typename TiledOp>
TiledOp createTiledLinear(OpBuilder &b, LinearAttentionOp lin) {
  auto tiled = TiledOp::create(b, lin.getLoc(), lin.getFeatureMapQAttr(),
                               lin.getFeatureMapKAttr(), lin.getNormalizeAttr(),
                               lin.getNoncausalAttr(), lin.getExclusiveAttr(),
                               lin.getProjectionAttr());
  tiled.getScale().takeBody(lin.getScale());
  tiled.getGate().takeBody(lin.getGate());
  tiled.getBeta().takeBody(lin.getBeta());
  tiled.getBonus().takeBody(lin.getBonus());
  return tiled;
}

} // namespace mlir::attn

#endif // ATTN_LIB_TRANSFORMS_TILEDLINEAR_H
