//===- Pipelines.cpp - the one attn pass pipeline builder -----------------===//

#include "attn/Pipelines/Pipelines.h"
#include "attn/Conversion/Passes.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "attn/Transforms/Passes.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/GPUToROCDL/GPUToROCDLPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVM/ROCDL/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/ROCDL/ROCDLToLLVMIRTranslation.h"
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
    if (options.backward) {
      AttnTileAttentionBackwardOptions tiling;
      tiling.tileQ = options.tileQ;
      tiling.tileKV = options.tileKV;
      tiling.vectorWidth = options.vectorWidth;
      pm.addNestedPass<SpecOp>(createAttnTileAttentionBackward(tiling));
    } else {
      AttnTileAttentionOptions tiling;
      tiling.tileQ = options.tileQ;
      tiling.tileKV = options.tileKV;
      tiling.vectorWidth = options.vectorWidth;
      pm.addNestedPass<SpecOp>(createAttnTileAttention(tiling));
    }
  }
  if (runs(Stage::CPU)) {
    ConvertAttnToCPUOptions conversion;
    conversion.vectorWidth = options.vectorWidth;
    conversion.linearChunk = options.linearChunk;
    conversion.bf16Dot = options.bf16Dot;
    conversion.bf16DotPV = options.bf16DotPV;
    conversion.debugTileStats = options.debugTileStats;
    conversion.decodeKernel = options.decodeKernel;
    conversion.pagedKV = options.pagedKV;
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
  // x86vector.avx512.dot (the bf16 dot path) to its LLVM intrinsic.
  vectorOptions.x86Vector = options.bf16Dot;
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

/// The GPU targets' Tiled stage: q, k, v typed, then tiled for the forward
/// or the gradients.
static void addGpuTiling(OpPassManager &pm, const std::string &elementType,
                         bool backward, int64_t tileQ, int64_t tileKV) {
  AttnSetElementTypeOptions types;
  types.type = elementType;
  pm.addNestedPass<SpecOp>(createAttnSetElementType(types));
  if (backward) {
    AttnTileAttentionBackwardOptions tiling;
    tiling.tileQ = tileQ;
    tiling.tileKV = tileKV;
    tiling.vectorWidth = 16;
    pm.addNestedPass<SpecOp>(createAttnTileAttentionBackward(tiling));
  } else {
    AttnTileAttentionOptions tiling;
    tiling.tileQ = tileQ;
    tiling.tileKV = tileKV;
    tiling.vectorWidth = 16;
    pm.addNestedPass<SpecOp>(createAttnTileAttention(tiling));
  }
}

/// The cleanups after a GPU target's kernel builders.
static void addKernelCleanups(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createLoopInvariantCodeMotionPass());
}

void mlir::attn::buildAttnCUDAPipeline(OpPassManager &pm,
                                       const CUDAPipelineOptions &options,
                                       Stage stop, Stage start) {
  auto runs = [&](Stage s) { return start < s && s <= stop; };
  if (runs(Stage::Tiled))
    addGpuTiling(pm, options.elementType, options.backward, options.tileQ,
                 options.tileKV);
  if (runs(Stage::Kernel)) {
    ConvertAttnToNVVMOptions conversion;
    conversion.headDims = options.headDims;
    conversion.sharedLimit = options.sharedLimit;
    conversion.decodeKernels = options.decodeKernels;
    conversion.batchKernels = options.batchKernels;
    pm.addPass(createConvertAttnToNVVM(conversion));
    addKernelCleanups(pm);
  }
  if (!runs(Stage::LLVM))
    return;
  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features;
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &gpu = pm.nest<gpu::GPUModuleOp>();
  gpu.addPass(createConvertNVGPUToNVVMPass());
  gpu.addPass(createConvertVectorToLLVMPass());
  gpu.addPass(createSCFToControlFlowPass());
  gpu.addPass(createConvertGpuOpsToNVVMOps());
  gpu.addPass(createConvertNVVMToLLVMPass());
  gpu.addPass(createCanonicalizerPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::attn::registerAttnCUDAExtensions(DialectRegistry &registry) {
  registry.insert<gpu::GPUDialect, nvgpu::NVGPUDialect, NVVM::NVVMDialect,
                  LLVM::LLVMDialect, cf::ControlFlowDialect>();
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
}

void mlir::attn::buildAttnROCmPipeline(OpPassManager &pm,
                                       const ROCmPipelineOptions &options,
                                       Stage stop, Stage start) {
  auto runs = [&](Stage s) { return start < s && s <= stop; };
  if (runs(Stage::Tiled))
    addGpuTiling(pm, options.elementType, options.backward, options.tileQ,
                 options.tileKV);
  if (runs(Stage::Kernel)) {
    ConvertAttnToROCDLOptions conversion;
    conversion.headDims = options.headDims;
    conversion.sharedLimit = options.sharedLimit;
    pm.addPass(createConvertAttnToROCDL(conversion));
    addKernelCleanups(pm);
  }
  if (!runs(Stage::LLVM))
    return;
  GpuROCDLAttachTargetOptions target;
  target.chip = options.chip;
  target.abiVersion = options.abi;
  target.optLevel = 3;
  pm.addPass(createGpuROCDLAttachTarget(target));
  OpPassManager &gpu = pm.nest<gpu::GPUModuleOp>();
  // Subviews of the kernels' strided memrefs become plain address
  // arithmetic before the ROCDL patterns see them.
  gpu.addPass(memref::createExpandStridedMetadataPass());
  gpu.addPass(createLowerAffinePass());
  // 1 / sqrt (LLVM intrinsics) instead of ocml's rsqrt: the ROCm device
  // bitcode is linked only where a kernel still calls into it.
  math::MathExpandOpsPassOptions expand;
  expand.opMnemonics = {"rsqrt"};
  gpu.addPass(math::createMathExpandOpsPass(expand));
  // No convert-vector-to-llvm here: convert-gpu-to-rocdl brings the vector
  // patterns with the AMDGPU memory-space conversions that vector.load and
  // vector.store on LDS and raw buffers need (the standalone pass cannot
  // convert #gpu.address_space<workgroup> or fat_raw_buffer memrefs).
  gpu.addPass(createSCFToControlFlowPass());
  ConvertGpuOpsToROCDLOpsOptions rocdl;
  rocdl.chipset = options.chip;
  rocdl.runtime = gpu::amd::Runtime::HIP;
  gpu.addPass(createConvertGpuOpsToROCDLOps(rocdl));
  gpu.addPass(createCanonicalizerPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::attn::registerAttnROCmExtensions(DialectRegistry &registry) {
  registry.insert<gpu::GPUDialect, amdgpu::AMDGPUDialect, ROCDL::ROCDLDialect,
                  LLVM::LLVMDialect, cf::ControlFlowDialect>();
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  ROCDL::registerROCDLTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerROCDLDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
}

void mlir::attn::registerAttnPipelines() {
  registerAttnConversionPasses();
  registerAttnLoweringTransformsPasses();
  PassPipelineRegistration<>(
      "attn-lower-to-cpu",
      "Lower attn specs to LLVM-dialect CPU kernels (default schedule)",
      [](OpPassManager &pm) {
        buildAttnCPUPipeline(pm, CPUPipelineOptions(), Stage::LLVM);
      });
  PassPipelineRegistration<>(
      "attn-lower-to-nvvm",
      "Lower attn specs to NVVM gpu.modules for sm_90 (default schedule)",
      [](OpPassManager &pm) {
        buildAttnCUDAPipeline(pm, CUDAPipelineOptions(), Stage::LLVM);
      });
  PassPipelineRegistration<>(
      "attn-lower-to-rocdl",
      "Lower attn specs to ROCDL gpu.modules for gfx942 (default schedule)",
      [](OpPassManager &pm) {
        buildAttnROCmPipeline(pm, ROCmPipelineOptions(), Stage::LLVM);
      });
}
