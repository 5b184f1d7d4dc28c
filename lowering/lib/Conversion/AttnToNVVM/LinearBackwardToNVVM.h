//===- LinearBackwardToNVVM.h - the linear family's CUDA gradients -*- C++ -*-//

#ifndef ATTN_LOWERING_ATTNTONVVM_LINEARBACKWARDTONVVM_H
#define ATTN_LOWERING_ATTNTONVVM_LINEARBACKWARDTONVVM_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the gradients' kernels
/// `attn_<name>_bwd_d<D>` of a spec whose body is an
/// attn.tiled_linear_attention_backward, one per head dim in `headDims`,
/// with the softmax backward's launch attributes (attn.backward,
/// attn.block_kv, attn.gradient_inputs) plus the scratch they need per CTA
/// (attn.scratch_state_floats, attn.scratch_fixed_floats; see
/// docs/architecture.md). Reports unsupported features as errors.
LogicalResult buildLinearBackwardGpuKernels(SpecOp spec,
                                            gpu::GPUModuleOp gpuModule,
                                            ArrayRef<int64_t> headDims);

} // namespace mlir::attn

#endif
