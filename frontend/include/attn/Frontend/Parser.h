//===- Parser.h - .attn parser ----------------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_PARSER_H
#define ATTN_FRONTEND_PARSER_H

#include "attn/Frontend/AST.h"
#include "attn/Frontend/Lexer.h"
#include "mlir/IR/Location.h"
#include "mlir/IR/MLIRContext.h"

namespace mlir::attn {

/// Converts buffer positions to MLIR locations, so every frontend error goes
/// through MLIR diagnostics as `file:line:col: error: ...` with a caret.
class SourceLocator {
public:
  SourceLocator(MLIRContext *ctx, const llvm::SourceMgr &sourceMgr)
      : ctx(ctx), sourceMgr(sourceMgr) {}
  Location get(llvm::SMLoc loc) const;
  MLIRContext *getContext() const { return ctx; }
  const llvm::SourceMgr &getSourceMgr() const { return sourceMgr; }

private:
  MLIRContext *ctx;
  const llvm::SourceMgr &sourceMgr;
};

/// Parses one `attention` spec from buffer `bufferID`. Returns nullptr after
/// reporting the first error.
std::unique_ptr<ast::Spec> parseSpec(const SourceLocator &locator,
                                     unsigned bufferID);

/// Parses a standalone expression (used for library-pattern bodies).
ast::ExprPtr parseExpression(const SourceLocator &locator, unsigned bufferID);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_PARSER_H
