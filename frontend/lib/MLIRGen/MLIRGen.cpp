//===- MLIRGen.cpp - .attn AST to the attn dialect ------------------------===//
//
// Name resolution, type checking and IR construction in one walk. Each
// attn region (param defaults, scale, mask, score, bias) is isolated, so
// let-bindings are re-emitted in every region that uses them (CSE tidies up).
// Types: int -> i64, float -> f32, bool -> i1; int promotes to float.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/MLIRGen.h"
#include "Library.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;

namespace {

enum class Ty { Int, Float, Bool };

static llvm::StringRef tyName(Ty t) {
  switch (t) {
  case Ty::Int:
    return "int";
  case Ty::Float:
    return "float";
  case Ty::Bool:
    return "bool";
  }
  return "?";
}

struct TValue {
  Value value;
  Ty ty;
};

/// Which region an expression is being emitted into; decides which names
/// are visible. `LetCheck` is the scratch region where every let is checked
/// once: every index and `score` exist there (a let's uses are checked where
/// it is used).
enum class RegionKind {
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

static llvm::StringRef regionName(RegionKind k) {
  switch (k) {
  case RegionKind::ParamDefault:
    return "a param default";
  case RegionKind::Scale:
    return "the scale";
  case RegionKind::Bias:
    return "the normalizer bias";
  case RegionKind::Mask:
    return "the mask";
  case RegionKind::Score:
    return "the score";
  case RegionKind::Gate:
    return "the linear gate";
  case RegionKind::Beta:
    return "the linear delta";
  case RegionKind::Bonus:
    return "the linear bonus";
  case RegionKind::LetCheck:
    return "a let";
  }
  return "?";
}

/// Per-region emission state.
struct RegionCtx {
  RegionCtx(RegionKind kind, OpBuilder builder, size_t position)
      : kind(kind), builder(builder), position(position) {}
  RegionKind kind;
  OpBuilder builder;
  /// Statement position of the expression being emitted; names must be
  /// defined at a smaller position.
  size_t position;
  /// Index values of the region; null where the region has no such index.
  /// `t` and `d` are the time step and feature index of linear regions.
  Value b, h, qIdx, kvIdx, score, t, d;
  llvm::StringMap<TValue> letCache;
  /// Macro parameters of library patterns being expanded (innermost last).
  llvm::SmallVector<llvm::StringMap<const Expr *>> macroArgs;
  /// Lets being emitted, to report cycles (cannot happen with ordering, but
  /// macros may refer to names too).
  llvm::StringSet<> inProgress;
};

class MLIRGenImpl {
public:
  MLIRGenImpl(const SourceLocator &locator, const Spec &spec)
      : locator(locator), spec(spec), ctx(locator.getContext()), builder(ctx) {}

  OwningOpRef<ModuleOp> run();

private:
  Location loc(llvm::SMLoc l) { return locator.get(l); }
  InFlightDiagnostic emitError(llvm::SMLoc l) {
    return mlir::emitError(loc(l));
  }

  LogicalResult declareNames();
  LogicalResult emitParam(const ParamDecl &p, size_t position);
  LogicalResult emitInput(const InputDecl &in);
  LogicalResult emitAttention();
  LogicalResult emitLinearAttention();
  /// The feature map named by a linear-block value (`relu`, `random(W)`);
  /// `projection` gets W for `random`.
  FailureOr<FeatureMapKind> parseFeatureMap(const LinearEntry &entry,
                                            size_t position,
                                            std::string &projection);
  LogicalResult fillRegion(Region &region, RegionKind kind, const Expr *expr,
                           size_t position, Ty resultTy, llvm::StringRef what,
                           llvm::SMLoc whatLoc);

  /// Emits `e`; lets and library patterns are expanded in place, so the
  /// recursion is bounded here, not only by the parser's nesting limit.
  FailureOr<TValue> emit(const Expr &e, RegionCtx &rc);
  FailureOr<TValue> emitNode(const Expr &e, RegionCtx &rc);
  FailureOr<TValue> emitIdent(const IdentExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitUnary(const UnaryExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitBinary(const BinaryExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitCall(const CallExpr &e, RegionCtx &rc);
  FailureOr<TValue> emitSubscript(const SubscriptExpr &e, RegionCtx &rc);
  FailureOr<TValue> expandPattern(const LibraryPattern &pat,
                                  const CallExpr *call, llvm::SMLoc at,
                                  RegionCtx &rc);

  Value toFloat(TValue v, RegionCtx &rc, Location l) {
    if (v.ty == Ty::Float)
      return v.value;
    return arith::SIToFPOp::create(rc.builder, l, rc.builder.getF64Type(),
                                   v.value);
  }
  Type mlirType(Ty t) {
    switch (t) {
    case Ty::Int:
      return builder.getI64Type();
    case Ty::Float:
      return builder.getF64Type();
    case Ty::Bool:
      return builder.getI1Type();
    }
    return {};
  }
  /// Converts `v` to `want` (only int -> float is implicit).
  FailureOr<Value> coerce(TValue v, Ty want, RegionCtx &rc, llvm::SMLoc at,
                          llvm::StringRef what) {
    if (v.ty == want)
      return v.value;
    if (v.ty == Ty::Int && want == Ty::Float)
      return toFloat(v, rc, loc(at));
    emitError(at) << what << " must be " << tyName(want) << ", got "
                  << tyName(v.ty);
    return failure();
  }

  const SourceLocator &locator;
  const Spec &spec;
  MLIRContext *ctx;
  OpBuilder builder;
  SpecOp specOp;

  struct NameInfo {
    enum Kind { Param, Input, Let } kind;
    size_t position;
    size_t index;
  };
  llvm::StringMap<NameInfo> names;
  llvm::StringMap<Ty> paramTypes;
  /// Symbolic dims declared by inputs (beyond the canonical ones).
  llvm::StringSet<> extraDims;
  /// The spec has a linear block: `t` and `d` are index names (reserved).
  bool isLinear = false;
  static constexpr unsigned kMaxEmitDepth = 2000;
  unsigned emitDepth = 0;
};

} // namespace

/// `t` (time step) and `d` (feature index) are the extra indices of linear
/// gate, delta and bonus expressions. They are reserved only in specs with a
/// linear block, so older specs may keep using them as names.
static bool isLinearIndexName(llvm::StringRef n) {
  return n == "t" || n == "d";
}

/// "[B, N, 4]": a declared shape as written.
static std::string dimsText(const std::vector<DimSpec> &dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s +=
        (i ? ", " : "") + (dims[i].symbol.empty() ? std::to_string(dims[i].size)
                                                  : dims[i].symbol);
  return s + "]";
}

static bool isReservedName(llvm::StringRef n, MLIRContext *ctx, bool linear) {
  if (linear && isLinearIndexName(n))
    return true;
  static const llvm::StringRef reserved[] = {
      "b",   "h",    "hk",    "q_idx",  "kv_idx", "score",  "exp",
      "log", "exp2", "log2",  "sqrt",   "tanh",   "abs",    "min",
      "max", "pow",  "float", "select", "int",    "float32"};
  if (isCanonicalDim(n) || llvm::is_contained(reserved, n))
    return true;
  // A param or let may shadow a public library pattern (sinks_window.attn
  // has a param `sinks`); the pattern is then unavailable in that spec.
  // Internal helpers ('_'-prefixed) are used by expansions and stay reserved.
  const LibraryPattern *pat = lookupLibraryPattern(n, ctx);
  return pat && !pat->isPublic;
}

LogicalResult MLIRGenImpl::declareNames() {
  for (size_t pos = 0; pos < spec.order.size(); ++pos) {
    auto [kind, idx] = spec.order[pos];
    std::string name;
    llvm::SMLoc l;
    NameInfo::Kind nk;
    if (kind == Spec::StmtKind::Param) {
      name = spec.params[idx].name;
      l = spec.params[idx].loc;
      nk = NameInfo::Param;
    } else if (kind == Spec::StmtKind::Input) {
      name = spec.inputs[idx].name;
      l = spec.inputs[idx].loc;
      nk = NameInfo::Input;
    } else if (kind == Spec::StmtKind::Let) {
      name = spec.lets[idx].name;
      l = spec.lets[idx].loc;
      nk = NameInfo::Let;
    } else {
      continue;
    }
    if (isReservedName(name, ctx, isLinear) &&
        !(nk == NameInfo::Input && !canonicalInputDims(name).empty())) {
      emitError(l) << "'" << name
                   << "' is a reserved name (index, shape dim, builtin or "
                      "library pattern)";
      return failure();
    }
    names[name] = NameInfo{nk, pos, idx};
  }
  return success();
}

OwningOpRef<ModuleOp> MLIRGenImpl::run() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc(spec.loc));
  builder.setInsertionPointToEnd(module->getBody());
  specOp = SpecOp::create(builder, loc(spec.loc), spec.name);
  builder.setInsertionPointToEnd(&specOp.getBodyBlock());
  isLinear = spec.linear.has_value();

  if (failed(declareNames()))
    return nullptr;
  // Inputs first: their dims are visible everywhere, whatever the order.
  for (const InputDecl &in : spec.inputs)
    if (failed(emitInput(in)))
      return nullptr;
  for (size_t pos = 0; pos < spec.order.size(); ++pos)
    if (spec.order[pos].first == Spec::StmtKind::Param &&
        failed(emitParam(spec.params[spec.order[pos].second], pos)))
      return nullptr;
  // Lets are emitted where used; check each once so an unused let with an
  // error is still reported. The check happens in a scratch score region
  // (lets may use indices) of a detached op destroyed right after. All lets
  // share it, so each is emitted once and later lets reuse the result.
  if (!spec.lets.empty()) {
    OpBuilder detached(ctx);
    auto scratch = AttentionOp::create(
        detached, loc(spec.loc),
        NormalizerKindAttr::get(ctx, NormalizerKind::softmax), UnitAttr(),
        detached.getI64IntegerAttr(1), UnitAttr(), ScheduleAttr());
    llvm::scope_exit destroyScratch([&] { scratch->destroy(); });
    Block *block = new Block();
    scratch.getScore().push_back(block);
    Type i64 = builder.getI64Type(), f64 = builder.getF64Type();
    block->addArgument(f64, loc(spec.loc));
    for (int i = 0; i < 6; ++i)
      block->addArgument(i64, loc(spec.loc));
    RegionCtx rc(RegionKind::LetCheck, OpBuilder::atBlockBegin(block), 0);
    rc.score = block->getArgument(0);
    rc.b = block->getArgument(1);
    rc.h = block->getArgument(2);
    rc.qIdx = block->getArgument(3);
    rc.kvIdx = block->getArgument(4);
    if (isLinear) {
      rc.t = block->getArgument(5);
      rc.d = block->getArgument(6);
    }
    for (size_t pos = 0; pos < spec.order.size(); ++pos) {
      if (spec.order[pos].first != Spec::StmtKind::Let)
        continue;
      const LetDecl &let = spec.lets[spec.order[pos].second];
      rc.position = pos;
      FailureOr<TValue> v = emit(*let.value, rc);
      if (failed(v))
        return nullptr;
      rc.letCache[let.name] = *v;
    }
  }
  if (failed(isLinear ? emitLinearAttention() : emitAttention()))
    return nullptr;
  if (failed(mlir::verify(*module)))
    return nullptr;
  return module;
}

LogicalResult MLIRGenImpl::emitInput(const InputDecl &in) {
  Type elt = llvm::StringSwitch<Type>(in.dtype)
                 .Case("f32", builder.getF32Type())
                 .Case("bf16", builder.getBF16Type())
                 .Case("f16", builder.getF16Type())
                 .Case("i32", builder.getI32Type())
                 .Default(Type());
  if (!elt) {
    emitError(in.dtypeLoc) << "unknown element type '" << in.dtype
                           << "'; expected f32, bf16, f16 or i32";
    return failure();
  }
  // Report what the attn.input verifier would reject in source terms.
  llvm::ArrayRef<llvm::StringRef> canonical = canonicalInputDims(in.name);
  if (canonical.empty() && (elt.isBF16() || elt.isF16())) {
    emitError(in.dtypeLoc) << "auxiliary input '" << in.name
                           << "' must be i32 or f32, got " << in.dtype
                           << " (bf16 and f16 are only for q, k and v)";
    return failure();
  }
  if (!canonical.empty()) {
    if (elt.isInteger(32)) {
      emitError(in.dtypeLoc) << "input '" << in.name
                             << "' must be f32, bf16 or f16, got " << in.dtype;
      return failure();
    }
    bool same = in.dims.size() == canonical.size();
    for (auto [d, c] : llvm::zip(in.dims, canonical))
      same &= d.symbol == c;
    if (!same) {
      emitError(in.loc) << "input '" << in.name << "' must have shape ["
                        << llvm::join(canonical, ", ") << "], got "
                        << dimsText(in.dims);
      return failure();
    }
  }
  llvm::SmallVector<Attribute> dims;
  for (const DimSpec &d : in.dims) {
    if (d.symbol.empty()) {
      dims.push_back(builder.getI64IntegerAttr(d.size));
      continue;
    }
    if (d.symbol == "G") {
      emitError(d.loc) << "'G' is derived (Hq/Hkv) and cannot be an input dim";
      return failure();
    }
    if (names.count(d.symbol)) {
      emitError(d.loc) << "dim '" << d.symbol
                       << "' clashes with a param, input or let of that name";
      return failure();
    }
    if (!isCanonicalDim(d.symbol) && isReservedName(d.symbol, ctx, isLinear)) {
      emitError(d.loc) << "dim '" << d.symbol
                       << "' is a reserved name (index, builtin or library "
                          "pattern)";
      return failure();
    }
    if (!isCanonicalDim(d.symbol))
      extraDims.insert(d.symbol);
    dims.push_back(builder.getStringAttr(d.symbol));
  }
  InputOp::create(builder, loc(in.loc), in.name, elt,
                  builder.getArrayAttr(dims));
  return success();
}

LogicalResult MLIRGenImpl::emitParam(const ParamDecl &p, size_t position) {
  Ty declared = Ty::Int;
  bool hasDeclared = !p.declaredType.empty();
  if (hasDeclared)
    declared = p.declaredType == "int" ? Ty::Int : Ty::Float;

  auto op =
      ParamOp::create(builder, loc(p.loc), p.name,
                      hasDeclared ? mlirType(declared) : builder.getI64Type());
  Block *block = new Block();
  op.getDefaultValue().push_back(block);
  RegionCtx rc(RegionKind::ParamDefault, OpBuilder::atBlockBegin(block),
               position);
  FailureOr<TValue> v = emit(*p.defaultValue, rc);
  if (failed(v))
    return failure();
  Ty ty = hasDeclared ? declared : v->ty;
  if (ty == Ty::Bool) {
    emitError(p.defaultValue->getLoc())
        << "param '" << p.name << "' must be an int or a float, got bool";
    return failure();
  }
  FailureOr<Value> value = coerce(*v, ty, rc, p.defaultValue->getLoc(),
                                  ("default of param '" + p.name + "'"));
  if (failed(value))
    return failure();
  op.setType(mlirType(ty));
  YieldOp::create(rc.builder, loc(p.loc), *value);
  paramTypes[p.name] = ty;
  return success();
}

LogicalResult MLIRGenImpl::fillRegion(Region &region, RegionKind kind,
                                      const Expr *expr, size_t position,
                                      Ty resultTy, llvm::StringRef what,
                                      llvm::SMLoc whatLoc) {
  if (!expr)
    return success(); // empty region: the op's default
  Block *block = new Block();
  region.push_back(block);
  Type i64 = builder.getI64Type(), f64 = builder.getF64Type();
  Location l = loc(whatLoc);
  RegionCtx rc(kind, OpBuilder::atBlockBegin(block), position);
  if (kind == RegionKind::Score)
    rc.score = block->addArgument(f64, l);
  if (kind == RegionKind::Mask || kind == RegionKind::Score) {
    rc.b = block->addArgument(i64, l);
    rc.h = block->addArgument(i64, l);
    rc.qIdx = block->addArgument(i64, l);
    rc.kvIdx = block->addArgument(i64, l);
  }
  // Linear regions: gate (b, h, t, d), beta (b, h, t), bonus (h, d).
  if (kind == RegionKind::Gate || kind == RegionKind::Beta) {
    rc.b = block->addArgument(i64, l);
    rc.h = block->addArgument(i64, l);
    rc.t = block->addArgument(i64, l);
    if (kind == RegionKind::Gate)
      rc.d = block->addArgument(i64, l);
  }
  if (kind == RegionKind::Bonus) {
    rc.h = block->addArgument(i64, l);
    rc.d = block->addArgument(i64, l);
  }
  FailureOr<TValue> v = emit(*expr, rc);
  if (failed(v))
    return failure();
  if (resultTy == Ty::Bool && v->ty != Ty::Bool) {
    emitError(expr->getLoc())
        << what << " must be a boolean predicate, got " << tyName(v->ty);
    return failure();
  }
  FailureOr<Value> value = coerce(*v, resultTy, rc, expr->getLoc(), what);
  if (failed(value))
    return failure();
  YieldOp::create(rc.builder, l, *value);
  return success();
}

/// Position of statement kind `k` in source order (for define-before-use).
static size_t positionOf(const Spec &spec, Spec::StmtKind k) {
  for (size_t i = 0; i < spec.order.size(); ++i)
    if (spec.order[i].first == k)
      return i;
  return spec.order.size();
}

LogicalResult MLIRGenImpl::emitAttention() {
  NormalizerKind kind = NormalizerKind::softmax;
  bool lse = false, rowNormalize = false;
  int64_t power = 1;
  const Expr *biasExpr = nullptr;
  llvm::SMLoc biasLoc;
  if (spec.normalizer) {
    const NormalizerDecl &n = *spec.normalizer;
    std::optional<NormalizerKind> k = symbolizeNormalizerKind(n.name);
    if (!k) {
      emitError(n.nameLoc) << "unknown normalizer '" << n.name
                           << "'; expected softmax, sigmoid, relu or none";
      return failure();
    }
    kind = *k;
    llvm::StringRef allowed = kind == NormalizerKind::softmax   ? "lse"
                              : kind == NormalizerKind::sigmoid ? "bias"
                              : kind == NormalizerKind::relu
                                  ? "power, normalize"
                                  : "";
    llvm::StringSet<> seen;
    for (const Arg &a : n.args) {
      llvm::SMLoc at = a.name.empty() ? a.value->getLoc() : a.nameLoc;
      if (allowed.empty()) {
        emitError(at) << "normalizer '" << n.name << "' takes no arguments";
        return failure();
      }
      if (a.name.empty()) {
        emitError(at) << "normalizer arguments must be named (" << n.name
                      << " takes: " << allowed << ")";
        return failure();
      }
      if (!seen.insert(a.name).second) {
        emitError(at) << "argument '" << a.name << "' given twice";
        return failure();
      }
      auto boolLit = [&](bool &out) -> LogicalResult {
        auto *bl = llvm::dyn_cast<BoolExpr>(a.value.get());
        if (!bl) {
          emitError(a.value->getLoc())
              << "'" << a.name << "' must be true or false";
          return failure();
        }
        out = bl->value;
        return success();
      };
      if (kind == NormalizerKind::softmax && a.name == "lse") {
        if (failed(boolLit(lse)))
          return failure();
      } else if (kind == NormalizerKind::sigmoid && a.name == "bias") {
        biasExpr = a.value.get();
        biasLoc = a.nameLoc;
      } else if (kind == NormalizerKind::relu && a.name == "power") {
        auto *il = llvm::dyn_cast<IntExpr>(a.value.get());
        if (!il || il->value < 1 || il->value > 8) {
          emitError(a.value->getLoc())
              << "'power' must be an integer literal in [1, 8]";
          return failure();
        }
        power = il->value;
      } else if (kind == NormalizerKind::relu && a.name == "normalize") {
        if (failed(boolLit(rowNormalize)))
          return failure();
      } else {
        emitError(at) << "unknown argument '" << a.name << "' for normalizer '"
                      << n.name << "' (it takes: " << allowed << ")";
        return failure();
      }
    }
  }

  llvm::SMLoc opLoc = spec.loc;
  auto op = AttentionOp::create(
      builder, loc(opLoc), NormalizerKindAttr::get(ctx, kind),
      lse ? builder.getUnitAttr() : UnitAttr(),
      builder.getI64IntegerAttr(power),
      rowNormalize ? builder.getUnitAttr() : UnitAttr(), ScheduleAttr());
  size_t end = spec.order.size();
  if (spec.scale && failed(fillRegion(op.getScale(), RegionKind::Scale,
                                      spec.scale->value.get(),
                                      positionOf(spec, Spec::StmtKind::Scale),
                                      Ty::Float, "the scale", spec.scale->loc)))
    return failure();
  if (spec.mask &&
      failed(fillRegion(op.getMask(), RegionKind::Mask, spec.mask->value.get(),
                        positionOf(spec, Spec::StmtKind::Mask), Ty::Bool,
                        "the mask", spec.mask->loc)))
    return failure();
  if (spec.score && failed(fillRegion(op.getScore(), RegionKind::Score,
                                      spec.score->value.get(),
                                      positionOf(spec, Spec::StmtKind::Score),
                                      Ty::Float, "the score", spec.score->loc)))
    return failure();
  if (biasExpr &&
      failed(fillRegion(
          op.getBias(), RegionKind::Bias, biasExpr,
          spec.normalizer ? positionOf(spec, Spec::StmtKind::Normalizer) : end,
          Ty::Float, "the sigmoid bias", biasLoc)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Linear attention (tier 2)
//===----------------------------------------------------------------------===//

static constexpr llvm::StringLiteral kFeatureMapList =
    "identity, elu_plus_one, relu, relu2, sigmoid, silu, exp, l2norm, "
    "pos_neg, taylor2 or random(W)";

/// Feature maps whose feature dimension differs from Dqk.
static bool changesDimension(FeatureMapKind k) {
  return k == FeatureMapKind::pos_neg || k == FeatureMapKind::taylor2 ||
         k == FeatureMapKind::random;
}

FailureOr<FeatureMapKind>
MLIRGenImpl::parseFeatureMap(const LinearEntry &entry, size_t position,
                             std::string &projection) {
  const Expr *value = entry.value.get();
  const auto *call = llvm::dyn_cast<CallExpr>(value);
  std::string name;
  if (const auto *id = llvm::dyn_cast<IdentExpr>(value))
    name = id->name;
  else if (call)
    name = call->callee;
  else {
    emitError(value->getLoc())
        << "'" << entry.key << "' must be a feature map: " << kFeatureMapList;
    return failure();
  }
  std::optional<FeatureMapKind> kind = symbolizeFeatureMapKind(name);
  if (!kind) {
    emitError(value->getLoc())
        << "unknown feature map '" << name << "'; expected " << kFeatureMapList;
    return failure();
  }
  if (*kind != FeatureMapKind::random) {
    if (call) {
      emitError(value->getLoc())
          << "feature map '" << name << "' takes no arguments";
      return failure();
    }
    return *kind;
  }
  if (!call || call->args.size() != 1 || !call->args[0].name.empty()) {
    emitError(value->getLoc())
        << "feature map 'random' takes one argument, its projection: "
           "random(W) with W an f32 input of shape [R, Dqk]";
    return failure();
  }
  const Expr *arg = call->args[0].value.get();
  const auto *w = llvm::dyn_cast<IdentExpr>(arg);
  auto it = w ? names.find(w->name) : names.end();
  if (!w || it == names.end() || it->second.kind != NameInfo::Input) {
    emitError(arg->getLoc())
        << "the argument of 'random' must name an input (an f32 input of "
           "shape [R, Dqk])";
    return failure();
  }
  if (it->second.position > position) {
    emitError(arg->getLoc())
        << "'" << w->name << "' is used before its definition";
    return failure();
  }
  const InputDecl &in = spec.inputs[it->second.index];
  if (in.dtype != "f32" || in.dims.size() != 2 || in.dims[1].symbol != "Dqk") {
    emitError(arg->getLoc()) << "projection '" << in.name
                             << "' must be an f32 input of shape [R, Dqk], got "
                             << in.dtype << dimsText(in.dims);
    return failure();
  }
  projection = in.name;
  return *kind;
}

LogicalResult MLIRGenImpl::emitLinearAttention() {
  const LinearDecl &lin = *spec.linear;
  size_t position = positionOf(spec, Spec::StmtKind::Linear);
  FeatureMapKind mapQ = FeatureMapKind::identity,
                 mapK = FeatureMapKind::identity;
  std::string projQ, projK;
  bool normalize = false, causal = true, exclusive = false;
  const LinearEntry *mapQAt = nullptr, *mapKAt = nullptr, *gate = nullptr,
                    *delta = nullptr, *bonus = nullptr, *normalizeAt = nullptr,
                    *causalAt = nullptr, *readoutAt = nullptr;

  // Each value on its own, in source order.
  for (const LinearEntry &e : lin.entries) {
    llvm::StringRef key = e.key;
    auto boolLit = [&](bool &out) -> LogicalResult {
      auto *bl = llvm::dyn_cast<BoolExpr>(e.value.get());
      if (!bl) {
        emitError(e.value->getLoc()) << "'" << key << "' must be true or false";
        return failure();
      }
      out = bl->value;
      return success();
    };
    if (key == "feature_map" || key == "feature_map_q" ||
        key == "feature_map_k") {
      std::string proj;
      FailureOr<FeatureMapKind> kind = parseFeatureMap(e, position, proj);
      if (failed(kind))
        return failure();
      if (key != "feature_map_k") {
        mapQ = *kind;
        projQ = proj;
        mapQAt = &e;
      }
      if (key != "feature_map_q") {
        mapK = *kind;
        projK = proj;
        mapKAt = &e;
      }
    } else if (key == "normalize") {
      if (failed(boolLit(normalize)))
        return failure();
      normalizeAt = &e;
    } else if (key == "causal") {
      if (failed(boolLit(causal)))
        return failure();
      causalAt = &e;
    } else if (key == "readout") {
      auto *id = llvm::dyn_cast<IdentExpr>(e.value.get());
      if (!id || (id->name != "inclusive" && id->name != "exclusive")) {
        emitError(e.value->getLoc())
            << "'readout' must be inclusive or exclusive";
        return failure();
      }
      exclusive = id->name == "exclusive";
      readoutAt = &e;
    } else if (key == "gate") {
      gate = &e;
    } else if (key == "delta") {
      delta = &e;
    } else {
      assert(key == "bonus" && "the parser checks the keys");
      bonus = &e;
    }
  }

  // Combinations. An error about two entries goes to the later one.
  auto later = [](const LinearEntry *a, const LinearEntry *b) {
    if (!a)
      return b;
    if (!b)
      return a;
    return a->loc.getPointer() > b->loc.getPointer() ? a : b;
  };
  bool qRandom = mapQ == FeatureMapKind::random;
  bool kRandom = mapK == FeatureMapKind::random;
  if (qRandom != kRandom) {
    emitError(later(mapQAt, mapKAt)->loc)
        << "the random feature map must be used for both q and k (got '"
        << stringifyFeatureMapKind(mapQ) << "' for q and '"
        << stringifyFeatureMapKind(mapK) << "' for k)";
    return failure();
  }
  if (qRandom && projQ != projK) {
    emitError(later(mapQAt, mapKAt)->loc)
        << "q and k must use the same projection (got random(" << projQ
        << ") for q and random(" << projK << ") for k)";
    return failure();
  }
  if (mapQ != mapK && (changesDimension(mapQ) || changesDimension(mapK))) {
    emitError(later(mapQAt, mapKAt)->loc)
        << "feature maps that change the feature dimension (pos_neg, "
           "taylor2, random) must be the same for q and k (got '"
        << stringifyFeatureMapKind(mapQ) << "' for q and '"
        << stringifyFeatureMapKind(mapK) << "' for k)";
    return failure();
  }
  if (!causal) {
    for (const LinearEntry *e :
         {gate, delta, exclusive ? readoutAt : nullptr}) {
      if (!e)
        continue;
      std::string what =
          e == readoutAt ? "the exclusive readout" : "'" + e->key + "'";
      emitError(later(e, causalAt)->loc)
          << what
          << " needs a causal recurrence; it cannot be combined with "
             "'causal = false'";
      return failure();
    }
  }
  if (bonus && !exclusive) {
    emitError(bonus->loc)
        << "'bonus' needs the exclusive readout ('readout = exclusive')";
    return failure();
  }
  if (normalize && delta) {
    emitError(later(normalizeAt, delta)->loc)
        << "the delta rule has no normalizer state; 'delta' cannot be "
           "combined with 'normalize = true'";
    return failure();
  }

  auto op = LinearAttentionOp::create(
      builder, loc(lin.loc), FeatureMapKindAttr::get(ctx, mapQ),
      FeatureMapKindAttr::get(ctx, mapK),
      normalize ? builder.getUnitAttr() : UnitAttr(),
      causal ? UnitAttr() : builder.getUnitAttr(),
      exclusive ? builder.getUnitAttr() : UnitAttr(),
      qRandom ? FlatSymbolRefAttr::get(ctx, projQ) : FlatSymbolRefAttr());
  if (spec.scale && failed(fillRegion(op.getScale(), RegionKind::Scale,
                                      spec.scale->value.get(),
                                      positionOf(spec, Spec::StmtKind::Scale),
                                      Ty::Float, "the scale", spec.scale->loc)))
    return failure();
  if (gate &&
      failed(fillRegion(op.getGate(), RegionKind::Gate, gate->value.get(),
                        position, Ty::Float, "the linear gate", gate->loc)))
    return failure();
  if (delta &&
      failed(fillRegion(op.getBeta(), RegionKind::Beta, delta->value.get(),
                        position, Ty::Float, "the linear delta", delta->loc)))
    return failure();
  if (bonus &&
      failed(fillRegion(op.getBonus(), RegionKind::Bonus, bonus->value.get(),
                        position, Ty::Float, "the linear bonus", bonus->loc)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

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
  bool linearIndex =
      isLinearIndexName(name) &&
      (isLinear || (!names.count(name) && !extraDims.contains(name)));
  if (name == "b" || name == "h" || name == "q_idx" || name == "kv_idx" ||
      name == "hk" || linearIndex) {
    Value v = llvm::StringSwitch<Value>(name)
                  .Case("b", rc.b)
                  .Cases({"h", "hk"}, rc.h)
                  .Case("q_idx", rc.qIdx)
                  .Case("kv_idx", rc.kvIdx)
                  .Case("t", rc.t)
                  .Default(rc.d);
    if (!v) {
      auto diag = emitError(e.getLoc());
      switch (rc.kind) {
      case RegionKind::Gate:
      case RegionKind::Beta:
      case RegionKind::Bonus:
        diag << "'" << name << "' is not available in " << regionName(rc.kind)
             << " (its indices are "
             << (rc.kind == RegionKind::Gate   ? "b, h, hk, t and d"
                 : rc.kind == RegionKind::Beta ? "b, h, hk and t"
                                               : "h, hk and d")
             << ")";
        break;
      default:
        if (name == "t")
          diag << "'t' is only available in linear gate and delta "
                  "expressions";
        else if (name == "d")
          diag << "'d' is only available in linear gate and bonus "
                  "expressions";
        else if (isLinear)
          diag << "'" << name << "' is not available in " << regionName(rc.kind)
               << " (indices exist only in the linear gate, delta and "
                  "bonus)";
        else
          diag << "'" << name << "' is not available in " << regionName(rc.kind)
               << " (indices exist only in the mask and score)";
        break;
      }
      return failure();
    }
    if (name != "hk")
      return TValue{v, Ty::Int};
    Value g = DimOp::create(rc.builder, l, rc.builder.getI64Type(), "G");
    return TValue{arith::FloorDivSIOp::create(rc.builder, l, rc.h, g), Ty::Int};
  }
  if (isCanonicalDim(name) || extraDims.contains(name))
    return TValue{DimOp::create(rc.builder, l, rc.builder.getI64Type(), name),
                  Ty::Int};

  auto it = names.find(name);
  if (it != names.end()) {
    const NameInfo &info = it->second;
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
      return TValue{GetParamOp::create(rc.builder, l, mlirType(ty),
                                       FlatSymbolRefAttr::get(ctx, name)),
                    ty};
    }
    case NameInfo::Let: {
      auto cached = rc.letCache.find(name);
      if (cached != rc.letCache.end())
        return cached->second;
      if (!rc.inProgress.insert(name).second) {
        emitError(e.getLoc()) << "let '" << name << "' refers to itself";
        return failure();
      }
      const LetDecl &let = spec.lets[info.index];
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
    }
  }
  if (const LibraryPattern *pat = lookupLibraryPattern(name, ctx);
      pat && (pat->isPublic || !rc.macroArgs.empty()))
    return expandPattern(*pat, nullptr, e.getLoc(), rc);
  emitError(e.getLoc()) << "unknown name '" << name << "'";
  return failure();
}

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
  Value zero =
      arith::ConstantOp::create(rc.builder, l, rc.builder.getI64IntegerAttr(0));
  return TValue{arith::SubIOp::create(rc.builder, l, zero, v->value), Ty::Int};
}

FailureOr<TValue> MLIRGenImpl::emitBinary(const BinaryExpr &e, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  FailureOr<TValue> lhs = emit(*e.lhs, rc);
  if (failed(lhs))
    return failure();
  FailureOr<TValue> rhs = emit(*e.rhs, rc);
  if (failed(rhs))
    return failure();
  llvm::StringRef op = e.op;
  OpBuilder &b = rc.builder;

  if (op == "&&" || op == "||") {
    if (lhs->ty != Ty::Bool || rhs->ty != Ty::Bool) {
      emitError(e.getLoc()) << "'" << op << "' needs bool operands, got "
                            << tyName(lhs->ty) << " and " << tyName(rhs->ty);
      return failure();
    }
    Value r = op == "&&"
                  ? Value(arith::AndIOp::create(b, l, lhs->value, rhs->value))
                  : Value(arith::OrIOp::create(b, l, lhs->value, rhs->value));
    return TValue{r, Ty::Bool};
  }

  bool isCmp = op == "<" || op == "<=" || op == ">" || op == ">=" ||
               op == "==" || op == "!=";
  if (isCmp && lhs->ty == Ty::Bool && rhs->ty == Ty::Bool &&
      (op == "==" || op == "!=")) {
    auto pred =
        op == "==" ? arith::CmpIPredicate::eq : arith::CmpIPredicate::ne;
    return TValue{arith::CmpIOp::create(b, l, pred, lhs->value, rhs->value),
                  Ty::Bool};
  }
  if (lhs->ty == Ty::Bool || rhs->ty == Ty::Bool) {
    emitError(e.getLoc()) << "'" << op << "' needs numbers, got "
                          << tyName(lhs->ty) << " and " << tyName(rhs->ty);
    return failure();
  }
  bool bothInt = lhs->ty == Ty::Int && rhs->ty == Ty::Int;

  if (isCmp) {
    if (bothInt) {
      auto pred = llvm::StringSwitch<arith::CmpIPredicate>(op)
                      .Case("<", arith::CmpIPredicate::slt)
                      .Case("<=", arith::CmpIPredicate::sle)
                      .Case(">", arith::CmpIPredicate::sgt)
                      .Case(">=", arith::CmpIPredicate::sge)
                      .Case("==", arith::CmpIPredicate::eq)
                      .Default(arith::CmpIPredicate::ne);
      return TValue{arith::CmpIOp::create(b, l, pred, lhs->value, rhs->value),
                    Ty::Bool};
    }
    auto pred = llvm::StringSwitch<arith::CmpFPredicate>(op)
                    .Case("<", arith::CmpFPredicate::OLT)
                    .Case("<=", arith::CmpFPredicate::OLE)
                    .Case(">", arith::CmpFPredicate::OGT)
                    .Case(">=", arith::CmpFPredicate::OGE)
                    .Case("==", arith::CmpFPredicate::OEQ)
                    .Default(arith::CmpFPredicate::UNE);
    return TValue{arith::CmpFOp::create(b, l, pred, toFloat(*lhs, rc, l),
                                        toFloat(*rhs, rc, l)),
                  Ty::Bool};
  }

  if (op == "//" || op == "%") {
    if (!bothInt) {
      emitError(e.getLoc())
          << "'" << op << "' needs int operands, got " << tyName(lhs->ty)
          << " and " << tyName(rhs->ty)
          << (op == "//" ? "; use '/' for float division" : "");
      return failure();
    }
    Value q = arith::FloorDivSIOp::create(b, l, lhs->value, rhs->value);
    if (op == "//")
      return TValue{q, Ty::Int};
    // Floor modulo: a - (a floordiv n) * n, so the result has n's sign.
    Value prod = arith::MulIOp::create(b, l, q, rhs->value);
    return TValue{arith::SubIOp::create(b, l, lhs->value, prod), Ty::Int};
  }
  if (op == "/") {
    return TValue{
        arith::DivFOp::create(b, l, toFloat(*lhs, rc, l), toFloat(*rhs, rc, l)),
        Ty::Float};
  }
  if (bothInt) {
    Value r;
    if (op == "+")
      r = arith::AddIOp::create(b, l, lhs->value, rhs->value);
    else if (op == "-")
      r = arith::SubIOp::create(b, l, lhs->value, rhs->value);
    else
      r = arith::MulIOp::create(b, l, lhs->value, rhs->value);
    return TValue{r, Ty::Int};
  }
  Value x = toFloat(*lhs, rc, l), y = toFloat(*rhs, rc, l);
  Value r;
  if (op == "+")
    r = arith::AddFOp::create(b, l, x, y);
  else if (op == "-")
    r = arith::SubFOp::create(b, l, x, y);
  else
    r = arith::MulFOp::create(b, l, x, y);
  return TValue{r, Ty::Float};
}

FailureOr<TValue> MLIRGenImpl::emitCall(const CallExpr &e, RegionCtx &rc) {
  Location l = loc(e.getLoc());
  OpBuilder &b = rc.builder;
  llvm::StringRef callee = e.callee;

  // A param, let or input of the spec shadows a library pattern of the same
  // name, in calls too (outside library expansions).
  if (auto shadow = names.find(callee);
      shadow != names.end() && rc.macroArgs.empty() &&
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

  auto arity = [&](size_t n) -> LogicalResult {
    for (const Arg &a : e.args)
      if (!a.name.empty()) {
        emitError(a.nameLoc)
            << "'" << callee << "' does not take named arguments";
        return failure();
      }
    if (e.args.size() == n)
      return success();
    emitError(e.getLoc()) << "'" << callee << "' takes " << n << " argument"
                          << (n == 1 ? "" : "s") << ", got " << e.args.size();
    return failure();
  };
  auto number = [&](const Arg &a) -> FailureOr<TValue> {
    FailureOr<TValue> v = emit(*a.value, rc);
    if (failed(v))
      return failure();
    if (v->ty == Ty::Bool) {
      emitError(a.value->getLoc())
          << "'" << callee << "' needs a number, got bool";
      return failure();
    }
    return v;
  };

  static const llvm::StringRef unaryFloat[] = {"exp",  "log",  "exp2",
                                               "log2", "sqrt", "tanh"};
  if (llvm::is_contained(unaryFloat, callee)) {
    if (failed(arity(1)))
      return failure();
    FailureOr<TValue> v = number(e.args[0]);
    if (failed(v))
      return failure();
    Value x = toFloat(*v, rc, l);
    Value r = llvm::StringSwitch<std::function<Value()>>(callee)
                  .Case("exp", [&] { return math::ExpOp::create(b, l, x); })
                  .Case("log", [&] { return math::LogOp::create(b, l, x); })
                  .Case("exp2", [&] { return math::Exp2Op::create(b, l, x); })
                  .Case("log2", [&] { return math::Log2Op::create(b, l, x); })
                  .Case("sqrt", [&] { return math::SqrtOp::create(b, l, x); })
                  .Default([&] { return math::TanhOp::create(b, l, x); })();
    return TValue{r, Ty::Float};
  }
  if (callee == "abs") {
    if (failed(arity(1)))
      return failure();
    FailureOr<TValue> v = number(e.args[0]);
    if (failed(v))
      return failure();
    if (v->ty == Ty::Int)
      return TValue{math::AbsIOp::create(b, l, v->value), Ty::Int};
    return TValue{math::AbsFOp::create(b, l, v->value), Ty::Float};
  }
  if (callee == "float") {
    if (failed(arity(1)))
      return failure();
    FailureOr<TValue> v = number(e.args[0]);
    if (failed(v))
      return failure();
    return TValue{toFloat(*v, rc, l), Ty::Float};
  }
  if (callee == "min" || callee == "max" || callee == "pow") {
    if (failed(arity(2)))
      return failure();
    FailureOr<TValue> x = number(e.args[0]);
    if (failed(x))
      return failure();
    FailureOr<TValue> y = number(e.args[1]);
    if (failed(y))
      return failure();
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
  if (callee == "select") {
    if (failed(arity(3)))
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
    if (x->ty == y->ty)
      return TValue{arith::SelectOp::create(b, l, c->value, x->value, y->value),
                    x->ty};
    if (x->ty == Ty::Bool || y->ty == Ty::Bool) {
      emitError(e.getLoc())
          << "select's branches have different types: " << tyName(x->ty)
          << " and " << tyName(y->ty);
      return failure();
    }
    return TValue{arith::SelectOp::create(b, l, c->value, toFloat(*x, rc, l),
                                          toFloat(*y, rc, l)),
                  Ty::Float};
  }
  auto it = names.find(callee);
  if (it != names.end() && it->second.kind == NameInfo::Input) {
    emitError(e.getLoc()) << "input '" << callee
                          << "' is indexed with [], not called with ()";
    return failure();
  }
  emitError(e.getLoc()) << "unknown function '" << callee << "'";
  return failure();
}

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

FailureOr<TValue> MLIRGenImpl::expandPattern(const LibraryPattern &pat,
                                             const CallExpr *call,
                                             llvm::SMLoc at, RegionCtx &rc) {
  // Bind arguments: positional first, then named, then defaults.
  llvm::SmallVector<const Expr *> bound(pat.params.size(), nullptr);
  size_t numArgs = call ? call->args.size() : 0;
  for (size_t i = 0; i < numArgs; ++i) {
    const Arg &a = call->args[i];
    size_t slot = i;
    if (!a.name.empty()) {
      auto pit = llvm::find(pat.params, a.name);
      if (pit == pat.params.end()) {
        emitError(a.nameLoc)
            << "'" << pat.name << "' has no argument named '" << a.name << "'";
        return failure();
      }
      slot = pit - pat.params.begin();
    } else if (i >= pat.params.size()) {
      auto diag = emitError(a.value->getLoc()) << "'" << pat.name << "' takes ";
      if (pat.params.empty())
        diag << "no arguments";
      else
        diag << "at most " << pat.params.size() << " argument"
             << (pat.params.size() == 1 ? "" : "s");
      return failure();
    }
    if (bound[slot]) {
      emitError(a.name.empty() ? a.value->getLoc() : a.nameLoc)
          << "argument '" << pat.params[slot] << "' of '" << pat.name
          << "' given twice";
      return failure();
    }
    // Check a user's argument here, where errors can point at it: inside the
    // expansion every node carries the call site's location. A tensor
    // parameter (`doc`) takes an input's name; `causal` a bool; the rest are
    // ints (library patterns are integer predicates).
    if (pat.isPublic) {
      llvm::StringRef param = pat.params[slot];
      if (subscripts(*pat.body, param)) {
        if (!llvm::isa<IdentExpr>(a.value.get())) {
          emitError(a.value->getLoc())
              << "argument '" << param << "' of '" << pat.name
              << "' must be the name of an input tensor";
          return failure();
        }
      } else {
        FailureOr<TValue> v = emit(*a.value, rc);
        if (failed(v))
          return failure();
        Ty want = slot >= pat.numRequired &&
                          llvm::isa<BoolExpr>(
                              pat.defaults[slot - pat.numRequired].get())
                      ? Ty::Bool
                      : Ty::Int;
        if (v->ty != want) {
          emitError(a.value->getLoc())
              << "argument '" << param << "' of '" << pat.name << "' must be "
              << tyName(want) << ", got " << tyName(v->ty);
          return failure();
        }
      }
    }
    bound[slot] = a.value.get();
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
  // The body is written against the pattern's own params. Attribute its
  // nodes to the call site so errors and IR locations point at user code.
  ExprPtr body = pat.body->clone(at);
  llvm::StringMap<const Expr *> args;
  for (size_t i = 0; i < pat.params.size(); ++i)
    args[pat.params[i]] = bound[i];
  // Subscripts name their tensor directly: substitute `doc[...]` when `doc`
  // is a parameter bound to a plain name.
  std::function<void(Expr &)> renameTensors = [&](Expr &e) {
    if (auto *s = llvm::dyn_cast<SubscriptExpr>(&e)) {
      auto it = args.find(s->tensor);
      if (it != args.end())
        if (auto *id = llvm::dyn_cast<IdentExpr>(it->second))
          s->tensor = id->name;
      for (ExprPtr &i : s->indices)
        renameTensors(*i);
    } else if (auto *u = llvm::dyn_cast<UnaryExpr>(&e)) {
      renameTensors(*u->operand);
    } else if (auto *bin = llvm::dyn_cast<BinaryExpr>(&e)) {
      renameTensors(*bin->lhs);
      renameTensors(*bin->rhs);
    } else if (auto *c = llvm::dyn_cast<CallExpr>(&e)) {
      for (Arg &a : c->args)
        renameTensors(*a.value);
    }
  };
  renameTensors(*body);
  rc.macroArgs.push_back(std::move(args));
  FailureOr<TValue> v = emit(*body, rc);
  rc.macroArgs.pop_back();
  if (failed(v))
    return failure();
  return v;
}

FailureOr<TValue> MLIRGenImpl::emitSubscript(const SubscriptExpr &e,
                                             RegionCtx &rc) {
  if (!canonicalInputDims(e.tensor).empty()) {
    emitError(e.getLoc()) << "'" << e.tensor
                          << "' cannot be indexed: q, k and v enter only "
                             "through the score";
    return failure();
  }
  auto it = names.find(e.tensor);
  if (it == names.end() || it->second.kind != NameInfo::Input) {
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

OwningOpRef<ModuleOp> mlir::attn::mlirGen(const SourceLocator &locator,
                                          const Spec &spec) {
  return MLIRGenImpl(locator, spec).run();
}
