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
OwningOpRef<ModuleOp> loadSpec(MLIRContext &ctx,
                               const llvm::SourceMgr &sourceMgr,
                               unsigned bufferID,
                               llvm::ArrayRef<std::string> params,
                               std::string &paramError);

/// The single attn.spec in `module`.
SpecOp getSpec(ModuleOp module);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_DRIVER_H
