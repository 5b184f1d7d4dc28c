//===- Library.h - library mask patterns ------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_LIB_MLIRGEN_LIBRARY_H
#define ATTN_FRONTEND_LIB_MLIRGEN_LIBRARY_H

#include "attn/Frontend/AST.h"
#include "llvm/ADT/StringRef.h"
#include "mlir/IR/MLIRContext.h"

namespace mlir::attn {

/// A library pattern: a named expression over its parameters. Parameters
/// after the first `numRequired` have defaults.
struct LibraryPattern {
  llvm::StringRef name;
  llvm::SmallVector<llvm::StringRef> params;
  /// Defaults of params[numRequired..].
  std::vector<ast::ExprPtr> defaults;
  unsigned numRequired;
  /// Internal helpers start with '_' and are not callable from specs.
  bool isPublic;
  ast::ExprPtr body;
};

/// Looks up a pattern by name (nullptr if none); bodies are parsed on first
/// use and live for the process.
const LibraryPattern *lookupLibraryPattern(llvm::StringRef name,
                                           MLIRContext *ctx);


} // namespace mlir::attn

#endif
