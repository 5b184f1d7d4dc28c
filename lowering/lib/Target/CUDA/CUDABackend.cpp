//===- CUDABackend.cpp - NVIDIA GPUs behind the backend seam --------------===//
//
// Kernels are gpu.module functions lowered to NVVM, one per padded head dim
// (a "variant"), assembled per chip by ptxas and bundled in a fatbin with
// the newest PTX. The runtime launches them through the driver API
// (attn_cuda_run), which it loads with dlopen.
//
//===----------------------------------------------------------------------===//

#include "attn/Target/Backend.h"
#include "attn/Target/CPUTarget.h"
#include "attn/Target/CUDATarget.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"
#include <map>
#include <mutex>

using namespace mlir;
using namespace mlir::attn;

namespace {

/// One head-dim variant of a CUDA kernel (attn_cuda_kernel_variant_t).
struct Variant {
  std::string function;
  int64_t maxHeadDim = 0, blockQ = 0, numThreads = 0, sharedBytes = 0;
  /// Global scratch (the linear family's backward): attn.scratch_*.
  int64_t scratchStateFloats = 0, scratchFixedFloats = 0;
};

/// What compiling for every chip produced.
struct CUDAOutputs {
  std::vector<Variant> variants; ///< by max head dim, ascending
  std::vector<CUDAKernelReport> reports;
  std::map<std::string, std::string> ptx, cubin; ///< per chip
  std::vector<char> fatbin;
};

class CUDABackend final : public Backend {
public:
  llvm::StringRef name() const override { return "cuda"; }
  llvm::StringRef targetSyntax() const override {
    return "cuda (sm_90) or cuda:sm_80,sm_90,...";
  }
  int32_t deviceType() const override { return kDLCUDA; }
  llvm::StringRef codeSuffix() const override { return ".fatbin"; }
  llvm::StringRef kernelStageName() const override { return "gpu"; }
  std::unique_ptr<BackendTarget> parseTarget(llvm::StringRef target,
                                             std::string &error) const override;
};

class CUDABinding final : public KernelBinding {
public:
  CUDABinding(KernelInfo info, std::vector<Variant> variants,
              const std::vector<char> &image);
  /// A gradients' kernel has no forward entry (as on the CPU).
  attn_kernel_target_t target() const override {
    return {kDLCUDA, info.backward ? nullptr : &desc};
  }
  const attn_cuda_backward_desc_t *cudaBackwardDesc() const override {
    return info.backward ? &bdesc : nullptr;
  }

private:
  KernelInfo info;
  std::vector<Variant> variants;
  std::vector<attn_cuda_kernel_variant_t> cVariants;
  InputDescTable inputs;
  std::vector<int32_t> gradIndices;
  attn_cuda_kernel_desc_t desc{};
  attn_cuda_backward_desc_t bdesc{};
};

class CUDABackendTarget final : public BackendTarget {
public:
  CUDABackendTarget(const Backend &backend, CUDATarget gpus)
      : backend_(backend), gpus(std::move(gpus)) {}
  const Backend &backend() const override { return backend_; }
  std::string key() const override { return gpus.key(); }
  std::string checkSchedule(const Schedule &schedule) const override;
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
    static const llvm::StringRef formats[] = {"ptx", "cubin", "fatbin"};
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
  CUDAPipelineOptions pipelineOptions(const Schedule &schedule,
                                      llvm::StringRef chip) const;
  LogicalResult lowerWithVariants(ModuleOp module, const Schedule &schedule,
                                  Stage stop, KernelInfo &info,
                                  std::vector<Variant> &variants) const;
  LogicalResult compileAll(ModuleOp module, const Schedule &schedule,
                           KernelInfo &info, CUDAOutputs &out,
                           std::string &error) const;
  const Backend &backend_;
  CUDATarget gpus;
};

} // namespace

namespace mlir::attn {
std::unique_ptr<Backend> createCUDABackend();
} // namespace mlir::attn

std::unique_ptr<Backend> mlir::attn::createCUDABackend() {
  return std::make_unique<CUDABackend>();
}

std::unique_ptr<BackendTarget>
CUDABackend::parseTarget(llvm::StringRef target, std::string &error) const {
  CUDATarget gpus;
  if (!CUDATarget::parse(target, gpus, error))
    return nullptr;
  return std::make_unique<CUDABackendTarget>(*this, std::move(gpus));
}

std::string CUDABackendTarget::checkSchedule(const Schedule &schedule) const {
  if (!schedule.elementType.empty() && schedule.elementType != "bf16" &&
      schedule.elementType != "f16")
    return "CUDA kernels take bf16 or f16 q, k, v (tensor cores), not '" +
           schedule.elementType + "'";
  if (schedule.linearState)
    return "the linear state in and out (decoding) is not supported for CUDA "
           "yet (the linear-attention kernels start from a zero state); use "
           "the CPU target for decoding";
  return "";
}

CUDAPipelineOptions
CUDABackendTarget::pipelineOptions(const Schedule &schedule,
                                   llvm::StringRef chip) const {
  CUDAPipelineOptions options;
  options.chip = chip.str();
  options.features = CUDATarget::ptxFeatures(chip);
  if (schedule.tileQ > 0)
    options.tileQ = schedule.tileQ;
  else if (schedule.backward)
    // The backward keeps dK, dV, Sᵀ and dPᵀ in registers: 32 query rows
    // per step spill 376 bytes at d128 (ptxas, sm_90), 64 rows 1 KiB.
    options.tileQ = 32;
  if (schedule.tileKV > 0)
    options.tileKV = schedule.tileKV;
  if (!schedule.headDims.empty())
    options.headDims = schedule.headDims;
  if (!schedule.elementType.empty())
    options.elementType = schedule.elementType;
  options.backward = schedule.backward;
  return options;
}

LogicalResult
CUDABackendTarget::lowerWithVariants(ModuleOp module, const Schedule &schedule,
                                     Stage stop, KernelInfo &info,
                                     std::vector<Variant> &variants) const {
  MLIRContext *ctx = module.getContext();
  DialectRegistry registry;
  registerAttnCUDAExtensions(registry);
  ctx->appendDialectRegistry(registry);
  CUDAPipelineOptions options = pipelineOptions(schedule, gpus.chips.front());
  PassManager tiling(ctx);
  buildAttnCUDAPipeline(tiling, options, std::min(stop, Stage::Tiled));
  if (failed(tiling.run(module)))
    return failure();
  info = describeSpec(module);
  if (stop <= Stage::Tiled)
    return success();
  PassManager kernels(ctx);
  buildAttnCUDAPipeline(kernels, options, Stage::Kernel, Stage::Tiled);
  if (failed(kernels.run(module)))
    return failure();
  variants.clear();
  module.walk([&](gpu::GPUFuncOp fn) {
    auto get = [&](llvm::StringRef name) -> int64_t {
      auto attr = fn->getAttrOfType<IntegerAttr>(name);
      return attr ? attr.getInt() : 0;
    };
    // A backward kernel's grid runs along kv tiles (attn.block_kv rows).
    int64_t rows = fn->hasAttr("attn.backward") ? get("attn.block_kv")
                                                : get("attn.block_q");
    variants.push_back({fn.getName().str(), get("attn.max_head_dim"), rows,
                        get("attn.num_threads"), get("attn.shared_bytes"),
                        get("attn.scratch_state_floats"),
                        get("attn.scratch_fixed_floats")});
  });
  llvm::sort(variants, [](const Variant &a, const Variant &b) {
    return a.maxHeadDim < b.maxHeadDim;
  });
  if (stop <= Stage::Kernel)
    return success();
  PassManager nvvm(ctx);
  buildAttnCUDAPipeline(nvvm, options, Stage::LLVM, Stage::Kernel);
  return nvvm.run(module);
}

LogicalResult CUDABackendTarget::lower(ModuleOp module,
                                       const Schedule &schedule, Stage stop,
                                       KernelInfo &info, std::string &) const {
  std::vector<Variant> variants;
  return lowerWithVariants(module, schedule, stop, info, variants);
}

LogicalResult CUDABackendTarget::compileAll(ModuleOp module,
                                            const Schedule &schedule,
                                            KernelInfo &info, CUDAOutputs &out,
                                            std::string &error) const {
  auto fail = [&](std::string e) {
    error = std::move(e);
    return failure();
  };
  if (std::string e = gpus.checkToolkit(); !e.empty())
    return fail(e);
  if (failed(lowerWithVariants(module, schedule, Stage::Kernel, info,
                               out.variants)))
    return failure();
  std::vector<CUDAImage> images;
  for (const std::string &chip : gpus.chips) {
    OwningOpRef<ModuleOp> clone = module.clone();
    PassManager nvvm(module.getContext());
    buildAttnCUDAPipeline(nvvm, pipelineOptions(schedule, chip), Stage::LLVM,
                          Stage::Kernel);
    if (failed(nvvm.run(*clone)))
      return failure();
    CUDAImage image;
    image.chip = chip;
    if (std::string e = translateToPTX(*clone, gpus, image.ptx); !e.empty())
      return fail(e);
    if (std::string e =
            assemblePTX(gpus, chip, image.ptx, image.cubin, out.reports);
        !e.empty())
      return fail(e);
    out.ptx[chip] = image.ptx;
    out.cubin[chip].assign(image.cubin.begin(), image.cubin.end());
    images.push_back(std::move(image));
  }
  if (std::string e = createFatbin(gpus, images, out.fatbin); !e.empty())
    return fail(e);
  return success();
}

/// A variant as a meta line: "variant FUNCTION HEADDIM BLOCKQ THREADS SMEM
/// SCRATCHSTATE SCRATCHFIXED".
static std::string variantLine(const Variant &v) {
  return "variant " + v.function + " " + std::to_string(v.maxHeadDim) + " " +
         std::to_string(v.blockQ) + " " + std::to_string(v.numThreads) + " " +
         std::to_string(v.sharedBytes) + " " +
         std::to_string(v.scratchStateFloats) + " " +
         std::to_string(v.scratchFixedFloats);
}

static bool parseVariantLine(llvm::StringRef line, Variant &v) {
  if (!line.consume_front("variant "))
    return false;
  llvm::SmallVector<llvm::StringRef> f;
  line.split(f, ' ');
  if (f.size() != 7 || f[0].empty() || f[1].getAsInteger(10, v.maxHeadDim) ||
      f[2].getAsInteger(10, v.blockQ) || f[3].getAsInteger(10, v.numThreads) ||
      f[4].getAsInteger(10, v.sharedBytes) ||
      f[5].getAsInteger(10, v.scratchStateFloats) ||
      f[6].getAsInteger(10, v.scratchFixedFloats) || v.scratchStateFloats < 0 ||
      v.scratchFixedFloats < 0)
    return false;
  v.function = f[0].str();
  return true;
}

LogicalResult CUDABackendTarget::compile(ModuleOp module,
                                         const Schedule &schedule,
                                         llvm::StringRef, KernelImage &image,
                                         std::string &error) const {
  CUDAOutputs out;
  if (failed(compileAll(module, schedule, image.info, out, error)))
    return failure();
  image.code = std::move(out.fatbin);
  image.meta.clear();
  for (const Variant &v : out.variants)
    image.meta.push_back(variantLine(v));
  image.report = formatReports(out.reports);
  return success();
}

static std::string cudaHeader(const KernelInfo &info,
                              llvm::ArrayRef<Variant> variants,
                              llvm::ArrayRef<CUDAKernelReport> reports,
                              size_t imageSize) {
  std::string n = info.name,
              guard = "ATTN_CUDA_KERNEL_" + llvm::StringRef(n).upper() + "_H";
  std::string s;
  llvm::raw_string_ostream os(s);
  header::writeCommentOpening(
      os, info, " for CUDA",
      " * Link the object attnc wrote (it embeds the fatbin) with this\n"
      " * header and the attnc runtime (libattn_runtime); the runtime loads\n"
      " * the CUDA driver with dlopen, so nothing else is needed to link.\n",
      "attn_cuda_run_" + n, "stream", ": device tensors (kDLCUDA)");
  os << " *   stream: a CUstream (NULL: the default stream); the launch is\n"
     << " *   asynchronous on it.\n"
     << " * Kernels (ptxas -v):\n";
  for (const CUDAKernelReport &r : reports)
    os << " *   " << r.chip << " " << r.function << ": " << r.registers
       << " registers, " << r.spillStores << "/" << r.spillLoads
       << " bytes spilled (st/ld)\n";
  os << " */\n";
  header::openGuard(os, guard);
  os << "extern const unsigned char " << info.symbol << "_cuda_image[];\n\n";
  header::writeInputDescs(os, info.symbol + "_cuda", info.signature);
  os << "static const attn_cuda_kernel_variant_t " << info.symbol
     << "_cuda_variants[] = {\n";
  for (const Variant &v : variants)
    os << "  {\"" << v.function << "\", " << v.maxHeadDim << ", " << v.blockQ
       << ", " << v.numThreads << ", " << v.sharedBytes << ", "
       << v.scratchStateFloats << ", " << v.scratchFixedFloats << "},\n";
  os << "};\n"
     << "static const attn_cuda_kernel_desc_t " << info.symbol
     << "_cuda_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << info.symbol << "_cuda_image, " << imageSize << "u, "
     << variants.size() << ", " << info.symbol << "_cuda_variants, "
     << info.signature.inputs.size() << ", " << info.symbol << "_cuda_inputs, "
     << (info.hasLse ? 1 : 0) << "};\n\n"
     << "static inline attn_status_t attn_cuda_run_" << n << "(";
  header::writeEntryParams(os, info.signature);
  os << "DLTensor *o, DLTensor *lse, void *stream) {\n";
  header::writeInputsArray(os, info.signature);
  os << "  return attn_cuda_run(&" << info.symbol
     << "_cuda_kernel, inputs, o, lse, stream);\n}\n\n";
  header::closeGuard(os, guard);
  return s;
}

/// The fatbin's symbol in the object: the gradients' own, so that the
/// forward's and the backward's objects link into one program.
static std::string imageSymbol(const KernelInfo &info) {
  return info.symbol + (info.backward ? "_backward" : "") + "_cuda_image";
}

/// The header of a gradients' kernel: its attn_cuda_backward_desc_t and
/// `attn_cuda_backward_<name>(q, k, v, aux..., o, lse, dout, dlse, dq, dk,
/// dv, d<aux>..., stream)`.
static std::string cudaBackwardHeader(const KernelInfo &info,
                                      llvm::ArrayRef<Variant> variants,
                                      llvm::ArrayRef<CUDAKernelReport> reports,
                                      size_t imageSize) {
  std::string n = info.name, guard = "ATTN_CUDA_KERNEL_" +
                                     llvm::StringRef(n).upper() + "_BACKWARD_H";
  std::string bsym = info.symbol + "_backward_cuda";
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "/* Generated by attnc from spec '" << n
     << "' (the gradients for CUDA, attnc --backward). Do not edit.\n *\n"
     << " * Link the object attnc wrote (it embeds the fatbin) with this\n"
     << " * header and the attnc runtime (libattn_runtime); the runtime loads\n"
     << " * the CUDA driver with dlopen, so nothing else is needed to link.\n"
     << " *\n * attn_cuda_backward_" << n
     << "(q, k, v, aux..., o, lse, dout, dlse, dq, dk, dv, d<aux>..., "
        "stream)\n"
     << " * computes the gradients of sum(o * dout) + sum(lse * dlse) from "
        "the\n"
     << " * forward's inputs and outputs (docs/language.md section 15), on "
        "device\n * tensors (kDLCUDA):\n";
  header::writeSignatureComment(os, info.signature, info.hasLse);
  os << " *   dout: q's type [B, Hq, N, Dv]; dlse: f32 [B, Hq, N] or NULL\n"
     << " *   dq, dk, dv: f32, the shapes of q, k, v\n";
  for (const std::string &g : info.gradInputs)
    os << " *   d" << g << ": f32, the shape of " << g << "\n";
  os << " *   dq and the d<aux> must be compact: they are zeroed on the "
        "stream\n *   first (the kernels add to them).\n"
     << " *   stream: a CUstream (NULL: the default stream); the launch is\n"
     << " *   asynchronous on it.\n"
     << " * Returns ATTN_OK or a status with attn_last_error() set "
        "(attn_cuda_run_backward).\n"
     << " * Kernels (ptxas -v):\n";
  for (const CUDAKernelReport &r : reports)
    os << " *   " << r.chip << " " << r.function << ": " << r.registers
       << " registers, " << r.spillStores << "/" << r.spillLoads
       << " bytes spilled (st/ld)\n";
  os << " */\n";
  header::openGuard(os, guard);
  os << "extern const unsigned char " << imageSymbol(info) << "[];\n\n";
  header::writeInputDescs(os, bsym, info.signature);
  std::vector<int32_t> gradIdx = header::writeGradInputs(os, bsym, info);
  os << "static const attn_cuda_kernel_variant_t " << bsym
     << "_variants[] = {\n";
  for (const Variant &v : variants)
    os << "  {\"" << v.function << "\", " << v.maxHeadDim << ", " << v.blockQ
       << ", " << v.numThreads << ", " << v.sharedBytes << ", "
       << v.scratchStateFloats << ", " << v.scratchFixedFloats << "},\n";
  os << "};\n"
     << "static const attn_cuda_backward_desc_t " << bsym << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << imageSymbol(info) << ", " << imageSize << "u, "
     << variants.size() << ", " << bsym << "_variants, "
     << info.signature.inputs.size() << ", " << bsym << "_inputs, "
     << (info.hasLse ? 1 : 0) << ", " << gradIdx.size() << ", "
     << (gradIdx.empty() ? "NULL" : bsym + "_grad_inputs") << "};\n\n";
  header::writeBackwardEntry(os, info, gradIdx, "attn_cuda_backward_" + n,
                             "void *stream", "attn_cuda_run_backward",
                             bsym + "_kernel", "stream");
  header::closeGuard(os, guard);
  header::markForwardOutputsAsInputs(s);
  return s;
}

LogicalResult CUDABackendTarget::emitObject(
    ModuleOp module, const Schedule &schedule, KernelInfo &info,
    llvm::SmallVectorImpl<char> &object, std::string &header,
    std::string &report, std::string &error) const {
  CUDAOutputs out;
  if (failed(compileAll(module, schedule, info, out, error)))
    return failure();
  // The host object only holds the fatbin as data, `<symbol>_cuda_image`.
  MLIRContext *ctx = module.getContext();
  ctx->loadDialect<LLVM::LLVMDialect>();
  OpBuilder b(ctx);
  Location loc = UnknownLoc::get(ctx);
  OwningOpRef<ModuleOp> holder = ModuleOp::create(loc);
  b.setInsertionPointToEnd(holder->getBody());
  auto arrTy = LLVM::LLVMArrayType::get(b.getI8Type(), out.fatbin.size());
  LLVM::GlobalOp::create(
      b, loc, arrTy, /*isConstant=*/true, LLVM::Linkage::External,
      imageSymbol(info),
      b.getStringAttr(llvm::StringRef(out.fatbin.data(), out.fatbin.size())),
      /*alignment=*/16);
  if (std::string e =
          mlir::attn::emitObject(*holder, CPUTarget::host(), object);
      !e.empty()) {
    error = e;
    return failure();
  }
  header = info.backward
               ? cudaBackwardHeader(info, out.variants, out.reports,
                                    out.fatbin.size())
               : cudaHeader(info, out.variants, out.reports, out.fatbin.size());
  report = formatReports(out.reports);
  return success();
}

LogicalResult CUDABackendTarget::emit(ModuleOp module, const Schedule &schedule,
                                      llvm::StringRef format, std::string &out,
                                      std::string &report,
                                      std::string &error) const {
  if (!llvm::is_contained(emitFormats(), format)) {
    error = "the CUDA backend cannot emit '" + format.str() + "'";
    return failure();
  }
  KernelInfo info;
  CUDAOutputs outputs;
  if (failed(compileAll(module, schedule, info, outputs, error)))
    return failure();
  report = formatReports(outputs.reports);
  out.clear();
  if (format == "ptx") {
    for (const std::string &chip : gpus.chips)
      out += "// ---- " + chip + "\n" + outputs.ptx[chip];
  } else if (format == "cubin") {
    out = outputs.cubin[gpus.chips.front()];
  } else {
    out.assign(outputs.fatbin.begin(), outputs.fatbin.end());
  }
  return success();
}

/// Images are interned for the life of the process: the runtime caches CUDA
/// modules by image address, so an image must never be freed and another
/// allocated in its place.
static const std::vector<char> &internImage(const std::string &key,
                                            const std::vector<char> &bytes) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::vector<char>>> images;
  std::lock_guard<std::mutex> lock(mu);
  auto &slot = images[key];
  if (!slot)
    slot = std::make_unique<std::vector<char>>(bytes);
  return *slot;
}

CUDABinding::CUDABinding(KernelInfo infoIn, std::vector<Variant> variantsIn,
                         const std::vector<char> &image)
    : info(std::move(infoIn)), variants(std::move(variantsIn)),
      inputs(info.signature) {
  for (const Variant &v : variants)
    cVariants.push_back(attn_cuda_kernel_variant_t{
        v.function.c_str(), static_cast<int32_t>(v.maxHeadDim),
        static_cast<int32_t>(v.blockQ), static_cast<int32_t>(v.numThreads),
        static_cast<int32_t>(v.sharedBytes), v.scratchStateFloats,
        v.scratchFixedFloats});
  desc = attn_cuda_kernel_desc_t{ATTN_ABI_VERSION,
                                 info.name.c_str(),
                                 image.data(),
                                 static_cast<uint64_t>(image.size()),
                                 static_cast<int32_t>(cVariants.size()),
                                 cVariants.data(),
                                 inputs.size(),
                                 inputs.data(),
                                 info.hasLse ? 1 : 0};
  if (!info.backward)
    return;
  // describeSpec took the gradient inputs from the spec's inputs, so each
  // is there.
  gradIndices = gradientInputIndices(info);
  bdesc = attn_cuda_backward_desc_t{ATTN_ABI_VERSION,
                                    info.name.c_str(),
                                    image.data(),
                                    static_cast<uint64_t>(image.size()),
                                    static_cast<int32_t>(cVariants.size()),
                                    cVariants.data(),
                                    inputs.size(),
                                    inputs.data(),
                                    info.hasLse ? 1 : 0,
                                    static_cast<int32_t>(gradIndices.size()),
                                    gradIndices.data()};
}

std::unique_ptr<KernelBinding>
CUDABackendTarget::load(const KernelImage &image, const std::string &key,
                        const LoadHost &, std::string &error) const {
  std::vector<Variant> variants;
  for (const std::string &line : image.meta) {
    Variant v;
    if (!parseVariantLine(line, v)) {
      error = "bad CUDA kernel variant '" + line + "'";
      return nullptr;
    }
    variants.push_back(std::move(v));
  }
  if (variants.empty() || image.code.empty()) {
    error = "the CUDA kernel image has no code or no variants";
    return nullptr;
  }
  return std::make_unique<CUDABinding>(image.info, std::move(variants),
                                       internImage(key, image.code));
}
