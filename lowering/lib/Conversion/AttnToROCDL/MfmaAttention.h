//===- MfmaAttention.h - the softmax family on AMD matrix cores -*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTOROCDL_MFMAATTENTION_H
#define ATTN_LOWERING_ATTNTOROCDL_MFMAATTENTION_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the forward kernels `attn_<name>_d<D>` of a
/// spec whose body is an attn.tiled_attention, one per head dim in
/// `headDims` (64 or 128), on MFMA 32x32x8 (bf16 or f16, f32 accumulators),
/// with the launch contract the CUDA kernels carry. Reports unsupported
/// schedules as errors.
LogicalResult buildMfmaAttentionKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                        ArrayRef<int64_t> headDims);

} // namespace mlir::attn

#endif
