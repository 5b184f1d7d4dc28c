//===- Pipelines.h - the one attn pass pipeline builder ---------*- C++ -*-===//
//
// attnc, attn-opt (as named pipelines) and the JIT all build their pass
// pipelines here, so every tool runs the same lowering and can stop at the
// same stages.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_PIPELINES_PIPELINES_H
#define ATTN_PIPELINES_PIPELINES_H

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/SmallVector.h"
#include <string>

namespace mlir::attn {

/// Where a pipeline stops.
enum class Stage {
  Attn,   ///< bound and verified attn dialect
  Tiled,  ///< attn with an #attn.schedule
  Kernel, ///< kernels in upstream dialects: scf/vector/memref functions
          ///< (CPU) or gpu.module kernels with gpu/nvgpu/NVVM ops (CUDA)
          ///< or gpu/amdgpu/ROCDL ops (ROCm)
  CPU = Kernel,
  LLVM, ///< LLVM dialect: runtime entry points (CPU), NVVM gpu.modules (CUDA),
        ///< ROCDL gpu.modules (ROCm)
};

struct CPUPipelineOptions {
  int64_t tileQ = 0;  ///< 0: heuristic
  int64_t tileKV = 0; ///< 0: heuristic
  int64_t vectorWidth = 16;
  /// Linear attention: steps per chunk (0: the recurrent form).
  int64_t linearChunk = 64;
  /// Linear attention: carry the state in and out (attn-add-linear-state).
  bool linearState = false;
  /// The gradients: attn-tile-attention-backward instead of
  /// attn-tile-attention.
  bool backward = false;
  /// Softmax family with bf16 q and k: S = Q·Kᵀ by AVX512-BF16 dot products
  /// (x86vector.avx512.dot, vdpbf16ps); with bf16Dot and a bf16 v also
  /// O += P·V, P rounded to bf16 (bf16DotPV). Only for targets with
  /// avx512bf16.
  bool bf16Dot = false;
  bool bf16DotPV = true;
  /// Debugging: kernels report each visited tile on stderr
  /// (convert-attn-to-cpu{debug-tile-stats}).
  bool debugTileStats = false;
  /// Softmax specs: also the decode schedule's kernel
  /// (convert-attn-to-cpu{decode-kernel}).
  bool decodeKernel = true;
  /// Softmax family: also the paged-KV kernels (convert-attn-to-cpu
  /// {paged-kv}).
  bool pagedKV = false;
};

/// Adds the passes that take a module of attn.spec ops from stage `start`
/// to stage `stop`.
void buildAttnCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options,
                          Stage stop = Stage::LLVM, Stage start = Stage::Attn);

struct CUDAPipelineOptions {
  std::string chip = "sm_90";      ///< nvvm-attach-target chip
  std::string features = "+ptx80"; ///< PTX ISA version (sm_90 needs >= 8.0)
  int64_t tileQ = 64;              ///< query rows per CTA (16 per warp)
  int64_t tileKV = 64;             ///< kv rows per shared-memory stage
  /// Head-dim variants (padded): one kernel each.
  llvm::SmallVector<int64_t> headDims = {64, 128};
  /// Element type given to undeclared q, k, v.
  std::string elementType = "bf16";
  /// The gradients: attn-tile-attention-backward (one CTA per kv tile)
  /// instead of attn-tile-attention.
  bool backward = false;
  /// Dynamic shared memory per CTA on every chip of the target (bytes).
  int64_t sharedLimit = 232448;
  /// Softmax specs: also the split-KV decode and merge kernels
  /// (convert-attn-to-nvvm{decode-kernels}).
  bool decodeKernels = true;
  /// Softmax family: also the batch prefill kernels (convert-attn-to-nvvm
  /// {batch-kernels}; attnc --paged-kv).
  bool batchKernels = false;
};

/// The CUDA counterpart of buildAttnCPUPipeline: Tiled declares q/k/v types
/// and tiles for warps, Kernel builds the gpu.module kernels, LLVM lowers
/// them to NVVM for `options.chip` (gpu-module-to-binary is the target's
/// job: see CUDATarget.h).
void buildAttnCUDAPipeline(OpPassManager &pm,
                           const CUDAPipelineOptions &options,
                           Stage stop = Stage::LLVM, Stage start = Stage::Attn);

/// Adds to `registry` what the CUDA pipeline needs in a context: the gpu,
/// nvgpu and NVVM dialects, their lowering interfaces to LLVM, the NVVM
/// target attribute and the LLVM IR translations gpu-module-to-binary uses.
void registerAttnCUDAExtensions(DialectRegistry &registry);

struct ROCmPipelineOptions {
  std::string chip = "gfx942"; ///< rocdl-attach-target chip
  /// The code object version (rocdl-attach-target's abi: "500" is v5).
  std::string abi = "500";
  /// Query rows per work-group: 32 per wave, 4 waves (CK's tile).
  int64_t tileQ = 128;
  int64_t tileKV = 32; ///< kv rows per LDS stage: one MFMA tile of keys
  /// Head-dim variants (padded): one kernel each.
  llvm::SmallVector<int64_t> headDims = {64, 128};
  /// Element type given to undeclared q, k, v.
  std::string elementType = "bf16";
  /// The gradients: attn-tile-attention-backward.
  bool backward = false;
  /// LDS per work-group (bytes): 64 KiB on gfx90a and gfx942.
  int64_t sharedLimit = 65536;
};

/// The ROCm counterpart: Tiled as for CUDA, Kernel builds the gpu.module
/// kernels (convert-attn-to-rocdl), LLVM lowers them to ROCDL for
/// `options.chip` (gpu-module-to-binary is the target's job: ROCmTarget.h).
void buildAttnROCmPipeline(OpPassManager &pm,
                           const ROCmPipelineOptions &options,
                           Stage stop = Stage::LLVM, Stage start = Stage::Attn);

/// Adds to `registry` what the ROCm pipeline needs in a context: the gpu,
/// amdgpu and ROCDL dialects, their lowering interfaces to LLVM, the ROCDL
/// target attribute and the LLVM IR translations gpu-module-to-binary uses.
void registerAttnROCmExtensions(DialectRegistry &registry);

/// Registers the attn passes and the named pipelines `attn-lower-to-cpu`,
/// `attn-lower-to-nvvm` and `attn-lower-to-rocdl`.
void registerAttnPipelines();

} // namespace mlir::attn

#endif
