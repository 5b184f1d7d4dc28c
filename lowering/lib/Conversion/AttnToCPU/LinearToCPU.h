//===- LinearToCPU.h - linear attention CPU kernels -------------*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTOCPU_LINEARTOCPU_H
#define ATTN_LOWERING_ATTNTOCPU_LINEARTOCPU_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::attn::cpu {

/// Appends to `module` the kernel `attn_<name>_tiles` of the linear-attention
/// spec `spec` (same signature as the softmax kernels; one work item per
/// (b, h)): the chunked form with `chunk` steps per chunk where it applies
/// (causal, inclusive readout, no delta rule), else the recurrence; chunk 0
/// always selects the recurrence.
LogicalResult buildLinearKernel(SpecOp spec, ModuleOp module,
                                int64_t vectorWidth, int64_t chunk);

} // namespace mlir::attn::cpu

#endif
