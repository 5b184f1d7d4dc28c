//===- CUDABackend.cpp - NVIDIA GPUs behind the backend seam --------------===//
//
// Kernels are gpu.module functions lowered to NVVM, one per padded head dim
// (a "variant"), assembled per chip by ptxas and bundled in a fatbin with
// the newest PTX. The runtime launches them through the driver API
// (attn_cuda_run), which it loads with dlopen.
//
//===----------------------------------------------------------------------===//

#include "attn/Target/Backend.h"
#include "attn/Target/CUDATarget.h"
#include "attn/Target/GpuBackend.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

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

class CUDABackendTarget final : public GpuBackendTarget {
public:
  CUDABackendTarget(const Backend &backend, CUDATarget gpus)
      : GpuBackendTarget(backend), gpus(std::move(gpus)) {}
  std::string key() const override { return gpus.key(); }
  llvm::ArrayRef<llvm::StringRef> emitFormats() const override {
    static const llvm::StringRef formats[] = {"ptx", "cubin", "fatbin"};
    return formats;
  }

protected:
  const GpuApiNames &names() const override;
  llvm::ArrayRef<std::string> chips() const override { return gpus.chips; }
  void registerExtensions(DialectRegistry &registry) const override {
    registerAttnCUDAExtensions(registry);
  }
  void buildPipeline(OpPassManager &pm, const Schedule &schedule,
                     llvm::StringRef chip, Stage stop,
                     Stage start) const override {
    buildAttnCUDAPipeline(pm, pipelineOptions(schedule, chip), stop, start);
  }
  std::string checkToolchain() const override { return gpus.checkToolkit(); }
  bool hasBatchPrefill() const override { return true; }
  LogicalResult compileChips(ModuleOp kernels, const Schedule &schedule,
                             GpuOutputs &out,
                             std::string &error) const override;

private:
  CUDAPipelineOptions pipelineOptions(const Schedule &schedule,
                                      llvm::StringRef chip) const;
  CUDATarget gpus;
};

} // namespace

namespace mlir::attn {
std::unique_ptr<Backend> createCUDABackend();
} // namespace mlir::attn

std::unique_ptr<Backend> mlir::attn::createCUDABackend() {
  return std::make_unique<CUDABackend>();
}

/// The CUDA runtime entries and the words its headers use.
const GpuApiNames &CUDABackendTarget::names() const {
  static const GpuApiNames names{"cuda",         "CUDA",
                                 kDLCUDA,        "kDLCUDA",
                                 "fatbin",       "the CUDA driver",
                                 "a CUstream",   "ptxas -v",
                                 "tensor cores", attn_cuda_run_backward};
  return names;
}

/// One header comment line per kernel and chip (ptxas -v).
static std::vector<std::string>
reportLines(llvm::ArrayRef<CUDAKernelReport> reports) {
  std::vector<std::string> lines;
  for (const CUDAKernelReport &r : reports)
    lines.push_back(r.chip + " " + r.function + ": " +
                    std::to_string(r.registers) + " registers, " +
                    std::to_string(r.spillStores) + "/" +
                    std::to_string(r.spillLoads) + " bytes spilled (st/ld)");
  return lines;
}

std::unique_ptr<BackendTarget>
CUDABackend::parseTarget(llvm::StringRef target, std::string &error) const {
  CUDATarget gpus;
  if (!CUDATarget::parse(target, gpus, error))
    return nullptr;
  return std::make_unique<CUDABackendTarget>(*this, std::move(gpus));
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
  options.batchKernels = schedule.pagedKV;
  options.decodeKernels = schedule.decodeKernels;
  options.sharedLimit = gpus.sharedLimit();
  return options;
}

LogicalResult CUDABackendTarget::compileChips(ModuleOp kernels,
                                              const Schedule &schedule,
                                              GpuOutputs &out,
                                              std::string &error) const {
  auto fail = [&](std::string e) {
    error = std::move(e);
    return failure();
  };
  std::vector<CUDAImage> images;
  std::vector<CUDAKernelReport> reports;
  std::string &ptx = out.formats["ptx"];
  for (const std::string &chip : gpus.chips) {
    auto lowered = lowerForChip(kernels, schedule, chip);
    if (failed(lowered))
      return failure();
    CUDAImage image;
    image.chip = chip;
    if (std::string e = translateToPTX(**lowered, gpus, image.ptx); !e.empty())
      return fail(e);
    if (std::string e =
            assemblePTX(gpus, chip, image.ptx, image.cubin, reports);
        !e.empty())
      return fail(e);
    ptx += "// ---- " + chip + "\n" + image.ptx;
    if (images.empty())
      out.formats["cubin"].assign(image.cubin.begin(), image.cubin.end());
    images.push_back(std::move(image));
  }
  if (std::string e = createFatbin(gpus, images, out.image); !e.empty())
    return fail(e);
  out.formats["fatbin"].assign(out.image.begin(), out.image.end());
  out.reportLines = reportLines(reports);
  out.report = formatReports(reports);
  return success();
}
