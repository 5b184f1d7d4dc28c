//===- SemanticChecks.cpp - checks of .attn declarations ------------------===//
//
// The checks that need only the AST: names that declarations may not take,
// input declarations the attn.input verifier would reject (reported here in
// source terms), the normalizer's arguments and the linear block's keys and
// how they combine. Expression type checks are in Expressions.cpp and
// Calls.cpp, where operand types are known.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

bool mlirgen::isReservedName(llvm::StringRef n, MLIRContext *ctx, bool linear) {
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

std::string mlirgen::dimsText(const std::vector<DimSpec> &dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s +=
        (i ? ", " : "") + (dims[i].symbol.empty() ? std::to_string(dims[i].size)
                                                  : dims[i].symbol);
  return s + "]";
}

size_t mlirgen::positionOf(const Spec &spec, Spec::StmtKind k) {
  for (size_t i = 0; i < spec.order.size(); ++i)
    if (spec.order[i].first == k)
      return i;
  return spec.order.size();
}

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

LogicalResult SpecChecker::declareNames() {
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
    if (isReservedName(name, ctx, scope.isLinear) &&
        !(nk == NameInfo::Input && !canonicalInputDims(name).empty())) {
      emitError(l) << "'" << name
                   << "' is a reserved name (index, shape dim, builtin or "
                      "library pattern)";
      return failure();
    }
    scope.names[name] = NameInfo{nk, pos, idx};
  }
  return success();
}

FailureOr<Type> SpecChecker::checkElementType(const InputDecl &in) {
  Builder b(ctx);
  Type elt = llvm::StringSwitch<Type>(in.dtype)
                 .Case("f32", b.getF32Type())
                 .Case("bf16", b.getBF16Type())
                 .Case("f16", b.getF16Type())
                 .Case("i32", b.getI32Type())
                 .Default(Type());
  if (!elt) {
    emitError(in.dtypeLoc) << "unknown element type '" << in.dtype
                           << "'; expected f32, bf16, f16 or i32";
    return failure();
  }
  return elt;
}

/// q, k and v have fixed shapes and floating-point types.
LogicalResult SpecChecker::checkCanonicalInput(const InputDecl &in, Type elt) {
  llvm::ArrayRef<llvm::StringRef> canonical = canonicalInputDims(in.name);
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
  return success();
}

LogicalResult SpecChecker::checkDim(const DimSpec &d) {
  if (d.symbol.empty())
    return success();
  if (d.symbol == "G") {
    emitError(d.loc) << "'G' is derived (Hq/Hkv) and cannot be an input dim";
    return failure();
  }
  if (scope.names.count(d.symbol)) {
    emitError(d.loc) << "dim '" << d.symbol
                     << "' clashes with a param, input or let of that name";
    return failure();
  }
  if (!isCanonicalDim(d.symbol) &&
      isReservedName(d.symbol, ctx, scope.isLinear)) {
    emitError(d.loc) << "dim '" << d.symbol
                     << "' is a reserved name (index, builtin or library "
                        "pattern)";
    return failure();
  }
  if (!isCanonicalDim(d.symbol))
    scope.extraDims.insert(d.symbol);
  return success();
}

FailureOr<Type> SpecChecker::checkInput(const InputDecl &in) {
  FailureOr<Type> elt = checkElementType(in);
  if (failed(elt))
    return failure();
  bool isCanonical = !canonicalInputDims(in.name).empty();
  if (!isCanonical && (elt->isBF16() || elt->isF16())) {
    emitError(in.dtypeLoc) << "auxiliary input '" << in.name
                           << "' must be i32 or f32, got " << in.dtype
                           << " (bf16 and f16 are only for q, k and v)";
    return failure();
  }
  if (isCanonical && failed(checkCanonicalInput(in, *elt)))
    return failure();
  for (const DimSpec &d : in.dims)
    if (failed(checkDim(d)))
      return failure();
  return elt;
}

//===----------------------------------------------------------------------===//
// Normalizer
//===----------------------------------------------------------------------===//

/// `NAME = true|false`.
static LogicalResult boolArg(const Arg &a, bool &out,
                             const SourceLocator &locator) {
  auto *bl = llvm::dyn_cast<BoolExpr>(a.value.get());
  if (!bl) {
    mlir::emitError(locator.get(a.value->getLoc()))
        << "'" << a.name << "' must be true or false";
    return failure();
  }
  out = bl->value;
  return success();
}

LogicalResult SpecChecker::checkNormalizerArg(const Arg &a,
                                              llvm::StringRef allowed,
                                              llvm::StringSet<> &seen,
                                              NormalizerConfig &config) {
  const NormalizerDecl &n = *spec.normalizer;
  NormalizerKind kind = config.kind;
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
  if (kind == NormalizerKind::softmax && a.name == "lse")
    return boolArg(a, config.lse, locator);
  if (kind == NormalizerKind::sigmoid && a.name == "bias") {
    // An expression: fillRegion checks it as the bias region.
    config.biasExpr = a.value.get();
    config.biasLoc = a.nameLoc;
    return success();
  }
  if (kind == NormalizerKind::relu && a.name == "power") {
    auto *il = llvm::dyn_cast<IntExpr>(a.value.get());
    if (!il || il->value < 1 || il->value > 8) {
      emitError(a.value->getLoc())
          << "'power' must be an integer literal in [1, 8]";
      return failure();
    }
    config.power = il->value;
    return success();
  }
  if (kind == NormalizerKind::relu && a.name == "normalize")
    return boolArg(a, config.rowNormalize, locator);
  emitError(at) << "unknown argument '" << a.name << "' for normalizer '"
                << n.name << "' (it takes: " << allowed << ")";
  return failure();
}

FailureOr<NormalizerConfig> SpecChecker::checkNormalizer() {
  NormalizerConfig config;
  if (!spec.normalizer)
    return config;
  const NormalizerDecl &n = *spec.normalizer;
  std::optional<NormalizerKind> k = symbolizeNormalizerKind(n.name);
  if (!k) {
    emitError(n.nameLoc) << "unknown normalizer '" << n.name
                         << "'; expected softmax, sigmoid, relu or none";
    return failure();
  }
  config.kind = *k;
  llvm::StringRef allowed = *k == NormalizerKind::softmax   ? "lse"
                            : *k == NormalizerKind::sigmoid ? "bias"
                            : *k == NormalizerKind::relu    ? "power, normalize"
                                                            : "";
  llvm::StringSet<> seen;
  for (const Arg &a : n.args)
    if (failed(checkNormalizerArg(a, allowed, seen, config)))
      return failure();
  return config;
}

//===----------------------------------------------------------------------===//
// Linear block
//===----------------------------------------------------------------------===//

static constexpr llvm::StringLiteral kFeatureMapList =
    "identity, elu_plus_one, relu, relu2, sigmoid, silu, exp, l2norm, "
    "pos_neg, taylor2 or random(W)";

/// Feature maps whose feature dimension differs from Dqk.
static bool changesDimension(FeatureMapKind k) {
  return k == FeatureMapKind::pos_neg || k == FeatureMapKind::taylor2 ||
         k == FeatureMapKind::random;
}

/// Of two entries that do not combine, the one written later (the error
/// goes there: it is the one that broke a valid block).
static const LinearEntry *later(const LinearEntry *a, const LinearEntry *b) {
  if (!a)
    return b;
  if (!b)
    return a;
  return a->loc.getPointer() > b->loc.getPointer() ? a : b;
}

/// The projection `W` of `random(W)`: an f32 input of shape [R, Dqk]
/// declared before the linear block.
FailureOr<std::string> SpecChecker::checkProjection(const Expr &arg,
                                                    size_t position) {
  const auto *w = llvm::dyn_cast<IdentExpr>(&arg);
  auto it = w ? scope.names.find(w->name) : scope.names.end();
  if (!w || it == scope.names.end() || it->second.kind != NameInfo::Input) {
    emitError(arg.getLoc())
        << "the argument of 'random' must name an input (an f32 input of "
           "shape [R, Dqk])";
    return failure();
  }
  if (it->second.position > position) {
    emitError(arg.getLoc())
        << "'" << w->name << "' is used before its definition";
    return failure();
  }
  const InputDecl &in = spec.inputs[it->second.index];
  if (in.dtype != "f32" || in.dims.size() != 2 || in.dims[1].symbol != "Dqk") {
    emitError(arg.getLoc()) << "projection '" << in.name
                            << "' must be an f32 input of shape [R, Dqk], got "
                            << in.dtype << dimsText(in.dims);
    return failure();
  }
  return in.name;
}

FailureOr<FeatureMapKind>
SpecChecker::checkFeatureMap(const LinearEntry &entry, size_t position,
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
  FailureOr<std::string> w = checkProjection(*call->args[0].value, position);
  if (failed(w))
    return failure();
  projection = *w;
  return *kind;
}

/// Checks one entry on its own and records it in `config`.
LogicalResult SpecChecker::checkLinearEntry(const LinearEntry &e,
                                            size_t position,
                                            LinearConfig &config) {
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
    FailureOr<FeatureMapKind> kind = checkFeatureMap(e, position, proj);
    if (failed(kind))
      return failure();
    if (key != "feature_map_k") {
      config.mapQ = *kind;
      config.projQ = proj;
      config.mapQAt = &e;
    }
    if (key != "feature_map_q") {
      config.mapK = *kind;
      config.projK = proj;
      config.mapKAt = &e;
    }
  } else if (key == "normalize") {
    if (failed(boolLit(config.normalize)))
      return failure();
    config.normalizeAt = &e;
  } else if (key == "causal") {
    if (failed(boolLit(config.causal)))
      return failure();
    config.causalAt = &e;
  } else if (key == "readout") {
    auto *id = llvm::dyn_cast<IdentExpr>(e.value.get());
    if (!id || (id->name != "inclusive" && id->name != "exclusive")) {
      emitError(e.value->getLoc())
          << "'readout' must be inclusive or exclusive";
      return failure();
    }
    config.exclusive = id->name == "exclusive";
    config.readoutAt = &e;
  } else if (key == "gate") {
    config.gate = &e;
  } else if (key == "delta") {
    config.delta = &e;
  } else {
    assert(key == "bonus" && "the parser checks the keys");
    config.bonus = &e;
  }
  return success();
}

/// q and k need feature vectors of one length, and `random` one projection.
LogicalResult SpecChecker::checkFeatureMapPair(const LinearConfig &config) {
  FeatureMapKind mapQ = config.mapQ, mapK = config.mapK;
  const LinearEntry *at = later(config.mapQAt, config.mapKAt);
  bool qRandom = mapQ == FeatureMapKind::random;
  bool kRandom = mapK == FeatureMapKind::random;
  if (qRandom != kRandom) {
    emitError(at->loc)
        << "the random feature map must be used for both q and k (got '"
        << stringifyFeatureMapKind(mapQ) << "' for q and '"
        << stringifyFeatureMapKind(mapK) << "' for k)";
    return failure();
  }
  if (qRandom && config.projQ != config.projK) {
    emitError(at->loc) << "q and k must use the same projection (got random("
                       << config.projQ << ") for q and random(" << config.projK
                       << ") for k)";
    return failure();
  }
  if (mapQ != mapK && (changesDimension(mapQ) || changesDimension(mapK))) {
    emitError(at->loc)
        << "feature maps that change the feature dimension (pos_neg, "
           "taylor2, random) must be the same for q and k (got '"
        << stringifyFeatureMapKind(mapQ) << "' for q and '"
        << stringifyFeatureMapKind(mapK) << "' for k)";
    return failure();
  }
  return success();
}

LogicalResult SpecChecker::checkLinearCombinations(const LinearConfig &config) {
  if (failed(checkFeatureMapPair(config)))
    return failure();
  if (!config.causal) {
    // Gates, the delta rule and the exclusive readout are defined by the
    // step-by-step recurrence, which a non-causal spec does not run.
    for (const LinearEntry *e :
         {config.gate, config.delta,
          config.exclusive ? config.readoutAt : nullptr}) {
      if (!e)
        continue;
      std::string what =
          e == config.readoutAt ? "the exclusive readout" : "'" + e->key + "'";
      emitError(later(e, config.causalAt)->loc)
          << what
          << " needs a causal recurrence; it cannot be combined with "
             "'causal = false'";
      return failure();
    }
  }
  if (config.bonus && !config.exclusive) {
    emitError(config.bonus->loc)
        << "'bonus' needs the exclusive readout ('readout = exclusive')";
    return failure();
  }
  if (config.normalize && config.delta) {
    emitError(later(config.normalizeAt, config.delta)->loc)
        << "the delta rule has no normalizer state; 'delta' cannot be "
           "combined with 'normalize = true'";
    return failure();
  }
  return success();
}

FailureOr<LinearConfig> SpecChecker::checkLinear() {
  size_t position = positionOf(spec, Spec::StmtKind::Linear);
  LinearConfig config;
  // Each value on its own, in source order; then how they combine.
  for (const LinearEntry &e : spec.linear->entries)
    if (failed(checkLinearEntry(e, position, config)))
      return failure();
  if (failed(checkLinearCombinations(config)))
    return failure();
  return config;
}
