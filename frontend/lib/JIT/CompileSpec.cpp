//===- CompileSpec.cpp - spec module to CPU kernel artifacts --------------===//

#include "attn/Frontend/CompileSpec.h"
#include "attn/JIT/Compiler.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"

using namespace mlir;
using namespace mlir::attn;

LogicalResult mlir::attn::lowerSpec(ModuleOp module, const CPUTarget &target,
                                    const CPUPipelineOptions &schedule,
                                    Stage stop, KernelInfo &info) {
  CPUPipelineOptions options = schedule;
  options.vectorWidth = target.vectorWidth();
  options.bf16Dot = target.bf16Dot() != CPUTarget::BF16Dot::Off;
  options.bf16DotPV = target.bf16Dot() == CPUTarget::BF16Dot::All;
  MLIRContext *ctx = module.getContext();
  PassManager tiling(ctx);
  buildAttnCPUPipeline(tiling, options, std::min(stop, Stage::Tiled));
  if (failed(tiling.run(module)))
    return failure();
  for (SpecOp spec : module.getBody()->getOps<SpecOp>()) {
    AttentionOp att = spec.getAttention();
    info.name = spec.getSymName().str();
    info.symbol = "attn_" + info.name;
    // A linear kernel's work item is a whole (b, h) sequence: one "tile"
    // longer than any N.
    info.tileQ = att && att.getScheduleAttr() ? att.getScheduleAttr().getTileQ()
                                              : (int64_t(1) << 30);
    info.hasLse = att && att.getNormalizer() == NormalizerKind::softmax;
    info.signature = getSignature(spec);
  }
  if (stop <= Stage::Tiled)
    return success();
  PassManager rest(ctx);
  buildAttnCPUPipeline(rest, options, stop, Stage::Tiled);
  return rest.run(module);
}

LogicalResult mlir::attn::compileToObject(ModuleOp module,
                                          const CPUTarget &target,
                                          const CPUPipelineOptions &schedule,
                                          KernelInfo &info,
                                          llvm::SmallVectorImpl<char> &object,
                                          std::string &error) {
  if (failed(lowerSpec(module, target, schedule, Stage::LLVM, info))) {
    error = "lowering failed";
    return failure();
  }
  // Embed the signature so a cached library describes itself.
  std::string text =
      ::attn::signatureText(info.name, info.tileQ, info.hasLse, info.signature);
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto arrTy = LLVM::LLVMArrayType::get(b.getI8Type(), text.size() + 1);
  LLVM::GlobalOp::create(b, module.getLoc(), arrTy, /*isConstant=*/true,
                         LLVM::Linkage::External, info.symbol + "_signature",
                         b.getStringAttr(text + '\0'));
  error = emitObject(module, target, object);
  return success(error.empty());
}

const char *mlir::attn::elemTypeEnum(::attn::ElemType t) {
  switch (t) {
  case ::attn::ElemType::F32:
    return "ATTN_F32";
  case ::attn::ElemType::BF16:
    return "ATTN_BF16";
  case ::attn::ElemType::F16:
    return "ATTN_F16";
  case ::attn::ElemType::I32:
    return "ATTN_I32";
  }
  return "ATTN_F32";
}

std::string mlir::attn::headerParamName(const ::attn::InputSig &in,
                                        size_t index) {
  bool canonical =
      index < 3 && (in.name == "q" || in.name == "k" || in.name == "v");
  return canonical ? in.name : "aux_" + in.name;
}

void mlir::attn::writeSignatureComment(llvm::raw_ostream &os,
                                       const ::attn::Signature &signature,
                                       bool hasLse) {
  for (size_t i = 0; i < signature.inputs.size(); ++i) {
    const ::attn::InputSig &in = signature.inputs[i];
    std::string param = headerParamName(in, i);
    os << " *   " << param << ": " << ::attn::elemTypeName(in.type) << " "
       << ::attn::dimsString(in);
    if (param != in.name)
      os << " (input '" << in.name << "')";
    if (in.name == "state" || in.name == "zstate")
      os << " (read as the initial state, overwritten with the final one)";
    os << "\n";
  }
  os << " *   o: f32 [B, Hq, N, Dv] (written)\n"
     << " *   lse: f32 [B, Hq, N] (written"
     << (hasLse ? "; may be NULL" : "; must be NULL: not a softmax spec")
     << ")\n";
}

void mlir::attn::writeEntryParams(llvm::raw_ostream &os,
                                  const ::attn::Signature &signature) {
  for (size_t i = 0; i < signature.inputs.size(); ++i)
    os << "const DLTensor *" << headerParamName(signature.inputs[i], i) << ", ";
}

void mlir::attn::writeInputsArray(llvm::raw_ostream &os,
                                  const ::attn::Signature &signature) {
  os << "  const DLTensor *inputs[] = {";
  for (size_t i = 0; i < signature.inputs.size(); ++i)
    os << (i ? ", " : "") << headerParamName(signature.inputs[i], i);
  os << "};\n";
}

void mlir::attn::writeInputDescs(llvm::raw_ostream &os, llvm::StringRef sym,
                                 const ::attn::Signature &signature) {
  std::string symbol = sym.str();
  for (const ::attn::InputSig &in : signature.inputs) {
    os << "static const char *const " << symbol << "_dims_" << in.name
       << "[] = {";
    bool anyFixed = false;
    for (size_t d = 0; d < in.dims.size(); ++d) {
      os << (d ? ", " : "");
      if (in.dims[d].symbol.empty()) {
        os << "0";
        anyFixed = true;
      } else {
        os << "\"" << in.dims[d].symbol << "\"";
      }
    }
    os << "};\n";
    if (anyFixed) {
      os << "static const int64_t " << symbol << "_sizes_" << in.name
         << "[] = {";
      for (size_t d = 0; d < in.dims.size(); ++d)
        os << (d ? ", " : "") << in.dims[d].size;
      os << "};\n";
    }
  }
  os << "static const attn_input_desc_t " << symbol << "_inputs[] = {\n";
  for (const ::attn::InputSig &in : signature.inputs) {
    bool anyFixed = llvm::any_of(
        in.dims, [](const ::attn::DimRef &d) { return d.symbol.empty(); });
    os << "  {\"" << in.name << "\", " << elemTypeEnum(in.type) << ", "
       << in.dims.size() << ", " << symbol << "_dims_" << in.name << ", "
       << (anyFixed ? symbol + "_sizes_" + in.name : std::string("0"))
       << "},\n";
  }
  os << "};\n";
}

std::string mlir::attn::generateHeader(const KernelInfo &info) {
  std::string n = info.name,
              guard = "ATTN_KERNEL_" + llvm::StringRef(n).upper() + "_H";
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "/* Generated by attnc from spec '" << n << "'. Do not edit.\n"
     << " *\n"
     << " * Link the object attnc wrote with this header and the attnc "
        "runtime\n"
     << " * (libattn_runtime); no MLIR or LLVM is needed at run time.\n"
     << " *\n"
     << " * attn_run_" << n << "(q, k, v";
  for (size_t i = 3; i < info.signature.inputs.size(); ++i)
    os << ", " << headerParamName(info.signature.inputs[i], i);
  os << ", o, lse, options):\n";
  writeSignatureComment(os, info.signature, info.hasLse);
  os << " * Returns ATTN_OK or a status with attn_last_error() set.\n */\n"
     << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include \"attn/runtime.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n"
     << "#endif\n\n"
     << "void " << info.symbol
     << "(void **args, int64_t begin, int64_t end);\n\n";
  writeInputDescs(os, info.symbol, info.signature);
  os << "static const attn_kernel_desc_t " << info.symbol << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << info.tileQ << ", " << info.signature.inputs.size()
     << ", " << info.symbol << "_inputs, " << (info.hasLse ? 1 : 0) << ", "
     << info.symbol << "};\n\n"
     << "static inline attn_status_t attn_run_" << n << "(";
  writeEntryParams(os, info.signature);
  os << "DLTensor *o, DLTensor *lse, const attn_run_options_t *options) {\n";
  writeInputsArray(os, info.signature);
  os << "  return attn_cpu_run(&" << info.symbol
     << "_kernel, inputs, o, lse, options);\n}\n\n"
     << "#ifdef __cplusplus\n} /* extern \"C\" */\n#endif\n\n#endif /* "
     << guard << " */\n";
  return s;
}
