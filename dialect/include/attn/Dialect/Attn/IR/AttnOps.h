//===- AttnOps.h - attn dialect operations ----------------------*- C++ -*-===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNOPS_H
#define ATTN_DIALECT_ATTN_IR_ATTNOPS_H

#include "attn/Dialect/Attn/IR/AttnDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "attn/Dialect/Attn/IR/AttnOpsEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "attn/Dialect/Attn/IR/AttnOpsAttributes.h.inc"

namespace mlir::attn {
class AttentionOp;

/// The shape symbols every spec has, bound from q, k and v.
llvm::ArrayRef<llvm::StringRef> canonicalDimNames();
/// True for `B`, `Hq`, `Hkv`, `N`, `M`, `Dqk`, `Dv` and `G`.
bool isCanonicalDim(llvm::StringRef name);
/// The canonical dims of q, k or v; empty for any other name.
llvm::ArrayRef<llvm::StringRef> canonicalInputDims(llvm::StringRef name);
} // namespace mlir::attn

#define GET_OP_CLASSES
#include "attn/Dialect/Attn/IR/AttnOps.h.inc"

#endif // ATTN_DIALECT_ATTN_IR_ATTNOPS_H
