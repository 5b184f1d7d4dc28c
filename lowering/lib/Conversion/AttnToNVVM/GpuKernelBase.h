//===- GpuKernelBase.h - tensor-core helpers of the CUDA builders -*- C++
//-*-===//
//
// What the forward and backward softmax-family CUDA kernels share: the
// thread ids of a CTA of `numThreads` threads (warp, lane, and the mma
// fragment coordinates g = lane / 4, t = lane % 4), swizzled shared tiles,
// cp.async tile copies, ldmatrix and mma.sync m16n8k16.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with 16-bit inputs): an
// accumulator holds (g, 2t..2t+1) and (g+8, 2t..2t+1); the A fragment
// (g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); the B fragment
// (k = 2t.., n = g), (k = 2t+8.., n = g). Two accumulators of adjacent
// n-tiles are exactly one A fragment, which is how a product's result
// feeds the next product without going through shared memory.
//
// Shared tiles are row-major with `cols` columns (a multiple of 8), and the
// 16-byte chunk c of row r is stored at chunk c ^ (r % 8) (for tiles of at
// least 8 chunks): the eight row addresses of one ldmatrix then fall in
// eight different bank groups.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_ATTNTONVVM_GPUKERNELBASE_H
#define ATTN_CONVERSION_ATTNTONVVM_GPUKERNELBASE_H

#include "attn/Conversion/KernelScaffold.h"
#include <array>

namespace mlir::attn {

/// Four f32 accumulator registers of one m16n8 tile.
using Acc = std::array<Value, 4>;

class GpuKernelBase : public KernelScaffold {
protected:
  GpuKernelBase(SpecOp spec, int64_t headDim)
      : KernelScaffold(spec), D(headDim) {}

  /// tid, warp, lane, g, t of the current thread.
  void emitThreadIds();
  /// Offset (elements) of row r, column c (a multiple of 8) in a swizzled
  /// shared tile of `cols` columns.
  Value swizzle(Value r, Value c, int64_t cols);
  /// Issues the cp.async copies of `rows` rows of `src[b, head, row0 + r, :]`
  /// into the tile (D columns) at element offset `base` of `dst`; rows at or
  /// past `rowLimit` (and columns past `colLimit`, and all of them when
  /// `enable` is false) are zero-filled. Returns the copy tokens (the caller
  /// groups them).
  SmallVector<Value> emitTileCopy(Value src, Value bIdx, Value head, Value row0,
                                  int64_t rows, Value rowLimit, Value colLimit,
                                  Value dst, Value base, Value enable);
  /// The source indices of tile row `row` (in [0, max(rowLimit, 1))) but
  /// the last one, e.g. {b, head, row}: where a row of `src` lives.
  using RowIndices = function_ref<SmallVector<Value>(Value row)>;
  /// emitTileCopy with the rows of `src` at `at(row0 + r)`: the decode
  /// kernel's tile rows are (query head, query) pairs of a GQA group.
  SmallVector<Value> emitTileCopy(Value src, RowIndices at, Value row0,
                                  int64_t rows, Value rowLimit, Value colLimit,
                                  Value dst, Value base, Value enable);
  /// One cp.async group of `tokens`.
  Value asyncGroup(SmallVector<Value> tokens);
  /// One mma.sync m16n8k16: a (4 regs), b (2 regs) are vector<2xT>.
  Acc mma(ArrayRef<Value> a, Value b0, Value b1, const Acc &c);
  /// ldmatrix x4 of the 16x16 block at (row0, col0) of a swizzled tile of
  /// `cols` columns; `aOrder` lays the four 8x8 matrices out as an A
  /// fragment (rows first), otherwise as two B fragments (columns first).
  SmallVector<Value> ldmatrix(Value mem, Value base, Value row0, Value col0,
                              bool transpose, bool aOrder, int64_t cols);
  SmallVector<Value> ldmatrix(Value mem, Value base, Value row0, int64_t col0,
                              bool transpose, bool aOrder, int64_t cols) {
    return ldmatrix(mem, base, row0, cidx(col0), transpose, aOrder, cols);
  }
  /// Two f32 rounded to a vector<2xelt> (one register of an A fragment).
  Value pack(Value x0, Value x1);
  /// The A fragment of the 16 x 16 block made of accumulators (x, y) of two
  /// adjacent n-tiles.
  SmallVector<Value> accsToA(const Acc &x, const Acc &y);
  /// Sum over the four lanes of a quad (the threads sharing g).
  Value quadSum(Value x);
  /// A view of `elems` elements of type `type` at `byteOffset` of the
  /// dynamic shared memory `smem`.
  Value sharedView(Value smem, int64_t byteOffset, int64_t elems, Type type);
  /// The dynamic shared memory as a 1-D i8 memref.
  Value dynamicSharedMemory();

  /// The padded head dim of the kernel variant.
  int64_t D;
  int64_t numWarps = 4, numThreads = 128;
  Type elt; // bf16 or f16
  Value tid, warp, lane, g, t;
};

} // namespace mlir::attn

#endif
