//===- MLIRGen.h - .attn AST to the attn dialect ----------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_MLIRGEN_H
#define ATTN_FRONTEND_MLIRGEN_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
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

/// Evaluates the integer arithmetic of `spec` that is known at compile time
/// (literals, params with their bound values, and everything computed from
/// them, library pattern expansions included) with overflow checks. Reports
/// an overflow (`9223372036854775807 + 1`, `abs(INT64_MIN)`,
/// `INT64_MIN // -1`) or a division by a constant zero at the operation's
/// location and fails. Arithmetic on run-time values (dims, indices, input
/// lookups) is not checked: it wraps in compiled kernels.
LogicalResult checkConstantIntegers(SpecOp spec);

/// Library mask patterns with their signatures, e.g. "sliding_window(w)",
/// for `attnc --help`.
std::vector<std::string> libraryPatternSignatures();

} // namespace mlir::attn

#endif // ATTN_FRONTEND_MLIRGEN_H
