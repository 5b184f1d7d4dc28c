//===- CompileCUDA.cpp - spec module to CUDA kernel artifacts -------------===//

#include "attn/Frontend/CompileCUDA.h"
#include "attn/Frontend/CompileSpec.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Target/CPUTarget.h"
#include "attn/runtime.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mlir::attn;

static CUDAPipelineOptions forChip(const CUDAPipelineOptions &schedule,
                                   llvm::StringRef chip) {
  CUDAPipelineOptions options = schedule;
  options.chip = chip.str();
  options.features = CUDATarget::ptxFeatures(chip);
  return options;
}

LogicalResult mlir::attn::lowerSpecCUDA(ModuleOp module,
                                        const CUDATarget &target,
                                        const CUDAPipelineOptions &schedule,
                                        Stage stop, CUDAKernelInfo &info) {
  MLIRContext *ctx = module.getContext();
  DialectRegistry registry;
  registerAttnCUDAExtensions(registry);
  ctx->appendDialectRegistry(registry);
  CUDAPipelineOptions options = forChip(schedule, target.chips.front());
  PassManager tiling(ctx);
  buildAttnCUDAPipeline(tiling, options, std::min(stop, Stage::Tiled));
  if (failed(tiling.run(module)))
    return failure();
  for (SpecOp spec : module.getBody()->getOps<SpecOp>()) {
    AttentionOp att = spec.getAttention();
    info.name = spec.getSymName().str();
    info.symbol = "attn_" + info.name;
    info.hasLse = att && att.getNormalizer() == NormalizerKind::softmax;
    info.signature = getSignature(spec);
  }
  if (stop <= Stage::Tiled)
    return success();
  PassManager kernels(ctx);
  buildAttnCUDAPipeline(kernels, options, Stage::Kernel, Stage::Tiled);
  if (failed(kernels.run(module)))
    return failure();
  info.variants.clear();
  module.walk([&](gpu::GPUFuncOp fn) {
    auto get = [&](llvm::StringRef name) -> int64_t {
      auto attr = fn->getAttrOfType<IntegerAttr>(name);
      return attr ? attr.getInt() : 0;
    };
    info.variants.push_back({fn.getName().str(), get("attn.max_head_dim"),
                             get("attn.block_q"), get("attn.num_threads"),
                             get("attn.shared_bytes")});
  });
  llvm::sort(info.variants, [](const auto &a, const auto &b) {
    return a.maxHeadDim < b.maxHeadDim;
  });
  if (stop <= Stage::Kernel)
    return success();
  PassManager nvvm(ctx);
  buildAttnCUDAPipeline(nvvm, options, Stage::LLVM, Stage::Kernel);
  return nvvm.run(module);
}

LogicalResult mlir::attn::compileCUDA(ModuleOp module, const CUDATarget &target,
                                      const CUDAPipelineOptions &schedule,
                                      CUDAKernelInfo &info,
                                      std::string &error) {
  auto fail = [&](std::string e) {
    error = std::move(e);
    return failure();
  };
  error.clear();
  if (std::string e = target.checkToolkit(); !e.empty())
    return fail(e);
  if (failed(lowerSpecCUDA(module, target, schedule, Stage::Kernel, info)))
    return failure();
  std::vector<CUDAImage> images;
  info.reports.clear();
  for (const std::string &chip : target.chips) {
    OwningOpRef<ModuleOp> clone = module.clone();
    PassManager nvvm(module.getContext());
    buildAttnCUDAPipeline(nvvm, forChip(schedule, chip), Stage::LLVM,
                          Stage::Kernel);
    if (failed(nvvm.run(*clone)))
      return failure();
    CUDAImage image;
    image.chip = chip;
    if (std::string e = translateToPTX(*clone, target, image.ptx); !e.empty())
      return fail(e);
    if (std::string e =
            assemblePTX(target, chip, image.ptx, image.cubin, info.reports);
        !e.empty())
      return fail(e);
    info.ptx[chip] = image.ptx;
    info.cubin[chip].assign(image.cubin.begin(), image.cubin.end());
    images.push_back(std::move(image));
  }
  if (std::string e = createFatbin(target, images, info.fatbin); !e.empty())
    return fail(e);
  return success();
}

std::string mlir::attn::emitCUDAImageObject(MLIRContext *ctx,
                                            const CUDAKernelInfo &info,
                                            llvm::SmallVectorImpl<char> &obj) {
  ctx->loadDialect<LLVM::LLVMDialect>();
  OpBuilder b(ctx);
  Location loc = UnknownLoc::get(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  auto arrTy = LLVM::LLVMArrayType::get(b.getI8Type(), info.fatbin.size());
  auto image = LLVM::GlobalOp::create(
      b, loc, arrTy, /*isConstant=*/true, LLVM::Linkage::External,
      info.symbol + "_cuda_image",
      b.getStringAttr(llvm::StringRef(info.fatbin.data(), info.fatbin.size())),
      /*alignment=*/16);
  (void)image;
  return emitObject(*module, CPUTarget::host(), obj);
}

std::string mlir::attn::generateCUDAHeader(const CUDAKernelInfo &info) {
  std::string n = info.name,
              guard = "ATTN_CUDA_KERNEL_" + llvm::StringRef(n).upper() + "_H";
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "/* Generated by attnc from spec '" << n << "' for CUDA. Do not edit.\n"
     << " *\n"
     << " * Link the object attnc wrote (it embeds the fatbin) with this\n"
     << " * header and the attnc runtime (libattn_runtime); the runtime loads\n"
     << " * the CUDA driver with dlopen, so nothing else is needed to link.\n"
     << " *\n"
     << " * attn_cuda_run_" << n << "(q, k, v";
  for (size_t i = 3; i < info.signature.inputs.size(); ++i)
    os << ", " << headerParamName(info.signature.inputs[i], i);
  os << ", o, lse, stream): device tensors (kDLCUDA)\n";
  writeSignatureComment(os, info.signature, info.hasLse);
  os << " *   stream: a CUstream (NULL: the default stream); the launch is\n"
     << " *   asynchronous on it.\n"
     << " * Kernels (ptxas -v):\n";
  for (const CUDAKernelReport &r : info.reports)
    os << " *   " << r.chip << " " << r.function << ": " << r.registers
       << " registers, " << r.spillStores << "/" << r.spillLoads
       << " bytes spilled (st/ld)\n";
  os << " */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include \"attn/runtime.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n"
     << "#endif\n\n"
     << "extern const unsigned char " << info.symbol << "_cuda_image[];\n\n";
  writeInputDescs(os, info.symbol + "_cuda", info.signature);
  os << "static const attn_cuda_kernel_variant_t " << info.symbol
     << "_cuda_variants[] = {\n";
  for (const CUDAKernelVariant &v : info.variants)
    os << "  {\"" << v.function << "\", " << v.maxHeadDim << ", " << v.blockQ
       << ", " << v.numThreads << ", " << v.sharedBytes << "},\n";
  os << "};\n"
     << "static const attn_cuda_kernel_desc_t " << info.symbol
     << "_cuda_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << info.symbol << "_cuda_image, " << info.fatbin.size()
     << "u, " << info.variants.size() << ", " << info.symbol
     << "_cuda_variants, " << info.signature.inputs.size() << ", "
     << info.symbol << "_cuda_inputs, " << (info.hasLse ? 1 : 0) << "};\n\n"
     << "static inline attn_status_t attn_cuda_run_" << n << "(";
  writeEntryParams(os, info.signature);
  os << "DLTensor *o, DLTensor *lse, void *stream) {\n";
  writeInputsArray(os, info.signature);
  os << "  return attn_cuda_run(&" << info.symbol
     << "_cuda_kernel, inputs, o, lse, stream);\n}\n\n"
     << "#ifdef __cplusplus\n} /* extern \"C\" */\n#endif\n\n#endif /* "
     << guard << " */\n";
  return s;
}
