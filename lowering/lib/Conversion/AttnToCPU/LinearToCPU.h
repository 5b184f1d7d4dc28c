//===- LinearToCPU.h - linear attention CPU kernels -------------*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTOCPU_LINEARTOCPU_H
#define ATTN_LOWERING_ATTNTOCPU_LINEARTOCPU_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::attn::cpu {

/// Appends to `module` the recurrent kernel `attn_<name>_tiles` of the
/// linear-attention spec `spec` (same signature as the softmax kernels; one
/// work item per (b, h)).
LogicalResult buildLinearKernel(SpecOp spec, ModuleOp module,
                                int64_t vectorWidth);

} // namespace mlir::attn::cpu

#endif
