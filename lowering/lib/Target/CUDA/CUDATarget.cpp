//===- CUDATarget.cpp - NVVM gpu.modules to PTX, cubin and fatbin ---------===//
//
// ptxas and fatbinary run as subprocesses (as gpu-module-to-binary itself
// does for its `bin` format). We run ptxas ourselves rather than asking
// gpu-module-to-binary for a cubin so that its -v report (registers, spills,
// shared memory) reaches `attnc --verbose` and the tests.
//
//===----------------------------------------------------------------------===//

#include "attn/Target/CUDATarget.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/raw_ostream.h"
#include <cstdlib>

using namespace mlir;
using namespace mlir::attn;

bool CUDATarget::parse(llvm::StringRef spec, CUDATarget &out,
                       std::string &error) {
  out = CUDATarget();
  if (const char *t = std::getenv("ATTN_CUDA_TOOLKIT"); t && *t)
    out.toolkit = t;
  else if (const char *h = std::getenv("CUDA_HOME"); h && *h)
    out.toolkit = h;
  else
    out.toolkit = "/usr/local/cuda";
  if (spec == "cuda")
    return true;
  if (!spec.consume_front("cuda:")) {
    error = "unknown CUDA target '" + spec.str() +
            "' (expected cuda or cuda:sm_XX[,sm_YY...])";
    return false;
  }
  out.chips.clear();
  llvm::SmallVector<llvm::StringRef> parts;
  spec.split(parts, ',');
  for (llvm::StringRef chip : parts) {
    unsigned sm = 0;
    llvm::StringRef digits = chip;
    bool archSpecific = digits.consume_back("a");
    if (!digits.consume_front("sm_") || digits.getAsInteger(10, sm) ||
        sm < 80) {
      error = "unsupported CUDA chip '" + chip.str() +
              "' (the kernels use mma.sync and cp.async: sm_80 or newer, "
              "e.g. sm_80, sm_86, sm_89, sm_90, sm_90a)";
      return false;
    }
    (void)archSpecific;
    out.chips.push_back(chip.str());
  }
  return true;
}

std::string CUDATarget::ptxFeatures(llvm::StringRef chip) {
  // PTX 8.0 (CUDA 12.0) covers sm_80 ... sm_90a; newer chips need newer ISAs.
  unsigned sm = 0;
  chip.drop_front(3).take_while(llvm::isDigit).getAsInteger(10, sm);
  if (sm >= 120)
    return "+ptx87";
  if (sm >= 100)
    return "+ptx86";
  return "+ptx80";
}

int64_t CUDATarget::maxSharedBytes(llvm::StringRef chip) {
  unsigned sm = 0;
  chip.drop_front(3).take_while(llvm::isDigit).getAsInteger(10, sm);
  // CUDA C Programming Guide, "Technical Specifications per Compute
  // Capability": the opt-in maximum per block.
  switch (sm) {
  case 80:
  case 87:
    return 163 * 1024;
  case 86:
  case 89:
  case 120:
    return 99 * 1024;
  default:
    return 227 * 1024;
  }
}

int64_t CUDATarget::sharedLimit() const {
  int64_t limit = 227 * 1024;
  for (const std::string &chip : chips)
    limit = std::min(limit, maxSharedBytes(chip));
  return limit;
}

std::string CUDATarget::key() const {
  return "cuda:" + llvm::join(chips, ",") + "@" + toolkit;
}

std::string CUDATarget::checkToolkit() const {
  for (const char *tool : {"ptxas", "fatbinary"}) {
    llvm::SmallString<128> path(toolkit);
    llvm::sys::path::append(path, "bin", tool);
    if (!llvm::sys::fs::can_execute(path))
      return "CUDA toolkit not found: no executable " + path.str().str() +
             " (install the toolkit or set ATTN_CUDA_TOOLKIT / CUDA_HOME)";
  }
  return "";
}

std::string mlir::attn::translateToPTX(ModuleOp module,
                                       const CUDATarget &target,
                                       std::string &ptx) {
  PassManager pm(module.getContext());
  GpuModuleToBinaryPassOptions options;
  options.toolkitPath = target.toolkit;
  options.compilationTarget = "isa";
  pm.addPass(createGpuModuleToBinaryPass(options));
  if (failed(pm.run(module)))
    return "translation of the NVVM module to PTX failed";
  ptx.clear();
  for (auto binary : module.getBody()->getOps<gpu::BinaryOp>())
    for (Attribute attr : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(attr))
        ptx += object.getObject().getValue().str();
  if (ptx.empty())
    return "no gpu.module to translate";
  // Without libdevice linked, math calls stay external and ptxas fails
  // later with a less helpful message.
  if (llvm::StringRef(ptx).contains(".extern .func __nv_"))
    return "libdevice was not linked (check the CUDA toolkit at " +
           target.toolkit + ")";
  return "";
}

namespace {
/// A temporary file removed on destruction.
struct TempFile {
  llvm::SmallString<128> path;
  explicit TempFile(llvm::StringRef suffix) {
    llvm::sys::fs::createTemporaryFile("attnc", suffix, path);
  }
  ~TempFile() { llvm::sys::fs::remove(path); }
};

std::string writeFile(llvm::StringRef path, llvm::StringRef data) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return "cannot write " + path.str() + ": " + ec.message();
  os << data;
  return "";
}

std::string readFile(llvm::StringRef path, std::vector<char> &out) {
  auto buf = llvm::MemoryBuffer::getFile(path, /*IsText=*/false);
  if (!buf)
    return "cannot read " + path.str() + ": " + buf.getError().message();
  out.assign((*buf)->getBufferStart(), (*buf)->getBufferEnd());
  return "";
}

/// Runs a toolkit program; its stdout+stderr go to `log`.
std::string runTool(const CUDATarget &target, llvm::StringRef tool,
                    llvm::ArrayRef<std::string> args, std::string &log) {
  llvm::SmallString<128> path(target.toolkit);
  llvm::sys::path::append(path, "bin", tool);
  TempFile out(".log");
  llvm::SmallVector<llvm::StringRef> argv = {path};
  for (const std::string &a : args)
    argv.push_back(a);
  std::optional<llvm::StringRef> redirects[] = {
      std::nullopt, llvm::StringRef(out.path), llvm::StringRef(out.path)};
  std::string err;
  int rc = llvm::sys::ExecuteAndWait(path, argv, std::nullopt, redirects, 0, 0,
                                     &err);
  std::vector<char> text;
  readFile(out.path, text);
  log.assign(text.begin(), text.end());
  if (rc != 0)
    return tool.str() + " failed" + (err.empty() ? "" : ": " + err) + "\n" +
           log;
  return "";
}
} // namespace

std::string mlir::attn::assemblePTX(const CUDATarget &target,
                                    llvm::StringRef chip, llvm::StringRef ptx,
                                    std::vector<char> &cubin,
                                    std::vector<CUDAKernelReport> &reports) {
  if (std::string e = target.checkToolkit(); !e.empty())
    return e;
  TempFile in(".ptx"), out(".cubin");
  if (std::string e = writeFile(in.path, ptx); !e.empty())
    return e;
  std::string log;
  if (std::string e = runTool(target, "ptxas",
                              {"-arch=" + chip.str(), "-O3", "-v",
                               in.path.str().str(), "-o", out.path.str().str()},
                              log);
      !e.empty())
    return e;
  if (std::string e = readFile(out.path, cubin); !e.empty())
    return e;
  // ptxas info    : Function properties for attn_causal_d128
  //     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
  // ptxas info    : Used 168 registers, used 1 barriers, 1 bytes smem, ...
  llvm::Regex props("Function properties for ([A-Za-z0-9_]+)");
  llvm::Regex frame(
      "([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) "
      "bytes spill loads");
  llvm::Regex used("Used ([0-9]+) registers");
  llvm::Regex smem("([0-9]+) bytes smem");
  llvm::SmallVector<llvm::StringRef> lines;
  llvm::StringRef(log).split(lines, '\n');
  CUDAKernelReport *cur = nullptr;
  for (llvm::StringRef line : lines) {
    llvm::SmallVector<llvm::StringRef> m;
    if (props.match(line, &m)) {
      reports.push_back(CUDAKernelReport());
      cur = &reports.back();
      cur->chip = chip.str();
      cur->function = m[1].str();
    } else if (cur && frame.match(line, &m)) {
      m[1].getAsInteger(10, cur->stackBytes);
      m[2].getAsInteger(10, cur->spillStores);
      m[3].getAsInteger(10, cur->spillLoads);
    } else if (cur && used.match(line, &m)) {
      m[1].getAsInteger(10, cur->registers);
      llvm::SmallVector<llvm::StringRef> s;
      if (smem.match(line, &s))
        s[1].getAsInteger(10, cur->staticSharedBytes);
    }
  }
  return "";
}

std::string mlir::attn::createFatbin(const CUDATarget &target,
                                     llvm::ArrayRef<CUDAImage> images,
                                     std::vector<char> &fatbin) {
  if (images.empty())
    return "no CUDA image to bundle";
  std::vector<std::unique_ptr<TempFile>> files;
  std::vector<std::string> args = {"-64", "--compress-all"};
  for (const CUDAImage &img : images) {
    files.push_back(std::make_unique<TempFile>(".cubin"));
    if (std::string e =
            writeFile(files.back()->path,
                      llvm::StringRef(img.cubin.data(), img.cubin.size()));
        !e.empty())
      return e;
    std::string sm = llvm::StringRef(img.chip).drop_front(3).str();
    args.push_back("--image3=kind=elf,sm=" + sm +
                   ",file=" + files.back()->path.str().str());
  }
  // The newest PTX lets the driver JIT the kernels for later GPUs.
  const CUDAImage &last = images.back();
  files.push_back(std::make_unique<TempFile>(".ptx"));
  if (std::string e = writeFile(files.back()->path, last.ptx); !e.empty())
    return e;
  args.push_back(
      "--image3=kind=ptx,sm=" + llvm::StringRef(last.chip).drop_front(3).str() +
      ",file=" + files.back()->path.str().str());
  TempFile out(".fatbin");
  args.push_back("--create=" + out.path.str().str());
  std::string log;
  if (std::string e = runTool(target, "fatbinary", args, log); !e.empty())
    return e;
  return readFile(out.path, fatbin);
}

std::string
mlir::attn::formatReports(llvm::ArrayRef<CUDAKernelReport> reports) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << llvm::formatv("{0,-8} {1,-36} {2,5} {3,7} {4,7} {5,7}\n", "chip",
                      "kernel", "regs", "spill-st", "spill-ld", "stack");
  for (const CUDAKernelReport &r : reports)
    os << llvm::formatv("{0,-8} {1,-36} {2,5} {3,7} {4,7} {5,7}\n", r.chip,
                        r.function, r.registers, r.spillStores, r.spillLoads,
                        r.stackBytes);
  return s;
}
