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
// One Compiler and one Kernel for every backend: `options.target` picks the
// backend through the registry (attn/Target/Backend.h), and Kernel::run
// runs where the tensors are (the runtime's attn_run).
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

namespace mlir::attn {
class KernelBinding;
} // namespace mlir::attn

namespace attn {

struct CompileOptions {
  /// Param overrides, "name" -> "value" (as `--param name=value`).
  std::vector<std::pair<std::string, std::string>> params;
  /// Where the kernel runs, as `attnc --target`: "cpu" (the host),
  /// "cpu:NAME" (e.g. cpu:skylake-avx512), "cuda" (sm_90),
  /// "cuda:sm_80,sm_90"; the backends this build has are listed by
  /// `attnc --help`.
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
  /// Softmax family: also compile the kernels that read K and V from a
  /// paged cache (page pools, a block table and per-sequence lengths), for
  /// runBatch() with a paged layout (docs/language.md, "Ragged batches and
  /// paged KV caches"); on CUDA the batch prefill kernels, which runBatch()
  /// needs for sequences of more than 16 queries (ragged or paged).
  bool pagedKV = false;
  /// Softmax specs: also compile the decode schedule's kernels (CPU: the
  /// head-dim-in-lanes and wide decode kernels; CUDA: split-KV decode and
  /// merge). false saves their compile time (CPU ~0.6 s a spec, CUDA about
  /// 40 % of ptxas's); run() then takes the prefill kernel for every N.
  bool decodeKernels = true;
  /// Compile the gradients' kernel instead of the forward (CPU, softmax
  /// family): the Kernel's backward() computes dq, dk, dv and the aux
  /// gradients (docs/language.md section 15); its run() is not available.
  /// Compile the spec twice, with false and true, for a training step.
  bool backward = false;
  /// GPU targets: element type of the q, k, v a spec leaves undeclared,
  /// "bf16" or "f16" ("": bf16). CPU kernels take the spec's types.
  std::string dtype;
  /// GPU targets: padded head dims to build variants for (empty: 64, 128).
  std::vector<int64_t> headDims;
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
};

/// A compiled kernel, loaded and ready to run on the device its target
/// names. One type for every backend: run() hands the tensors to the
/// runtime's attn_run(), which dispatches on q's DLPack device.
class Kernel {
public:
  ~Kernel();
  Kernel(const Kernel &) = delete;
  Kernel &operator=(const Kernel &) = delete;

  /// Validates the tensors against the spec and runs where they are: on all
  /// cores (or `options->num_threads`) for host tensors; launched
  /// asynchronously on `stream` (a CUstream; NULL: the default stream) for
  /// CUDA tensors. On failure returns the status; attn_last_error() has the
  /// message and nothing was written.
  attn_status_t run(const DLTensor *const *inputs, DLTensor *o,
                    DLTensor *lse = nullptr,
                    const attn_run_options_t *options = nullptr,
                    void *stream = nullptr) const;

  /// A ragged and/or paged batch (attn_batch_layout_t: packed q with
  /// cu_seqlens_q; packed k, v with cu_seqlens_k, or page pools with a block
  /// table and kv_lens, the latter needing CompileOptions::pagedKV) through
  /// the runtime's attn_cpu_run_batch(). CPU kernels only: another target
  /// gets the runtime's INVALID_ARGUMENT ("not compiled for the CPU").
  /// Errors as run().
  attn_status_t runBatch(const DLTensor *const *inputs,
                         const attn_batch_layout_t &layout, DLTensor *o,
                         DLTensor *lse = nullptr,
                         const attn_run_options_t *options = nullptr) const;
  /// The same on a CUDA device (attn_cuda_run_batch: int32 tables on q's
  /// device, the longest runs given; one decode launch and one merge launch
  /// on `stream`, a CUstream, NULL: the default stream, or past 16 queries
  /// one launch of the batch prefill kernel, compiled with pagedKV). Another
  /// target gets the runtime's INVALID_ARGUMENT ("not compiled for CUDA").
  attn_status_t runBatch(const DLTensor *const *inputs,
                         const attn_gpu_batch_layout_t &layout, DLTensor *o,
                         DLTensor *lse = nullptr, void *stream = nullptr) const;
  /// A gradients' kernel (CompileOptions::backward): given the forward's
  /// inputs, its o and lse (softmax) and the output gradient dout (and
  /// optionally dlse), writes dq, dk, dv and one gradient per
  /// gradientInputs() name into `daux` (float32, that input's shape),
  /// through attn_cpu_run_backward (`options`) for a CPU kernel, or
  /// attn_cuda_run_backward / attn_rocm_run_backward on `stream` (a CUstream
  /// or hipStream_t; NULL: the default stream) for a GPU kernel (dout then
  /// has q's bf16/f16 type). A forward kernel gets the runtime's
  /// INVALID_ARGUMENT for a NULL descriptor.
  attn_status_t backward(const DLTensor *const *inputs, const DLTensor *o,
                         const DLTensor *lse, const DLTensor *dout,
                         const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                         DLTensor *dv, DLTensor *const *daux = nullptr,
                         const attn_run_options_t *options = nullptr,
                         void *stream = nullptr) const;
  /// Whether this is a gradients' kernel.
  bool isBackward() const {
    return backwardDesc_ != nullptr || gpuBackwardDesc_ != nullptr;
  }
  /// A gradients' kernel: the aux inputs that get a gradient, in `daux`
  /// order.
  const std::vector<std::string> &gradientInputs() const {
    return gradientInputs_;
  }
  /// The runtime's descriptor (for attn_run from C).
  const attn_kernel_t &desc() const { return desc_; }
  /// A GPU gradients' kernel: its descriptor (for attn_cuda_run_backward or
  /// attn_rocm_run_backward from C, as deviceType() says); null otherwise.
  const attn_cuda_backward_desc_t *gpuBackwardDesc() const {
    return gpuBackwardDesc_;
  }
  /// The spec's name.
  const std::string &name() const { return name_; }
  const Signature &signature() const { return signature_; }
  /// Whether it can write lse (a softmax spec).
  bool hasLse() const { return hasLse_; }
  /// Query rows per work item (CPU kernels; 0 elsewhere).
  int64_t tileQ() const { return tileQ_; }
  /// The target it was compiled for, as given.
  const std::string &target() const { return target_; }
  /// The DLPack device type its code runs on (kDLCPU, kDLCUDA).
  int32_t deviceType() const { return deviceType_; }
  /// Per-kernel resource use (CUDA: ptxas -v registers and spills), as the
  /// table `attnc --verbose` prints; "" where the backend has none.
  const std::string &report() const { return report_; }
  /// True when the kernel came from the disk cache.
  bool cacheHit() const { return cacheHit_; }
  /// Seconds from compile() call to a loaded kernel.
  double compileSeconds() const { return seconds_; }
  /// The cache entry the kernel is stored in (`<cache>/<key>.so`, `.fatbin`:
  /// the backend's code file), or ""
  /// when it was compiled without the cache. The code itself is loaded from
  /// a verified copy in memory, never from this path.
  const std::string &libraryPath() const { return path_; }

private:
  friend class Compiler;
  Kernel();
  std::unique_ptr<mlir::attn::KernelBinding> binding_;
  attn_kernel_target_t target_desc_{};
  attn_kernel_t desc_{};
  const attn_backward_desc_t *backwardDesc_ = nullptr;
  const attn_cuda_backward_desc_t *gpuBackwardDesc_ = nullptr;
  std::vector<std::string> gradientInputs_;
  std::string name_, target_, report_, path_;
  Signature signature_;
  bool hasLse_ = false;
  int64_t tileQ_ = 0;
  int32_t deviceType_ = 0;
  bool cacheHit_ = false;
  double seconds_ = 0;
};

class Compiler {
public:
  /// Compiles `spec`: the path of a .attn file if one exists there, else the
  /// spec's source text, for `options.target`. Returns null and sets `error`
  /// (spec errors come as `file:line:col: error: ...` lines with carets) on
  /// failure. GPU targets need their toolkit at compile time only (CUDA:
  /// ptxas, fatbinary).
  std::unique_ptr<Kernel> compile(const std::string &spec,
                                  const CompileOptions &options,
                                  std::string &error);
  /// The cache directory `options` resolves to.
  static std::string cacheDirectory(const CompileOptions &options);
};

/// Merges the (o, lse) of softmax attention over P parts of the keys into
/// the attention over all of them: lse = log sum_p exp(lse_p),
/// o = sum_p exp(lse_p - lse) o_p (split-KV decode, cascade attention,
/// context parallelism). The parts come stacked: `oParts` float32
/// [P, ..., Dv] (e.g. P kernel runs' o written into slices of one tensor),
/// `lseParts` float32 [P, ...]; `o` is [..., Dv] and `lse` (optional) [...],
/// on the host. The runtime's attn_merge_states(), with its checks and
/// codes: on failure returns the status, attn_last_error() has the message
/// and nothing was written.
attn_status_t mergeStates(const DLTensor *oParts, const DLTensor *lseParts,
                          DLTensor *o, DLTensor *lse = nullptr,
                          const attn_run_options_t *options = nullptr);

} // namespace attn

#endif
