//===- LinearToNVVM.cpp - linear attention as CUDA kernels ----------------===//
//
// Not implemented yet: the CUDA backend lowers the softmax family only.
//
//===----------------------------------------------------------------------===//

#include "LinearToNVVM.h"

using namespace mlir;
using namespace mlir::attn;

LogicalResult mlir::attn::buildLinearGpuKernels(SpecOp spec,
                                                gpu::GPUModuleOp gpuModule,
                                                ArrayRef<int64_t> headDims) {
  return spec.emitError() << "the CUDA backend does not lower linear "
                             "attention yet (use the CPU target)";
}
