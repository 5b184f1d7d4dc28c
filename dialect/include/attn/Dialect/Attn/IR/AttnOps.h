//===- AttnOps.h - attn dialect operations ----------------------*- C++ -*-===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNOPS_H
#define ATTN_DIALECT_ATTN_IR_ATTNOPS_H

#include "attn/Dialect/Attn/IR/AttnDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "attn/Dialect/Attn/IR/AttnOpsEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "attn/Dialect/Attn/IR/AttnOpsAttributes.h.inc"

#define GET_TYPEDEF_CLASSES
#include "attn/Dialect/Attn/IR/AttnOpsTypes.h.inc"

namespace mlir::attn {
class AttentionOp;
class TiledAttentionOp;
class TiledLinearAttentionOp;
class ChunkLoopOp;
class KVLoopOp;
class QLoopOp;
class TiledAttentionBackwardOp;

/// The shape symbols every spec has, bound from q, k and v.
llvm::ArrayRef<llvm::StringRef> canonicalDimNames();
/// True for `B`, `Hq`, `Hkv`, `N`, `M`, `Dqk`, `Dv` and `G`.
bool isCanonicalDim(llvm::StringRef name);
/// The canonical dims of q, k or v; empty for any other name.
llvm::ArrayRef<llvm::StringRef> canonicalInputDims(llvm::StringRef name);

namespace detail {
/// Checks that `region` is one block with `argTypes` arguments ending in an
/// attn.yield of `results` (or, with `allowEmpty`, no block at all); the
/// verifiers of the spec-level and the tile-level ops share it.
LogicalResult verifyRegionSignature(Operation *op, Region &region,
                                    llvm::StringRef name, TypeRange argTypes,
                                    llvm::ArrayRef<Type> results,
                                    bool allowEmpty);
/// The normalizer's attributes of attn.attention and its tiled form.
LogicalResult verifyNormalizerAttrs(Operation *op, NormalizerKind kind,
                                    bool lse, int64_t reluPower,
                                    bool rowNormalize, bool hasBias);
/// Checks that a tile or accumulator of a forward or backward tile program
/// has the schedule's tile_q rows.
LogicalResult checkTileRows(Operation *op, llvm::StringRef what, int64_t rows);
/// Checks a score tile of a forward or backward tile program: tile_q x
/// tile_kv, f32.
LogicalResult checkScoreTile(Operation *op, TileType t);
} // namespace detail
} // namespace mlir::attn

#define GET_OP_CLASSES
#include "attn/Dialect/Attn/IR/AttnOps.h.inc"

namespace mlir::attn::detail {
/// The inputs of `op`'s spec that an f32 attn.load in `regions` reads, in
/// declaration order: the aux inputs a backward program has gradients for.
llvm::SmallVector<InputOp> floatInputsRead(Operation *op,
                                           llvm::ArrayRef<Region *> regions);
} // namespace mlir::attn::detail

#endif // ATTN_DIALECT_ATTN_IR_ATTNOPS_H
