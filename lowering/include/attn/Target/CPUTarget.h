//===- CPUTarget.h - LLVM-dialect kernels to host objects -------*- C++ -*-===//

#ifndef ATTN_TARGET_CPUTARGET_H
#define ATTN_TARGET_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SmallVector.h"
#include <string>

namespace mlir::attn {

/// The machine a CPU kernel is generated for.
struct CPUTarget {
  std::string triple;   ///< empty: the host's
  std::string cpu;      ///< e.g. "znver4"; empty: the host's
  std::string features; ///< e.g. "+avx512f,+avx512bw"; empty: the host's
  unsigned optLevel = 3;
  /// Whether kernels may use AVX512-BF16 dot products (vdpbf16ps) for bf16
  /// q/k/v where the CPU has them. host() and parse() clear it when the
  /// environment variable ATTN_NO_BF16_DOT is set to anything but "" or "0"
  /// (for comparisons); it is part of key().
  bool allowBF16Dot = true;

  /// The host machine, with its CPU name and features.
  static CPUTarget host();
  /// Parses "cpu", "cpu:NAME" (e.g. cpu:skylake-avx512, cpu:x86-64-v3).
  static bool parse(llvm::StringRef spec, CPUTarget &out, std::string &error);
  /// f32 lanes of the widest SIMD register (16 with AVX-512, 8 with AVX2).
  int64_t vectorWidth() const;
  /// Whether the CPU has the LLVM feature `f` (e.g. "avx512bf16"), from
  /// `features` or, for a named CPU without them, what the name implies.
  bool hasFeature(llvm::StringRef f) const;
  /// bf16 q/k/v kernels use vdpbf16ps: allowBF16Dot and the CPU has
  /// avx512bf16.
  bool bf16Dot() const { return allowBF16Dot && hasFeature("avx512bf16"); }
  /// Stable text naming the target (for cache keys).
  std::string key() const;
};

/// Translates an LLVM-dialect module to LLVM IR, optimizes it and emits a
/// position-independent object file into `object`. Returns "" or an error.
std::string emitObject(ModuleOp module, const CPUTarget &target,
                       llvm::SmallVectorImpl<char> &object);

/// Translates and optimizes only, printing LLVM IR (attnc --emit=llvm-ir).
std::string emitLLVMIR(ModuleOp module, const CPUTarget &target,
                       std::string &ir);

/// Links an object into a shared library with ld.lld. Returns "" or error.
std::string linkSharedLibrary(llvm::StringRef objectPath,
                              llvm::StringRef libraryPath);

} // namespace mlir::attn

#endif
