//===- Compiler.cpp - compile .attn specs to callable kernels -------------===//
//
// compile(): hash the request; load the verified cache entry <cache>/<key>
// if there is one (a cache hit costs reading and hashing the library and a
// dlopen from memory); otherwise parse, lower, emit an object, link it into
// a shared library with ld.lld, publish it in the cache and load it. The
// library carries its own signature string, so loading needs no MLIR at all.
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
#include "attn/Frontend/CompileSpec.h"
#include "attn/Frontend/Driver.h"
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
  detail::releaseLibraryImage(imageFd_, loadName_);
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

//===----------------------------------------------------------------------===//
// Compiler::compile
//===----------------------------------------------------------------------===//

std::unique_ptr<Kernel> Compiler::loadLibrary(const std::vector<char> &image,
                                              const std::string &key,
                                              std::string &error) {
  std::unique_ptr<Kernel> k(new Kernel());
  k->handle_ =
      detail::loadLibraryImage(image, key, k->imageFd_, k->loadName_, error);
  if (!k->handle_)
    return nullptr;
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
  const std::string key = detail::hashKey(keyText);

  // An entry is the library and the spec's name (which names its symbols),
  // so a hit needs no parsing.
  const std::vector<std::string> suffixes = {".so", ".name"};
  auto build = [&](detail::ScratchDir &scratch,
                   std::vector<detail::CacheFile> &files,
                   std::string &err) -> bool {
    detail::SpecSession session;
    mlir::ModuleOp module = session.load(source, bufferName, options, err);
    if (!module)
      return false;
    mlir::attn::KernelInfo info;
    llvm::SmallVector<char> object;
    mlir::attn::CPUPipelineOptions schedule;
    schedule.tileQ = options.tileQ;
    schedule.tileKV = options.tileKV;
    schedule.linearChunk = options.linearChunk;
    schedule.linearState = options.linearState;
    if (failed(mlir::attn::compileToObject(module, target, schedule, info,
                                           object, err))) {
      err = session.diagnostics() + err;
      return false;
    }
    const std::string &dir = scratch.get(err);
    if (dir.empty())
      return false;
    std::string objPath = dir + "/kernel.o", libPath = dir + "/kernel.so";
    {
      std::error_code ec;
      llvm::raw_fd_ostream os(objPath, ec);
      if (!ec)
        os.write(object.data(), object.size());
      os.close();
      if (ec || os.has_error()) {
        err =
            "cannot write " + objPath + ": " + (ec ? ec : os.error()).message();
        os.clear_error();
        return false;
      }
    }
    if (std::string linkErr = mlir::attn::linkSharedLibrary(objPath, libPath);
        !linkErr.empty()) {
      err = linkErr;
      return false;
    }
    auto lib = llvm::MemoryBuffer::getFile(libPath, /*IsText=*/false,
                                           /*RequiresNullTerminator=*/false);
    if (!lib) {
      err = "cannot read " + libPath + ": " + lib.getError().message();
      return false;
    }
    files.clear();
    files.push_back({".so", std::vector<char>((*lib)->getBufferStart(),
                                              (*lib)->getBufferEnd())});
    std::string name = info.name + "\n";
    files.push_back({".name", std::vector<char>(name.begin(), name.end())});
    return true;
  };

  // Loads what lookupOrCompile produced and binds its kernel `attn_<name>`
  // and signature; "" or why it does not load.
  auto load = [&](const detail::CacheResult &r,
                  std::unique_ptr<Kernel> &k) -> std::string {
    std::string err;
    k = loadLibrary(r.files[0].bytes, key, err);
    if (!k)
      return err;
    std::string name =
        llvm::StringRef(r.files[1].bytes.data(), r.files[1].bytes.size())
            .trim()
            .str();
    void *sig = dlsym(k->handle_, ("attn_" + name + "_signature").c_str());
    void *fn = dlsym(k->handle_, ("attn_" + name).c_str());
    if (!sig || !fn) {
      k.reset();
      return "the kernel library lacks attn_" + name;
    }
    int64_t tileQ = 0;
    bool hasLse = false;
    err = parseSignatureText(static_cast<const char *>(sig), k->name_, tileQ,
                             hasLse, k->signature_);
    if (!err.empty()) {
      k.reset();
      return err;
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
    k->path_ = r.entryStem.empty() ? "" : r.entryStem + ".so";
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
