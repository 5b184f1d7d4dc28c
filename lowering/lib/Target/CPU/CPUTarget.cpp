//===- CPUTarget.cpp - LLVM-dialect kernels to host objects ---------------===//

#include "attn/Target/CPUTarget.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"
#include <cstdlib>
#include <mutex>

using namespace mlir;
using namespace mlir::attn;

#ifndef ATTN_LLD_PATH
#define ATTN_LLD_PATH "ld.lld"
#endif

static void initLLVM() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

CPUTarget CPUTarget::host() {
  CPUTarget t;
  t.triple = llvm::sys::getDefaultTargetTriple();
  t.cpu = llvm::sys::getHostCPUName().str();
  std::vector<std::string> feats;
  for (const auto &f : llvm::sys::getHostCPUFeatures())
    feats.push_back((f.second ? "+" : "-") + f.first().str());
  std::sort(feats.begin(), feats.end());
  t.features = llvm::join(feats, ",");
  return t;
}

bool CPUTarget::parse(llvm::StringRef spec, CPUTarget &out,
                      std::string &error) {
  out = host();
  if (const char *mode = std::getenv("ATTN_BF16_DOT")) {
    llvm::StringRef m(mode);
    if (m == "all" || m.empty()) {
      out.bf16DotMode = BF16Dot::All;
    } else if (m == "qk") {
      out.bf16DotMode = BF16Dot::QK;
    } else if (m == "off") {
      out.bf16DotMode = BF16Dot::Off;
    } else {
      error = "ATTN_BF16_DOT=" + m.str() + ": expected all, qk or off";
      return false;
    }
  }
  if (const char *stats = std::getenv("ATTN_DEBUG_TILE_STATS"))
    out.debugTileStats = *stats && llvm::StringRef(stats) != "0";
  if (spec == "cpu" || spec == "cpu:native")
    return true;
  if (!spec.consume_front("cpu:")) {
    error = "unknown target '" + spec.str() +
            "' (expected cpu, cpu:NAME such as cpu:skylake-avx512, or "
            "cuda[:sm_XX,...])";
    return false;
  }
  initLLVM();
  std::string err;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(llvm::Triple(out.triple), err);
  if (!target) {
    error = err;
    return false;
  }
  out.cpu = spec.str();
  out.features = "";
  // Ask with the generic CPU: creating one for an unknown name prints a
  // warning to stderr.
  std::unique_ptr<llvm::MCSubtargetInfo> sti(
      target->createMCSubtargetInfo(llvm::Triple(out.triple), "", ""));
  if (!sti || !sti->isCPUStringValid(out.cpu)) {
    error = "unknown CPU '" + out.cpu + "' for " + out.triple;
    return false;
  }
  return true;
}

bool CPUTarget::hasFeature(llvm::StringRef f) const {
  if (!features.empty()) {
    llvm::SmallVector<llvm::StringRef> list;
    llvm::StringRef(features).split(list, ',');
    return llvm::is_contained(list, ("+" + f).str());
  }
  // A named CPU without explicit features: ask LLVM what it implies.
  initLLVM();
  std::string err;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(llvm::Triple(triple), err);
  if (!target)
    return false;
  std::unique_ptr<llvm::MCSubtargetInfo> sti(
      target->createMCSubtargetInfo(llvm::Triple(triple), cpu, ""));
  if (!sti)
    return false;
  for (const llvm::SubtargetFeatureKV &kv : sti->getAllProcessorFeatures())
    if (f == kv.Key)
      return sti->getFeatureBits().test(kv.Value);
  return false;
}

int64_t CPUTarget::vectorWidth() const {
  if (hasFeature("avx512f"))
    return 16;
  // Explicit features list avx and avx2 separately; a named CPU's implied
  // set is asked for avx2 only (as before).
  return hasFeature("avx2") || (!features.empty() && hasFeature("avx")) ? 8 : 4;
}

std::string CPUTarget::key() const {
  return triple + "|" + cpu + "|" + features + "|O" + std::to_string(optLevel) +
         (bf16DotMode == BF16Dot::All  ? ""
          : bf16DotMode == BF16Dot::QK ? "|bf16-dot=qk"
                                       : "|bf16-dot=off") +
         (debugTileStats ? "|tile-stats" : "");
}

static std::unique_ptr<llvm::TargetMachine>
makeTargetMachine(const CPUTarget &t, std::string &error) {
  initLLVM();
  llvm::Triple triple(t.triple.empty() ? llvm::sys::getDefaultTargetTriple()
                                       : t.triple);
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  llvm::TargetOptions options;
  // Attention kernels accumulate in fp32 and compare against a float64
  // oracle: keep IEEE semantics, but let FMAs contract.
  options.AllowFPOpFusion = llvm::FPOpFusion::Fast;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, t.cpu, t.features, options, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!tm)
    error = "cannot create a target machine for " + triple.str();
  return tm;
}

static std::unique_ptr<llvm::Module>
translate(ModuleOp module, llvm::LLVMContext &ctx, llvm::TargetMachine &tm,
          unsigned optLevel, std::string &error) {
  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  module->getContext()->appendDialectRegistry(registry);
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, ctx, "attn");
  if (!llvmModule) {
    error = "failed to translate the LLVM dialect to LLVM IR";
    return nullptr;
  }
  llvmModule->setDataLayout(tm.createDataLayout());
  llvmModule->setTargetTriple(tm.getTargetTriple());
  for (llvm::Function &f : *llvmModule) {
    if (f.isDeclaration())
      continue;
    f.addFnAttr("target-cpu", tm.getTargetCPU());
    f.addFnAttr("target-features", tm.getTargetFeatureString());
    // Only the packed entry points are the kernel's interface.
    if (!f.getName().starts_with("attn_") || f.getName().ends_with("_tiles"))
      f.setLinkage(llvm::GlobalValue::InternalLinkage);
  }
  auto transformer = makeOptimizingTransformer(optLevel, 0, &tm);
  if (llvm::Error err = transformer(llvmModule.get())) {
    error = llvm::toString(std::move(err));
    return nullptr;
  }
  return llvmModule;
}

/// Translates and optimizes `module` for `target`, then hands the LLVM
/// module and target machine to `emit`. Returns "" or an error.
static std::string withOptimizedModule(
    ModuleOp module, const CPUTarget &target,
    llvm::function_ref<std::string(llvm::Module &, llvm::TargetMachine &)>
        emit) {
  std::string error;
  auto tm = makeTargetMachine(target, error);
  if (!tm)
    return error;
  llvm::LLVMContext ctx;
  auto llvmModule = translate(module, ctx, *tm, target.optLevel, error);
  if (!llvmModule)
    return error;
  return emit(*llvmModule, *tm);
}

std::string mlir::attn::emitLLVMIR(ModuleOp module, const CPUTarget &target,
                                   std::string &ir) {
  return withOptimizedModule(module, target,
                             [&](llvm::Module &m, llvm::TargetMachine &) {
                               llvm::raw_string_ostream os(ir);
                               m.print(os, nullptr);
                               return std::string();
                             });
}

std::string mlir::attn::emitObject(ModuleOp module, const CPUTarget &target,
                                   llvm::SmallVectorImpl<char> &object) {
  return withOptimizedModule(
      module, target, [&](llvm::Module &m, llvm::TargetMachine &tm) {
        llvm::raw_svector_ostream os(object);
        llvm::legacy::PassManager pm;
        if (tm.addPassesToEmitFile(pm, os, nullptr,
                                   llvm::CodeGenFileType::ObjectFile))
          return std::string("the target cannot emit object files");
        pm.run(m);
        return std::string();
      });
}

std::string mlir::attn::linkSharedLibrary(llvm::StringRef objectPath,
                                          llvm::StringRef libraryPath) {
  std::string lld = ATTN_LLD_PATH;
  if (auto found = llvm::sys::findProgramByName(lld))
    lld = *found;
  // libc symbols LLVM may introduce (memset, memcpy) resolve at load time.
  llvm::SmallVector<llvm::StringRef> args = {lld, "-shared", "-o", libraryPath,
                                             objectPath};
  std::string msg;
  int rc = llvm::sys::ExecuteAndWait(lld, args, std::nullopt, {}, 0, 0, &msg);
  if (rc != 0)
    return "linking " + libraryPath.str() + " with " + lld + " failed" +
           (msg.empty() ? "" : ": " + msg);
  return "";
}
