//===- CPUBackend.cpp - the host CPU behind the backend seam --------------===//
//
// Kernels are LLVM-dialect functions `attn_<name>(args, begin, end)` over
// work items (runtime.h), emitted as a position-independent object; the JIT
// links it into a shared library, the AOT path writes the object and a C
// header whose entry calls attn_cpu_run.
//
//===----------------------------------------------------------------------===//

#include "attn/Conversion/Passes.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Target/Backend.h"
#include "attn/Target/CPUTarget.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"
#include <map>
#include <utility>
#include <vector>

using namespace mlir;
using namespace mlir::attn;

namespace {

class CPUBackend final : public Backend {
public:
  llvm::StringRef name() const override { return "cpu"; }
  llvm::StringRef targetSyntax() const override {
    return "cpu (the host) or cpu:NAME, e.g. cpu:skylake-avx512, "
           "cpu:x86-64-v3";
  }
  int32_t deviceType() const override { return kDLCPU; }
  llvm::StringRef codeSuffix() const override { return ".so"; }
  llvm::StringRef kernelStageName() const override { return "cpu"; }
  std::unique_ptr<BackendTarget> parseTarget(llvm::StringRef target,
                                             std::string &error) const override;
};

/// The runtime descriptor of a loaded CPU kernel library.
class CPUBinding final : public KernelBinding {
public:
  CPUBinding(std::unique_ptr<LoadedLibrary> lib, KernelInfo info)
      : lib(std::move(lib)), info(std::move(info)) {}
  /// Binds the entry and its descriptor; "" or why not.
  std::string bind();
  attn_kernel_target_t target() const override {
    return {kDLCPU, info.backward ? nullptr : &desc};
  }
  const attn_backward_desc_t *backwardDesc() const override {
    return info.backward ? &bdesc : nullptr;
  }

private:
  std::unique_ptr<LoadedLibrary> lib;
  KernelInfo info;
  std::unique_ptr<InputDescTable> inputs;
  attn_kernel_desc_t desc{};
  attn_backward_desc_t bdesc{};
  std::vector<int32_t> gradIndices;
};

class CPUBackendTarget final : public BackendTarget {
public:
  CPUBackendTarget(const Backend &backend, CPUTarget machine)
      : backend_(backend), machine(std::move(machine)) {}
  const Backend &backend() const override { return backend_; }
  std::string key() const override { return machine.key(); }
  std::string checkSchedule(const Schedule &schedule) const override;
  Tolerance tolerance(const KernelInfo &info) const override;
  LogicalResult lower(ModuleOp module, const Schedule &schedule, Stage stop,
                      KernelInfo &info, std::string &error) const override;
  LogicalResult compile(ModuleOp module, const Schedule &schedule,
                        llvm::StringRef scratchDir, KernelImage &image,
                        std::string &error) const override;
  LogicalResult emitObject(ModuleOp module, const Schedule &schedule,
                           KernelInfo &info,
                           llvm::SmallVectorImpl<char> &object,
                           std::string &header, std::string &report,
                           std::string &error) const override;
  llvm::ArrayRef<llvm::StringRef> emitFormats() const override {
    static const llvm::StringRef formats[] = {"llvm-ir"};
    return formats;
  }
  LogicalResult emit(ModuleOp module, const Schedule &schedule,
                     llvm::StringRef format, std::string &out,
                     std::string &report, std::string &error) const override;
  std::unique_ptr<KernelBinding> load(const KernelImage &image,
                                      const std::string &key,
                                      const LoadHost &host,
                                      std::string &error) const override;

private:
  CPUPipelineOptions pipelineOptions(const Schedule &schedule) const;
  LogicalResult compileObject(ModuleOp module, const Schedule &schedule,
                              KernelInfo &info,
                              llvm::SmallVectorImpl<char> &object,
                              std::string &error) const;
  const Backend &backend_;
  CPUTarget machine;
};

} // namespace

namespace mlir::attn {
std::unique_ptr<Backend> createCPUBackend();
} // namespace mlir::attn

std::unique_ptr<BackendTarget>
CPUBackend::parseTarget(llvm::StringRef target, std::string &error) const {
  CPUTarget machine;
  if (!CPUTarget::parse(target, machine, error))
    return nullptr;
  return std::make_unique<CPUBackendTarget>(*this, std::move(machine));
}

std::unique_ptr<Backend> mlir::attn::createCPUBackend() {
  return std::make_unique<CPUBackend>();
}

std::string CPUBackendTarget::checkSchedule(const Schedule &schedule) const {
  if (!schedule.elementType.empty())
    return "the CPU backend takes q, k, v types from the spec (declare them "
           "there); an element type for undeclared ones is for GPU targets";
  if (!schedule.headDims.empty())
    return "head-dim variants are for GPU targets (CPU kernels take any head "
           "dim)";
  return "";
}

Tolerance CPUBackendTarget::tolerance(const KernelInfo &info) const {
  // bf16 q/k/v of a softmax-family spec on an AVX512-BF16 CPU (the default
  // ATTN_BF16_DOT=all): P is rounded to bf16 for the P·V dot products (as
  // GPU kernels do), so o carries bf16-level error; lse sums the unrounded
  // P and keeps the fp32 tolerance.
  bool bf16Inputs = llvm::any_of(info.signature.inputs, [](const auto &in) {
    return (in.name == "q" || in.name == "k" || in.name == "v") &&
           in.type == ::attn::ElemType::BF16;
  });
  Tolerance t;
  if (bf16Inputs && !info.linear &&
      machine.bf16Dot() == CPUTarget::BF16Dot::All) {
    t.o = 1e-2;
    t.note = "bf16 dot products with P rounded to bf16: tolerance 1e-2 on o, "
             "1e-4 on lse";
  }
  return t;
}

CPUPipelineOptions
CPUBackendTarget::pipelineOptions(const Schedule &schedule) const {
  CPUPipelineOptions options;
  options.tileQ = schedule.tileQ;
  options.tileKV = schedule.tileKV;
  options.linearChunk = schedule.linearChunk;
  options.linearState = schedule.linearState;
  options.pagedKV = schedule.pagedKV;
  options.decodeKernel = schedule.decodeKernels;
  options.backward = schedule.backward;
  options.vectorWidth = machine.vectorWidth();
  options.bf16Dot = machine.bf16Dot() != CPUTarget::BF16Dot::Off;
  options.bf16DotPV = machine.bf16Dot() == CPUTarget::BF16Dot::All;
  options.debugTileStats = machine.debugTileStats;
  return options;
}

LogicalResult CPUBackendTarget::lower(ModuleOp module, const Schedule &schedule,
                                      Stage stop, KernelInfo &info,
                                      std::string &) const {
  CPUPipelineOptions options = pipelineOptions(schedule);
  MLIRContext *ctx = module.getContext();
  PassManager tiling(ctx);
  buildAttnCPUPipeline(tiling, options, std::min(stop, Stage::Tiled));
  if (failed(tiling.run(module)))
    return failure();
  info = describeSpec(module);
  // A linear kernel's work item is a whole (b, h) sequence: one "tile"
  // longer than any N.
  info.tileQ = int64_t(1) << 30;
  for (SpecOp spec : module.getBody()->getOps<SpecOp>()) {
    if (TiledAttentionOp tiled = spec.getTiledAttention())
      info.tileQ = tiled.getSchedule().getTileQ();
    if (auto tiled = spec.getTiledAttentionBackward())
      info.tileQ = tiled.getSchedule().getTileQ();
  }
  if (stop <= Stage::Tiled)
    return success();
  PassManager rest(ctx);
  buildAttnCPUPipeline(rest, options, stop, Stage::Tiled);
  if (failed(rest.run(module)))
    return failure();
  if (stop == Stage::LLVM && module.lookupSymbol(info.symbol + "_decode"))
    info.decodeLanes = options.vectorWidth;
  if (stop == Stage::LLVM && module.lookupSymbol(info.symbol + "_decode_wide"))
    info.decodeWideLanes = options.vectorWidth * kCPUDecodeWideVectors;
  if (stop == Stage::LLVM && module.lookupSymbol(info.symbol + "_paged"))
    info.paged = true;
  return success();
}

LogicalResult CPUBackendTarget::compileObject(
    ModuleOp module, const Schedule &schedule, KernelInfo &info,
    llvm::SmallVectorImpl<char> &object, std::string &error) const {
  if (failed(lower(module, schedule, Stage::LLVM, info, error))) {
    if (error.empty())
      error = "lowering failed";
    return failure();
  }
  // Embed the signature so that a library describes itself.
  std::string text = signatureText(info);
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto arrTy = LLVM::LLVMArrayType::get(b.getI8Type(), text.size() + 1);
  LLVM::GlobalOp::create(
      b, module.getLoc(), arrTy, /*isConstant=*/true, LLVM::Linkage::External,
      info.symbol + (info.backward ? "_backward" : "") + "_signature",
      b.getStringAttr(text + '\0'));
  error = mlir::attn::emitObject(module, machine, object);
  return success(error.empty());
}

LogicalResult CPUBackendTarget::compile(ModuleOp module,
                                        const Schedule &schedule,
                                        llvm::StringRef scratchDir,
                                        KernelImage &image,
                                        std::string &error) const {
  llvm::SmallVector<char> object;
  if (failed(compileObject(module, schedule, image.info, object, error)))
    return failure();
  std::string objPath = (scratchDir + "/kernel.o").str(),
              libPath = (scratchDir + "/kernel.so").str();
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objPath, ec);
    if (!ec)
      os.write(object.data(), object.size());
    os.close();
    if (ec || os.has_error()) {
      error =
          "cannot write " + objPath + ": " + (ec ? ec : os.error()).message();
      os.clear_error();
      return failure();
    }
  }
  if (std::string e = linkSharedLibrary(objPath, libPath); !e.empty()) {
    error = e;
    return failure();
  }
  auto lib = llvm::MemoryBuffer::getFile(libPath, /*IsText=*/false,
                                         /*RequiresNullTerminator=*/false);
  if (!lib) {
    error = "cannot read " + libPath + ": " + lib.getError().message();
    return failure();
  }
  image.code.assign((*lib)->getBufferStart(), (*lib)->getBufferEnd());
  return success();
}

/// The header of a gradients' kernel: its attn_backward_desc_t and
/// `attn_backward_<name>(q, k, v, aux..., o, lse, dout, dlse, dq, dk, dv,
/// d<aux>..., options)`.
static std::string cpuBackwardHeader(const KernelInfo &info) {
  std::string n = info.name, guard = "ATTN_KERNEL_" +
                                     llvm::StringRef(n).upper() + "_BACKWARD_H";
  std::string bsym = info.symbol + "_backward";
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "/* Generated by attnc from spec '" << n
     << "' (the gradients, attnc --backward). Do not edit.\n *\n"
     << " * Link the object attnc wrote with this header and the attnc "
        "runtime\n"
     << " * (libattn_runtime); no MLIR or LLVM is needed at run time.\n *\n"
     << " * attn_backward_" << n
     << "(q, k, v, aux..., o, lse, dout, dlse, dq, dk, dv, d<aux>..., "
        "options)\n"
     << " * computes the gradients of sum(o * dout) + sum(lse * dlse) from "
        "the\n"
     << " * forward's inputs and outputs (docs/language.md section 15):\n";
  header::writeSignatureComment(os, info.signature, info.hasLse);
  os << " *   dout: f32 [B, Hq, N, Dv]; dlse: f32 [B, Hq, N] or NULL\n"
     << " *   dq, dk, dv: f32, the shapes of q, k, v\n";
  for (const std::string &g : info.gradInputs)
    os << " *   d" << g << ": f32, the shape of " << g << "\n";
  os << " * Returns ATTN_OK or a status with attn_last_error() set "
        "(attn_cpu_run_backward).\n */\n";
  header::openGuard(os, guard);
  os << "void " << bsym << "(void **args, int64_t begin, int64_t end);\n\n";
  // Its own names, so that the forward's header can be included beside it.
  header::writeInputDescs(os, bsym, info.signature);
  std::vector<int32_t> gradIdx = header::writeGradInputs(os, bsym, info);
  os << "static const attn_backward_desc_t " << bsym << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << info.signature.inputs.size() << ", " << bsym
     << "_inputs, " << (info.hasLse ? 1 : 0) << ", " << gradIdx.size() << ", "
     << (gradIdx.empty() ? "NULL" : bsym + "_grad_inputs") << ", " << bsym
     << "};\n\n";
  header::writeBackwardEntry(os, info, gradIdx, "attn_backward_" + n,
                             "const attn_run_options_t *options",
                             "attn_cpu_run_backward", bsym + "_kernel",
                             "options");
  header::closeGuard(os, guard);
  header::markForwardOutputsAsInputs(s);
  return s;
}

/// The optional entry points of a forward CPU kernel beside attn_<name>, in
/// attn_kernel_desc_t's order: each symbol suffix and whether it exists.
static std::vector<std::pair<const char *, bool>>
optionalEntryPoints(const KernelInfo &info) {
  bool decode = info.decodeLanes, wide = info.decodeWideLanes;
  return {{"_decode", decode},
          {"_paged", info.paged},
          {"_paged_decode", info.paged && decode},
          {"_decode_wide", wide},
          {"_paged_decode_wide", info.paged && wide}};
}

static std::string cpuHeader(const KernelInfo &info) {
  if (info.backward)
    return cpuBackwardHeader(info);
  std::string n = info.name,
              guard = "ATTN_KERNEL_" + llvm::StringRef(n).upper() + "_H";
  std::string s;
  llvm::raw_string_ostream os(s);
  header::writeCommentOpening(
      os, info, "",
      " * Link the object attnc wrote with this header and the attnc runtime\n"
      " * (libattn_runtime); no MLIR or LLVM is needed at run time.\n",
      "attn_run_" + n, "options", "");
  os << " * Returns ATTN_OK or a status with attn_last_error() set.\n */\n";
  header::openGuard(os, guard);
  os << "void " << info.symbol
     << "(void **args, int64_t begin, int64_t end);\n";
  auto entries = optionalEntryPoints(info);
  for (auto [suffix, present] : entries)
    if (present)
      os << "void " << info.symbol << suffix
         << "(void **args, int64_t begin, int64_t end);\n";
  os << "\n";
  // Each optional entry point's name, or NULL.
  std::map<std::string, std::string> fn;
  for (auto [suffix, present] : entries)
    fn[suffix] = present ? info.symbol + suffix : "NULL";
  header::writeInputDescs(os, info.symbol, info.signature);
  os << "static const attn_kernel_desc_t " << info.symbol << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << info.tileQ << ", " << info.signature.inputs.size()
     << ", " << info.symbol << "_inputs, " << (info.hasLse ? 1 : 0) << ", "
     << info.symbol << ", " << fn["_decode"] << ", " << info.decodeLanes << ", "
     << fn["_paged"] << ", " << fn["_paged_decode"] << ", "
     << fn["_decode_wide"] << ", " << info.decodeWideLanes << ", "
     << fn["_paged_decode_wide"] << "};\n\n"
     << "static inline attn_status_t attn_run_" << n << "(";
  header::writeEntryParams(os, info.signature);
  os << "DLTensor *o, DLTensor *lse, const attn_run_options_t *options) {\n";
  header::writeInputsArray(os, info.signature);
  os << "  return attn_cpu_run(&" << info.symbol
     << "_kernel, inputs, o, lse, options);\n}\n\n";
  header::closeGuard(os, guard);
  return s;
}

LogicalResult CPUBackendTarget::emitObject(ModuleOp module,
                                           const Schedule &schedule,
                                           KernelInfo &info,
                                           llvm::SmallVectorImpl<char> &object,
                                           std::string &header, std::string &,
                                           std::string &error) const {
  if (failed(compileObject(module, schedule, info, object, error)))
    return failure();
  header = cpuHeader(info);
  return success();
}

LogicalResult CPUBackendTarget::emit(ModuleOp module, const Schedule &schedule,
                                     llvm::StringRef format, std::string &out,
                                     std::string &, std::string &error) const {
  KernelInfo info;
  if (format != "llvm-ir") {
    error = "the CPU backend cannot emit '" + format.str() + "'";
    return failure();
  }
  if (failed(lower(module, schedule, Stage::LLVM, info, error)))
    return failure();
  error = emitLLVMIR(module, machine, out);
  return success(error.empty());
}

std::string CPUBinding::bind() {
  std::string symbol = info.symbol + (info.backward ? "_backward" : "");
  void *fn = lib->symbol(symbol);
  if (!fn)
    return "the kernel library lacks " + symbol;
  inputs = std::make_unique<InputDescTable>(info.signature);
  if (info.backward) {
    gradIndices = gradientInputIndices(info);
    if (gradIndices.size() != info.gradInputs.size())
      return "the kernel's gradient inputs are not among its inputs";
    bdesc = attn_backward_desc_t{
        ATTN_ABI_VERSION,    info.name.c_str(),
        inputs->size(),      inputs->data(),
        info.hasLse ? 1 : 0, static_cast<int32_t>(gradIndices.size()),
        gradIndices.data(),  reinterpret_cast<attn_cpu_kernel_fn>(fn)};
    return "";
  }
  // Each optional entry point the info names, resolved (NULL where absent).
  std::map<std::string, attn_cpu_kernel_fn> entry;
  for (auto [suffix, present] : optionalEntryPoints(info)) {
    void *sym = present ? lib->symbol(info.symbol + suffix) : nullptr;
    if (present && !sym)
      return "the kernel library lacks " + info.symbol + suffix;
    entry[suffix] = reinterpret_cast<attn_cpu_kernel_fn>(sym);
  }
  desc = attn_kernel_desc_t{ATTN_ABI_VERSION,
                            info.name.c_str(),
                            static_cast<int32_t>(info.tileQ),
                            inputs->size(),
                            inputs->data(),
                            info.hasLse ? 1 : 0,
                            reinterpret_cast<attn_cpu_kernel_fn>(fn),
                            entry["_decode"],
                            static_cast<int32_t>(info.decodeLanes),
                            entry["_paged"],
                            entry["_paged_decode"],
                            entry["_decode_wide"],
                            static_cast<int32_t>(info.decodeWideLanes),
                            entry["_paged_decode_wide"]};
  return "";
}

std::unique_ptr<KernelBinding>
CPUBackendTarget::load(const KernelImage &image, const std::string &key,
                       const LoadHost &host, std::string &error) const {
  std::unique_ptr<LoadedLibrary> lib =
      host.loadSharedLibrary(image.code, key, error);
  if (!lib)
    return nullptr;
  auto binding = std::make_unique<CPUBinding>(std::move(lib), image.info);
  if (std::string e = binding->bind(); !e.empty()) {
    error = e;
    return nullptr;
  }
  return binding;
}
