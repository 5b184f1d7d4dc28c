//===- CompilerInternal.h - shared by the CPU and CUDA JIT ------*- C++ -*-===//

#ifndef ATTN_JIT_COMPILERINTERNAL_H
#define ATTN_JIT_COMPILERINTERNAL_H

#include "KernelCache.h"
#include "attn/Frontend/Driver.h"
#include "attn/JIT/Compiler.h"
#include "attn/Signature.h"
#include "attn/runtime.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"
#include <string>
#include <vector>

namespace attn::detail {

/// The spec's source: the file at `spec` if it names one (no newline or
/// brace in it), else `spec` itself. False with `error` set on a bad path.
bool readSpecSource(const std::string &spec, std::string &source,
                    std::string &bufferName, std::string &error);
/// Identifies this build of the compiler (part of every cache key).
std::string compilerIdentity();
/// The cache file stem for a key text.
std::string hashKey(const std::string &keyText);

/// A spec parsed, bound and verified in its own context; diagnostics (also
/// those of later lowering) are collected as text.
class SpecSession {
public:
  SpecSession();
  /// Parses `source` and binds `options.params`. Null with `error` set (the
  /// diagnostics text, or the param error) on failure.
  mlir::ModuleOp load(const std::string &source, const std::string &bufferName,
                      const CompileOptions &options, std::string &error);
  /// Diagnostics reported so far, `file:line:col: error: ...` with carets.
  const std::string &diagnostics() const { return diagText; }

private:
  mlir::MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  std::string diagText;
  llvm::raw_string_ostream diagOS{diagText};
  mlir::attn::SpecDiagnosticHandler handler{sourceMgr, &ctx, diagOS};
  mlir::OwningOpRef<mlir::ModuleOp> module;
};

} // namespace attn::detail

#endif
