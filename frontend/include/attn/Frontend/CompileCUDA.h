//===- CompileCUDA.h - spec module to CUDA kernel artifacts -----*- C++ -*-===//
//
// The CUDA counterpart of CompileSpec.h, shared by attnc and the JIT: run
// buildAttnCUDAPipeline on a loaded spec, compile the kernels for each chip
// (PTX, ptxas cubin with its report), bundle them into a fatbin, and
// describe the launch contract for the runtime (attn_cuda_kernel_desc_t).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_COMPILECUDA_H
#define ATTN_FRONTEND_COMPILECUDA_H

#include "attn/Pipelines/Pipelines.h"
#include "attn/Signature.h"
#include "attn/Target/CUDATarget.h"
#include "mlir/IR/BuiltinOps.h"
#include <map>

namespace mlir::attn {

/// One head-dim variant of a CUDA kernel (attn_cuda_kernel_variant_t).
struct CUDAKernelVariant {
  std::string function;
  int64_t maxHeadDim = 0, blockQ = 0, numThreads = 0, sharedBytes = 0;
};

struct CUDAKernelInfo {
  std::string name;   ///< spec name
  std::string symbol; ///< "attn_<name>"
  bool hasLse = false;
  ::attn::Signature signature;
  std::vector<CUDAKernelVariant> variants; ///< by max head dim, ascending
  std::vector<CUDAKernelReport> reports;   ///< ptxas -v, per chip and kernel
  std::map<std::string, std::string> ptx;   ///< chip -> PTX text
  std::map<std::string, std::string> cubin; ///< chip -> cubin bytes
  std::vector<char> fatbin;
};

/// Lowers `module` (one bound attn.spec) in place to `stop` (at most LLVM,
/// for the target's first chip). Errors go through diagnostics.
LogicalResult lowerSpecCUDA(ModuleOp module, const CUDATarget &target,
                            const CUDAPipelineOptions &schedule, Stage stop,
                            CUDAKernelInfo &info);

/// Compiles every chip of `target`: fills info.ptx, info.cubin,
/// info.reports and info.fatbin. On failure, `error` says why unless the
/// reason was already reported as a diagnostic (then it is empty).
LogicalResult compileCUDA(ModuleOp module, const CUDATarget &target,
                          const CUDAPipelineOptions &schedule,
                          CUDAKernelInfo &info, std::string &error);

/// A host object file holding the fatbin as `<symbol>_cuda_image` (for AOT
/// users; the header from generateCUDAHeader refers to it).
std::string emitCUDAImageObject(MLIRContext *ctx, const CUDAKernelInfo &info,
                                llvm::SmallVectorImpl<char> &object);

/// The C header for an AOT CUDA object: the kernel descriptor and
/// `attn_status_t attn_cuda_run_<name>(q, k, v, aux..., o, lse, stream)`.
std::string generateCUDAHeader(const CUDAKernelInfo &info);

} // namespace mlir::attn

#endif
