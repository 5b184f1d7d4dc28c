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
  /// AVX512-BF16 dot products (vdpbf16ps) for softmax-family kernels with
  /// bf16 q/k/v, where the CPU has them: All = S = Q·Kᵀ and O += P·V (P
  /// rounded to bf16), QK = S only (P·V in fp32), Off = fp32 FMAs only.
  /// parse() takes it from $ATTN_BF16_DOT (all, qk or off; default all);
  /// it is part of key().
  enum class BF16Dot { Off, QK, All };
  BF16Dot bf16DotMode = BF16Dot::All;
  /// Debugging: kernels that report each visited (q tile, kv tile) on
  /// stderr; parse() sets it from $ATTN_DEBUG_TILE_STATS (1: on). Part of
  /// key(), so such kernels never mix with normal ones in the cache.
  bool debugTileStats = false;

  /// The host machine, with its CPU name and features.
  static CPUTarget host();
  /// Parses "cpu", "cpu:NAME" (e.g. cpu:skylake-avx512, cpu:x86-64-v3).
  static bool parse(llvm::StringRef spec, CPUTarget &out, std::string &error);
  /// f32 lanes of the widest SIMD register (16 with AVX-512, 8 with AVX2).
  int64_t vectorWidth() const;
  /// Whether the CPU has the LLVM feature `f` (e.g. "avx512bf16"), from
  /// `features` or, for a named CPU without them, what the name implies.
  bool hasFeature(llvm::StringRef f) const;
  /// What kernels use: bf16DotMode where the CPU has avx512bf16, else Off.
  BF16Dot bf16Dot() const {
    return hasFeature("avx512bf16") ? bf16DotMode : BF16Dot::Off;
  }
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
