//===- ShowMask.h - `attnc show-mask` ---------------------------*- C++ -*-===//
//
// Shows how a spec's mask tiles: the block classification of every
// (q-tile, kv-tile) pair of one (b, h) as a character grid ('#' full, '+'
// partial, '.' empty) with counts, and optionally a PNG of the element-level
// mask with the tile grid and tile classes overlaid.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_SHOWMASK_H
#define ATTN_FRONTEND_SHOWMASK_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "llvm/Support/raw_ostream.h"
#include <cstdint>
#include <string>
#include <vector>

namespace mlir::attn {

struct ShowMaskOptions {
  std::vector<std::string> inputs; ///< "name=file.npy", as for `attnc run`
  std::string shape;               ///< "N=4096,M=4096,..." (run's defaults)
  uint64_t seed = 0;               ///< for random aux inputs (doc ids, ...)
  int64_t b = 0, h = 0;            ///< which batch and query head
  int64_t tileQ = 64, tileKv = 64; ///< tile sizes (queries x keys)
  std::string png;                 ///< write a PNG here when not empty
  std::string specPath;            ///< shown in the summary
  unsigned maxColumns = 128;       ///< wider grids group tiles per character
  /// --max-memory: what the inputs, the tile map, the element mask and the
  /// picture may use, in bytes (0: ::attn::defaultMemoryBudget()).
  uint64_t maxMemory = 0;
};

/// Gathers inputs like `attnc run` (random where not given), classifies every
/// tile of (b, h), prints the grid and counts to `os` and writes the PNG if
/// asked. When N * M is small enough (<= 2^22) it also evaluates the element
/// mask, reports the visible fraction and checks the classification against
/// it. Tiles larger than the mask are shown as the whole mask. Returns "" or
/// a one-line error message (also when the memory needed is over the
/// budget).
std::string showMask(SpecOp spec, const ShowMaskOptions &options,
                     llvm::raw_ostream &os);

/// A PNG image of `width` x `height` 8-bit RGB pixels (`rgb` row-major, 3
/// bytes a pixel). The IDAT stream is zlib-compressed when LLVM was built
/// with zlib, else made of stored (uncompressed) deflate blocks.
std::vector<uint8_t> encodePng(uint32_t width, uint32_t height,
                               const std::vector<uint8_t> &rgb,
                               bool allowCompression = true);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_SHOWMASK_H
