//===- LinearToNVVM.h - linear attention as CUDA kernels --------*- C++ -*-===//

#ifndef ATTN_LOWERING_ATTNTONVVM_LINEARTONVVM_H
#define ATTN_LOWERING_ATTNTONVVM_LINEARTONVVM_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the kernels of a spec whose body is an
/// attn.linear_attention, one per head-dim variant in `headDims`, with the
/// same launch contract attributes as the softmax kernels
/// (attn.block_q, attn.num_threads, attn.shared_bytes, attn.max_head_dim).
/// Reports unsupported features as errors on the spec.
LogicalResult buildLinearGpuKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                    ArrayRef<int64_t> headDims);

/// Fails with an error on `spec` when it carries a linear-attention state
/// (the `state`/`zstate` inputs of attn-add-linear-state): the CUDA kernels
/// start from a zero state.
LogicalResult rejectCarriedLinearState(SpecOp spec);

} // namespace mlir::attn

#endif
