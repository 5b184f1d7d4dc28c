//===- ROCmTarget.cpp - ROCDL gpu.modules to hsaco and offload bundles ----===//
//
// gpu-module-to-binary finds ld.lld and the device bitcode under one
// "toolkit" folder (<T>/llvm/bin/ld.lld, <T>/amdgcn/bitcode), the layout of
// /opt/rocm. Debian keeps them apart (LLVM's bin folder, the multiarch
// amdgcn folder), so each compile builds that layout out of two symbolic
// links in a private temporary folder.
//
//===----------------------------------------------------------------------===//

#include "attn/Target/ROCmTarget.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/ROCDL/Utils.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"
#include <cstdlib>

using namespace mlir;
using namespace mlir::attn;

llvm::ArrayRef<llvm::StringRef> ROCmTarget::supportedChips() {
  static const llvm::StringRef chips[] = {"gfx90a", "gfx942"};
  return chips;
}

static std::string env(const char *name) {
  const char *v = std::getenv(name);
  return v && *v ? v : "";
}

static bool isDir(const std::string &p) {
  return !p.empty() && llvm::sys::fs::is_directory(p);
}

/// The device bitcode folder (see ROCmTarget::parse).
static std::string findDeviceLibs() {
  if (std::string p = env("ATTN_ROCM_DEVICE_LIBS"); !p.empty())
    return p;
  std::vector<std::string> candidates;
  if (std::string rocm = env("ROCM_PATH"); !rocm.empty())
    candidates.push_back(rocm + "/amdgcn/bitcode");
  candidates.push_back("/usr/lib/x86_64-linux-gnu/amdgcn/bitcode");
  candidates.push_back("/usr/lib/aarch64-linux-gnu/amdgcn/bitcode");
  candidates.push_back("/opt/rocm/amdgcn/bitcode");
  for (const std::string &c : candidates)
    if (isDir(c))
      return c;
  return candidates.front();
}

/// ld.lld (see ROCmTarget::parse).
static std::string findLld() {
  if (std::string p = env("ATTN_LLD"); !p.empty())
    return p;
  std::vector<std::string> candidates = {ATTN_LLVM_TOOLS_DIR "/ld.lld"};
  if (std::string rocm = env("ROCM_PATH"); !rocm.empty())
    candidates.push_back(rocm + "/llvm/bin/ld.lld");
  for (const std::string &c : candidates)
    if (llvm::sys::fs::can_execute(c))
      return c;
  return candidates.front();
}

bool ROCmTarget::parse(llvm::StringRef spec, ROCmTarget &out,
                       std::string &error) {
  out = ROCmTarget();
  out.deviceLibs = findDeviceLibs();
  out.lld = findLld();
  if (std::string cov = env("ATTN_ROCM_CODE_OBJECT_VERSION"); !cov.empty()) {
    if (cov != "4" && cov != "5") {
      error = "ATTN_ROCM_CODE_OBJECT_VERSION must be 4 or 5, not '" + cov + "'";
      return false;
    }
    out.codeObjectVersion = cov == "4" ? 4 : 5;
  }
  if (spec == "rocm")
    return true;
  std::string supported = llvm::join(supportedChips(), ", ");
  if (!spec.consume_front("rocm:")) {
    error = "unknown ROCm target '" + spec.str() +
            "' (expected rocm or rocm:CHIP[,CHIP...] with CHIP one of " +
            supported + ")";
    return false;
  }
  out.chips.clear();
  llvm::SmallVector<llvm::StringRef> parts;
  spec.split(parts, ',');
  for (llvm::StringRef chip : parts) {
    if (!llvm::is_contained(supportedChips(), chip)) {
      error = "unsupported ROCm chip '" + chip.str() +
              "' (supported: " + supported +
              "; the kernels are written for wave64 CDNA GPUs with MFMA and "
              "64 KiB of LDS: MI200 is gfx90a, MI300 gfx942)";
      return false;
    }
    if (!llvm::is_contained(out.chips, chip))
      out.chips.push_back(chip.str());
  }
  return true;
}

/// "path@size.mtime" of a file, or "path@missing".
static std::string fingerprint(const std::string &path) {
  llvm::sys::fs::file_status st;
  if (llvm::sys::fs::status(path, st))
    return path + "@missing";
  auto mtime = st.getLastModificationTime().time_since_epoch().count();
  return path + "@" + std::to_string(st.getSize()) + "." +
         std::to_string(mtime);
}

std::string ROCmTarget::key() const {
  return "rocm:" + llvm::join(chips, ",") + ";cov" +
         std::to_string(codeObjectVersion) + ";lld=" + fingerprint(lld) +
         ";ocml=" + fingerprint(deviceLibs + "/ocml.bc") +
         ";ockl=" + fingerprint(deviceLibs + "/ockl.bc");
}

std::string ROCmTarget::checkToolchain() const {
  if (!llvm::sys::fs::can_execute(lld))
    return "ld.lld not found at " + lld +
           " (install lld-22 with scripts/setup.sh, or set ATTN_LLD)";
  return "";
}

namespace {
/// <T>/llvm/bin/ld.lld and <T>/amdgcn/bitcode as links to the toolchain,
/// in a private temporary folder removed on destruction.
struct ToolkitLayout {
  llvm::SmallString<128> root;
  std::string error;
  explicit ToolkitLayout(const ROCmTarget &target) {
    if (std::error_code ec =
            llvm::sys::fs::createUniqueDirectory("attnc-rocm", root)) {
      error = "cannot create a temporary folder: " + ec.message();
      return;
    }
    llvm::SmallString<128> bin(root), amdgcn(root);
    llvm::sys::path::append(bin, "llvm", "bin");
    llvm::sys::path::append(amdgcn, "amdgcn");
    llvm::SmallString<128> lld(bin), libs(amdgcn);
    llvm::sys::path::append(lld, "ld.lld");
    llvm::sys::path::append(libs, "bitcode");
    std::error_code ec = llvm::sys::fs::create_directories(bin);
    if (!ec)
      ec = llvm::sys::fs::create_directories(amdgcn);
    if (!ec)
      ec = llvm::sys::fs::create_link(target.lld, lld);
    if (!ec)
      ec = llvm::sys::fs::create_link(target.deviceLibs, libs);
    if (ec)
      error = "cannot lay out the ROCm toolchain in " + root.str().str() +
              ": " + ec.message();
  }
  ~ToolkitLayout() {
    if (!root.empty())
      llvm::sys::fs::remove_directories(root);
  }
};
} // namespace

std::string mlir::attn::serializeROCDL(ModuleOp module,
                                       const ROCmTarget &target,
                                       llvm::StringRef format,
                                       std::string &out) {
  if (std::string e = target.checkToolchain(); !e.empty())
    return e;
  ToolkitLayout toolkit(target);
  if (!toolkit.error.empty())
    return toolkit.error;
  PassManager pm(module.getContext());
  GpuModuleToBinaryPassOptions options;
  options.toolkitPath = toolkit.root.str().str();
  options.compilationTarget = format.str();
  pm.addPass(createGpuModuleToBinaryPass(options));
  if (failed(pm.run(module)))
    return "compiling the ROCDL module to a code object failed";
  out.clear();
  for (auto binary : module.getBody()->getOps<gpu::BinaryOp>())
    for (Attribute attr : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(attr))
        out += object.getObject().getValue().str();
  if (out.empty())
    return "no gpu.module to compile";
  return "";
}

std::string
mlir::attn::readKernelReports(llvm::ArrayRef<char> hsaco, llvm::StringRef chip,
                              std::vector<ROCmKernelReport> &reports) {
  MLIRContext ctx;
  Builder b(&ctx);
  auto kernels = ROCDL::getAMDHSAKernelsELFMetadata(b, hsaco);
  if (!kernels)
    return "cannot read the kernels' metadata of the " + chip.str() +
           " code object";
  std::vector<ROCmKernelReport> found;
  for (auto &[name, attrs] : *kernels) {
    ROCmKernelReport r;
    r.chip = chip.str();
    r.function = name.getValue().str();
    auto get = [&](llvm::StringRef key) -> int64_t {
      if (auto a = llvm::dyn_cast_or_null<IntegerAttr>(attrs.get(key)))
        return a.getInt();
      return 0;
    };
    r.vgprs = get("vgpr_count");
    r.agprs = get("agpr_count");
    r.sgprs = get("sgpr_count");
    r.vgprSpills = get("vgpr_spill_count");
    r.sgprSpills = get("sgpr_spill_count");
    r.ldsBytes = get("group_segment_fixed_size");
    r.scratchBytes = get("private_segment_fixed_size");
    r.wavefrontSize = get("wavefront_size");
    found.push_back(r);
  }
  // The metadata's map has no order: by name, for stable reports.
  llvm::sort(found, [](const ROCmKernelReport &a, const ROCmKernelReport &b) {
    return a.function < b.function;
  });
  reports.insert(reports.end(), found.begin(), found.end());
  return "";
}

std::vector<char>
mlir::attn::createOffloadBundle(llvm::ArrayRef<ROCmImage> images) {
  constexpr llvm::StringLiteral magic = "__CLANG_OFFLOAD_BUNDLE__";
  constexpr uint64_t align = 4096;
  std::vector<std::pair<std::string, const std::vector<char> *>> entries;
  static const std::vector<char> empty;
  entries.push_back({"host-x86_64-unknown-linux-gnu-", &empty});
  for (const ROCmImage &img : images)
    entries.push_back({"hipv4-amdgcn-amd-amdhsa--" + img.chip, &img.hsaco});
  // The header: magic, count, then (offset, size, id length, id) each.
  uint64_t headerSize = magic.size() + 8;
  for (const auto &e : entries)
    headerSize += 24 + e.first.size();
  std::vector<char> out(magic.begin(), magic.end());
  auto put64 = [&](uint64_t v) {
    char buf[8];
    llvm::support::endian::write64le(buf, v);
    out.insert(out.end(), buf, buf + 8);
  };
  put64(entries.size());
  uint64_t offset = headerSize;
  std::vector<uint64_t> offsets;
  for (const auto &e : entries) {
    if (!e.second->empty())
      offset = llvm::alignTo(offset, align);
    offsets.push_back(offset);
    put64(offset);
    put64(e.second->size());
    put64(e.first.size());
    out.insert(out.end(), e.first.begin(), e.first.end());
    offset += e.second->size();
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    out.resize(offsets[i], 0);
    out.insert(out.end(), entries[i].second->begin(), entries[i].second->end());
  }
  return out;
}

std::string
mlir::attn::formatReports(llvm::ArrayRef<ROCmKernelReport> reports) {
  std::string s;
  llvm::raw_string_ostream os(s);
  // lds: the static LDS the code object declares (the kernels' dynamic
  // LDS is their variant's shared_mem_bytes, given at launch).
  const char *fmt = "{0,-8} {1,-36} {2,5} {3,5} {4,5} {5,7} {6,7} {7,6} "
                    "{8,7}\n";
  os << llvm::formatv(fmt, "chip", "kernel", "vgpr", "agpr", "sgpr", "vspill",
                      "sspill", "lds", "scratch");
  for (const ROCmKernelReport &r : reports)
    os << llvm::formatv(fmt, r.chip, r.function, r.vgprs, r.agprs, r.sgprs,
                        r.vgprSpills, r.sgprSpills, r.ldsBytes, r.scratchBytes);
  return s;
}
