//===- Backend.h - the seam every code generation target plugs into -*- C++
//-*-===//
//
// A backend turns a verified spec module into code for one kind of device and
// knows how that code is loaded and launched. Everything above this seam —
// attnc, attn-opt, the JIT, attn-bench, `attnc run` — chooses a backend by
// the target string's name (`cpu`, `cuda:sm_90`, ...) through the registry
// and never names one:
//
//   const Backend *b = lookupBackend("cuda:sm_80,sm_90", error);
//   std::unique_ptr<BackendTarget> t = b->parseTarget("cuda:sm_80,sm_90",
//   error); t->lower(module, schedule, Stage::Kernel, info, error);    //
//   --emit=gpu t->compile(module, schedule, scratchDir, image, error);    //
//   JIT t->emitObject(module, schedule, info, obj, header, report, error); //
//   AOT t->load(image, host, error)->target();  // an attn_kernel_target_t
//
// Adding a backend (see docs/architecture.md, "Adding a backend"): its
// conversion and target code under lowering/, its launcher under
// runtime/src/<name>/ (with its device type in attn_run), and one line
// `attn_add_backend(<name> ...)` in lowering/lib/Target/CMakeLists.txt that
// registers it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TARGET_BACKEND_H
#define ATTN_TARGET_BACKEND_H

#include "attn/Pipelines/Pipelines.h"
#include "attn/Signature.h"
#include "attn/runtime.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include <memory>
#include <string>
#include <vector>

namespace mlir::attn {

/// How a spec runs, as opposed to what it computes (the spec). A zero or
/// empty field keeps the backend's heuristic; the autotuner sets these.
struct Schedule {
  int64_t tileQ = 0;  ///< query rows per tile (softmax family)
  int64_t tileKV = 0; ///< key/value rows per tile
  /// Linear attention: steps per chunk of the chunked form (0: recurrent).
  int64_t linearChunk = 64;
  /// Linear attention: carry the state in and out (decode).
  bool linearState = false;
  /// Softmax family: also the kernels that read K and V from a paged
  /// cache (CPU: attn_kernel_desc_t::paged_fn; CUDA: the batch prefill
  /// kernels).
  bool pagedKV = false;
  /// Softmax specs: also the decode schedule's kernels (CPU: decode_fn and
  /// its wide and paged forms; CUDA: the split-KV decode and merge
  /// kernels). Off saves their compile time; every N then runs the
  /// prefill kernels.
  bool decodeKernels = true;
  /// The gradients' kernel instead of the forward (attn-tile-attention-
  /// backward).
  bool backward = false;
  /// Element type of q, k, v where the spec leaves it undeclared ("" :
  /// the backend's default: f32 on the CPU, bf16 on GPUs).
  std::string elementType;
  /// GPU kernels: padded head dims to build variants for (empty: default).
  llvm::SmallVector<int64_t> headDims;

  /// Stable text for cache keys.
  std::string key() const;
};

/// What a compiled spec is, whatever the backend.
struct KernelInfo {
  std::string name;   ///< spec name
  std::string symbol; ///< "attn_<name>", the prefix of every emitted symbol
  /// Query rows per work item (CPU); a linear kernel's item is a whole
  /// sequence, one "tile" longer than any N.
  int64_t tileQ = 0;
  bool hasLse = false; ///< a softmax spec: the kernel can write lse
  bool linear = false; ///< linear attention (else the softmax family)
  /// CPU: query lanes of the decode schedule's kernel (`attn_<name>_decode`,
  /// attn_kernel_desc_t::decode_fn); 0 when there is none.
  int64_t decodeLanes = 0;
  /// CPU: query lanes of the wide decode kernel (`attn_<name>_decode_wide`,
  /// decode_wide_fn; with paged, `attn_<name>_paged_decode_wide`); 0 when
  /// there is none.
  int64_t decodeWideLanes = 0;
  /// CPU: the paged-KV kernels exist (`attn_<name>_paged` and, with
  /// decodeLanes, `attn_<name>_paged_decode`).
  bool paged = false;
  ::attn::Signature signature;
  /// The gradients' kernel (`attn_<name>_backward`), not the forward.
  bool backward = false;
  /// Backward: the aux inputs with a gradient, in declaration order.
  std::vector<std::string> gradInputs;
};

/// A gradients' kernel: the index in `info.signature` of each of its
/// `gradInputs`, in order (the runtime's grad_inputs); an entry missing from
/// the signature is left out.
std::vector<int32_t> gradientInputIndices(const KernelInfo &info);

/// How closely a backend's kernels agree with the float64 reference.
struct Tolerance {
  double o = 1e-4;   ///< max |o - ref| / max |ref|
  double lse = 1e-4; ///< max |lse - ref| / max(1, |ref|)
  /// Why, as `attnc run` prints it in parentheses.
  std::string note = "fp32 accumulation, tolerance 1e-4";
};

/// A compiled kernel as bytes: what the JIT caches and `load` binds.
struct KernelImage {
  KernelInfo info;
  /// The code: a shared library (cpu), a fatbin (cuda), ...
  std::vector<char> code;
  /// Backend-specific lines kept with the code (e.g. CUDA's variants);
  /// no newlines inside a line.
  std::vector<std::string> meta;
  /// What `--verbose` prints: per-kernel resource usage (ptxas -v, ...).
  std::string report;
};

/// A kernel loaded for one device type: owns what its runtime descriptor
/// points into.
class KernelBinding {
public:
  virtual ~KernelBinding();
  /// The descriptor attn_run() dispatches to; valid while this lives.
  virtual attn_kernel_target_t target() const = 0;
  /// A gradients' kernel: runs it through its backend's runtime entry
  /// (attn_cpu_run_backward with `options`, attn_cuda_run_backward or
  /// attn_rocm_run_backward on `stream`). A forward kernel answers the
  /// CPU entry's INVALID_ARGUMENT for a NULL descriptor.
  virtual attn_status_t
  runBackward(const DLTensor *const *inputs, const DLTensor *o,
              const DLTensor *lse, const DLTensor *dout, const DLTensor *dlse,
              DLTensor *dq, DLTensor *dk, DLTensor *dv, DLTensor *const *daux,
              const attn_run_options_t *options, void *stream) const;
  /// A CPU gradients' kernel: its descriptor for attn_cpu_run_backward (null
  /// otherwise).
  virtual const attn_backward_desc_t *backwardDesc() const { return nullptr; }
  /// A GPU gradients' kernel: its descriptor for attn_cuda_run_backward or
  /// attn_rocm_run_backward (one type; null otherwise).
  virtual const attn_cuda_backward_desc_t *gpuBackwardDesc() const {
    return nullptr;
  }
};

/// A shared library loaded into this process.
class LoadedLibrary {
public:
  virtual ~LoadedLibrary();
  virtual void *symbol(llvm::StringRef name) const = 0;
};

/// What the host (the JIT) lends a backend for loading code: it decides how
/// bytes become a library (from verified memory, never from a path).
class LoadHost {
public:
  virtual ~LoadHost();
  virtual std::unique_ptr<LoadedLibrary>
  loadSharedLibrary(llvm::ArrayRef<char> image, const std::string &key,
                    std::string &error) const = 0;
};

class Backend;

/// One parsed target string: a backend and its machine(s) and features.
class BackendTarget {
public:
  virtual ~BackendTarget();
  virtual const Backend &backend() const = 0;
  /// Stable text naming the machine(s) (part of cache keys).
  virtual std::string key() const = 0;
  /// "" when `schedule` can be compiled for this target, else why not.
  virtual std::string checkSchedule(const Schedule &schedule) const;
  /// The error bound its kernels for `info` keep against the reference.
  virtual Tolerance tolerance(const KernelInfo &info) const;
  /// Runs the pipeline on `module` up to `stop` (Attn, Tiled, Kernel, LLVM)
  /// and fills `info`. Spec errors are diagnostics on the module's context;
  /// other failures set `error`.
  virtual LogicalResult lower(ModuleOp module, const Schedule &schedule,
                              Stage stop, KernelInfo &info,
                              std::string &error) const = 0;
  /// Compiles all the way to loadable code (the JIT). `scratchDir` is a
  /// private directory for intermediate files (e.g. an object to link).
  virtual LogicalResult compile(ModuleOp module, const Schedule &schedule,
                                llvm::StringRef scratchDir, KernelImage &image,
                                std::string &error) const = 0;
  /// Compiles to a relocatable object and the C header declaring its entry
  /// (AOT: `attnc -o k.o --header k.h`); `report` gets what --verbose
  /// prints.
  virtual LogicalResult emitObject(ModuleOp module, const Schedule &schedule,
                                   KernelInfo &info,
                                   llvm::SmallVectorImpl<char> &object,
                                   std::string &header, std::string &report,
                                   std::string &error) const = 0;
  /// Formats `--emit=FORMAT` prints past the IR stages (e.g. llvm-ir; ptx,
  /// cubin, fatbin).
  virtual llvm::ArrayRef<llvm::StringRef> emitFormats() const = 0;
  /// Compiles and renders one of emitFormats() into `out` (text or bytes);
  /// `report` gets what --verbose prints.
  virtual LogicalResult emit(ModuleOp module, const Schedule &schedule,
                             llvm::StringRef format, std::string &out,
                             std::string &report, std::string &error) const = 0;
  /// Binds an image compile() produced (possibly read back from a cache).
  virtual std::unique_ptr<KernelBinding> load(const KernelImage &image,
                                              const std::string &key,
                                              const LoadHost &host,
                                              std::string &error) const = 0;
};

/// A code generation target: parses its target strings and names its
/// device type.
class Backend {
public:
  virtual ~Backend();
  /// The target string's name: "cpu", "cuda".
  virtual llvm::StringRef name() const = 0;
  /// The target strings it accepts, for --help (one line).
  virtual llvm::StringRef targetSyntax() const = 0;
  /// The DLPack device type its code runs on (kDLCPU, kDLCUDA).
  virtual int32_t deviceType() const = 0;
  /// The file suffix of its code in the kernel cache (".so", ".fatbin").
  virtual llvm::StringRef codeSuffix() const = 0;
  /// The name of the IR stage `--emit=kernel` shows ("cpu", "gpu").
  virtual llvm::StringRef kernelStageName() const = 0;
  /// Parses `target` (its name is this backend's).
  virtual std::unique_ptr<BackendTarget>
  parseTarget(llvm::StringRef target, std::string &error) const = 0;
};

/// Registers a backend (once per name; the registry owns it).
void registerBackend(std::unique_ptr<Backend> backend);
/// Registers the backends this build has (CMake's ATTN_ENABLE_* options).
/// Idempotent and thread-safe.
void registerAllBackends();
/// The registered backends, in registration order.
std::vector<const Backend *> registeredBackends();
/// The backend whose name is `target` up to its first ':'; null with
/// `error` naming the registered ones when there is none.
const Backend *lookupBackend(llvm::StringRef target, std::string &error);
/// lookupBackend + parseTarget.
std::unique_ptr<BackendTarget> parseTarget(llvm::StringRef target,
                                           std::string &error);
/// "cpu (the host) or cpu:NAME ...; cuda ..." for --help.
std::string targetHelp();

//===----------------------------------------------------------------------===//
// Shared by the backends
//===----------------------------------------------------------------------===//

/// Name, symbol, lse and signature of the spec in `module` (tileQ left 0).
KernelInfo describeSpec(ModuleOp module);

/// The signature text embedded in kernels and cache entries:
/// `v1;name=N;tile_q=T;has_lse=0|1;inputs=q:f32:B,Hq,N,Dqk|...`.
std::string signatureText(const KernelInfo &info);
/// The inverse of signatureText; "" or an error.
std::string parseSignatureText(llvm::StringRef text, KernelInfo &info);

/// The runtime's attn_input_desc_t table for a signature, owning the arrays
/// the entries point into (the names point into `signature`, which must
/// outlive the table).
class InputDescTable {
public:
  explicit InputDescTable(const ::attn::Signature &signature);
  InputDescTable(const InputDescTable &) = delete;
  InputDescTable &operator=(const InputDescTable &) = delete;
  const attn_input_desc_t *data() const { return descs.data(); }
  int32_t size() const { return static_cast<int32_t>(descs.size()); }

private:
  std::vector<std::vector<const char *>> dimPtrs;
  std::vector<std::vector<int64_t>> fixedSizes;
  std::vector<attn_input_desc_t> descs;
};

/// Pieces of the AOT C headers every backend writes.
namespace header {
/// The C parameter name of input `index`: q, k, v, or aux_<name>.
std::string paramName(const ::attn::InputSig &in, size_t index);
/// " *   q: bf16 [B, Hq, N, Dqk]" lines for the header comment.
void writeSignatureComment(llvm::raw_ostream &os,
                           const ::attn::Signature &signature, bool hasLse);
/// "const DLTensor *q, const DLTensor *k, ..., " for the entry.
void writeEntryParams(llvm::raw_ostream &os,
                      const ::attn::Signature &signature);
/// "  const DLTensor *inputs[] = {q, k, v, ...};".
void writeInputsArray(llvm::raw_ostream &os,
                      const ::attn::Signature &signature);
/// The attn_input_desc_t table `<symbol>_inputs` and its dims arrays.
void writeInputDescs(llvm::raw_ostream &os, llvm::StringRef symbol,
                     const ::attn::Signature &signature);
/// The doc comment's opening, up to the tensors it takes:
///   /* Generated by attnc from spec 'N'<what>. Do not edit.
///    *
///    * <linkNote: lines, each starting " * ">
///    *
///    * <entry>(q, k, v, aux..., o, lse, <lastParam>)<tensorsNote>:
///    *   q: ...
/// The backend adds its own lines and closes the comment.
void writeCommentOpening(llvm::raw_ostream &os, const KernelInfo &info,
                         llvm::StringRef what, llvm::StringRef linkNote,
                         llvm::StringRef entry, llvm::StringRef lastParam,
                         llvm::StringRef tensorsNote);
/// A gradients' kernel: the indices of its gradient inputs in the
/// signature, and (when there are any) the `<symbol>_grad_inputs` array.
std::vector<int32_t> writeGradInputs(llvm::raw_ostream &os,
                                     llvm::StringRef symbol,
                                     const KernelInfo &info);
/// A gradients' kernel's entry:
///   static inline attn_status_t <entry>(q, k, v, aux..., o, lse, dout,
///       dlse, dq, dk, dv, d_<aux>..., <lastParam>) {
///     ... return <runFunction>(&<desc>, inputs, o, lse, dout, dlse, dq, dk,
///                              dv, daux | NULL, <lastArg>);
///   }
void writeBackwardEntry(llvm::raw_ostream &os, const KernelInfo &info,
                        llvm::ArrayRef<int32_t> gradIdx, llvm::StringRef entry,
                        llvm::StringRef lastParam, llvm::StringRef runFunction,
                        llvm::StringRef desc, llvm::StringRef lastArg);
/// A gradients' header: the signature comment's "(written...)" notes on o
/// and lse become "(the forward's...)": they are inputs here.
void markForwardOutputsAsInputs(std::string &header);
/// The include guard, the runtime include and `extern "C" {`.
void openGuard(llvm::raw_ostream &os, llvm::StringRef guard);
/// Closes what openGuard opened.
void closeGuard(llvm::raw_ostream &os, llvm::StringRef guard);
} // namespace header

} // namespace mlir::attn

#endif // ATTN_TARGET_BACKEND_H
