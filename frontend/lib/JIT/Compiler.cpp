//===- Compiler.cpp - compile .attn specs to callable kernels -------------===//
//
// compile(): hash the request; load <cache>/<hash>.so if present (a cache
// hit costs a dlopen); otherwise parse, lower, emit an object, link it into
// a shared library with ld.lld, move it into the cache atomically and load
// it. The library carries its own signature string, so loading needs no
// MLIR at all.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"
#include "CompilerInternal.h"
#include "attn/Frontend/CompileSpec.h"
#include "attn/Frontend/Driver.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"
#include <chrono>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attn;

#ifndef ATTN_VERSION
#define ATTN_VERSION "0.1.0"
#endif

//===----------------------------------------------------------------------===//
// Signature text: name=N;tile_q=64;has_lse=1;inputs=q:f32:B,Hq,N,Dqk|...
//===----------------------------------------------------------------------===//

std::string attn::signatureText(const std::string &name, int64_t tileQ,
                                bool hasLse, const Signature &sig) {
  std::string s = "v1;name=" + name + ";tile_q=" + std::to_string(tileQ) +
                  ";has_lse=" + (hasLse ? "1" : "0") + ";inputs=";
  for (size_t i = 0; i < sig.inputs.size(); ++i) {
    const InputSig &in = sig.inputs[i];
    s += (i ? "|" : "") + in.name + ":" + elemTypeName(in.type) + ":";
    for (size_t d = 0; d < in.dims.size(); ++d)
      s += (d ? "," : "") + (in.dims[d].symbol.empty()
                                 ? std::to_string(in.dims[d].size)
                                 : in.dims[d].symbol);
  }
  return s;
}

std::string attn::parseSignatureText(const std::string &text, std::string &name,
                                     int64_t &tileQ, bool &hasLse,
                                     Signature &sig) {
  llvm::SmallVector<llvm::StringRef> fields;
  llvm::StringRef(text).split(fields, ';');
  if (fields.empty() || fields[0] != "v1")
    return "unknown kernel signature format";
  sig.inputs.clear();
  for (llvm::StringRef f : llvm::ArrayRef(fields).drop_front()) {
    auto [key, value] = f.split('=');
    if (key == "name") {
      name = value.str();
    } else if (key == "tile_q") {
      if (value.getAsInteger(10, tileQ))
        return "bad tile_q in kernel signature";
    } else if (key == "has_lse") {
      hasLse = value == "1";
    } else if (key == "inputs") {
      llvm::SmallVector<llvm::StringRef> ins;
      value.split(ins, '|');
      for (llvm::StringRef in : ins) {
        llvm::SmallVector<llvm::StringRef> parts;
        in.split(parts, ':');
        if (parts.size() != 3)
          return "bad input in kernel signature";
        InputSig s;
        s.name = parts[0].str();
        if (parts[1] == "f32")
          s.type = ElemType::F32;
        else if (parts[1] == "bf16")
          s.type = ElemType::BF16;
        else if (parts[1] == "f16")
          s.type = ElemType::F16;
        else if (parts[1] == "i32")
          s.type = ElemType::I32;
        else
          return "bad element type in kernel signature";
        llvm::SmallVector<llvm::StringRef> dims;
        parts[2].split(dims, ',');
        for (llvm::StringRef d : dims) {
          DimRef r;
          if (d.getAsInteger(10, r.size))
            r.symbol = d.str();
          s.dims.push_back(r);
        }
        sig.inputs.push_back(std::move(s));
      }
    }
  }
  return "";
}

//===----------------------------------------------------------------------===//
// Kernel
//===----------------------------------------------------------------------===//

Kernel::~Kernel() {
  if (handle_)
    dlclose(handle_);
}

attn_status_t Kernel::run(const DLTensor *const *inputs, DLTensor *o,
                          DLTensor *lse,
                          const attn_run_options_t *options) const {
  return attn_cpu_run(&desc_, inputs, o, lse, options);
}

attn_elem_type_t attn::detail::toC(ElemType t) {
  switch (t) {
  case ElemType::F32:
    return ATTN_F32;
  case ElemType::BF16:
    return ATTN_BF16;
  case ElemType::F16:
    return ATTN_F16;
  case ElemType::I32:
    return ATTN_I32;
  }
  return ATTN_F32;
}

//===----------------------------------------------------------------------===//
// Compiler
//===----------------------------------------------------------------------===//

std::string Compiler::cacheDirectory(const CompileOptions &options) {
  if (!options.cacheDir.empty())
    return options.cacheDir;
  if (const char *d = getenv("ATTN_CACHE_DIR"); d && *d)
    return d;
  if (const char *x = getenv("XDG_CACHE_HOME"); x && *x)
    return std::string(x) + "/attnc";
  if (const char *h = getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/attnc";
  return "/tmp/attnc-cache";
}

/// Identifies this build of the compiler: the binary holding this code
/// (its path, size and mtime), so a rebuilt attnc never reuses kernels a
/// different build compiled.
std::string attn::detail::compilerIdentity() {
  static std::string id = [] {
    std::string s = ATTN_VERSION;
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&attn::detail::compilerIdentity),
               &info) &&
        info.dli_fname) {
      struct stat st;
      if (stat(info.dli_fname, &st) == 0)
        s += "|" + std::string(info.dli_fname) + "|" +
             std::to_string(st.st_size) + "|" + std::to_string(st.st_mtime);
    }
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

void detail::fillInputDescs(const Signature &s,
                            std::vector<std::vector<const char *>> &dimPtrs,
                            std::vector<std::vector<int64_t>> &fixedSizes,
                            std::vector<attn_input_desc_t> &descs) {
  dimPtrs.assign(s.inputs.size(), {});
  fixedSizes.assign(s.inputs.size(), {});
  descs.clear();
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    for (const DimRef &d : s.inputs[i].dims) {
      dimPtrs[i].push_back(d.symbol.empty() ? nullptr : d.symbol.c_str());
      fixedSizes[i].push_back(d.size);
    }
    descs.push_back(
        attn_input_desc_t{s.inputs[i].name.c_str(), toC(s.inputs[i].type),
                          static_cast<int32_t>(s.inputs[i].dims.size()),
                          dimPtrs[i].data(), fixedSizes[i].data()});
  }
}

std::string attn::detail::hashKey(const std::string &keyText) {
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(keyText)),
                     /*LowerCase=*/true)
      .substr(0, 32);
}

std::unique_ptr<Kernel> Compiler::loadLibrary(const std::string &path,
                                              std::string &error) {
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *e = dlerror();
    error = "cannot load kernel library " + path + ": " + (e ? e : "?");
    return nullptr;
  }
  // Find the signature: the library exports exactly one attn_*_signature.
  std::unique_ptr<Kernel> k(new Kernel());
  k->handle_ = handle;
  k->path_ = path;
  return k;
}

std::unique_ptr<Kernel> Compiler::compile(const std::string &spec,
                                          const CompileOptions &options,
                                          std::string &error) {
  auto start = std::chrono::steady_clock::now();
  std::string source, bufferName;
  if (!detail::readSpecSource(spec, source, bufferName, error))
    return nullptr;
  mlir::attn::CPUTarget target;
  if (!mlir::attn::CPUTarget::parse(options.target, target, error))
    return nullptr;

  // Cache key.
  auto params = options.params;
  std::sort(params.begin(), params.end());
  std::string keyText = source + "\n--\n";
  for (auto &[k, v] : params)
    keyText += k + "=" + v + "\n";
  keyText += "tile=" + std::to_string(options.tileQ) + "x" +
             std::to_string(options.tileKV) +
             " chunk=" + std::to_string(options.linearChunk) +
             (options.linearState ? " state" : "") + "\n" + target.key() +
             "\n" + detail::compilerIdentity();
  std::string key = detail::hashKey(keyText);
  std::string dir = cacheDirectory(options);
  std::string libPath = dir + "/" + key + ".so";

  std::string sigName;
  auto finish = [&](std::unique_ptr<Kernel> k,
                    bool hit) -> std::unique_ptr<Kernel> {
    if (!k)
      return nullptr;
    // Read the embedded signature: try the symbol of the spec's name.
    std::string name = sigName;
    void *sig = dlsym(k->handle_, ("attn_" + name + "_signature").c_str());
    void *fn = dlsym(k->handle_, ("attn_" + name).c_str());
    if (!sig || !fn) {
      error = "kernel library " + k->path_ + " lacks attn_" + name;
      return nullptr;
    }
    int64_t tileQ = 0;
    bool hasLse = false;
    std::string err = parseSignatureText(
        static_cast<const char *>(sig), k->name_, tileQ, hasLse, k->signature_);
    if (!err.empty()) {
      error = err;
      return nullptr;
    }
    const Signature &s = k->signature_;
    detail::fillInputDescs(s, k->dimPtrs_, k->fixedSizes_, k->inputDescs_);
    k->desc_ = attn_kernel_desc_t{ATTN_ABI_VERSION,
                                  k->name_.c_str(),
                                  static_cast<int32_t>(tileQ),
                                  static_cast<int32_t>(s.inputs.size()),
                                  k->inputDescs_.data(),
                                  hasLse ? 1 : 0,
                                  reinterpret_cast<attn_cpu_kernel_fn>(fn)};
    k->cacheHit_ = hit;
    k->seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    return k;
  };

  // The spec name is needed to find symbols; it is in the cache file name's
  // sidecar (<key>.name) so a hit does not need to parse the spec.
  std::string namePath = dir + "/" + key + ".name";
  if (options.useCache && llvm::sys::fs::exists(libPath)) {
    auto nameBuf = llvm::MemoryBuffer::getFile(namePath);
    if (nameBuf) {
      sigName = (*nameBuf)->getBuffer().trim().str();
      std::string loadErr;
      auto k = finish(loadLibrary(libPath, loadErr), /*hit=*/true);
      if (k)
        return k;
    }
  }

  // Miss: compile.
  detail::SpecSession session;
  mlir::ModuleOp module = session.load(source, bufferName, options, error);
  if (!module)
    return nullptr;
  mlir::attn::KernelInfo info;
  llvm::SmallVector<char> object;
  mlir::attn::CPUPipelineOptions schedule;
  schedule.tileQ = options.tileQ;
  schedule.tileKV = options.tileKV;
  schedule.linearChunk = options.linearChunk;
  schedule.linearState = options.linearState;
  if (failed(mlir::attn::compileToObject(module, target, schedule, info, object,
                                         error))) {
    error = session.diagnostics() + error;
    return nullptr;
  }
  sigName = info.name;

  std::string workDir = dir;
  if (!options.useCache) {
    llvm::SmallString<128> tmp;
    if (llvm::sys::fs::createUniqueDirectory("attnc", tmp)) {
      error = "cannot create a temporary directory";
      return nullptr;
    }
    workDir = tmp.str().str();
    libPath = workDir + "/" + key + ".so";
  } else if (std::error_code ec = llvm::sys::fs::create_directories(dir)) {
    error = "cannot create the kernel cache " + dir + ": " + ec.message();
    return nullptr;
  }
  // Write object and library under unique names, then rename into place so
  // concurrent compilers never see a half-written file.
  std::string unique = std::to_string(getpid()) + "." +
                       std::to_string(reinterpret_cast<uintptr_t>(&object));
  std::string objPath = workDir + "/" + key + "." + unique + ".o";
  std::string tmpLib = workDir + "/" + key + "." + unique + ".so";
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objPath, ec);
    if (ec) {
      error = "cannot write " + objPath + ": " + ec.message();
      return nullptr;
    }
    os.write(object.data(), object.size());
  }
  std::string linkErr = mlir::attn::linkSharedLibrary(objPath, tmpLib);
  llvm::sys::fs::remove(objPath);
  if (!linkErr.empty()) {
    error = linkErr;
    return nullptr;
  }
  if (options.useCache) {
    std::error_code ec;
    {
      llvm::raw_fd_ostream os(namePath + "." + unique, ec);
      if (!ec)
        os << info.name << "\n";
    }
    llvm::sys::fs::rename(namePath + "." + unique, namePath);
  }
  llvm::sys::fs::rename(tmpLib, libPath);
  auto k = finish(loadLibrary(libPath, error), /*hit=*/false);
  if (!options.useCache) {
    llvm::sys::fs::remove(libPath);
    llvm::sys::fs::remove(workDir);
  }
  return k;
}
