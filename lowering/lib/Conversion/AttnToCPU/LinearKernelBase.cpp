//===- LinearKernelBase.cpp - the linear family's feature maps on CPU -----===//
//
// The feature maps' code (LinearFeatureMapsImpl.h) for the CPU's kernel
// base.
//
//===----------------------------------------------------------------------===//

#include "LinearKernelBase.h"
#include "attn/Conversion/LinearFeatureMapsImpl.h"

template class mlir::attn::LinearFeatureMaps<mlir::attn::cpu::KernelBase>;
