//===- Driver.h - from .attn source to a verified attn module ---*- C++ -*-===//
//
// The front half shared by attnc, the tests and (later) the JIT: parse,
// MLIRGen, bind params, verify, tidy. Errors go through the context's
// diagnostic handler; callers install a SourceMgrDiagnosticHandler so they
// print as `file:line:col: error: ...` with the source line and a caret.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_DRIVER_H
#define ATTN_FRONTEND_DRIVER_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Frontend/AST.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/SourceMgr.h"

namespace mlir::attn {

/// Loads the dialects attn modules use into `ctx`.
void loadAttnDialects(MLIRContext &ctx);

/// Parses buffer `bufferID` of `sourceMgr` into an AST (null on error).
std::unique_ptr<ast::Spec> parseSpecBuffer(MLIRContext &ctx,
                                           const llvm::SourceMgr &sourceMgr,
                                           unsigned bufferID);

/// Parses, generates IR, binds `params` ("name=value" strings) and runs CSE.
/// Returns null after reporting a spec error through diagnostics, or after
/// setting `paramError` when a param binding is wrong (a command-line error,
/// which has no source location).
OwningOpRef<ModuleOp>
loadSpec(MLIRContext &ctx, const llvm::SourceMgr &sourceMgr, unsigned bufferID,
         llvm::ArrayRef<std::string> params, std::string &paramError);

/// The single attn.spec in `module`.
SpecOp getSpec(ModuleOp module);

//===----------------------------------------------------------------------===//
// Diagnostics that stay short whatever the input
//===----------------------------------------------------------------------===//

/// A word of a diagnostic message (a run of letters, digits and '_', e.g. an
/// identifier or number quoted from the spec) longer than this is cut to its
/// first kDiagMaxWordChars characters followed by "...".
constexpr size_t kDiagMaxWordChars = 80;
/// A source line longer than this is shown as a window of this many columns
/// around the caret, with "..." where it was cut.
constexpr size_t kDiagSnippetColumns = 120;

/// `message` with every word longer than kDiagMaxWordChars shortened.
std::string shortenDiagnosticText(llvm::StringRef message);
/// Shortens the message of `diag` and of its notes in place.
void shortenDiagnostic(Diagnostic &diag);

/// The diagnostic handler for spec files: what SourceMgrDiagnosticHandler
/// prints (`file:line:col: error: message`, the source line, a caret), with
/// long words of messages shortened (shortenDiagnosticText), a long source
/// line shown as a window around the caret, and source lines found the way
/// SourceLocator counts them (a lone "\r" ends a line). So a 10 MB
/// identifier gives a few hundred bytes of output, not 20 MB.
class SpecDiagnosticHandler : public SourceMgrDiagnosticHandler {
public:
  SpecDiagnosticHandler(llvm::SourceMgr &mgr, MLIRContext *ctx,
                        raw_ostream &os);
  SpecDiagnosticHandler(llvm::SourceMgr &mgr, MLIRContext *ctx);

private:
  void emit(Diagnostic &diag);
  /// Emits one diagnostic without its notes.
  void emitOne(Location loc, llvm::StringRef message,
               DiagnosticSeverity severity);
  /// The source line `loc` points at, when the SourceMgr would show the
  /// wrong one or too much of it.
  std::optional<llvm::StringRef> ownSnippetLine(Location loc);
};

} // namespace mlir::attn

#endif // ATTN_FRONTEND_DRIVER_H
