//===- Compiler.h - compile .attn specs to callable kernels -----*- C++ -*-===//
//
// The JIT door into attnc:
//
//   attn::Compiler compiler;
//   std::string err;
//   auto kernel = compiler.compile("examples/causal.attn", {}, err);
//   const DLTensor *inputs[] = {&q, &k, &v};
//   if (!kernel || kernel->run(inputs, &o, /*lse=*/nullptr) != ATTN_OK) ...
//
// Compiled kernels are shared libraries cached on disk, keyed by the spec
// text, params, target, schedule and the compiler build: a second process
// compiling the same spec loads the cached library instead of compiling.
//
// The cache is a trusted store: a per-user directory (created 0700) that is
// used only while it and every entry in it belong to the user and nobody
// else can write them; each entry records the SHA-256 and size of its files
// and is verified before use (a truncated or altered entry is removed and
// recompiled); entries are published atomically, and concurrent compiles of
// one kernel compile it once. A cache that cannot be used costs a
// `warning:`, never the compile: the kernel is then compiled in memory.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_JIT_COMPILER_H
#define ATTN_JIT_COMPILER_H

#include "attn/Signature.h"
#include "attn/runtime.h"
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace attn {

struct CompileOptions {
  /// Param overrides, "name" -> "value" (as `--param name=value`).
  std::vector<std::pair<std::string, std::string>> params;
  /// "cpu" (the host) or "cpu:NAME" (e.g. cpu:skylake-avx512).
  std::string target = "cpu";
  /// Schedule overrides; 0 keeps the heuristic.
  int64_t tileQ = 0, tileKV = 0;
  /// Linear attention: time steps per chunk of the chunked form; 0 selects
  /// the step-by-step recurrence (the decode form).
  int64_t linearChunk = 64;
  /// Linear attention: the kernel takes inputs `state` f32 [B, Hq, Dphi, Dv]
  /// (and `zstate` [B, Hq, Dphi] when normalized) after the spec's inputs,
  /// starts from them and writes the final state back (decode / pieces).
  bool linearState = false;
  /// Kernel cache; "" means $ATTN_CACHE_DIR, else $XDG_CACHE_HOME/attnc
  /// (when absolute), else $HOME/.cache/attnc, else the passwd home's
  /// .cache/attnc, else /tmp/attnc-cache-<uid> (never a directory shared
  /// between users: one owned by someone else is refused).
  std::string cacheDir;
  bool useCache = true;
  /// Receives the text of each warning (why the cache was not used; at most
  /// one per compile). Unset: printed to stderr as `warning: TEXT`, each
  /// distinct text once per process.
  std::function<void(const std::string &)> onWarning;
  /// CUDA (compileCUDA, target "cuda" or "cuda:sm_80,sm_90"): element type
  /// of the q, k, v a spec leaves undeclared, "bf16" or "f16".
  std::string dtype = "bf16";
};

/// A compiled kernel, loaded and ready to run.
class Kernel {
public:
  ~Kernel();
  Kernel(const Kernel &) = delete;
  Kernel &operator=(const Kernel &) = delete;

  /// Validates the tensors against the spec and runs on all cores (or
  /// `options->num_threads`). On failure returns the status;
  /// attn_last_error() has the message and nothing was written.
  attn_status_t run(const DLTensor *const *inputs, DLTensor *o,
                    DLTensor *lse = nullptr,
                    const attn_run_options_t *options = nullptr) const;

  const attn_kernel_desc_t &desc() const { return desc_; }
  const Signature &signature() const { return signature_; }
  /// True when the kernel came from the disk cache.
  bool cacheHit() const { return cacheHit_; }
  /// Seconds from compile() call to a loaded kernel.
  double compileSeconds() const { return seconds_; }
  /// The cache entry the kernel is stored in (`<cache>/<key>.so`), or ""
  /// when it was compiled without the cache. The code itself is loaded from
  /// a verified copy in memory, never from this path.
  const std::string &libraryPath() const { return path_; }

private:
  friend class Compiler;
  Kernel() = default;
  void *handle_ = nullptr;
  /// The memfd the library was loaded from (-1: none), kept open while the
  /// library is loaded: its /proc/self/fd name must not be reused meanwhile.
  int imageFd_ = -1;
  std::string loadName_;
  attn_kernel_desc_t desc_{};
  Signature signature_;
  std::string name_, path_;
  std::vector<attn_input_desc_t> inputDescs_;
  std::vector<std::vector<const char *>> dimPtrs_;
  std::vector<std::vector<int64_t>> fixedSizes_;
  bool cacheHit_ = false;
  double seconds_ = 0;
};

/// A compiled CUDA kernel: a fatbin with one kernel per head-dim variant and
/// its descriptor, launched through the runtime's attn_cuda_run (which loads
/// the driver with dlopen). The image lives as long as the process: the
/// runtime caches the CUDA module by image address.
class CUDAKernel {
public:
  /// Validates the device tensors and launches asynchronously on `stream`
  /// (a CUstream; NULL: the default stream).
  attn_status_t run(const DLTensor *const *inputs, DLTensor *o,
                    DLTensor *lse = nullptr, void *stream = nullptr) const {
    return attn_cuda_run(&desc_, inputs, o, lse, stream);
  }
  const attn_cuda_kernel_desc_t &desc() const { return desc_; }
  const Signature &signature() const { return signature_; }
  /// ptxas -v per chip and kernel (registers, spills), as a table.
  const std::string &ptxasReport() const { return report_; }
  bool cacheHit() const { return cacheHit_; }
  double compileSeconds() const { return seconds_; }

private:
  friend class Compiler;
  CUDAKernel() = default;
  attn_cuda_kernel_desc_t desc_{};
  Signature signature_;
  std::string name_, report_;
  std::vector<std::string> functions_;
  std::vector<attn_cuda_kernel_variant_t> variants_;
  std::vector<attn_input_desc_t> inputDescs_;
  std::vector<std::vector<const char *>> dimPtrs_;
  std::vector<std::vector<int64_t>> fixedSizes_;
  bool cacheHit_ = false;
  double seconds_ = 0;
};

class Compiler {
public:
  /// compile() for NVIDIA GPUs: `options.target` is "cuda" (sm_90) or
  /// "cuda:sm_80,sm_90,...". Needs the CUDA toolkit (ptxas, fatbinary) at
  /// compile time only; cached on disk like CPU kernels.
  std::unique_ptr<CUDAKernel> compileCUDA(const std::string &spec,
                                          const CompileOptions &options,
                                          std::string &error);

  /// Compiles `spec`: the path of a .attn file if one exists there, else the
  /// spec's source text. Returns null and sets `error` (spec errors come as
  /// `file:line:col: error: ...` lines with carets) on failure.
  std::unique_ptr<Kernel> compile(const std::string &spec,
                                  const CompileOptions &options,
                                  std::string &error);
  /// The cache directory `options` resolves to.
  static std::string cacheDirectory(const CompileOptions &options);

private:
  /// Loads a kernel library from its (verified) bytes.
  static std::unique_ptr<Kernel> loadLibrary(const std::vector<char> &image,
                                             const std::string &key,
                                             std::string &error);
};

/// Parses the signature text the compiler embeds in each kernel library
/// (also used by AOT headers). Returns "" or an error.
std::string parseSignatureText(const std::string &text, std::string &name,
                               int64_t &tileQ, bool &hasLse, Signature &sig);
/// The inverse of parseSignatureText.
std::string signatureText(const std::string &name, int64_t tileQ, bool hasLse,
                          const Signature &sig);

} // namespace attn

#endif
