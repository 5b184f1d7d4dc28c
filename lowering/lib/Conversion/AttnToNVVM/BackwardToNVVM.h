//===- BackwardToNVVM.h - the softmax family's CUDA backward ----*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTONVVM_BACKWARDTONVVM_H
#define ATTN_LOWERING_ATTNTONVVM_BACKWARDTONVVM_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the backward kernels
/// `attn_<name>_bwd_d<D>` of a spec whose body is an
/// attn.tiled_attention_backward, one per head-dim variant in `headDims`.
/// The launch contract: one CTA per (kv tile, b * Hkv + hk), grid
/// (ceil(M / attn.block_kv), B * Hkv); dq and the aux gradients are added
/// to atomically (the caller zeroes them), dk and dv written. Arguments:
/// the forward's (q, k, v, o, lse, aux inputs), then do (q's element
/// type), dlse (f32, may be null), dq, dk, dv (f32), and one f32 gradient
/// per name in the kernel's attn.gradient_inputs.
LogicalResult buildBackwardGpuKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                      ArrayRef<int64_t> headDims);

} // namespace mlir::attn

#endif
