//===- MfmaBackward.h - the softmax family's ROCm gradients -----*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTOROCDL_MFMABACKWARD_H
#define ATTN_LOWERING_ATTNTOROCDL_MFMABACKWARD_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the gradients' kernels `attn_<name>_bwd_d<D>`
/// of a spec whose body is an attn.tiled_attention_backward, one per head
/// dim in `headDims` (64 or 128), on MFMA 32x32x8, with the launch contract
/// of the CUDA gradients' kernels (BackwardToNVVM.h): one work-group per
/// (kv tile, b * Hkv + hk), dq and the aux gradients added to atomically
/// (the caller zeroes them), dk and dv written.
LogicalResult buildMfmaBackwardKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                       ArrayRef<int64_t> headDims);

} // namespace mlir::attn

#endif
