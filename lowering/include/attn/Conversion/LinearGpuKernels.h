//===- LinearGpuKernels.h - the linear family as SIMT GPU kernels -*- C++ -*-=//
//
// The linear family's GPU kernels are f32 SIMT code in the gpu, memref,
// arith, math and scf dialects only (no tensor cores, no vendor ops), so
// every GPU target builds them from here: convert-attn-to-nvvm (CUDA) and
// convert-attn-to-rocdl (ROCm). Warp-level code (shuffles, per-warp
// partial sums) works on groups of 32 lanes, which a 64-lane AMD wavefront
// holds two of. The target adds its own launch hints (occupancy,
// work-group size) to the kernels afterwards.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_LINEARGPUKERNELS_H
#define ATTN_CONVERSION_LINEARGPUKERNELS_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Builds, inside `gpuModule`, the kernels of a spec whose body is an
/// attn.linear_attention, one per head-dim variant in `headDims`, with the
/// same launch contract attributes as the softmax kernels
/// (attn.block_q, attn.num_threads, attn.shared_bytes, attn.max_head_dim).
/// The state takes what `sharedLimitBytes` (the target's shared memory per
/// block) leaves (checkSharedLimit catches a kernel that does not fit at
/// all). Reports
/// unsupported features as errors on the spec.
LogicalResult buildLinearGpuKernels(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                    ArrayRef<int64_t> headDims,
                                    int64_t sharedLimitBytes);

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

/// Fails with an error on `spec` when it carries a linear-attention state
/// (the `state`/`zstate` inputs of attn-add-linear-state): the GPU kernels
/// start from a zero state.
LogicalResult rejectCarriedLinearState(SpecOp spec);

} // namespace mlir::attn

#endif
