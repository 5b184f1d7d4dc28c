//===- ROCmTarget.h - ROCDL gpu.modules to hsaco and offload bundles -*- C++
//-*-===//
//
// The ROCm half of the target layer: gpu.modules lowered to ROCDL (the LLVM
// stage of buildAttnROCmPipeline) become AMD code objects (hsaco) through
// MLIR's gpu-module-to-binary — LLVM's AMDGPU backend in process, then
// ld.lld — one per chip, bundled into one clang offload bundle, the format
// hipModuleLoadData takes for several chips. The toolchain is needed only
// here, at compile time: ld.lld-22, and the ROCm device bitcode (ocml,
// ockl) only for a kernel that calls into it. The runtime loads the bundle
// through the HIP runtime (attn_rocm_run).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TARGET_ROCMTARGET_H
#define ATTN_TARGET_ROCMTARGET_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include <string>
#include <vector>

namespace mlir::attn {

/// The AMD GPUs a ROCm kernel is generated for, and the toolchain.
struct ROCmTarget {
  llvm::SmallVector<std::string> chips = {"gfx942"};
  /// The folder of the ROCm device bitcode (ocml.bc, ockl.bc, oclc_*.bc).
  std::string deviceLibs;
  /// ld.lld, which links each code object.
  std::string lld;
  /// The code object version: 5 (ROCm 5.5 and later load it; gfx942 needs
  /// ROCm 6 anyway) unless $ATTN_ROCM_CODE_OBJECT_VERSION says 4 (ROCm 5.x
  /// before 5.5, e.g. Debian 12's HIP 5.2).
  int codeObjectVersion = 5;

  /// The chips the kernels are written for: wave64 CDNA GPUs with MFMA and
  /// 64 KiB of LDS per work-group.
  static llvm::ArrayRef<llvm::StringRef> supportedChips();
  /// Parses "rocm" (gfx942), "rocm:gfx90a", "rocm:gfx90a,gfx942", and finds
  /// the toolchain: $ATTN_ROCM_DEVICE_LIBS, else $ROCM_PATH/amdgcn/bitcode,
  /// else Debian's and /opt/rocm's folders; $ATTN_LLD, else LLVM 22's
  /// ld.lld, else $ROCM_PATH/llvm/bin/ld.lld.
  static bool parse(llvm::StringRef spec, ROCmTarget &out, std::string &error);
  /// Stable text naming the target and fingerprinting the toolchain (paths,
  /// sizes and modification times of ld.lld and the device bitcode), for
  /// cache keys: a changed toolchain never reuses a cached code object.
  std::string key() const;
  /// "" when ld.lld is there, else why not.
  std::string checkToolchain() const;
  /// rocdl-attach-target's abi option ("500" for version 5).
  std::string abi() const { return std::to_string(codeObjectVersion * 100); }
};

/// One kernel's resources on one chip, from its code object's metadata
/// (the amdhsa.kernels list of the NT_AMDGPU_METADATA note, which
/// `llvm-readelf --notes` prints).
struct ROCmKernelReport {
  std::string chip, function;
  int64_t vgprs = 0, agprs = 0, sgprs = 0, vgprSpills = 0, sgprSpills = 0,
          ldsBytes = 0, scratchBytes = 0, wavefrontSize = 0;
};

/// Compiles the gpu.modules of an LLVM-stage module (ROCDL, with a
/// #rocdl.target) for its chip: a code object (`format` "bin") or the
/// AMDGCN assembly ("isa"). Returns "" or an error.
std::string serializeROCDL(ModuleOp module, const ROCmTarget &target,
                           llvm::StringRef format, std::string &out);

/// Appends one report per kernel of the code object `hsaco`. Returns "" or
/// an error.
std::string readKernelReports(llvm::ArrayRef<char> hsaco, llvm::StringRef chip,
                              std::vector<ROCmKernelReport> &reports);

/// One chip's code object.
struct ROCmImage {
  std::string chip;
  std::vector<char> hsaco;
};

/// A clang offload bundle ("__CLANG_OFFLOAD_BUNDLE__") with an empty host
/// entry and one `hipv4-amdgcn-amd-amdhsa--<chip>` entry per image, each
/// at a 4096-byte aligned offset, as clang-offload-bundler writes them.
std::vector<char> createOffloadBundle(llvm::ArrayRef<ROCmImage> images);

/// Formats reports as the table `attnc --verbose` prints.
std::string formatReports(llvm::ArrayRef<ROCmKernelReport> reports);

} // namespace mlir::attn

#endif
