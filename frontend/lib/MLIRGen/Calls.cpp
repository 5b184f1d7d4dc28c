//===- Calls.cpp - builtin calls and library-pattern expansion ------------===//
//
// A call is a library pattern (expanded in place, see Library.cpp) or a
// builtin (exp, log, exp2, log2, sqrt, tanh, abs, float, min, max, pow,
// select). Builtins take positional arguments only; patterns take named ones
// too, and defaults.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/StringSwitch.h"
#include <functional>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

FailureOr<TValue> MLIRGenImpl::emitCall(const CallExpr &e, RegionCtx &rc) {
  llvm::StringRef callee = e.callee;
  // A param, let or input of the spec shadows a library pattern of the same
  // name, in calls too (outside library expansions).
  if (auto shadow = scope.names.find(callee);
      shadow != scope.names.end() && rc.macroArgs.empty() &&
      shadow->second.kind != NameInfo::Input) {
    emitError(e.getLoc()) << "'" << callee << "' is a "
                          << (shadow->second.kind == NameInfo::Param ? "param"
                                                                     : "let")
                          << " of this spec (it shadows the library pattern "
                             "of that name), not a function";
    return failure();
  }
  if (const LibraryPattern *pat = lookupLibraryPattern(callee, ctx);
      pat && (pat->isPublic || !rc.macroArgs.empty()))
    return expandPattern(*pat, &e, e.getLoc(), rc);
  if (std::optional<FailureOr<TValue>> v = emitBuiltin(e, rc))
    return *v;
  auto it = scope.names.find(callee);
  if (it != scope.names.end() && it->second.kind == NameInfo::Input) {
    emitError(e.getLoc()) << "input '" << callee
                          << "' is indexed with [], not called with ()";
    return failure();
  }
  emitError(e.getLoc()) << "unknown function '" << callee << "'";
  return failure();
}

//===----------------------------------------------------------------------===//
// Builtins
//===----------------------------------------------------------------------===//

std::optional<FailureOr<TValue>> MLIRGenImpl::emitBuiltin(const CallExpr &e,
                                                          RegionCtx &rc) {
  static const llvm::StringRef unary[] = {"exp",  "log",  "exp2", "log2",
                                          "sqrt", "tanh", "abs",  "float"};
  llvm::StringRef callee = e.callee;
  if (llvm::is_contained(unary, callee))
    return emitMathCall(e, rc);
  if (callee == "min" || callee == "max" || callee == "pow")
    return emitBinaryCall(e, rc);
  if (callee == "select")
    return emitSelect(e, rc);
  return std::nullopt;
}

LogicalResult MLIRGenImpl::checkArity(const CallExpr &e, size_t n) {
  for (const Arg &a : e.args)
    if (!a.name.empty()) {
      emitError(a.nameLoc) << "'" << e.callee
                           << "' does not take named arguments";
      return failure();
    }
  if (e.args.size() == n)
    return success();
  emitError(e.getLoc()) << "'" << e.callee << "' takes " << n << " argument"
                        << (n == 1 ? "" : "s") << ", got " << e.args.size();
  return failure();
}

FailureOr<TValue> MLIRGenImpl::emitNumberArg(const CallExpr &e, const Arg &a,
                                             RegionCtx &rc) {
  FailureOr<TValue> v = emit(*a.value, rc);
  if (failed(v))
    return failure();
  if (v->ty == Ty::Bool) {
    emitError(a.value->getLoc())
        << "'" << e.callee << "' needs a number, got bool";
    return failure();
  }
  return v;
}

/// The one-argument builtins: abs keeps ints int, float converts, the rest
/// are float functions.
FailureOr<TValue> MLIRGenImpl::emitMathCall(const CallExpr &e, RegionCtx &rc) {
  if (failed(checkArity(e, 1)))
    return failure();
  FailureOr<TValue> v = emitNumberArg(e, e.args[0], rc);
  if (failed(v))
    return failure();
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  llvm::StringRef callee = e.callee;
  if (callee == "abs") {
    if (v->ty == Ty::Int)
      return TValue{math::AbsIOp::create(b, l, v->value), Ty::Int};
    return TValue{math::AbsFOp::create(b, l, v->value), Ty::Float};
  }
  Value x = toFloat(*v, rc, l);
  if (callee == "float")
    return TValue{x, Ty::Float};
  Value r = llvm::StringSwitch<std::function<Value()>>(callee)
                .Case("exp", [&] { return math::ExpOp::create(b, l, x); })
                .Case("log", [&] { return math::LogOp::create(b, l, x); })
                .Case("exp2", [&] { return math::Exp2Op::create(b, l, x); })
                .Case("log2", [&] { return math::Log2Op::create(b, l, x); })
                .Case("sqrt", [&] { return math::SqrtOp::create(b, l, x); })
                .Default([&] { return math::TanhOp::create(b, l, x); })();
  return TValue{r, Ty::Float};
}

/// min and max keep ints int; pow is always float.
FailureOr<TValue> MLIRGenImpl::emitBinaryCall(const CallExpr &e,
                                              RegionCtx &rc) {
  if (failed(checkArity(e, 2)))
    return failure();
  FailureOr<TValue> x = emitNumberArg(e, e.args[0], rc);
  if (failed(x))
    return failure();
  FailureOr<TValue> y = emitNumberArg(e, e.args[1], rc);
  if (failed(y))
    return failure();
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  llvm::StringRef callee = e.callee;
  if (callee == "pow")
    return TValue{
        math::PowFOp::create(b, l, toFloat(*x, rc, l), toFloat(*y, rc, l)),
        Ty::Float};
  if (x->ty == Ty::Int && y->ty == Ty::Int) {
    Value r = callee == "min"
                  ? Value(arith::MinSIOp::create(b, l, x->value, y->value))
                  : Value(arith::MaxSIOp::create(b, l, x->value, y->value));
    return TValue{r, Ty::Int};
  }
  Value fx = toFloat(*x, rc, l), fy = toFloat(*y, rc, l);
  Value r = callee == "min" ? Value(arith::MinimumFOp::create(b, l, fx, fy))
                            : Value(arith::MaximumFOp::create(b, l, fx, fy));
  return TValue{r, Ty::Float};
}

/// select(cond, x, y): branches of one type, or two numbers (as floats).
FailureOr<TValue> MLIRGenImpl::emitSelect(const CallExpr &e, RegionCtx &rc) {
  if (failed(checkArity(e, 3)))
    return failure();
  FailureOr<TValue> c = emit(*e.args[0].value, rc);
  if (failed(c))
    return failure();
  if (c->ty != Ty::Bool) {
    emitError(e.args[0].value->getLoc())
        << "select's condition must be bool, got " << tyName(c->ty);
    return failure();
  }
  FailureOr<TValue> x = emit(*e.args[1].value, rc);
  if (failed(x))
    return failure();
  FailureOr<TValue> y = emit(*e.args[2].value, rc);
  if (failed(y))
    return failure();
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  if (x->ty == y->ty)
    return TValue{arith::SelectOp::create(b, l, c->value, x->value, y->value),
                  x->ty};
  if (x->ty == Ty::Bool || y->ty == Ty::Bool) {
    emitError(e.getLoc()) << "select's branches have different types: "
                          << tyName(x->ty) << " and " << tyName(y->ty);
    return failure();
  }
  return TValue{arith::SelectOp::create(b, l, c->value, toFloat(*x, rc, l),
                                        toFloat(*y, rc, l)),
                Ty::Float};
}

//===----------------------------------------------------------------------===//
// Library patterns
//===----------------------------------------------------------------------===//

/// Whether `e` subscripts a tensor named `name` (`doc[b, q_idx]`).
static bool subscripts(const Expr &e, llvm::StringRef name) {
  if (auto *s = llvm::dyn_cast<SubscriptExpr>(&e))
    return s->tensor == name || llvm::any_of(s->indices, [&](const ExprPtr &i) {
             return subscripts(*i, name);
           });
  if (auto *u = llvm::dyn_cast<UnaryExpr>(&e))
    return subscripts(*u->operand, name);
  if (auto *b = llvm::dyn_cast<BinaryExpr>(&e))
    return subscripts(*b->lhs, name) || subscripts(*b->rhs, name);
  if (auto *c = llvm::dyn_cast<CallExpr>(&e))
    return llvm::any_of(
        c->args, [&](const Arg &a) { return subscripts(*a.value, name); });
  return false;
}

/// Subscripts name their tensor directly, not through an expression, so
/// macro substitution does not reach them: rewrite `doc[...]` in `e` when
/// `doc` is a parameter bound to a plain name.
static void renameTensors(Expr &e, const llvm::StringMap<const Expr *> &args) {
  if (auto *s = llvm::dyn_cast<SubscriptExpr>(&e)) {
    auto it = args.find(s->tensor);
    if (it != args.end())
      if (auto *id = llvm::dyn_cast<IdentExpr>(it->second))
        s->tensor = id->name;
    for (ExprPtr &i : s->indices)
      renameTensors(*i, args);
  } else if (auto *u = llvm::dyn_cast<UnaryExpr>(&e)) {
    renameTensors(*u->operand, args);
  } else if (auto *bin = llvm::dyn_cast<BinaryExpr>(&e)) {
    renameTensors(*bin->lhs, args);
    renameTensors(*bin->rhs, args);
  } else if (auto *c = llvm::dyn_cast<CallExpr>(&e)) {
    for (Arg &a : c->args)
      renameTensors(*a.value, args);
  }
}

/// The parameter slot of the call's `i`th argument `a`.
FailureOr<size_t> MLIRGenImpl::patternArgSlot(const LibraryPattern &pat,
                                              const Arg &a, size_t i) {
  if (!a.name.empty()) {
    auto pit = llvm::find(pat.params, a.name);
    if (pit == pat.params.end()) {
      emitError(a.nameLoc) << "'" << pat.name << "' has no argument named '"
                           << a.name << "'";
      return failure();
    }
    return size_t(pit - pat.params.begin());
  }
  if (i >= pat.params.size()) {
    auto diag = emitError(a.value->getLoc()) << "'" << pat.name << "' takes ";
    if (pat.params.empty())
      diag << "no arguments";
    else
      diag << "at most " << pat.params.size() << " argument"
           << (pat.params.size() == 1 ? "" : "s");
    return failure();
  }
  return i;
}

/// Checks a user's argument here, where errors can point at it: inside the
/// expansion every node carries the call site's location. A tensor
/// parameter (`doc`) takes an input's name; `causal` a bool; the rest are
/// ints (library patterns are integer predicates).
LogicalResult MLIRGenImpl::checkPatternArg(const LibraryPattern &pat,
                                           size_t slot, const Arg &a,
                                           RegionCtx &rc) {
  llvm::StringRef param = pat.params[slot];
  if (subscripts(*pat.body, param)) {
    if (llvm::isa<IdentExpr>(a.value.get()))
      return success();
    emitError(a.value->getLoc())
        << "argument '" << param << "' of '" << pat.name
        << "' must be the name of an input tensor";
    return failure();
  }
  FailureOr<TValue> v = emit(*a.value, rc);
  if (failed(v))
    return failure();
  // A parameter's type is its default's: only bool defaults make bools.
  Ty want =
      slot >= pat.numRequired &&
              llvm::isa<BoolExpr>(pat.defaults[slot - pat.numRequired].get())
          ? Ty::Bool
          : Ty::Int;
  if (v->ty != want) {
    emitError(a.value->getLoc())
        << "argument '" << param << "' of '" << pat.name << "' must be "
        << tyName(want) << ", got " << tyName(v->ty);
    return failure();
  }
  return success();
}

FailureOr<llvm::SmallVector<const Expr *>>
MLIRGenImpl::bindPatternArgs(const LibraryPattern &pat, const CallExpr *call,
                             llvm::SMLoc at, RegionCtx &rc) {
  llvm::SmallVector<const Expr *> bound(pat.params.size(), nullptr);
  size_t numArgs = call ? call->args.size() : 0;
  for (size_t i = 0; i < numArgs; ++i) {
    const Arg &a = call->args[i];
    FailureOr<size_t> slot = patternArgSlot(pat, a, i);
    if (failed(slot))
      return failure();
    if (bound[*slot]) {
      emitError(a.name.empty() ? a.value->getLoc() : a.nameLoc)
          << "argument '" << pat.params[*slot] << "' of '" << pat.name
          << "' given twice";
      return failure();
    }
    // Internal helpers are called by expansions only, with arguments the
    // public pattern has already checked.
    if (pat.isPublic && failed(checkPatternArg(pat, *slot, a, rc)))
      return failure();
    bound[*slot] = a.value.get();
  }
  for (size_t i = 0; i < pat.params.size(); ++i) {
    if (bound[i])
      continue;
    if (i < pat.numRequired) {
      emitError(at) << "'" << pat.name << "' needs argument '" << pat.params[i]
                    << "'";
      return failure();
    }
    bound[i] = pat.defaults[i - pat.numRequired].get();
  }
  return bound;
}

FailureOr<TValue> MLIRGenImpl::expandPattern(const LibraryPattern &pat,
                                             const CallExpr *call,
                                             llvm::SMLoc at, RegionCtx &rc) {
  FailureOr<llvm::SmallVector<const Expr *>> bound =
      bindPatternArgs(pat, call, at, rc);
  if (failed(bound))
    return failure();
  // The body is written against the pattern's own params. Attribute its
  // nodes to the call site so errors and IR locations point at user code.
  ExprPtr body = pat.body->clone(at);
  llvm::StringMap<const Expr *> args;
  for (size_t i = 0; i < pat.params.size(); ++i)
    args[pat.params[i]] = (*bound)[i];
  renameTensors(*body, args);
  rc.macroArgs.push_back(std::move(args));
  FailureOr<TValue> v = emit(*body, rc);
  rc.macroArgs.pop_back();
  return v;
}
