//===- MLIRGen.h - .attn AST to the attn dialect ----------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_MLIRGEN_H
#define ATTN_FRONTEND_MLIRGEN_H

#include "attn/Frontend/AST.h"
#include "attn/Frontend/Parser.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mlir::attn {

/// Resolves names, checks types and builds a module holding one `attn.spec`.
/// Library mask patterns (`causal`, `neighborhood_2d(...)`, ...) are expanded
/// here into plain predicates. Returns null after reporting an error.
OwningOpRef<ModuleOp> mlirGen(const SourceLocator &locator,
                              const ast::Spec &spec);

/// Library mask patterns with their signatures, e.g. "sliding_window(w)",
/// for `attnc --help`.
std::vector<std::string> libraryPatternSignatures();

} // namespace mlir::attn

#endif // ATTN_FRONTEND_MLIRGEN_H
