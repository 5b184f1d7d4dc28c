//===- GpuBackend.h - what the GPU backends share ---------------*- C++ -*-===//
//
// The CUDA and ROCm backends compile the same kind of kernel: gpu.module
// functions, one per padded head dim (a "variant"), carrying their launch
// contract as attributes, bundled into one image the runtime loads through
// the vendor's driver (attn_cuda_run, attn_rocm_run: one descriptor type).
// What differs is the code generation below the gpu dialect and the image
// format; everything above it — reading the variants back, keeping them
// with a cached image, binding the runtime descriptors, the AOT header, the
// host object holding the image — is written once here.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TARGET_GPUBACKEND_H
#define ATTN_TARGET_GPUBACKEND_H

#include "attn/Target/Backend.h"
#include <map>

namespace mlir::attn {

/// One head-dim variant of a GPU kernel (attn_cuda_kernel_variant_t, which
/// is also ROCm's attn_rocm_kernel_variant_t).
struct GpuVariant {
  std::string function;
  int64_t maxHeadDim = 0, blockQ = 0, numThreads = 0, sharedBytes = 0;
  /// Global scratch (the linear family's backward): attn.scratch_*.
  int64_t scratchStateFloats = 0, scratchFixedFloats = 0;
  /// attn.role: "" for the forward (or gradients') variants, "decode" or
  /// "merge" for the split-KV decode schedule's kernels.
  std::string role;
};

/// attn_cuda_run takes the decode schedule for N up to this (one m16 mma
/// tile of queries per head; a GQA group's G * N rows fill ceil(G * N / 16)
/// chunks, each reading K/V once, which is still no more than prefill).
constexpr int32_t kGpuDecodeMaxN = 16;

/// The variants of the kernels (gpu.func) in `module`, read from their
/// launch contract attributes, by max head dim ascending.
std::vector<GpuVariant> collectGpuVariants(ModuleOp module);

/// Variants by role: the forward ones, the decode ones, the batch prefill
/// ones (each by max head dim ascending) and the merge kernel (none: an
/// empty function).
struct GpuRoles {
  std::vector<GpuVariant> forward, decode, batch;
  GpuVariant merge;
};
GpuRoles splitGpuRoles(llvm::ArrayRef<GpuVariant> variants);

/// A variant as a KernelImage meta line, and back (false when malformed).
std::string gpuVariantLine(const GpuVariant &v);
bool parseGpuVariantLine(llvm::StringRef line, GpuVariant &v);

/// How a GPU backend's runtime entries, types and AOT headers are named.
struct GpuApiNames {
  llvm::StringRef api;        ///< "cuda": attn_cuda_run, attn_cuda_..._t
  llvm::StringRef title;      ///< "CUDA": in comments and messages
  int32_t deviceType;         ///< kDLCUDA
  llvm::StringRef dlDevice;   ///< "kDLCUDA": its name in headers
  llvm::StringRef imageKind;  ///< "fatbin"
  llvm::StringRef driver;     ///< "the CUDA driver"
  llvm::StringRef streamType; ///< "a CUstream"
  llvm::StringRef reportTool; ///< "ptxas -v"
  /// What runs the bf16/f16 products: "tensor cores".
  llvm::StringRef matrixUnits;
  /// The runtime's gradients entry (attn_cuda_run_backward).
  attn_status_t (*runBackward)(const attn_cuda_backward_desc_t *kernel,
                               const DLTensor *const *inputs, const DLTensor *o,
                               const DLTensor *lse, const DLTensor *dout,
                               const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                               DLTensor *dv, DLTensor *const *daux,
                               void *stream);
};

/// The symbol of the image in an AOT object: `<symbol>[_backward]_<api>_image`
/// (the gradients' own, so the forward's and the backward's objects link
/// into one program).
std::string gpuImageSymbol(const KernelInfo &info, const GpuApiNames &names);

/// The AOT header of a forward or gradients' kernel: its variants, inputs
/// and descriptor, and the entry `attn_<api>_run_<name>` or
/// `attn_<api>_backward_<name>`. `reportLines` (one per kernel and chip)
/// go into its comment.
std::string writeGpuHeader(const KernelInfo &info, const GpuApiNames &names,
                           llvm::ArrayRef<GpuVariant> variants,
                           llvm::ArrayRef<std::string> reportLines,
                           size_t imageSize);

/// A host object (for the host CPU) defining `symbol` as the image's bytes.
/// Returns "" or an error.
std::string embedGpuImage(MLIRContext *ctx, llvm::StringRef symbol,
                          llvm::ArrayRef<char> image,
                          llvm::SmallVectorImpl<char> &object);

/// What compiling a kernel for every chip of a GPU target produced.
struct GpuOutputs {
  std::vector<GpuVariant> variants; ///< by max head dim, ascending
  /// What the runtime loads: a fatbin, an offload bundle.
  std::vector<char> image;
  /// One line per kernel and chip, for the AOT header's comment.
  std::vector<std::string> reportLines;
  /// The table `--verbose` prints.
  std::string report;
  /// What `--emit=FORMAT` prints, by format (text, or a binary's bytes).
  std::map<std::string, std::string> formats;
};

/// A GPU backend's target: the stages, the JIT image, the AOT object and
/// header, emit and load written once over what each backend supplies (its
/// pipeline, its toolchain and its chips' code generation).
class GpuBackendTarget : public BackendTarget {
public:
  explicit GpuBackendTarget(const Backend &backend) : backend_(backend) {}
  const Backend &backend() const override { return backend_; }
  /// bf16 or f16 q, k, v; no carried linear state (the GPU kernels start
  /// from a zero state).
  std::string checkSchedule(const Schedule &schedule) const override;
  LogicalResult lower(ModuleOp module, const Schedule &schedule, Stage stop,
                      KernelInfo &info, std::string &error) const override;
  LogicalResult compile(ModuleOp module, const Schedule &schedule,
                        llvm::StringRef scratchDir, KernelImage &image,
                        std::string &error) const override;
  LogicalResult emitObject(ModuleOp module, const Schedule &schedule,
                           KernelInfo &info,
                           llvm::SmallVectorImpl<char> &object,
                           std::string &header, std::string &report,
                           std::string &error) const override;
  /// Renders GpuOutputs::formats[format].
  LogicalResult emit(ModuleOp module, const Schedule &schedule,
                     llvm::StringRef format, std::string &out,
                     std::string &report, std::string &error) const override;
  std::unique_ptr<KernelBinding> load(const KernelImage &image,
                                      const std::string &key,
                                      const LoadHost &host,
                                      std::string &error) const override;

protected:
  /// Its runtime entries and the words of its headers.
  virtual const GpuApiNames &names() const = 0;
  /// The chips it compiles for (the first one's options build the kernels).
  virtual llvm::ArrayRef<std::string> chips() const = 0;
  /// The dialects, interfaces and translations its pipeline needs.
  virtual void registerExtensions(DialectRegistry &registry) const = 0;
  /// Adds its passes from stage `start` to `stop` for `chip`.
  virtual void buildPipeline(OpPassManager &pm, const Schedule &schedule,
                             llvm::StringRef chip, Stage stop,
                             Stage start) const = 0;
  /// "" when what compileChips needs is there, else why not.
  virtual std::string checkToolchain() const = 0;
  /// Whether --paged-kv (Schedule::pagedKV) gives it batch prefill kernels
  /// (attn.role = "batch") for ragged and paged batches.
  virtual bool hasBatchPrefill() const { return false; }
  /// Compiles the Kernel-stage `kernels` for every chip: fills `out`'s
  /// image, reports and formats (the variants are filled already).
  virtual LogicalResult compileChips(ModuleOp kernels, const Schedule &schedule,
                                     GpuOutputs &out,
                                     std::string &error) const = 0;

  /// Runs the pipeline up to `stop` on `module`, filling `info` and (from
  /// the Kernel stage on) the variants.
  LogicalResult lowerWithVariants(ModuleOp module, const Schedule &schedule,
                                  Stage stop, KernelInfo &info,
                                  std::vector<GpuVariant> &variants) const;
  /// A clone of the Kernel-stage `kernels` taken to the LLVM stage for
  /// `chip`.
  FailureOr<OwningOpRef<ModuleOp>> lowerForChip(ModuleOp kernels,
                                                const Schedule &schedule,
                                                llvm::StringRef chip) const;

private:
  LogicalResult compileAll(ModuleOp module, const Schedule &schedule,
                           KernelInfo &info, GpuOutputs &out,
                           std::string &error) const;
  const Backend &backend_;
};

} // namespace mlir::attn

#endif
