//===- Compiler.cpp - compile .attn specs to callable kernels -------------===//
//
// compile(): parse the target through the backend registry and hash the
// request; load the verified cache entry <cache>/<key> if there is one (a
// hit costs reading and hashing the code and binding it: a dlopen from
// memory for CPU libraries); otherwise parse, lower and compile through the
// backend, publish the entry and bind it. An entry is the code (`.so`,
// `.fatbin`: the backend's suffix) and a small text file (`.meta`: the
// signature, backend lines, the report), so loading needs no MLIR at all.
//
// The cache is a trusted store (KernelCache.cpp): entries are used only when
// the directory and the files belong to the user and nobody else can write
// them, and only after their size and SHA-256 match the manifest written
// with them.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"
#include "CompilerInternal.h"
#include "KernelCache.h"
#include "attn/Frontend/Driver.h"
#include "attn/Target/Backend.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"
#include <algorithm>
#include <chrono>
#include <dlfcn.h>
#include <sys/stat.h>

using namespace attn;

#ifndef ATTN_VERSION
#define ATTN_VERSION "0.1.0"
#endif

//===----------------------------------------------------------------------===//
// Kernel
//===----------------------------------------------------------------------===//

Kernel::Kernel() = default;
Kernel::~Kernel() = default;

namespace {
/// The descriptor `desc` holds for `deviceType`, or nullptr.
const void *targetOf(const attn_kernel_t &desc, int32_t deviceType) {
  for (int32_t i = 0; i < desc.num_targets; ++i)
    if (desc.targets[i].device_type == deviceType)
      return desc.targets[i].desc;
  return nullptr;
}
} // namespace

attn_status_t Kernel::run(const DLTensor *const *inputs, DLTensor *o,
                          DLTensor *lse, const attn_run_options_t *options,
                          void *stream) const {
  return attn_run(&desc_, inputs, o, lse, options, stream);
}

attn_status_t Kernel::runBatch(const DLTensor *const *inputs,
                               const attn_batch_layout_t &layout, DLTensor *o,
                               DLTensor *lse,
                               const attn_run_options_t *options) const {
  if (const void *cpu = targetOf(desc_, kDLCPU))
    return attn_cpu_run_batch(static_cast<const attn_kernel_desc_t *>(cpu),
                              inputs, &layout, o, lse, options);
  // No CPU code: the runtime's own message ("cpu_fn is NULL (not compiled
  // for the CPU)").
  attn_kernel_desc_t none{};
  none.abi_version = ATTN_ABI_VERSION;
  none.name = name_.c_str();
  none.tile_q = 1;
  return attn_cpu_run_batch(&none, inputs, &layout, o, lse, options);
}

attn_status_t Kernel::runBatch(const DLTensor *const *inputs,
                               const attn_gpu_batch_layout_t &layout,
                               DLTensor *o, DLTensor *lse, void *stream) const {
  if (const void *cuda = targetOf(desc_, kDLCUDA))
    return attn_cuda_run_batch(
        static_cast<const attn_cuda_kernel_desc_t *>(cuda), inputs, &layout, o,
        lse, stream);
  // No CUDA code: the runtime's own message ("image is NULL (not compiled
  // for CUDA)").
  attn_cuda_kernel_desc_t none{};
  none.abi_version = ATTN_ABI_VERSION;
  none.name = name_.c_str();
  return attn_cuda_run_batch(&none, inputs, &layout, o, lse, stream);
}

attn_status_t Kernel::backward(const DLTensor *const *inputs, const DLTensor *o,
                               const DLTensor *lse, const DLTensor *dout,
                               const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                               DLTensor *dv, DLTensor *const *daux,
                               const attn_run_options_t *options,
                               void *stream) const {
  return binding_->runBackward(inputs, o, lse, dout, dlse, dq, dk, dv, daux,
                               options, stream);
}

//===----------------------------------------------------------------------===//
// Compiler
//===----------------------------------------------------------------------===//

/// Identifies this build of the compiler: the binary holding this code
/// (its canonical path, size and mtime in ns), so a rebuilt attnc never
/// reuses kernels a different build compiled.
std::string attn::detail::compilerIdentity() {
  static std::string id = [] {
    // The runtime ABI is part of the identity: a library built for another
    // calling convention (e.g. ABI 1 kernels without the status word) must
    // never be loaded by this build.
    std::string s =
        std::string(ATTN_VERSION) + "|abi" + std::to_string(ATTN_ABI_VERSION);
    Dl_info info;
    if (!dladdr(reinterpret_cast<void *>(&attn::detail::compilerIdentity),
                &info) ||
        !info.dli_fname)
      return s;
    // For code in the main program dladdr names argv[0] as typed (relative,
    // or a bare name found through PATH, which stat() would miss, dropping
    // the build from the key): use the executable itself then.
    std::string file = info.dli_fname;
    if (file.empty() || file[0] != '/')
      file = "/proc/self/exe";
    llvm::SmallString<256> real;
    if (!llvm::sys::fs::real_path(file, real))
      file = real.str().str();
    struct stat st;
    if (stat(file.c_str(), &st) == 0)
      s += "|" + file + "|" + std::to_string(st.st_size) + "|" +
           std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec);
    return s;
  }();
  return id;
}

bool attn::detail::readSpecSource(const std::string &spec, std::string &source,
                                  std::string &bufferName, std::string &error) {
  // A file if one exists at `spec`, else the text itself.
  source = spec;
  bufferName = "<spec>";
  if (spec.find('\n') != std::string::npos ||
      spec.find('{') != std::string::npos)
    return true;
  auto buf = llvm::MemoryBuffer::getFile(spec);
  if (!buf) {
    error = "cannot read spec file '" + spec + "': " + buf.getError().message();
    return false;
  }
  source = (*buf)->getBuffer().str();
  bufferName = spec;
  return true;
}

detail::SpecSession::SpecSession() {
  ctx.printOpOnDiagnostic(false);
  mlir::attn::loadAttnDialects(ctx);
}

mlir::ModuleOp detail::SpecSession::load(const std::string &source,
                                         const std::string &bufferName,
                                         const CompileOptions &options,
                                         std::string &error) {
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, bufferName), llvm::SMLoc());
  std::vector<std::string> paramList;
  for (auto &[k, v] : options.params)
    paramList.push_back(k + "=" + v);
  std::string paramError;
  module = mlir::attn::loadSpec(ctx, sourceMgr, id, paramList, paramError);
  if (!module) {
    error = paramError.empty() ? diagText : paramError;
    return nullptr;
  }
  return *module;
}

std::string attn::detail::hashKey(const std::string &keyText) {
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(keyText)),
                     /*LowerCase=*/true)
      .substr(0, 32);
}

//===----------------------------------------------------------------------===//
// Compiler::compile
//===----------------------------------------------------------------------===//

namespace {

/// Libraries come from verified bytes in memory (KernelCache.cpp).
class MemoryLibrary final : public mlir::attn::LoadedLibrary {
public:
  ~MemoryLibrary() override {
    if (handle)
      dlclose(handle);
    detail::releaseLibraryImage(fd, loadName);
  }
  void *symbol(llvm::StringRef name) const override {
    return dlsym(handle, name.str().c_str());
  }
  void *handle = nullptr;
  int fd = -1;
  std::string loadName;
};

class JITLoadHost final : public mlir::attn::LoadHost {
public:
  std::unique_ptr<mlir::attn::LoadedLibrary>
  loadSharedLibrary(llvm::ArrayRef<char> image, const std::string &key,
                    std::string &error) const override {
    auto lib = std::make_unique<MemoryLibrary>();
    lib->handle =
        detail::loadLibraryImage(image, key, lib->fd, lib->loadName, error);
    if (!lib->handle)
      return nullptr;
    return lib;
  }
};

/// The `.meta` file of a cache entry: "sig <signature text>", the backend's
/// lines, then "report" and the report's text to the end.
std::string metaText(const mlir::attn::KernelImage &image) {
  std::string s = "sig " + mlir::attn::signatureText(image.info) + "\n";
  for (const std::string &line : image.meta)
    s += line + "\n";
  return s + "report\n" + image.report;
}

/// The inverse of metaText; "" or why it does not parse.
std::string parseMeta(llvm::StringRef text, mlir::attn::KernelImage &image) {
  auto [head, report] = text.split("report\n");
  image.report = report.str();
  image.meta.clear();
  llvm::SmallVector<llvm::StringRef> lines;
  head.split(lines, '\n', -1, /*KeepEmpty=*/false);
  if (lines.empty() || !lines[0].consume_front("sig "))
    return "the kernel's metadata has no signature";
  if (std::string e = mlir::attn::parseSignatureText(lines[0], image.info);
      !e.empty())
    return e;
  for (llvm::StringRef line : llvm::ArrayRef(lines).drop_front())
    image.meta.push_back(line.str());
  return "";
}

std::string cacheKeyText(const std::string &source,
                         const CompileOptions &options,
                         const mlir::attn::Schedule &schedule,
                         const mlir::attn::BackendTarget &target) {
  auto params = options.params;
  std::sort(params.begin(), params.end());
  std::string keyText = source + "\n--\n";
  for (auto &[k, v] : params)
    keyText += k + "=" + v + "\n";
  return keyText + schedule.key() + "\n" + target.backend().name().str() + " " +
         target.key() + "\n" + detail::compilerIdentity();
}

mlir::attn::Schedule scheduleFor(const CompileOptions &options) {
  mlir::attn::Schedule schedule;
  schedule.tileQ = options.tileQ;
  schedule.tileKV = options.tileKV;
  schedule.linearChunk = options.linearChunk;
  schedule.linearState = options.linearState;
  schedule.pagedKV = options.pagedKV;
  schedule.decodeKernels = options.decodeKernels;
  schedule.backward = options.backward;
  schedule.elementType = options.dtype;
  schedule.headDims.assign(options.headDims.begin(), options.headDims.end());
  return schedule;
}

} // namespace

std::unique_ptr<Kernel> Compiler::compile(const std::string &spec,
                                          const CompileOptions &options,
                                          std::string &error) {
  auto start = std::chrono::steady_clock::now();
  std::string source, bufferName;
  if (!detail::readSpecSource(spec, source, bufferName, error))
    return nullptr;
  std::unique_ptr<mlir::attn::BackendTarget> target =
      mlir::attn::parseTarget(options.target, error);
  if (!target)
    return nullptr;
  const mlir::attn::Schedule schedule = scheduleFor(options);
  if (std::string e = target->checkSchedule(schedule); !e.empty()) {
    error = e;
    return nullptr;
  }
  const std::string key =
      detail::hashKey(cacheKeyText(source, options, schedule, *target));

  const std::string codeSuffix = target->backend().codeSuffix().str();
  const std::vector<std::string> suffixes = {codeSuffix, ".meta"};
  auto build = [&](detail::ScratchDir &scratch,
                   std::vector<detail::CacheFile> &files,
                   std::string &err) -> bool {
    detail::SpecSession session;
    mlir::ModuleOp module = session.load(source, bufferName, options, err);
    if (!module)
      return false;
    const std::string &dir = scratch.get(err);
    if (dir.empty())
      return false;
    mlir::attn::KernelImage image;
    if (failed(target->compile(module, schedule, dir, image, err))) {
      err = session.diagnostics() + err;
      if (err.empty())
        err = "lowering failed";
      return false;
    }
    std::string meta = metaText(image);
    files.clear();
    files.push_back({codeSuffix, std::move(image.code)});
    files.push_back({".meta", std::vector<char>(meta.begin(), meta.end())});
    return true;
  };

  // Binds what lookupOrCompile produced; "" or why it does not load.
  JITLoadHost host;
  auto load = [&](detail::CacheResult &r,
                  std::unique_ptr<Kernel> &k) -> std::string {
    mlir::attn::KernelImage image;
    if (std::string e = parseMeta(
            llvm::StringRef(r.files[1].bytes.data(), r.files[1].bytes.size()),
            image);
        !e.empty())
      return e;
    image.code = std::move(r.files[0].bytes);
    std::string err;
    k.reset(new Kernel());
    k->binding_ = target->load(image, key, host, err);
    if (!k->binding_) {
      k.reset();
      return err;
    }
    k->name_ = image.info.name;
    k->signature_ = image.info.signature;
    k->hasLse_ = image.info.hasLse;
    k->tileQ_ = image.info.tileQ;
    k->report_ = image.report;
    k->target_ = options.target;
    k->deviceType_ = target->backend().deviceType();
    k->target_desc_ = k->binding_->target();
    k->backwardDesc_ = k->binding_->backwardDesc();
    k->gpuBackwardDesc_ = k->binding_->gpuBackwardDesc();
    k->gradientInputs_ = image.info.gradInputs;
    k->desc_ =
        attn_kernel_t{ATTN_ABI_VERSION, k->name_.c_str(), 1, &k->target_desc_};
    k->path_ = r.entryStem.empty() ? "" : r.entryStem + codeSuffix;
    k->cacheHit_ = r.hit;
    return "";
  };

  detail::CacheResult result;
  if (!detail::lookupOrCompile(options, key, suffixes, "", build, result,
                               error))
    return nullptr;
  std::unique_ptr<Kernel> k;
  std::string loadError = load(result, k);
  if (!loadError.empty() && result.hit) {
    // A verified entry that does not load (written by hand, or by a build
    // with a colliding identity): replace it.
    if (!detail::lookupOrCompile(options, key, suffixes,
                                 "verifies but does not load (" + loadError +
                                     ")",
                                 build, result, error))
      return nullptr;
    loadError = load(result, k);
  }
  if (!loadError.empty()) {
    error = loadError;
    return nullptr;
  }
  k->seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return k;
}
