//===- CUDATarget.h - NVVM gpu.modules to PTX, cubin and fatbin -*- C++ -*-===//
//
// The CUDA half of the target layer: gpu.modules lowered to NVVM (the LLVM
// stage of buildAttnCUDAPipeline) become PTX through MLIR's
// gpu-module-to-binary, then cubins through the toolkit's ptxas (whose -v
// report of registers, spills and shared memory we keep per kernel), then
// one fatbin with a cubin per chip plus the newest PTX for later GPUs.
// The toolkit is only needed here, at compile time; the runtime loads the
// fatbin through the driver.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TARGET_CUDATARGET_H
#define ATTN_TARGET_CUDATARGET_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SmallVector.h"
#include <string>
#include <vector>

namespace mlir::attn {

/// The GPUs a CUDA kernel is generated for.
struct CUDATarget {
  llvm::SmallVector<std::string> chips = {"sm_90"};
  std::string toolkit; ///< CUDA toolkit root (ptxas, fatbinary, libdevice)

  /// Parses "cuda" (sm_90), "cuda:sm_80", "cuda:sm_80,sm_90". The toolkit is
  /// $ATTN_CUDA_TOOLKIT, else $CUDA_HOME, else /usr/local/cuda.
  static bool parse(llvm::StringRef spec, CUDATarget &out, std::string &error);
  /// The PTX ISA feature string for a chip (sm_90 needs PTX >= 8.0).
  static std::string ptxFeatures(llvm::StringRef chip);
  /// The most dynamic shared memory a CTA may opt in to on `chip` (bytes):
  /// 227 KiB on sm_90 and sm_100, 163 KiB on sm_80 and sm_87, 99 KiB on
  /// sm_86, sm_89 and sm_120.
  static int64_t maxSharedBytes(llvm::StringRef chip);
  /// The smallest maxSharedBytes over the chips: what every kernel must fit.
  int64_t sharedLimit() const;
  /// Stable text naming the target (for cache keys).
  std::string key() const;
  /// "" when ptxas and fatbinary are there, else why not.
  std::string checkToolkit() const;
};

/// ptxas -v figures for one kernel on one chip.
struct CUDAKernelReport {
  std::string chip, function;
  int64_t registers = 0, stackBytes = 0, spillStores = 0, spillLoads = 0,
          staticSharedBytes = 0;
};

/// Translates the gpu.modules of an LLVM-stage module (NVVM, with an
/// #nvvm.target) to PTX text. Returns "" or an error.
std::string translateToPTX(ModuleOp module, const CUDATarget &target,
                           std::string &ptx);

/// Assembles PTX for `chip` with `ptxas -v`; fills the cubin and appends
/// one report per kernel. Returns "" or an error (with ptxas's output).
std::string assemblePTX(const CUDATarget &target, llvm::StringRef chip,
                        llvm::StringRef ptx, std::vector<char> &cubin,
                        std::vector<CUDAKernelReport> &reports);

/// One chip's compiled code.
struct CUDAImage {
  std::string chip, ptx;
  std::vector<char> cubin;
};

/// Bundles the cubins, and the PTX of the last image (JIT-compiled by the
/// driver on newer GPUs), into one fatbin. Returns "" or an error.
std::string createFatbin(const CUDATarget &target,
                         llvm::ArrayRef<CUDAImage> images,
                         std::vector<char> &fatbin);

/// Formats reports as the table `attnc --verbose` prints.
std::string formatReports(llvm::ArrayRef<CUDAKernelReport> reports);

} // namespace mlir::attn

#endif
