//===- LinearKernelBase.h - what the linear CPU kernels share ---*- C++ -*-===//
//
// The feature maps (LinearFeatureMaps) over the CPU's kernel base: the
// forward kernel (LinearToCPU.cpp) and the gradients' kernel
// (LinearBackwardToCPU.cpp) derive from it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOCPU_LINEARKERNELBASE_H
#define ATTN_LOWERING_ATTNTOCPU_LINEARKERNELBASE_H

#include "KernelBase.h"
#include "attn/Conversion/LinearFeatureMaps.h"

namespace mlir::attn::cpu {

class LinearKernelBase : public LinearFeatureMaps<KernelBase> {
protected:
  /// `projection`: the random feature map's input (empty without one).
  LinearKernelBase(SpecOp spec, int64_t vl, StringRef projection)
      : LinearFeatureMaps(projection, spec, vl) {}
};

} // namespace mlir::attn::cpu

#endif
