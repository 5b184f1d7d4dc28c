//===- CompilerCUDA.cpp - the JIT door for CUDA kernels -------------------===//
//
// Compiles in process (MLIR passes, PTX through the NVPTX backend; ptxas and
// fatbinary run as the toolkit's programs) and caches the fatbin with a
// small text sidecar (signature, variants, ptxas report) under the same key
// scheme, in the same trusted store, as CPU kernels (detail::lookupOrCompile:
// ownership and mode checks, SHA-256 manifest, atomic publish, one compile
// per key across processes).
//
//===----------------------------------------------------------------------===//

#include "CompilerInternal.h"
#include "KernelCache.h"
#include "attn/Frontend/CompileCUDA.h"
#include "attn/Frontend/Driver.h"
#include "attn/JIT/Compiler.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"
#include <chrono>
#include <map>
#include <mutex>

using namespace attn;

namespace {
struct CUDAArtifacts {
  std::string signature; ///< signatureText()
  std::vector<mlir::attn::CUDAKernelVariant> variants;
  std::string report;
  std::vector<char> fatbin;
};

/// Images are interned for the life of the process (the runtime caches
/// CUDA modules by image address, so an image must never be freed and
/// another allocated in its place).
const std::vector<char> &internImage(const std::string &key,
                                     std::vector<char> bytes) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::vector<char>>> images;
  std::lock_guard<std::mutex> lock(mu);
  auto &slot = images[key];
  if (!slot)
    slot = std::make_unique<std::vector<char>>(std::move(bytes));
  return *slot;
}

std::string metaText(const CUDAArtifacts &a) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "sig " << a.signature << "\n";
  for (const auto &v : a.variants)
    os << "variant " << v.function << " " << v.maxHeadDim << " " << v.blockQ
       << " " << v.numThreads << " " << v.sharedBytes << "\n";
  os << "report\n" << a.report;
  return s;
}

bool parseMeta(llvm::StringRef text, CUDAArtifacts &a) {
  auto [head, report] = text.split("report\n");
  a.report = report.str();
  llvm::SmallVector<llvm::StringRef> lines;
  head.split(lines, '\n', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef line : lines) {
    if (line.consume_front("sig ")) {
      a.signature = line.str();
    } else if (line.consume_front("variant ")) {
      llvm::SmallVector<llvm::StringRef> f;
      line.split(f, ' ');
      mlir::attn::CUDAKernelVariant v;
      if (f.size() != 5 || f[1].getAsInteger(10, v.maxHeadDim) ||
          f[2].getAsInteger(10, v.blockQ) ||
          f[3].getAsInteger(10, v.numThreads) ||
          f[4].getAsInteger(10, v.sharedBytes))
        return false;
      v.function = f[0].str();
      a.variants.push_back(v);
    }
  }
  return !a.signature.empty() && !a.variants.empty();
}

} // namespace

std::unique_ptr<CUDAKernel> Compiler::compileCUDA(const std::string &spec,
                                                  const CompileOptions &options,
                                                  std::string &error) {
  auto start = std::chrono::steady_clock::now();
  std::string source, bufferName;
  if (!detail::readSpecSource(spec, source, bufferName, error))
    return nullptr;
  mlir::attn::CUDATarget target;
  if (!mlir::attn::CUDATarget::parse(options.target, target, error))
    return nullptr;
  if (options.dtype != "bf16" && options.dtype != "f16") {
    error =
        "CUDA kernels take bf16 or f16 q, k, v (dtype '" + options.dtype + "')";
    return nullptr;
  }
  auto params = options.params;
  std::sort(params.begin(), params.end());
  std::string keyText = source + "\n--\n";
  for (auto &[k, v] : params)
    keyText += k + "=" + v + "\n";
  keyText += "cuda tile=" + std::to_string(options.tileQ) + "x" +
             std::to_string(options.tileKV) + " dtype=" + options.dtype + "\n" +
             target.key() + "\n" + detail::compilerIdentity();
  const std::string key = detail::hashKey(keyText);

  const std::vector<std::string> suffixes = {".fatbin", ".cudameta"};
  auto build = [&](detail::ScratchDir &, std::vector<detail::CacheFile> &files,
                   std::string &err) -> bool {
    detail::SpecSession session;
    mlir::ModuleOp module = session.load(source, bufferName, options, err);
    if (!module)
      return false;
    mlir::attn::CUDAPipelineOptions schedule;
    if (options.tileQ > 0)
      schedule.tileQ = options.tileQ;
    if (options.tileKV > 0)
      schedule.tileKV = options.tileKV;
    schedule.elementType = options.dtype;
    mlir::attn::CUDAKernelInfo info;
    if (failed(mlir::attn::compileCUDA(module, target, schedule, info, err))) {
      err = session.diagnostics() + err;
      return false;
    }
    CUDAArtifacts a;
    a.signature = signatureText(info.name, 0, info.hasLse, info.signature);
    a.variants = info.variants;
    a.report = mlir::attn::formatReports(info.reports);
    std::string meta = metaText(a);
    files.clear();
    files.push_back({".fatbin", std::move(info.fatbin)});
    files.push_back({".cudameta", std::vector<char>(meta.begin(), meta.end())});
    return true;
  };
  // The artifacts of an entry; false if its sidecar does not parse.
  auto parse = [](detail::CacheResult &r, CUDAArtifacts &a) {
    a = CUDAArtifacts();
    if (!parseMeta(
            llvm::StringRef(r.files[1].bytes.data(), r.files[1].bytes.size()),
            a))
      return false;
    a.fatbin = std::move(r.files[0].bytes);
    return true;
  };

  detail::CacheResult result;
  CUDAArtifacts art;
  if (!detail::lookupOrCompile(options, key, suffixes, "", build, result,
                               error))
    return nullptr;
  if (!parse(result, art)) {
    // Only a verified entry written by hand gets here: replace it.
    const char *bad = "the CUDA kernel's metadata does not parse";
    if (!result.hit) {
      error = bad;
      return nullptr;
    }
    if (!detail::lookupOrCompile(options, key, suffixes,
                                 "verifies but its .cudameta does not parse",
                                 build, result, error))
      return nullptr;
    if (!parse(result, art)) {
      error = bad;
      return nullptr;
    }
  }
  bool hit = result.hit;

  std::unique_ptr<CUDAKernel> k(new CUDAKernel());
  int64_t tileQ = 0;
  bool hasLse = false;
  if (std::string e = parseSignatureText(art.signature, k->name_, tileQ, hasLse,
                                         k->signature_);
      !e.empty()) {
    error = e;
    return nullptr;
  }
  detail::fillInputDescs(k->signature_, k->dimPtrs_, k->fixedSizes_,
                         k->inputDescs_);
  for (const auto &v : art.variants)
    k->functions_.push_back(v.function);
  for (size_t i = 0; i < art.variants.size(); ++i) {
    const auto &v = art.variants[i];
    k->variants_.push_back(attn_cuda_kernel_variant_t{
        k->functions_[i].c_str(), static_cast<int32_t>(v.maxHeadDim),
        static_cast<int32_t>(v.blockQ), static_cast<int32_t>(v.numThreads),
        static_cast<int32_t>(v.sharedBytes)});
  }
  const std::vector<char> &image = internImage(key, std::move(art.fatbin));
  k->report_ = art.report;
  k->desc_ =
      attn_cuda_kernel_desc_t{ATTN_ABI_VERSION,
                              k->name_.c_str(),
                              image.data(),
                              static_cast<uint64_t>(image.size()),
                              static_cast<int32_t>(k->variants_.size()),
                              k->variants_.data(),
                              static_cast<int32_t>(k->inputDescs_.size()),
                              k->inputDescs_.data(),
                              hasLse ? 1 : 0};
  k->cacheHit_ = hit;
  k->seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return k;
}
