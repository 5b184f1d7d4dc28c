//===- Parser.h - .attn parser ----------------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_PARSER_H
#define ATTN_FRONTEND_PARSER_H

#include "attn/Frontend/AST.h"
#include "attn/Frontend/Lexer.h"
#include "mlir/IR/Location.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/DenseMap.h"
#include <vector>

namespace mlir::attn {

/// The start offsets of the lines of `text`. A line ends at "\n", "\r\n" or
/// a lone "\r" (classic Mac files): llvm::SourceMgr counts only "\n", so a
/// file with CR-only line endings would otherwise be one long line 1.
std::vector<size_t> lineStartOffsets(llvm::StringRef text);
/// Whether `text` has a "\r" not followed by "\n" (a CR-only line ending).
bool hasLoneCR(llvm::StringRef text);

/// Converts buffer positions to MLIR locations, so every frontend error goes
/// through MLIR diagnostics as `file:line:col: error: ...` with a caret.
/// Lines are counted as lineStartOffsets() does; columns are 1-based bytes.
class SourceLocator {
public:
  SourceLocator(MLIRContext *ctx, const llvm::SourceMgr &sourceMgr)
      : ctx(ctx), sourceMgr(sourceMgr) {}
  Location get(llvm::SMLoc loc) const;
  MLIRContext *getContext() const { return ctx; }
  const llvm::SourceMgr &getSourceMgr() const { return sourceMgr; }

private:
  /// Line starts of buffers with lone CRs (computed on first use); empty for
  /// the others, whose lines the SourceMgr counts correctly (and caches).
  const std::vector<size_t> &crLineStarts(unsigned bufferID) const;

  MLIRContext *ctx;
  const llvm::SourceMgr &sourceMgr;
  mutable llvm::DenseMap<unsigned, std::vector<size_t>> lineStartsCache;
};

/// Parses one `attention` spec from buffer `bufferID`. Returns nullptr after
/// reporting the first error.
std::unique_ptr<ast::Spec> parseSpec(const SourceLocator &locator,
                                     unsigned bufferID);

/// Parses a standalone expression (used for library-pattern bodies).
ast::ExprPtr parseExpression(const SourceLocator &locator, unsigned bufferID);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_PARSER_H
