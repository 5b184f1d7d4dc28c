//===- Pipelines.cpp - the one attn pass pipeline builder -----------------===//

#include "attn/Pipelines/Pipelines.h"
#include "attn/Conversion/Passes.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::attn;

void mlir::attn::buildAttnCPUPipeline(OpPassManager &pm,
                                      const CPUPipelineOptions &options,
                                      Stage stop, Stage start) {
  auto runs = [&](Stage s) { return start < s && s <= stop; };
  if (runs(Stage::Tiled)) {
    if (options.linearState)
      pm.addPass(createAttnAddLinearState());
    AttnTileAttentionOptions tiling;
    tiling.tileQ = options.tileQ;
    tiling.tileKV = options.tileKV;
    tiling.vectorWidth = options.vectorWidth;
    pm.addNestedPass<SpecOp>(createAttnTileAttention(tiling));
  }
  if (runs(Stage::CPU)) {
    ConvertAttnToCPUOptions conversion;
    conversion.vectorWidth = options.vectorWidth;
    conversion.linearChunk = options.linearChunk;
    pm.addPass(createConvertAttnToCPU(conversion));
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
    pm.addPass(createLoopInvariantCodeMotionPass());
  }
  if (!runs(Stage::LLVM))
    return;
  pm.addNestedPass<func::FuncOp>(createAttnApproximateMath());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  ConvertVectorToLLVMPassOptions vectorOptions;
  pm.addPass(createConvertVectorToLLVMPass(vectorOptions));
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  // Explicit conversions (convert-to-llvm would need every dialect's
  // interface registered in each tool's context).
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createAttnEmitPackedEntry());
}

void mlir::attn::registerAttnPipelines() {
  registerAttnConversionPasses();
  PassPipelineRegistration<>(
      "attn-lower-to-cpu",
      "Lower attn specs to LLVM-dialect CPU kernels (default schedule)",
      [](OpPassManager &pm) {
        buildAttnCPUPipeline(pm, CPUPipelineOptions(), Stage::LLVM);
      });
}
