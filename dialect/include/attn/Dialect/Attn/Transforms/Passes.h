//===- Passes.h - attn dialect passes ---------------------------*- C++ -*-===//

#ifndef ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_H
#define ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::attn {

#define GEN_PASS_DECL
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"

/// The largest tile_q, tile_kv and linear chunk any kernel accepts. Kernels
/// unroll tile_q / vector-width accumulators and size their scratch by the
/// tiles: past a few hundred rows a tile only costs compile time (minutes at
/// 16384) and memory, so larger requests are an error, not a slow build.
/// Checked by attn-tile-attention, the CPU conversion and attnc's flags.
inline constexpr int64_t kMaxTileRows = 512;

/// Replaces the default of param `name` in `spec` with the constant parsed
/// from `value`. Returns a one-line error message, or "" on success.
std::string bindParam(SpecOp spec, llvm::StringRef name, llvm::StringRef value);

#define GEN_PASS_REGISTRATION
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"

} // namespace mlir::attn

#endif // ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_H
