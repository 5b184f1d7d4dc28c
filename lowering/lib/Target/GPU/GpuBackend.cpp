//===- GpuBackend.cpp - what the GPU backends share -----------------------===//

#include "attn/Target/GpuBackend.h"
#include "attn/Target/CPUTarget.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"
#include <map>
#include <mutex>

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Variants
//===----------------------------------------------------------------------===//

std::vector<GpuVariant> mlir::attn::collectGpuVariants(ModuleOp module) {
  std::vector<GpuVariant> variants;
  module.walk([&](gpu::GPUFuncOp fn) {
    auto get = [&](llvm::StringRef name) -> int64_t {
      auto attr = fn->getAttrOfType<IntegerAttr>(name);
      return attr ? attr.getInt() : 0;
    };
    // A backward kernel's grid runs along kv tiles (attn.block_kv rows).
    int64_t rows = fn->hasAttr("attn.backward") ? get("attn.block_kv")
                                                : get("attn.block_q");
    auto role = fn->getAttrOfType<StringAttr>("attn.role");
    variants.push_back({fn.getName().str(), get("attn.max_head_dim"), rows,
                        get("attn.num_threads"), get("attn.shared_bytes"),
                        get("attn.scratch_state_floats"),
                        get("attn.scratch_fixed_floats"),
                        role ? role.str() : ""});
  });
  llvm::stable_sort(variants, [](const GpuVariant &a, const GpuVariant &b) {
    return a.maxHeadDim < b.maxHeadDim;
  });
  return variants;
}

GpuRoles mlir::attn::splitGpuRoles(llvm::ArrayRef<GpuVariant> variants) {
  GpuRoles r;
  for (const GpuVariant &v : variants) {
    if (v.role == "decode")
      r.decode.push_back(v);
    else if (v.role == "merge")
      r.merge = v;
    else if (v.role == "batch")
      r.batch.push_back(v);
    else
      r.forward.push_back(v);
  }
  return r;
}

/// "variant FUNCTION HEADDIM BLOCKQ THREADS SMEM SCRATCHSTATE SCRATCHFIXED
/// ROLE" (ROLE "-" for none).
std::string mlir::attn::gpuVariantLine(const GpuVariant &v) {
  return "variant " + v.function + " " + std::to_string(v.maxHeadDim) + " " +
         std::to_string(v.blockQ) + " " + std::to_string(v.numThreads) + " " +
         std::to_string(v.sharedBytes) + " " +
         std::to_string(v.scratchStateFloats) + " " +
         std::to_string(v.scratchFixedFloats) + " " +
         (v.role.empty() ? "-" : v.role);
}

bool mlir::attn::parseGpuVariantLine(llvm::StringRef line, GpuVariant &v) {
  if (!line.consume_front("variant "))
    return false;
  llvm::SmallVector<llvm::StringRef> f;
  line.split(f, ' ');
  if (f.size() != 8 || f[0].empty() || f[1].getAsInteger(10, v.maxHeadDim) ||
      f[2].getAsInteger(10, v.blockQ) || f[3].getAsInteger(10, v.numThreads) ||
      f[4].getAsInteger(10, v.sharedBytes) ||
      f[5].getAsInteger(10, v.scratchStateFloats) ||
      f[6].getAsInteger(10, v.scratchFixedFloats) || v.scratchStateFloats < 0 ||
      v.scratchFixedFloats < 0 ||
      !llvm::is_contained({"-", "decode", "merge", "batch"}, f[7]))
    return false;
  v.function = f[0].str();
  v.role = f[7] == "-" ? "" : f[7].str();
  return true;
}

//===----------------------------------------------------------------------===//
// AOT: the header and the host object
//===----------------------------------------------------------------------===//

std::string mlir::attn::gpuImageSymbol(const KernelInfo &info,
                                       const GpuApiNames &names) {
  return info.symbol + (info.backward ? "_backward" : "") + "_" +
         names.api.str() + "_image";
}

/// " * Link the object ... nothing else is needed to link.\n".
static std::string linkNote(const GpuApiNames &names) {
  return (" * Link the object attnc wrote (it embeds the " + names.imageKind +
          ") with this\n"
          " * header and the attnc runtime (libattn_runtime); the runtime "
          "loads\n * " +
          names.driver + " with dlopen, so nothing else is needed to link.\n")
      .str();
}

static void writeStreamNote(llvm::raw_ostream &os, const GpuApiNames &names) {
  os << " *   stream: " << names.streamType
     << " (NULL: the default stream); the launch is\n"
     << " *   asynchronous on it.\n";
}

static void writeReport(llvm::raw_ostream &os, const GpuApiNames &names,
                        llvm::ArrayRef<std::string> reportLines) {
  os << " * Kernels (" << names.reportTool << "):\n";
  for (const std::string &line : reportLines)
    os << " *   " << line << "\n";
  os << " */\n";
}

static void writeVariants(llvm::raw_ostream &os, const GpuApiNames &names,
                          llvm::StringRef prefix,
                          llvm::ArrayRef<GpuVariant> variants,
                          llvm::StringRef array = "_variants") {
  os << "static const attn_" << names.api << "_kernel_variant_t " << prefix
     << array << "[] = {\n";
  for (const GpuVariant &v : variants)
    os << "  {\"" << v.function << "\", " << v.maxHeadDim << ", " << v.blockQ
       << ", " << v.numThreads << ", " << v.sharedBytes << ", "
       << v.scratchStateFloats << ", " << v.scratchFixedFloats << "},\n";
  os << "};\n";
}

static std::string forwardHeader(const KernelInfo &info,
                                 const GpuApiNames &names,
                                 llvm::ArrayRef<GpuVariant> variants,
                                 llvm::ArrayRef<std::string> reportLines,
                                 size_t imageSize) {
  std::string n = info.name, api = names.api.str();
  std::string guard = "ATTN_" + llvm::StringRef(api).upper() + "_KERNEL_" +
                      llvm::StringRef(n).upper() + "_H";
  std::string prefix = info.symbol + "_" + api;
  std::string s;
  llvm::raw_string_ostream os(s);
  header::writeCommentOpening(
      os, info, (" for " + names.title).str(), linkNote(names),
      "attn_" + api + "_run_" + n, "stream",
      (": device tensors (" + names.dlDevice + ")").str());
  writeStreamNote(os, names);
  writeReport(os, names, reportLines);
  header::openGuard(os, guard);
  os << "extern const unsigned char " << gpuImageSymbol(info, names)
     << "[];\n\n";
  header::writeInputDescs(os, prefix, info.signature);
  GpuRoles roles = splitGpuRoles(variants);
  writeVariants(os, names, prefix, roles.forward);
  bool decode = !roles.decode.empty() && !roles.merge.function.empty();
  if (decode) {
    writeVariants(os, names, prefix, roles.decode, "_decode_variants");
    writeVariants(os, names, prefix, {roles.merge}, "_merge_variant");
  }
  if (!roles.batch.empty())
    writeVariants(os, names, prefix, roles.batch, "_batch_variants");
  os << "static const attn_" << api << "_kernel_desc_t " << prefix
     << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << gpuImageSymbol(info, names) << ", " << imageSize << "u, "
     << roles.forward.size() << ", " << prefix << "_variants, "
     << info.signature.inputs.size() << ", " << prefix << "_inputs, "
     << (info.hasLse ? 1 : 0) << ",\n  ";
  if (decode)
    os << kGpuDecodeMaxN << " /* decode_max_n */, " << roles.decode.size()
       << ", " << prefix << "_decode_variants, " << prefix
       << "_merge_variant,\n  ";
  else
    os << "0 /* no decode schedule */, 0, NULL, NULL,\n  ";
  if (!roles.batch.empty())
    os << roles.batch.size() << ", " << prefix << "_batch_variants};\n\n";
  else
    os << "0 /* no batch prefill */, NULL};\n\n";
  os << "static inline attn_status_t attn_" << api << "_run_" << n << "(";
  header::writeEntryParams(os, info.signature);
  os << "DLTensor *o, DLTensor *lse, void *stream) {\n";
  header::writeInputsArray(os, info.signature);
  os << "  return attn_" << api << "_run(&" << prefix
     << "_kernel, inputs, o, lse, stream);\n}\n\n";
  header::closeGuard(os, guard);
  return s;
}

/// The header of a gradients' kernel: its backward descriptor and
/// `attn_<api>_backward_<name>(q, k, v, aux..., o, lse, dout, dlse, dq, dk,
/// dv, d<aux>..., stream)`.
static std::string backwardHeader(const KernelInfo &info,
                                  const GpuApiNames &names,
                                  llvm::ArrayRef<GpuVariant> variants,
                                  llvm::ArrayRef<std::string> reportLines,
                                  size_t imageSize) {
  std::string n = info.name, api = names.api.str();
  std::string guard = "ATTN_" + llvm::StringRef(api).upper() + "_KERNEL_" +
                      llvm::StringRef(n).upper() + "_BACKWARD_H";
  std::string prefix = info.symbol + "_backward_" + api;
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "/* Generated by attnc from spec '" << n << "' (the gradients for "
     << names.title << ", attnc --backward). Do not edit.\n *\n"
     << linkNote(names) << " *\n * attn_" << api << "_backward_" << n
     << "(q, k, v, aux..., o, lse, dout, dlse, dq, dk, dv, d<aux>..., "
        "stream)\n"
     << " * computes the gradients of sum(o * dout) + sum(lse * dlse) from "
        "the\n"
     << " * forward's inputs and outputs (docs/language.md section 15), on "
        "device\n * tensors ("
     << names.dlDevice << "):\n";
  header::writeSignatureComment(os, info.signature, info.hasLse);
  os << " *   dout: q's type [B, Hq, N, Dv]; dlse: f32 [B, Hq, N] or NULL\n"
     << " *   dq, dk, dv: f32, the shapes of q, k, v\n";
  for (const std::string &g : info.gradInputs)
    os << " *   d" << g << ": f32, the shape of " << g << "\n";
  os << " *   dq and the d<aux> must be compact: they are zeroed on the "
        "stream\n *   first (the kernels add to them).\n";
  writeStreamNote(os, names);
  os << " * Returns ATTN_OK or a status with attn_last_error() set "
        "(attn_"
     << api << "_run_backward).\n";
  writeReport(os, names, reportLines);
  header::openGuard(os, guard);
  os << "extern const unsigned char " << gpuImageSymbol(info, names)
     << "[];\n\n";
  header::writeInputDescs(os, prefix, info.signature);
  std::vector<int32_t> gradIdx = header::writeGradInputs(os, prefix, info);
  writeVariants(os, names, prefix, variants);
  os << "static const attn_" << api << "_backward_desc_t " << prefix
     << "_kernel = {\n"
     << "  " << ATTN_ABI_VERSION << " /* ATTN_ABI_VERSION when written */, \""
     << n << "\", " << gpuImageSymbol(info, names) << ", " << imageSize << "u, "
     << variants.size() << ", " << prefix << "_variants, "
     << info.signature.inputs.size() << ", " << prefix << "_inputs, "
     << (info.hasLse ? 1 : 0) << ", " << gradIdx.size() << ", "
     << (gradIdx.empty() ? "NULL" : prefix + "_grad_inputs") << "};\n\n";
  header::writeBackwardEntry(
      os, info, gradIdx, "attn_" + api + "_backward_" + n, "void *stream",
      "attn_" + api + "_run_backward", prefix + "_kernel", "stream");
  header::closeGuard(os, guard);
  header::markForwardOutputsAsInputs(s);
  return s;
}

std::string mlir::attn::writeGpuHeader(const KernelInfo &info,
                                       const GpuApiNames &names,
                                       llvm::ArrayRef<GpuVariant> variants,
                                       llvm::ArrayRef<std::string> reportLines,
                                       size_t imageSize) {
  return info.backward
             ? backwardHeader(info, names, variants, reportLines, imageSize)
             : forwardHeader(info, names, variants, reportLines, imageSize);
}

std::string mlir::attn::embedGpuImage(MLIRContext *ctx, llvm::StringRef symbol,
                                      llvm::ArrayRef<char> image,
                                      llvm::SmallVectorImpl<char> &object) {
  ctx->loadDialect<LLVM::LLVMDialect>();
  OpBuilder b(ctx);
  Location loc = UnknownLoc::get(ctx);
  OwningOpRef<ModuleOp> holder = ModuleOp::create(loc);
  b.setInsertionPointToEnd(holder->getBody());
  auto arrTy = LLVM::LLVMArrayType::get(b.getI8Type(), image.size());
  LLVM::GlobalOp::create(
      b, loc, arrTy, /*isConstant=*/true, LLVM::Linkage::External, symbol,
      b.getStringAttr(llvm::StringRef(image.data(), image.size())),
      /*alignment=*/16);
  return mlir::attn::emitObject(*holder, CPUTarget::host(), object);
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {

/// A GPU kernel bound for attn_run (forward) or the backend's gradients
/// entry: owns what the runtime descriptors point into.
class GpuBinding final : public KernelBinding {
public:
  GpuBinding(KernelInfo info, const GpuApiNames &names,
             std::vector<GpuVariant> variants, const std::vector<char> &image);
  /// A gradients' kernel has no forward entry (as on the CPU).
  attn_kernel_target_t target() const override {
    return {names.deviceType, info.backward ? nullptr : &desc};
  }
  const attn_cuda_backward_desc_t *gpuBackwardDesc() const override {
    return info.backward ? &bdesc : nullptr;
  }
  attn_status_t runBackward(const DLTensor *const *inputs, const DLTensor *o,
                            const DLTensor *lse, const DLTensor *dout,
                            const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                            DLTensor *dv, DLTensor *const *daux,
                            const attn_run_options_t *options,
                            void *stream) const override {
    if (!info.backward)
      return KernelBinding::runBackward(inputs, o, lse, dout, dlse, dq, dk, dv,
                                        daux, options, stream);
    return names.runBackward(&bdesc, inputs, o, lse, dout, dlse, dq, dk, dv,
                             daux, stream);
  }

private:
  KernelInfo info;
  GpuApiNames names;
  std::vector<GpuVariant> variants;
  /// The C variants: forward (or gradients'), decode, the merge, batch.
  std::vector<attn_cuda_kernel_variant_t> cVariants, cDecode, cMerge, cBatch;
  InputDescTable inputs;
  std::vector<int32_t> gradIndices;
  attn_cuda_kernel_desc_t desc{};
  attn_cuda_backward_desc_t bdesc{};
};

} // namespace

GpuBinding::GpuBinding(KernelInfo infoIn, const GpuApiNames &namesIn,
                       std::vector<GpuVariant> variantsIn,
                       const std::vector<char> &image)
    : info(std::move(infoIn)), names(namesIn), variants(std::move(variantsIn)),
      inputs(info.signature) {
  // `variants` owns the function names the C variants point into.
  for (const GpuVariant &v : variants) {
    auto &to = v.role == "decode"  ? cDecode
               : v.role == "merge" ? cMerge
               : v.role == "batch" ? cBatch
                                   : cVariants;
    to.push_back(attn_cuda_kernel_variant_t{
        v.function.c_str(), static_cast<int32_t>(v.maxHeadDim),
        static_cast<int32_t>(v.blockQ), static_cast<int32_t>(v.numThreads),
        static_cast<int32_t>(v.sharedBytes), v.scratchStateFloats,
        v.scratchFixedFloats});
  }
  bool decode = !cDecode.empty() && cMerge.size() == 1;
  desc = attn_cuda_kernel_desc_t{ATTN_ABI_VERSION,
                                 info.name.c_str(),
                                 image.data(),
                                 static_cast<uint64_t>(image.size()),
                                 static_cast<int32_t>(cVariants.size()),
                                 cVariants.data(),
                                 inputs.size(),
                                 inputs.data(),
                                 info.hasLse ? 1 : 0};
  if (decode) {
    desc.decode_max_n = kGpuDecodeMaxN;
    desc.num_decode_variants = static_cast<int32_t>(cDecode.size());
    desc.decode_variants = cDecode.data();
    desc.merge_variant = cMerge.data();
  }
  if (!cBatch.empty()) {
    desc.num_batch_variants = static_cast<int32_t>(cBatch.size());
    desc.batch_variants = cBatch.data();
  }
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

/// Images are interned for the life of the process: the runtimes cache
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

std::unique_ptr<KernelBinding>
GpuBackendTarget::load(const KernelImage &image, const std::string &key,
                       const LoadHost &, std::string &error) const {
  std::vector<GpuVariant> variants;
  for (const std::string &line : image.meta) {
    GpuVariant v;
    if (!parseGpuVariantLine(line, v)) {
      error = "bad " + names().title.str() + " kernel variant '" + line + "'";
      return nullptr;
    }
    variants.push_back(std::move(v));
  }
  if (splitGpuRoles(variants).forward.empty() || image.code.empty()) {
    error = "the " + names().title.str() +
            " kernel image has no code or no variants";
    return nullptr;
  }
  return std::make_unique<GpuBinding>(image.info, names(), std::move(variants),
                                      internImage(key, image.code));
}

//===----------------------------------------------------------------------===//
// Lowering and compiling
//===----------------------------------------------------------------------===//

std::string GpuBackendTarget::checkSchedule(const Schedule &schedule) const {
  if (!schedule.elementType.empty() && schedule.elementType != "bf16" &&
      schedule.elementType != "f16")
    return (names().title + " kernels take bf16 or f16 q, k, v (" +
            names().matrixUnits + "), not '" + schedule.elementType + "'")
        .str();
  if (schedule.linearState)
    return ("the linear state in and out (decoding) is not supported for " +
            names().title +
            " yet (the linear-attention kernels start from a zero state); "
            "use the CPU target for decoding")
        .str();
  if (schedule.pagedKV && !hasBatchPrefill())
    return ("a paged KV cache (--paged-kv, CompileOptions::pagedKV) is not "
            "supported for " +
            names().title +
            " yet; the batch prefill kernels exist for the CPU and CUDA "
            "targets")
        .str();
  return "";
}

LogicalResult
GpuBackendTarget::lowerWithVariants(ModuleOp module, const Schedule &schedule,
                                    Stage stop, KernelInfo &info,
                                    std::vector<GpuVariant> &variants) const {
  MLIRContext *ctx = module.getContext();
  DialectRegistry registry;
  registerExtensions(registry);
  ctx->appendDialectRegistry(registry);
  llvm::StringRef chip = chips().front();
  PassManager tiling(ctx);
  buildPipeline(tiling, schedule, chip, std::min(stop, Stage::Tiled),
                Stage::Attn);
  if (failed(tiling.run(module)))
    return failure();
  info = describeSpec(module);
  if (stop <= Stage::Tiled)
    return success();
  PassManager kernels(ctx);
  buildPipeline(kernels, schedule, chip, Stage::Kernel, Stage::Tiled);
  if (failed(kernels.run(module)))
    return failure();
  variants = collectGpuVariants(module);
  if (stop <= Stage::Kernel)
    return success();
  PassManager llvm(ctx);
  buildPipeline(llvm, schedule, chip, Stage::LLVM, Stage::Kernel);
  return llvm.run(module);
}

FailureOr<OwningOpRef<ModuleOp>>
GpuBackendTarget::lowerForChip(ModuleOp kernels, const Schedule &schedule,
                               llvm::StringRef chip) const {
  OwningOpRef<ModuleOp> clone = kernels.clone();
  PassManager pm(kernels.getContext());
  buildPipeline(pm, schedule, chip, Stage::LLVM, Stage::Kernel);
  if (failed(pm.run(*clone)))
    return failure();
  return clone;
}

LogicalResult GpuBackendTarget::lower(ModuleOp module, const Schedule &schedule,
                                      Stage stop, KernelInfo &info,
                                      std::string &) const {
  std::vector<GpuVariant> variants;
  return lowerWithVariants(module, schedule, stop, info, variants);
}

LogicalResult GpuBackendTarget::compileAll(ModuleOp module,
                                           const Schedule &schedule,
                                           KernelInfo &info, GpuOutputs &out,
                                           std::string &error) const {
  if (std::string e = checkToolchain(); !e.empty()) {
    error = e;
    return failure();
  }
  if (failed(lowerWithVariants(module, schedule, Stage::Kernel, info,
                               out.variants)))
    return failure();
  return compileChips(module, schedule, out, error);
}

LogicalResult GpuBackendTarget::compile(ModuleOp module,
                                        const Schedule &schedule,
                                        llvm::StringRef, KernelImage &image,
                                        std::string &error) const {
  GpuOutputs out;
  if (failed(compileAll(module, schedule, image.info, out, error)))
    return failure();
  image.code = std::move(out.image);
  image.meta.clear();
  for (const GpuVariant &v : out.variants)
    image.meta.push_back(gpuVariantLine(v));
  image.report = out.report;
  return success();
}

LogicalResult GpuBackendTarget::emitObject(
    ModuleOp module, const Schedule &schedule, KernelInfo &info,
    llvm::SmallVectorImpl<char> &object, std::string &header,
    std::string &report, std::string &error) const {
  GpuOutputs out;
  if (failed(compileAll(module, schedule, info, out, error)))
    return failure();
  // The host object only holds the image as data.
  if (std::string e =
          embedGpuImage(module.getContext(), gpuImageSymbol(info, names()),
                        out.image, object);
      !e.empty()) {
    error = e;
    return failure();
  }
  header = writeGpuHeader(info, names(), out.variants, out.reportLines,
                          out.image.size());
  report = out.report;
  return success();
}

LogicalResult GpuBackendTarget::emit(ModuleOp module, const Schedule &schedule,
                                     llvm::StringRef format, std::string &out,
                                     std::string &report,
                                     std::string &error) const {
  if (!llvm::is_contained(emitFormats(), format)) {
    error = "the " + names().title.str() + " backend cannot emit '" +
            format.str() + "'";
    return failure();
  }
  KernelInfo info;
  GpuOutputs outputs;
  if (failed(compileAll(module, schedule, info, outputs, error)))
    return failure();
  report = outputs.report;
  auto it = outputs.formats.find(format.str());
  if (it == outputs.formats.end()) {
    error = "the " + names().title.str() + " backend produced no '" +
            format.str() + "'";
    return failure();
  }
  out = it->second;
  return success();
}
