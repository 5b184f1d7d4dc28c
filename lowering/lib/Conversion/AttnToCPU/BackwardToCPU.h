//===- BackwardToCPU.h - the backward tile program's CPU kernel -*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTOCPU_BACKWARDTOCPU_H
#define ATTN_LOWERING_ATTNTOCPU_BACKWARDTOCPU_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::attn::cpu {

/// Emits `attn_<name>_backward_tiles(q, k, v, o, lse, aux..., do, dlse, dq,
/// dk, dv, d<aux>..., begin, end) -> i32` for the spec's
/// attn.tiled_attention_backward: work item (b * Hkv + hk), the d<aux>
/// arguments for the f32 inputs the score reads, in declaration order.
LogicalResult buildBackwardKernel(SpecOp spec, ModuleOp module);

} // namespace mlir::attn::cpu

#endif
