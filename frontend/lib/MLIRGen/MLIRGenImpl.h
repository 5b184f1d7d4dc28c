//===- MLIRGenImpl.h - .attn AST to attn: shared state ----------*- C++ -*-===//
//
// Private to frontend/lib/MLIRGen. The lowering is one walk over the AST,
// split into files by concern:
//
//   SemanticChecks.cpp  SpecChecker: the checks that need only the AST (name
//                       declarations, input declarations, the normalizer
//                       and the linear block), decoded into plain structs;
//   MLIRGen.cpp         the driver (declaration order, lets), softmax
//                       attention and region scaffolding;
//   Declarations.cpp    params and inputs;
//   Expressions.cpp     typed expression lowering;
//   Calls.cpp           builtin calls and library-pattern expansion;
//   Linear.cpp          linear attention.
//
// Only the first error is reported, so which error a spec with several gets
// depends on the order of the checks. The checker is therefore called where
// the walk reaches each declaration, not as a pass up front. Type errors in
// expressions stay in the expression lowering: they need the operand types
// that lowering computes (`1 + q_idx` is an int, `1.0 + q_idx` a float).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_LIB_MLIRGEN_MLIRGENIMPL_H
#define ATTN_FRONTEND_LIB_MLIRGEN_MLIRGENIMPL_H

#include "Library.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Frontend/AST.h"
#include "attn/Frontend/Parser.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include <optional>
#include <string>
#include <vector>

namespace mlir::attn::mlirgen {

/// The language's types: int -> i64, float -> f64, bool -> i1. Regions are
/// f64 so that literals state the math exactly (docs/architecture.md).
enum class Ty { Int, Float, Bool };

/// "int", "float" or "bool", as diagnostics name types.
llvm::StringRef tyName(Ty t);

/// A lowered expression and its language type (an i64 may be an int; i1 is
/// always a bool).
struct TValue {
  Value value;
  Ty ty;
};

/// Which region an expression is being emitted into; decides which names
/// are visible. `LetCheck` is the scratch region where every let is checked
/// once: every index and `score` exist there (a let's uses are checked where
/// it is used).
enum class AttnRegion {
  ParamDefault,
  Scale,
  Bias,
  Mask,
  Score,
  Gate,
  Beta,
  Bonus,
  LetCheck
};

/// "the mask", "a param default", ...: the region as diagnostics name it.
llvm::StringRef regionName(AttnRegion k);

/// Per-region emission state.
struct RegionCtx {
  RegionCtx(AttnRegion kind, OpBuilder builder, size_t position)
      : kind(kind), builder(builder), position(position) {}
  AttnRegion kind;
  OpBuilder builder;
  /// Statement position of the expression being emitted; names must be
  /// defined at a smaller position.
  size_t position;
  /// Index values of the region; null where the region has no such index.
  /// `t` and `d` are the time step and feature index of linear regions.
  Value b, h, qIdx, kvIdx, score, t, d;
  llvm::StringMap<TValue> letCache;
  /// Macro parameters of library patterns being expanded (innermost last).
  llvm::SmallVector<llvm::StringMap<const ast::Expr *>> macroArgs;
  /// Lets being emitted, to report cycles (cannot happen with ordering, but
  /// macros may refer to names too).
  llvm::StringSet<> inProgress;
};

/// A param, input or let of the spec.
struct NameInfo {
  enum Kind { Param, Input, Let } kind;
  /// Statement position (index into Spec::order), for define-before-use.
  size_t position;
  /// Index into Spec::params, Spec::inputs or Spec::lets.
  size_t index;
};

/// What the spec's declarations define. The checker fills it as it reaches
/// each declaration; expression lowering resolves names against it.
struct SpecScope {
  llvm::StringMap<NameInfo> names;
  /// Symbolic dims declared by inputs (beyond the canonical ones).
  llvm::StringSet<> extraDims;
  /// The spec has a linear block: `t` and `d` are index names (reserved).
  bool isLinear = false;
};

/// The normalizer statement, checked: softmax with no arguments when the
/// spec has none.
struct NormalizerConfig {
  NormalizerKind kind = NormalizerKind::softmax;
  bool lse = false, rowNormalize = false;
  int64_t power = 1;
  /// sigmoid's `bias = EXPR` (null when not given) and where it is named.
  const ast::Expr *biasExpr = nullptr;
  llvm::SMLoc biasLoc;
};

/// The linear block, checked. Unset keys keep these defaults.
struct LinearConfig {
  FeatureMapKind mapQ = FeatureMapKind::identity,
                 mapK = FeatureMapKind::identity;
  /// The projection input of `random(W)` for q and for k.
  std::string projQ, projK;
  bool normalize = false, causal = true, exclusive = false;
  /// The expression-valued entries (null when absent).
  const ast::LinearEntry *gate = nullptr, *delta = nullptr, *bonus = nullptr;
  /// Where each setting was made (null: defaulted); an error about two
  /// settings that do not combine points at the later one.
  const ast::LinearEntry *mapQAt = nullptr, *mapKAt = nullptr,
                         *normalizeAt = nullptr, *causalAt = nullptr,
                         *readoutAt = nullptr;
};

/// `t` (time step) and `d` (feature index) are the extra indices of linear
/// gate, delta and bonus expressions. They are reserved only in specs with a
/// linear block, so older specs may keep using them as names.
inline bool isLinearIndexName(llvm::StringRef n) {
  return n == "t" || n == "d";
}

/// Whether `n` is an index, shape dim, builtin or non-public library
/// pattern, which a declaration may not define.
bool isReservedName(llvm::StringRef n, MLIRContext *ctx, bool linear);

/// "[B, N, 4]": a declared shape as written.
std::string dimsText(const std::vector<ast::DimSpec> &dims);

/// Position of statement kind `k` in source order (for define-before-use);
/// past the end when the spec has no such statement.
size_t positionOf(const ast::Spec &spec, ast::Spec::StmtKind k);

/// The semantic checks that need only the AST. Each reports the first error
/// at its source location and fails; on success it returns what the
/// declaration means, so the emitter does not re-interpret the AST.
class SpecChecker {
public:
  SpecChecker(const SourceLocator &locator, const ast::Spec &spec,
              SpecScope &scope)
      : locator(locator), spec(spec), ctx(locator.getContext()), scope(scope) {}

  /// Records every param, input and let in `scope`; rejects reserved names.
  LogicalResult declareNames();
  /// Checks an input's element type, shape and dims; returns the element
  /// type and records its extra dims in `scope`.
  FailureOr<Type> checkInput(const ast::InputDecl &in);
  /// Checks the normalizer statement (softmax when there is none).
  FailureOr<NormalizerConfig> checkNormalizer();
  /// Checks the linear block: each entry, then how they combine.
  FailureOr<LinearConfig> checkLinear();

private:
  InFlightDiagnostic emitError(llvm::SMLoc l) {
    return mlir::emitError(locator.get(l));
  }

  FailureOr<Type> checkElementType(const ast::InputDecl &in);
  LogicalResult checkCanonicalInput(const ast::InputDecl &in, Type elt);
  LogicalResult checkDim(const ast::DimSpec &d);

  LogicalResult checkNormalizerArg(const ast::Arg &a, llvm::StringRef allowed,
                                   llvm::StringSet<> &seen,
                                   NormalizerConfig &config);

  LogicalResult checkLinearEntry(const ast::LinearEntry &e, size_t position,
                                 LinearConfig &config);
  /// The feature map named by a linear-block value (`relu`, `random(W)`);
  /// `projection` gets W for `random`.
  FailureOr<FeatureMapKind> checkFeatureMap(const ast::LinearEntry &entry,
                                            size_t position,
                                            std::string &projection);
  FailureOr<std::string> checkProjection(const ast::Expr &arg, size_t position);
  LogicalResult checkFeatureMapPair(const LinearConfig &config);
  LogicalResult checkLinearCombinations(const LinearConfig &config);

  const SourceLocator &locator;
  const ast::Spec &spec;
  MLIRContext *ctx;
  SpecScope &scope;
};

/// Lowers one spec to a module holding its `attn.spec`.
class MLIRGenImpl {
public:
  MLIRGenImpl(const SourceLocator &locator, const ast::Spec &spec)
      : locator(locator), spec(spec), ctx(locator.getContext()), builder(ctx),
        checker(locator, spec, scope) {}

  OwningOpRef<ModuleOp> run();

private:
  Location loc(llvm::SMLoc l) { return locator.get(l); }
  InFlightDiagnostic emitError(llvm::SMLoc l) {
    return mlir::emitError(loc(l));
  }

  //===--- MLIRGen.cpp: driver, softmax attention, regions ----------------===//
  LogicalResult checkLets();
  LogicalResult emitAttention();
  /// Builds `region`'s block (its index arguments follow `kind`), emits
  /// `expr` into it and yields it as `resultTy`. A null `expr` leaves the
  /// region empty (the op's default).
  LogicalResult fillRegion(Region &region, AttnRegion kind,
                           const ast::Expr *expr, size_t position, Ty resultTy,
                           llvm::StringRef what, llvm::SMLoc whatLoc);

  //===--- Declarations.cpp -----------------------------------------------===//
  LogicalResult emitParam(const ast::ParamDecl &p, size_t position);
  LogicalResult emitInput(const ast::InputDecl &in);

  //===--- Linear.cpp -----------------------------------------------------===//
  LogicalResult emitLinearAttention();

  //===--- Expressions.cpp ------------------------------------------------===//
  /// Emits `e`; lets and library patterns are expanded in place, so the
  /// recursion is bounded here, not only by the parser's nesting limit.
  FailureOr<TValue> emit(const ast::Expr &e, RegionCtx &rc);
  FailureOr<TValue> emitNode(const ast::Expr &e, RegionCtx &rc);
  FailureOr<TValue> emitIdent(const ast::IdentExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitIndex(const ast::IdentExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitDeclared(const ast::IdentExpr &e, const NameInfo &info,
                                 RegionCtx &rc);
  FailureOr<TValue> emitLet(const ast::IdentExpr &e, const NameInfo &info,
                            RegionCtx &rc);
  FailureOr<TValue> emitUnary(const ast::UnaryExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitBinary(const ast::BinaryExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitLogical(const ast::BinaryExpr &e, TValue lhs,
                                TValue rhs, RegionCtx &rc);
  TValue emitComparison(const ast::BinaryExpr &e, TValue lhs, TValue rhs,
                        RegionCtx &rc);
  FailureOr<TValue> emitArithmetic(const ast::BinaryExpr &e, TValue lhs,
                                   TValue rhs, RegionCtx &rc);
  FailureOr<TValue> emitSubscript(const ast::SubscriptExpr &e, RegionCtx &rc);

  //===--- Calls.cpp ------------------------------------------------------===//
  FailureOr<TValue> emitCall(const ast::CallExpr &e, RegionCtx &rc);
  /// Emits a builtin function call; `std::nullopt` when `e.callee` is not a
  /// builtin.
  std::optional<FailureOr<TValue>> emitBuiltin(const ast::CallExpr &e,
                                               RegionCtx &rc);
  FailureOr<TValue> emitMathCall(const ast::CallExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitBinaryCall(const ast::CallExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitSelect(const ast::CallExpr &e, RegionCtx &rc);
  /// Checks that a builtin call has `n` positional arguments.
  LogicalResult checkArity(const ast::CallExpr &e, size_t n);
  /// Emits a builtin's argument, which must be a number.
  FailureOr<TValue> emitNumberArg(const ast::CallExpr &e, const ast::Arg &a,
                                  RegionCtx &rc);
  /// Expands library pattern `pat` at `at`: `call` holds its arguments (null
  /// for a bare name such as `causal`).
  FailureOr<TValue> expandPattern(const LibraryPattern &pat,
                                  const ast::CallExpr *call, llvm::SMLoc at,
                                  RegionCtx &rc);
  /// Binds the call's arguments to `pat`'s parameters (positional, then
  /// named, then defaults) and checks the user's arguments.
  FailureOr<llvm::SmallVector<const ast::Expr *>>
  bindPatternArgs(const LibraryPattern &pat, const ast::CallExpr *call,
                  llvm::SMLoc at, RegionCtx &rc);
  FailureOr<size_t> patternArgSlot(const LibraryPattern &pat, const ast::Arg &a,
                                   size_t i);
  LogicalResult checkPatternArg(const LibraryPattern &pat, size_t slot,
                                const ast::Arg &a, RegionCtx &rc);

  //===--- Conversions ----------------------------------------------------===//
  Value toFloat(TValue v, RegionCtx &rc, Location l);
  Type mlirType(Ty t);
  /// Converts `v` to `want` (only int -> float is implicit).
  FailureOr<Value> coerce(TValue v, Ty want, RegionCtx &rc, llvm::SMLoc at,
                          llvm::StringRef what);

  const SourceLocator &locator;
  const ast::Spec &spec;
  MLIRContext *ctx;
  OpBuilder builder;
  SpecOp specOp;
  SpecScope scope;
  SpecChecker checker;
  llvm::StringMap<Ty> paramTypes;
  static constexpr unsigned kMaxEmitDepth = 2000;
  unsigned emitDepth = 0;
};

} // namespace mlir::attn::mlirgen

#endif // ATTN_FRONTEND_LIB_MLIRGEN_MLIRGENIMPL_H
