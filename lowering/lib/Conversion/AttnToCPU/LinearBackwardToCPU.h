//===- LinearBackwardToCPU.h - linear attention's gradients on CPU -*- C++ -*-//

#ifndef ATTN_LOWERING_ATTNTOCPU_LINEARBACKWARDTOCPU_H
#define ATTN_LOWERING_ATTNTOCPU_LINEARBACKWARDTOCPU_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::attn::cpu {

/// Emits `attn_<name>_backward_tiles(q, k, v, o, lse, aux..., do, dlse, dq,
/// dk, dv, d<aux>..., begin, end) -> i32` (the softmax backward's ABI; o,
/// lse and dlse are not read) for the spec's
/// attn.tiled_linear_attention_backward: work item (b * Hkv + hk), the
/// d<aux> arguments for the f32 inputs the gate, beta and bonus read, in
/// declaration order.
LogicalResult buildLinearBackwardKernel(SpecOp spec, ModuleOp module,
                                        int64_t vectorWidth);

} // namespace mlir::attn::cpu

#endif
