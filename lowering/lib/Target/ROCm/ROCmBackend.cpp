//===- ROCmBackend.cpp - AMD GPUs behind the backend seam -----------------===//
//
// Kernels are gpu.module functions lowered to ROCDL (convert-attn-to-rocdl),
// one per padded head dim (a "variant"), compiled per chip to a code object
// and bundled in one clang offload bundle. The runtime launches them
// through the HIP runtime (attn_rocm_run), which it loads with dlopen.
// Everything above the code generation is the GPU backends' shared code
// (GpuBackend.h).
//
//===----------------------------------------------------------------------===//

#include "attn/Target/Backend.h"
#include "attn/Target/GpuBackend.h"
#include "attn/Target/ROCmTarget.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

class ROCmBackend final : public Backend {
public:
  llvm::StringRef name() const override { return "rocm"; }
  llvm::StringRef targetSyntax() const override {
    return "rocm (gfx942) or rocm:gfx90a,gfx942";
  }
  int32_t deviceType() const override { return kDLROCM; }
  llvm::StringRef codeSuffix() const override { return ".hipfb"; }
  llvm::StringRef kernelStageName() const override { return "gpu"; }
  std::unique_ptr<BackendTarget> parseTarget(llvm::StringRef target,
                                             std::string &error) const override;
};

class ROCmBackendTarget final : public GpuBackendTarget {
public:
  ROCmBackendTarget(const Backend &backend, ROCmTarget gpus)
      : GpuBackendTarget(backend), gpus(std::move(gpus)) {}
  std::string key() const override { return gpus.key(); }
  llvm::ArrayRef<llvm::StringRef> emitFormats() const override {
    static const llvm::StringRef formats[] = {"rocdl", "amdgcn", "hsaco",
                                              "hipfb"};
    return formats;
  }
  /// The assembly is serialized on request only (the JIT never needs it);
  /// the other formats are compileChips' outputs.
  LogicalResult emit(ModuleOp module, const Schedule &schedule,
                     llvm::StringRef format, std::string &out,
                     std::string &report, std::string &error) const override;

protected:
  const GpuApiNames &names() const override;
  llvm::ArrayRef<std::string> chips() const override { return gpus.chips; }
  void registerExtensions(DialectRegistry &registry) const override {
    registerAttnROCmExtensions(registry);
  }
  void buildPipeline(OpPassManager &pm, const Schedule &schedule,
                     llvm::StringRef chip, Stage stop,
                     Stage start) const override {
    buildAttnROCmPipeline(pm, pipelineOptions(schedule, chip), stop, start);
  }
  std::string checkToolchain() const override { return gpus.checkToolchain(); }
  LogicalResult compileChips(ModuleOp kernels, const Schedule &schedule,
                             GpuOutputs &out,
                             std::string &error) const override;

private:
  ROCmPipelineOptions pipelineOptions(const Schedule &schedule,
                                      llvm::StringRef chip) const;
  ROCmTarget gpus;
};

} // namespace

namespace mlir::attn {
std::unique_ptr<Backend> createROCmBackend();
} // namespace mlir::attn

std::unique_ptr<Backend> mlir::attn::createROCmBackend() {
  return std::make_unique<ROCmBackend>();
}

/// The ROCm runtime entries and the words its headers use.
const GpuApiNames &ROCmBackendTarget::names() const {
  static const GpuApiNames names{"rocm",
                                 "ROCm",
                                 kDLROCM,
                                 "kDLROCM",
                                 "code object bundle",
                                 "the HIP runtime",
                                 "a hipStream_t",
                                 "code object metadata",
                                 "matrix cores",
                                 attn_rocm_run_backward};
  return names;
}

/// One header comment line per kernel and chip.
static std::vector<std::string>
reportLines(llvm::ArrayRef<ROCmKernelReport> reports) {
  std::vector<std::string> lines;
  for (const ROCmKernelReport &r : reports)
    lines.push_back(r.chip + " " + r.function + ": " + std::to_string(r.vgprs) +
                    " VGPRs, " + std::to_string(r.agprs) + " AGPRs, " +
                    std::to_string(r.sgprs) + " SGPRs, " +
                    std::to_string(r.vgprSpills) + "/" +
                    std::to_string(r.sgprSpills) + " spilled VGPRs/SGPRs, " +
                    std::to_string(r.scratchBytes) + " bytes of scratch");
  return lines;
}

std::unique_ptr<BackendTarget>
ROCmBackend::parseTarget(llvm::StringRef target, std::string &error) const {
  ROCmTarget gpus;
  if (!ROCmTarget::parse(target, gpus, error))
    return nullptr;
  return std::make_unique<ROCmBackendTarget>(*this, std::move(gpus));
}

ROCmPipelineOptions
ROCmBackendTarget::pipelineOptions(const Schedule &schedule,
                                   llvm::StringRef chip) const {
  ROCmPipelineOptions options;
  options.chip = chip.str();
  options.abi = gpus.abi();
  if (schedule.tileQ > 0)
    options.tileQ = schedule.tileQ;
  else if (schedule.backward)
    // The gradients keep dK^T and dV^T (D f32 per lane), S and dP of a
    // 32-query step in registers; 32 more queries would double the last.
    options.tileQ = 32;
  if (schedule.tileKV > 0)
    options.tileKV = schedule.tileKV;
  else if (schedule.backward)
    options.tileKV = 64; // two waves of 32 keys
  if (!schedule.headDims.empty())
    options.headDims = schedule.headDims;
  if (!schedule.elementType.empty())
    options.elementType = schedule.elementType;
  options.backward = schedule.backward;
  return options;
}

LogicalResult ROCmBackendTarget::compileChips(ModuleOp kernels,
                                              const Schedule &schedule,
                                              GpuOutputs &out,
                                              std::string &error) const {
  std::vector<ROCmImage> images;
  std::vector<ROCmKernelReport> reports;
  std::string &rocdl = out.formats["rocdl"];
  for (const std::string &chip : gpus.chips) {
    auto lowered = lowerForChip(kernels, schedule, chip);
    if (failed(lowered))
      return failure();
    rocdl += "// ---- " + chip + "\n";
    llvm::raw_string_ostream(rocdl) << **lowered << "\n";
    std::string hsaco;
    std::string e = serializeROCDL(**lowered, gpus, "bin", hsaco);
    if (e.empty())
      e = readKernelReports(llvm::ArrayRef<char>(hsaco.data(), hsaco.size()),
                            chip, reports);
    if (!e.empty()) {
      error = e;
      return failure();
    }
    if (images.empty())
      out.formats["hsaco"] = hsaco;
    images.push_back({chip, std::vector<char>(hsaco.begin(), hsaco.end())});
  }
  out.image = createOffloadBundle(images);
  out.formats["hipfb"].assign(out.image.begin(), out.image.end());
  out.reportLines = reportLines(reports);
  out.report = formatReports(reports);
  return success();
}

LogicalResult ROCmBackendTarget::emit(ModuleOp module, const Schedule &schedule,
                                      llvm::StringRef format, std::string &out,
                                      std::string &report,
                                      std::string &error) const {
  if (format != "amdgcn")
    return GpuBackendTarget::emit(module, schedule, format, out, report, error);
  if (std::string e = gpus.checkToolchain(); !e.empty()) {
    error = e;
    return failure();
  }
  KernelInfo info;
  std::vector<GpuVariant> variants;
  if (failed(
          lowerWithVariants(module, schedule, Stage::Kernel, info, variants)))
    return failure();
  out.clear();
  for (const std::string &chip : gpus.chips) {
    auto lowered = lowerForChip(module, schedule, chip);
    if (failed(lowered))
      return failure();
    std::string isa;
    if (std::string e = serializeROCDL(**lowered, gpus, "isa", isa);
        !e.empty()) {
      error = e;
      return failure();
    }
    out += "; ---- " + chip + "\n" + isa;
  }
  return success();
}
