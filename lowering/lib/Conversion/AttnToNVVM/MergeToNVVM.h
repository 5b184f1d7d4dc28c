//===- MergeToNVVM.h - the split-KV decode's merge kernel -------*- C++ -*-===//

#ifndef ATTN_CONVERSION_ATTNTONVVM_MERGETONVVM_H
#define ATTN_CONVERSION_ATTNTONVVM_MERGETONVVM_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::attn {

/// Adds `gpu.func @attn_<name>_merge` to `gpuModule`: the LSE merge of the
/// decode kernel's partials (see MergeToNVVM.cpp), for head dims up to
/// `maxHeadDim`.
LogicalResult buildMergeGpuKernel(SpecOp spec, gpu::GPUModuleOp gpuModule,
                                  int64_t maxHeadDim);

} // namespace mlir::attn

#endif
