//===- AttnToROCDL.cpp - tiled attn specs to AMD GPU kernels --------------===//
//
// Implements convert-attn-to-rocdl: a gpu.module per spec with a kernel per
// head-dim variant. The linear family's kernels are the SIMT ones shared
// with CUDA (LinearGpuKernels.h); the softmax family's forward and
// gradients are AMD's own, on MFMA (MfmaAttention.cpp, MfmaBackward.cpp); so
// is the occupancy hint.
//
//===----------------------------------------------------------------------===//

#include "MfmaAttention.h"
#include "MfmaBackward.h"
#include "attn/Conversion/KernelScaffold.h"
#include "attn/Conversion/LinearGpuKernels.h"
#include "attn/Conversion/Passes.h"
#include "attn/Conversion/TileLowering.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"

namespace mlir::attn {
#define GEN_PASS_DEF_CONVERTATTNTOROCDL
#include "attn/Conversion/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Lanes of an AMD wavefront on gfx9 (gfx90a, gfx942) and SIMDs per CU.
constexpr int64_t kWaveSize = 64, kSimdsPerCU = 4;

/// rocdl.waves_per_eu: the waves one work-group of `numThreads` puts on each
/// SIMD. Asking for no more than that lets the compiler give each wave as
/// many registers as one resident work-group per CU allows.
void setOccupancyHint(gpu::GPUFuncOp fn) {
  auto threads = fn->getAttrOfType<IntegerAttr>("attn.num_threads");
  if (!threads)
    return;
  int64_t waves = (threads.getInt() + kWaveSize - 1) / kWaveSize;
  int64_t perSimd = (waves + kSimdsPerCU - 1) / kSimdsPerCU;
  MLIRContext *ctx = fn.getContext();
  ctx->getOrLoadDialect<ROCDL::ROCDLDialect>()
      ->getWavesPerEuAttrHelper()
      .setAttr(fn, IntegerAttr::get(IntegerType::get(ctx, 32), perSimd));
}

struct ConvertAttnToROCDLPass
    : public mlir::attn::impl::ConvertAttnToROCDLBase<ConvertAttnToROCDLPass> {
  using ConvertAttnToROCDLBase::ConvertAttnToROCDLBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<int64_t> dims(headDims.begin(), headDims.end());
    if (dims.empty())
      dims = {64, 128};
    SmallVector<SpecOp> specs(module.getBody()->getOps<SpecOp>());
    if (!specs.empty())
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      UnitAttr::get(&getContext()));
    for (SpecOp spec : specs) {
      if (failed(requireTiledForm(spec, "convert-attn-to-rocdl")))
        return signalPassFailure();
      OpBuilder b(spec);
      auto gpuModule = gpu::GPUModuleOp::create(
          b, spec.getLoc(), ("attn_" + spec.getSymName() + "_rocm").str());
      LogicalResult built = failure();
      if (spec.getTiledLinearAttentionBackward())
        built = buildLinearBackwardGpuKernels(spec, gpuModule, dims);
      else if (spec.getTiledLinearAttention())
        built = buildLinearGpuKernels(spec, gpuModule, dims, sharedLimit);
      else if (spec.getTiledAttention())
        built = buildMfmaAttentionKernels(spec, gpuModule, dims);
      else
        built = buildMfmaBackwardKernels(spec, gpuModule, dims);
      if (failed(built))
        return signalPassFailure();
      spec->erase();
    }
    if (failed(checkSharedLimit(module, sharedLimit)))
      return signalPassFailure();
    module.walk([](gpu::GPUFuncOp fn) {
      if (!fn.isKernel())
        return;
      setOccupancyHint(fn);
      // Whose warp-level ops run on 64 lanes (attn-gpu-sim reads it).
      fn->setAttr(
          "attn.wave_size",
          IntegerAttr::get(IntegerType::get(fn.getContext(), 64), kWaveSize));
    });
  }
};

} // namespace
