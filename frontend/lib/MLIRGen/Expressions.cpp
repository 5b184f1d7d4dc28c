//===- Expressions.cpp - typed lowering of .attn expressions --------------===//
//
// Each expression is emitted into the region being built, with its language
// type. Type errors are reported here, where operand types are known, at
// the operator's or operand's location. Names resolve in this order:
// library-pattern parameters, `score`, indices, shape dims, the spec's
// params/inputs/lets, then library patterns.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/ErrorHandling.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

FailureOr<TValue> MLIRGenImpl::emit(const Expr &e, RegionCtx &rc) {
  if (emitDepth >= kMaxEmitDepth) {
    emitError(e.getLoc()) << "expression is nested too deeply once lets and "
                             "library patterns are expanded (more than "
                          << kMaxEmitDepth << " levels)";
    return failure();
  }
  ++emitDepth;
  FailureOr<TValue> v = emitNode(e, rc);
  --emitDepth;
  return v;
}

FailureOr<TValue> MLIRGenImpl::emitNode(const Expr &e, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  switch (e.getKind()) {
  case Expr::Kind::Int:
    return TValue{arith::ConstantOp::create(rc.builder, l,
                                            rc.builder.getI64IntegerAttr(
                                                llvm::cast<IntExpr>(e).value)),
                  Ty::Int};
  case Expr::Kind::Float:
    return TValue{
        arith::ConstantOp::create(
            rc.builder, l,
            rc.builder.getF64FloatAttr(llvm::cast<FloatExpr>(e).value)),
        Ty::Float};
  case Expr::Kind::Bool:
    return TValue{arith::ConstantOp::create(
                      rc.builder, l,
                      rc.builder.getBoolAttr(llvm::cast<BoolExpr>(e).value)),
                  Ty::Bool};
  case Expr::Kind::Ident:
    return emitIdent(llvm::cast<IdentExpr>(e), rc);
  case Expr::Kind::Unary:
    return emitUnary(llvm::cast<UnaryExpr>(e), rc);
  case Expr::Kind::Binary:
    return emitBinary(llvm::cast<BinaryExpr>(e), rc);
  case Expr::Kind::Call:
    return emitCall(llvm::cast<CallExpr>(e), rc);
  case Expr::Kind::Subscript:
    return emitSubscript(llvm::cast<SubscriptExpr>(e), rc);
  }
  return failure();
}

//===----------------------------------------------------------------------===//
// Names
//===----------------------------------------------------------------------===//

FailureOr<TValue> MLIRGenImpl::emitIdent(const IdentExpr &e, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  llvm::StringRef name = e.name;
  // Library-pattern parameters, innermost expansion first.
  if (!rc.macroArgs.empty()) {
    auto &args = rc.macroArgs.back();
    auto it = args.find(name);
    if (it != args.end()) {
      // The argument was written in the caller's scope.
      auto saved = rc.macroArgs.pop_back_val();
      FailureOr<TValue> v = emit(*it->second, rc);
      rc.macroArgs.push_back(std::move(saved));
      return v;
    }
  }
  if (name == "score") {
    if (!rc.score) {
      emitError(e.getLoc()) << "'score' can only be used in the score "
                               "expression, not in "
                            << regionName(rc.kind);
      return failure();
    }
    return TValue{rc.score, Ty::Float};
  }
  // `t` and `d` are indices in linear specs, and in other specs unless the
  // spec defines them (then they are its own names or dims).
  bool linearIndex = isLinearIndexName(name) &&
                     (scope.isLinear || (!scope.names.count(name) &&
                                         !scope.extraDims.contains(name)));
  if (name == "b" || name == "h" || name == "q_idx" || name == "kv_idx" ||
      name == "hk" || linearIndex)
    return emitIndex(e, rc);
  if (isCanonicalDim(name) || scope.extraDims.contains(name))
    return TValue{DimOp::create(rc.builder, l, rc.builder.getI64Type(), name),
                  Ty::Int};
  if (auto it = scope.names.find(name); it != scope.names.end())
    return emitDeclared(e, it->second, rc);
  if (const LibraryPattern *pat = lookupLibraryPattern(name, ctx);
      pat && (pat->isPublic || !rc.macroArgs.empty()))
    return expandPattern(*pat, nullptr, e.getLoc(), rc);
  emitError(e.getLoc()) << "unknown name '" << name << "'";
  return failure();
}

/// Explains why index `name` does not exist in a region of `kind`: the
/// message lists the indices the region does have.
static void explainMissingIndex(InFlightDiagnostic &diag, llvm::StringRef name,
                                AttnRegion kind, bool isLinear) {
  switch (kind) {
  case AttnRegion::Gate:
  case AttnRegion::Beta:
  case AttnRegion::Bonus:
    diag << "'" << name << "' is not available in " << regionName(kind)
         << " (its indices are "
         << (kind == AttnRegion::Gate   ? "b, h, hk, t and d"
             : kind == AttnRegion::Beta ? "b, h, hk and t"
                                        : "h, hk and d")
         << ")";
    return;
  default:
    if (name == "t")
      diag << "'t' is only available in linear gate and delta "
              "expressions";
    else if (name == "d")
      diag << "'d' is only available in linear gate and bonus "
              "expressions";
    else if (isLinear)
      diag << "'" << name << "' is not available in " << regionName(kind)
           << " (indices exist only in the linear gate, delta and "
              "bonus)";
    else
      diag << "'" << name << "' is not available in " << regionName(kind)
           << " (indices exist only in the mask and score)";
    return;
  }
}

/// `b`, `h`, `hk`, `q_idx`, `kv_idx`, `t` or `d`: a block argument of the
/// region, or `hk` = h // G (the KV head of query head h under GQA).
FailureOr<TValue> MLIRGenImpl::emitIndex(const IdentExpr &e, RegionCtx &rc) {
  llvm::StringRef name = e.name;
  Value v = llvm::StringSwitch<Value>(name)
                .Case("b", rc.b)
                .Cases({"h", "hk"}, rc.h)
                .Case("q_idx", rc.qIdx)
                .Case("kv_idx", rc.kvIdx)
                .Case("t", rc.t)
                .Default(rc.d);
  if (!v) {
    auto diag = emitError(e.getLoc());
    explainMissingIndex(diag, name, rc.kind, scope.isLinear);
    return failure();
  }
  if (name != "hk")
    return TValue{v, Ty::Int};
  Location l = loc(e.getLoc());
  Value g = DimOp::create(rc.builder, l, rc.builder.getI64Type(), "G");
  return TValue{arith::FloorDivSIOp::create(rc.builder, l, rc.h, g), Ty::Int};
}

/// A param, input or let of the spec, which must be defined before the
/// statement being emitted.
FailureOr<TValue> MLIRGenImpl::emitDeclared(const IdentExpr &e,
                                            const NameInfo &info,
                                            RegionCtx &rc) {
  llvm::StringRef name = e.name;
  if (info.position == rc.position) {
    emitError(e.getLoc()) << "'" << name << "' is used in its own definition";
    return failure();
  }
  if (info.position > rc.position) {
    emitError(e.getLoc()) << "'" << name << "' is used before its definition";
    return failure();
  }
  switch (info.kind) {
  case NameInfo::Input:
    emitError(e.getLoc()) << "input '" << name << "' must be indexed, e.g. "
                          << name << "[b, q_idx]";
    return failure();
  case NameInfo::Param: {
    Ty ty = paramTypes.lookup(name);
    return TValue{GetParamOp::create(rc.builder, loc(e.getLoc()), mlirType(ty),
                                     FlatSymbolRefAttr::get(ctx, name)),
                  ty};
  }
  case NameInfo::Let:
    return emitLet(e, info, rc);
  }
  llvm_unreachable("covered switch");
}

/// Lets are expanded in place (regions are isolated, so a value cannot be
/// shared across them); within one region the result is cached.
FailureOr<TValue> MLIRGenImpl::emitLet(const IdentExpr &e, const NameInfo &info,
                                       RegionCtx &rc) {
  llvm::StringRef name = e.name;
  auto cached = rc.letCache.find(name);
  if (cached != rc.letCache.end())
    return cached->second;
  if (!rc.inProgress.insert(name).second) {
    emitError(e.getLoc()) << "let '" << name << "' refers to itself";
    return failure();
  }
  const LetDecl &let = spec.lets[info.index];
  // The let's body is resolved where the let is written: at its position,
  // outside any library pattern being expanded here.
  size_t savedPos = rc.position;
  rc.position = info.position;
  auto savedMacros = std::move(rc.macroArgs);
  rc.macroArgs.clear();
  FailureOr<TValue> v = emit(*let.value, rc);
  rc.macroArgs = std::move(savedMacros);
  rc.position = savedPos;
  rc.inProgress.erase(name);
  if (succeeded(v))
    rc.letCache[name] = *v;
  return v;
}

//===----------------------------------------------------------------------===//
// Operators
//===----------------------------------------------------------------------===//

FailureOr<TValue> MLIRGenImpl::emitUnary(const UnaryExpr &e, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  FailureOr<TValue> v = emit(*e.operand, rc);
  if (failed(v))
    return failure();
  if (e.op == '!') {
    if (v->ty != Ty::Bool) {
      emitError(e.getLoc())
          << "'!' needs a bool operand, got " << tyName(v->ty);
      return failure();
    }
    Value t =
        arith::ConstantOp::create(rc.builder, l, rc.builder.getBoolAttr(true));
    return TValue{arith::XOrIOp::create(rc.builder, l, v->value, t), Ty::Bool};
  }
  if (v->ty == Ty::Bool) {
    emitError(e.getLoc()) << "unary '-' needs a number, got bool";
    return failure();
  }
  if (v->ty == Ty::Float)
    return TValue{arith::NegFOp::create(rc.builder, l, v->value), Ty::Float};
  // Integer negation as 0 - x, which ConstantCheck recognizes by the zero's
  // location to word its overflow error as "-(x)".
  Value zero =
      arith::ConstantOp::create(rc.builder, l, rc.builder.getI64IntegerAttr(0));
  return TValue{arith::SubIOp::create(rc.builder, l, zero, v->value), Ty::Int};
}

FailureOr<TValue> MLIRGenImpl::emitBinary(const BinaryExpr &e, RegionCtx &rc) {
  FailureOr<TValue> lhs = emit(*e.lhs, rc);
  if (failed(lhs))
    return failure();
  FailureOr<TValue> rhs = emit(*e.rhs, rc);
  if (failed(rhs))
    return failure();
  if (isLogical(e.op))
    return emitLogical(e, *lhs, *rhs, rc);
  // Bools compare for (in)equality only; every other operator needs numbers.
  bool isEquality = e.op == BinaryOp::Eq || e.op == BinaryOp::Ne;
  if (isEquality && lhs->ty == Ty::Bool && rhs->ty == Ty::Bool)
    return emitComparison(e, *lhs, *rhs, rc);
  if (lhs->ty == Ty::Bool || rhs->ty == Ty::Bool) {
    emitError(e.getLoc()) << "'" << spelling(e.op) << "' needs numbers, got "
                          << tyName(lhs->ty) << " and " << tyName(rhs->ty);
    return failure();
  }
  if (isComparison(e.op))
    return emitComparison(e, *lhs, *rhs, rc);
  return emitArithmetic(e, *lhs, *rhs, rc);
}

/// `&&` and `||` on bools.
FailureOr<TValue> MLIRGenImpl::emitLogical(const BinaryExpr &e, TValue lhs,
                                           TValue rhs, RegionCtx &rc) {
  if (lhs.ty != Ty::Bool || rhs.ty != Ty::Bool) {
    emitError(e.getLoc()) << "'" << spelling(e.op)
                          << "' needs bool operands, got " << tyName(lhs.ty)
                          << " and " << tyName(rhs.ty);
    return failure();
  }
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  Value r = e.op == BinaryOp::And
                ? Value(arith::AndIOp::create(b, l, lhs.value, rhs.value))
                : Value(arith::OrIOp::create(b, l, lhs.value, rhs.value));
  return TValue{r, Ty::Bool};
}

static arith::CmpIPredicate intPredicate(BinaryOp op) {
  switch (op) {
  case BinaryOp::Lt:
    return arith::CmpIPredicate::slt;
  case BinaryOp::Le:
    return arith::CmpIPredicate::sle;
  case BinaryOp::Gt:
    return arith::CmpIPredicate::sgt;
  case BinaryOp::Ge:
    return arith::CmpIPredicate::sge;
  case BinaryOp::Eq:
    return arith::CmpIPredicate::eq;
  case BinaryOp::Ne:
    return arith::CmpIPredicate::ne;
  default:
    llvm_unreachable("not a comparison");
  }
}

/// Ordered predicates, except `!=`: a NaN is unequal to everything, as in C.
static arith::CmpFPredicate floatPredicate(BinaryOp op) {
  switch (op) {
  case BinaryOp::Lt:
    return arith::CmpFPredicate::OLT;
  case BinaryOp::Le:
    return arith::CmpFPredicate::OLE;
  case BinaryOp::Gt:
    return arith::CmpFPredicate::OGT;
  case BinaryOp::Ge:
    return arith::CmpFPredicate::OGE;
  case BinaryOp::Eq:
    return arith::CmpFPredicate::OEQ;
  case BinaryOp::Ne:
    return arith::CmpFPredicate::UNE;
  default:
    llvm_unreachable("not a comparison");
  }
}

/// A comparison of two ints or two bools (integer compare), else of two
/// numbers as floats. The caller has checked the operand types.
TValue MLIRGenImpl::emitComparison(const BinaryExpr &e, TValue lhs, TValue rhs,
                                   RegionCtx &rc) {
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  if (lhs.ty == rhs.ty && lhs.ty != Ty::Float)
    return TValue{
        arith::CmpIOp::create(b, l, intPredicate(e.op), lhs.value, rhs.value),
        Ty::Bool};
  return TValue{arith::CmpFOp::create(b, l, floatPredicate(e.op),
                                      toFloat(lhs, rc, l), toFloat(rhs, rc, l)),
                Ty::Bool};
}

/// `+ - * / // %` on numbers: `/` is always float division, `//` and `%`
/// are integer-only (floor division and floor modulo), the rest stay int
/// when both operands are.
FailureOr<TValue> MLIRGenImpl::emitArithmetic(const BinaryExpr &e, TValue lhs,
                                              TValue rhs, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  BinaryOp op = e.op;
  bool bothInt = lhs.ty == Ty::Int && rhs.ty == Ty::Int;
  if (op == BinaryOp::FloorDiv || op == BinaryOp::Mod) {
    if (!bothInt) {
      emitError(e.getLoc())
          << "'" << spelling(op) << "' needs int operands, got "
          << tyName(lhs.ty) << " and " << tyName(rhs.ty)
          << (op == BinaryOp::FloorDiv ? "; use '/' for float division" : "");
      return failure();
    }
    Value q = arith::FloorDivSIOp::create(b, l, lhs.value, rhs.value);
    if (op == BinaryOp::FloorDiv)
      return TValue{q, Ty::Int};
    // Floor modulo: a - (a floordiv n) * n, so the result has n's sign.
    Value prod = arith::MulIOp::create(b, l, q, rhs.value);
    return TValue{arith::SubIOp::create(b, l, lhs.value, prod), Ty::Int};
  }
  if (op == BinaryOp::Div)
    return TValue{
        arith::DivFOp::create(b, l, toFloat(lhs, rc, l), toFloat(rhs, rc, l)),
        Ty::Float};
  assert((op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul) &&
         "comparisons and logical operators are emitted elsewhere");
  if (bothInt) {
    Value r;
    if (op == BinaryOp::Add)
      r = arith::AddIOp::create(b, l, lhs.value, rhs.value);
    else if (op == BinaryOp::Sub)
      r = arith::SubIOp::create(b, l, lhs.value, rhs.value);
    else
      r = arith::MulIOp::create(b, l, lhs.value, rhs.value);
    return TValue{r, Ty::Int};
  }
  Value x = toFloat(lhs, rc, l), y = toFloat(rhs, rc, l);
  Value r;
  if (op == BinaryOp::Add)
    r = arith::AddFOp::create(b, l, x, y);
  else if (op == BinaryOp::Sub)
    r = arith::SubFOp::create(b, l, x, y);
  else
    r = arith::MulFOp::create(b, l, x, y);
  return TValue{r, Ty::Float};
}

//===----------------------------------------------------------------------===//
// Tensor lookups
//===----------------------------------------------------------------------===//

/// `doc[b, q_idx]`: an aux input's element, widened to i64 or f64.
FailureOr<TValue> MLIRGenImpl::emitSubscript(const SubscriptExpr &e,
                                             RegionCtx &rc) {
  if (!canonicalInputDims(e.tensor).empty()) {
    emitError(e.getLoc()) << "'" << e.tensor
                          << "' cannot be indexed: q, k and v enter only "
                             "through the score";
    return failure();
  }
  auto it = scope.names.find(e.tensor);
  if (it == scope.names.end() || it->second.kind != NameInfo::Input) {
    emitError(e.getLoc()) << "'" << e.tensor
                          << "' is not a declared input tensor";
    return failure();
  }
  const InputDecl &in = spec.inputs[it->second.index];
  if (e.indices.size() != in.dims.size()) {
    emitError(e.getLoc()) << "input '" << in.name << "' has " << in.dims.size()
                          << " dim" << (in.dims.size() == 1 ? "" : "s")
                          << " but " << e.indices.size() << " index"
                          << (e.indices.size() == 1 ? " was" : "es were")
                          << " given";
    return failure();
  }
  llvm::SmallVector<Value> indices;
  for (const ExprPtr &i : e.indices) {
    FailureOr<TValue> v = emit(*i, rc);
    if (failed(v))
      return failure();
    if (v->ty != Ty::Int) {
      emitError(i->getLoc())
          << "tensor indices must be int, got " << tyName(v->ty);
      return failure();
    }
    indices.push_back(v->value);
  }
  bool isInt = in.dtype == "i32";
  Type elt =
      isInt ? Type(rc.builder.getI32Type()) : Type(rc.builder.getF32Type());
  Location l = loc(e.getLoc());
  Value v = LoadOp::create(rc.builder, l, elt,
                           FlatSymbolRefAttr::get(ctx, in.name), indices);
  if (isInt)
    return TValue{
        arith::ExtSIOp::create(rc.builder, l, rc.builder.getI64Type(), v),
        Ty::Int};
  return TValue{
      arith::ExtFOp::create(rc.builder, l, rc.builder.getF64Type(), v),
      Ty::Float};
}
