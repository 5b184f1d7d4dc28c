//===- AttnOps.cpp - attn dialect operations ------------------------------===//
//
// Verifiers for the attn ops. Messages name the offending entity precisely:
// each has a case in test/Dialect/Attn/invalid.mlir.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Canonical dims
//===----------------------------------------------------------------------===//

llvm::ArrayRef<llvm::StringRef> mlir::attn::canonicalDimNames() {
  static const llvm::StringRef names[] = {"B", "Hq",  "Hkv", "N",
                                          "M", "Dqk", "Dv",  "G"};
  return names;
}

bool mlir::attn::isCanonicalDim(llvm::StringRef name) {
  return llvm::is_contained(canonicalDimNames(), name);
}

llvm::ArrayRef<llvm::StringRef>
mlir::attn::canonicalInputDims(llvm::StringRef name) {
  static const llvm::StringRef q[] = {"B", "Hq", "N", "Dqk"};
  static const llvm::StringRef k[] = {"B", "Hkv", "M", "Dqk"};
  static const llvm::StringRef v[] = {"B", "Hkv", "M", "Dv"};
  if (name == "q")
    return q;
  if (name == "k")
    return k;
  if (name == "v")
    return v;
  return {};
}

static std::string dimsToString(ArrayAttr dims) {
  std::string s = "[";
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(dims, os, [&](Attribute a) {
    if (auto str = dyn_cast<StringAttr>(a))
      os << str.getValue();
    else if (auto i = dyn_cast<IntegerAttr>(a))
      os << i.getInt();
    else
      os << a;
  });
  os << "]";
  return s;
}

LogicalResult mlir::attn::detail::verifyRegionSignature(
    Operation *op, Region &region, StringRef name, TypeRange argTypes,
    ArrayRef<Type> results, bool allowEmpty) {
  if (region.empty()) {
    if (allowEmpty)
      return success();
    return op->emitOpError() << "'" << name << "' region must not be empty";
  }
  if (!region.hasOneBlock())
    return op->emitOpError() << "'" << name << "' region must have one block";
  Block &block = region.front();
  if (block.getArgumentTypes() != argTypes) {
    std::string expected;
    llvm::raw_string_ostream os(expected);
    os << "(";
    llvm::interleaveComma(argTypes, os);
    os << ")";
    return op->emitOpError()
           << "'" << name << "' region expects arguments " << expected;
  }
  auto yield = dyn_cast<YieldOp>(block.getTerminator());
  if (!yield)
    return op->emitOpError()
           << "'" << name << "' region must end in 'attn.yield'";
  if (yield.getValues().getTypes() == TypeRange(results))
    return success();
  if (results.size() == 1)
    return op->emitOpError()
           << "'" << name << "' region must yield one " << results.front();
  std::string expected;
  llvm::raw_string_ostream os(expected);
  llvm::interleaveComma(results, os);
  return op->emitOpError() << "'" << name << "' region must yield (" << expected
                           << ")";
}

/// The regions of the spec-level ops: allowed to be empty unless said.
static LogicalResult verifyRegionSignature(Operation *op, Region &region,
                                           StringRef name, TypeRange argTypes,
                                           Type resultType,
                                           bool allowEmpty = true) {
  return mlir::attn::detail::verifyRegionSignature(op, region, name, argTypes,
                                                   resultType, allowEmpty);
}

//===----------------------------------------------------------------------===//
// SpecOp
//===----------------------------------------------------------------------===//

void SpecOp::build(OpBuilder &builder, OperationState &state, StringRef name) {
  state.addAttribute(mlir::SymbolTable::getSymbolAttrName(),
                     builder.getStringAttr(name));
  Region *body = state.addRegion();
  body->push_back(new Block());
}

AttentionOp SpecOp::getAttention() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<AttentionOp>(op))
      return a;
  return {};
}

LinearAttentionOp SpecOp::getLinearAttention() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<LinearAttentionOp>(op))
      return a;
  return {};
}

TiledAttentionOp SpecOp::getTiledAttention() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<TiledAttentionOp>(op))
      return a;
  return {};
}

TiledLinearAttentionOp SpecOp::getTiledLinearAttention() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<TiledLinearAttentionOp>(op))
      return a;
  return {};
}

TiledAttentionBackwardOp SpecOp::getTiledAttentionBackward() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<TiledAttentionBackwardOp>(op))
      return a;
  return {};
}

TiledLinearAttentionBackwardOp SpecOp::getTiledLinearAttentionBackward() {
  for (Operation &op : getBodyBlock())
    if (auto a = dyn_cast<TiledLinearAttentionBackwardOp>(op))
      return a;
  return {};
}

LogicalResult SpecOp::verify() {
  unsigned numAttention = 0;
  for (Operation &op : getBodyBlock()) {
    if (isa<AttentionOp, LinearAttentionOp, TiledAttentionOp,
            TiledLinearAttentionOp, TiledAttentionBackwardOp,
            TiledLinearAttentionBackwardOp>(op))
      ++numAttention;
    else if (!isa<ParamOp, InputOp>(op))
      return op.emitOpError()
             << "is not allowed in an 'attn.spec' body (expected attn.param, "
                "attn.input, attn.attention, attn.linear_attention or their "
                "tiled forms, or their backward programs)";
  }
  if (numAttention != 1)
    return emitOpError() << "expects exactly one attention op "
                            "('attn.attention', 'attn.linear_attention', or "
                            "a tiled or backward form of them), found "
                         << numAttention;
  return success();
}

//===----------------------------------------------------------------------===//
// ParamOp
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  Type type = getType();
  if (!type.isInteger(64) && !type.isF64())
    return emitOpError() << "type must be i64 or f64, got " << type;
  if (getDefaultValue().front().getNumArguments() != 0)
    return emitOpError() << "default value region takes no arguments";
  return verifyRegionSignature(*this, getDefaultValue(), "default", {}, type,
                               /*allowEmpty=*/false);
}

//===----------------------------------------------------------------------===//
// InputOp
//===----------------------------------------------------------------------===//

LogicalResult InputOp::verify() {
  StringRef name = getSymName();
  Type elt = getElementType();
  for (Attribute d : getDims()) {
    if (auto i = dyn_cast<IntegerAttr>(d)) {
      if (i.getInt() <= 0)
        return emitOpError() << "dim sizes must be positive, got " << i.getInt()
                             << " in input '" << name << "'";
      continue;
    }
    if (!isa<StringAttr>(d))
      return emitOpError() << "dims must be symbol names or integers";
    if (cast<StringAttr>(d).getValue() == "G")
      return emitOpError() << "'G' is derived (Hq/Hkv) and cannot be a dim";
  }
  ArrayRef<StringRef> canonical = canonicalInputDims(name);
  if (!canonical.empty()) {
    bool same = getDims().size() == canonical.size();
    for (auto [a, c] : llvm::zip(getDims(), canonical)) {
      auto s = dyn_cast<StringAttr>(a);
      same &= s && s.getValue() == c;
    }
    if (!same)
      return emitOpError() << "input '" << name << "' must have shape ["
                           << llvm::join(canonical, ", ") << "], got "
                           << dimsToString(getDims());
    if (!elt.isF32() && !elt.isBF16() && !elt.isF16())
      return emitOpError() << "input '" << name
                           << "' must be f32, bf16 or f16, got " << elt;
    return success();
  }
  if (!elt.isInteger(32) && !elt.isF32())
    return emitOpError() << "auxiliary input '" << name
                         << "' must be i32 or f32, got " << elt;
  if (getDims().empty())
    return emitOpError() << "auxiliary input '" << name
                         << "' must have at least one dim";
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult
mlir::attn::detail::verifyNormalizerAttrs(Operation *op, NormalizerKind kind,
                                          bool lse, int64_t reluPower,
                                          bool rowNormalize, bool hasBias) {
  if (lse && kind != NormalizerKind::softmax)
    return op->emitOpError()
           << "'lse' output requires the softmax normalizer, got "
           << stringifyNormalizerKind(kind);
  if (kind != NormalizerKind::relu && (reluPower != 1 || rowNormalize))
    return op->emitOpError()
           << "'relu_power' and 'row_normalize' apply only to the relu "
              "normalizer";
  if (reluPower < 1 || reluPower > 8)
    return op->emitOpError()
           << "'relu_power' must be in [1, 8], got " << reluPower;
  if (kind != NormalizerKind::sigmoid && hasBias)
    return op->emitOpError() << "a 'bias' region applies only to the sigmoid "
                                "normalizer";
  return success();
}

LogicalResult AttentionOp::verify() {
  return mlir::attn::detail::verifyNormalizerAttrs(
      *this, getNormalizer(), getLse(), getReluPower(), getRowNormalize(),
      !getBias().empty());
}

LogicalResult AttentionOp::verifyRegions() {
  Builder b(getContext());
  Type i64 = b.getI64Type(), f64 = b.getF64Type(), i1 = b.getI1Type();
  if (failed(verifyRegionSignature(*this, getScale(), "scale", {}, f64)) ||
      failed(verifyRegionSignature(*this, getMask(), "mask",
                                   {i64, i64, i64, i64}, i1)) ||
      failed(verifyRegionSignature(*this, getScore(), "score",
                                   {f64, i64, i64, i64, i64}, f64)) ||
      failed(verifyRegionSignature(*this, getBias(), "bias", {}, f64)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// LinearAttentionOp
//===----------------------------------------------------------------------===//

/// What attn.linear_attention and its tiled form both check.
template <typename LinearOp>
static LogicalResult verifyLinearForm(LinearOp op) {
  bool qRandom = op.getFeatureMapQ() == FeatureMapKind::random;
  bool kRandom = op.getFeatureMapK() == FeatureMapKind::random;
  if (op.getFeatureMapQ() != op.getFeatureMapK() &&
      (op.getFeatureMapQ() == FeatureMapKind::taylor2 ||
       op.getFeatureMapK() == FeatureMapKind::taylor2 ||
       op.getFeatureMapQ() == FeatureMapKind::pos_neg ||
       op.getFeatureMapK() == FeatureMapKind::pos_neg || qRandom || kRandom))
    return op.emitOpError()
           << "feature maps that change the feature dimension (pos_neg, "
              "taylor2, random) must be the same for q and k";
  if ((qRandom || kRandom) != bool(op.getProjectionAttr()))
    return op.emitOpError() << "the random feature map needs a 'projection' "
                               "input, and only it takes one";
  if (!op.getBonus().empty() && !op.getExclusive())
    return op.emitOpError() << "a 'bonus' region needs the exclusive readout";
  if (op.getNoncausal() &&
      (!op.getGate().empty() || !op.getBeta().empty() || op.getExclusive()))
    return op.emitOpError() << "gates, the delta rule and the exclusive "
                               "readout need a causal recurrence";
  if (op.getNormalize() && !op.getBeta().empty())
    return op.emitOpError() << "the delta rule has no normalizer state; "
                               "remove 'normalize'";
  if (auto proj = op.getProjectionAttr()) {
    auto in = SymbolTable::lookupNearestSymbolFrom<InputOp>(op, proj);
    if (!in)
      return op.emitOpError()
             << "projection '" << proj.getValue() << "' is not an attn.input";
    if (!in.getElementType().isF32() || in.getDims().size() != 2)
      return op.emitOpError()
             << "projection '" << proj.getValue() << "' must be f32 [R, Dqk]";
  }
  return success();
}

template <typename LinearOp>
static LogicalResult verifyLinearRegions(LinearOp op) {
  Builder b(op.getContext());
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  if (failed(verifyRegionSignature(op, op.getScale(), "scale", {}, f64)) ||
      failed(verifyRegionSignature(op, op.getGate(), "gate",
                                   {i64, i64, i64, i64}, f64)) ||
      failed(verifyRegionSignature(op, op.getBeta(), "beta", {i64, i64, i64},
                                   f64)) ||
      failed(
          verifyRegionSignature(op, op.getBonus(), "bonus", {i64, i64}, f64)))
    return failure();
  return success();
}

bool LinearAttentionOp::hasVectorGate() {
  return !getGate().empty() && !getGate().front().getArgument(3).use_empty();
}

LogicalResult LinearAttentionOp::verify() { return verifyLinearForm(*this); }

LogicalResult LinearAttentionOp::verifyRegions() {
  return verifyLinearRegions(*this);
}

/// What the (b, h) programs of the forward and the gradients share.
template <typename TiledOp> static bool gateReadsD(TiledOp op) {
  return !op.getGate().empty() &&
         !op.getGate().front().getArgument(3).use_empty();
}

template <typename TiledOp> static ChunkLoopOp firstChunkLoop(TiledOp op) {
  for (Operation &o : op.getBodyBlock())
    if (auto loop = dyn_cast<ChunkLoopOp>(o))
      return loop;
  return {};
}

template <typename TiledOp>
static LogicalResult verifyTiledLinearBody(TiledOp op, StringRef what) {
  if (failed(verifyLinearRegions(op)))
    return failure();
  Type idx = IndexType::get(op.getContext());
  if (failed(mlir::attn::detail::verifyRegionSignature(op, op.getBody(), "body",
                                                       {idx, idx}, {}, false)))
    return failure();
  if (!op.getChunkLoop())
    return op.emitOpError() << "body must have an 'attn.chunk.loop'" << what;
  return success();
}

bool TiledLinearAttentionOp::hasVectorGate() { return gateReadsD(*this); }

LogicalResult TiledLinearAttentionOp::verify() {
  return verifyLinearForm(*this);
}

LogicalResult TiledLinearAttentionOp::verifyRegions() {
  return verifyTiledLinearBody(*this, "");
}

ChunkLoopOp TiledLinearAttentionOp::getChunkLoop() {
  return firstChunkLoop(*this);
}

bool TiledLinearAttentionBackwardOp::hasVectorGate() {
  return gateReadsD(*this);
}

LogicalResult TiledLinearAttentionBackwardOp::verify() {
  return verifyLinearForm(*this);
}

LogicalResult TiledLinearAttentionBackwardOp::verifyRegions() {
  if (failed(verifyTiledLinearBody(*this, " (the forward scan)")))
    return failure();
  unsigned reverse = 0, readout = 0;
  for (Operation &op : getBodyBlock()) {
    reverse += isa<ChunkBwdReverseLoopOp>(op);
    readout += isa<ChunkBwdReadoutAllOp>(op);
    if (isa<ChunkStoreStateOp, ChunkReadoutAllOp>(op))
      return op.emitOpError() << "writes the forward's outputs; it has no "
                                 "place in the gradients' program";
  }
  if (getNoncausal() ? (readout != 1 || reverse != 0)
                     : (reverse != 1 || readout != 0))
    return emitOpError() << "body must have one "
                         << (getNoncausal() ? "'attn.chunk.bwd.readout_all'"
                                            : "'attn.chunk.bwd.reverse_loop'")
                         << " (the attention is "
                         << (getNoncausal() ? "non-causal" : "causal") << ")";
  return success();
}

ChunkLoopOp TiledLinearAttentionBackwardOp::getChunkLoop() {
  return firstChunkLoop(*this);
}

SmallVector<InputOp> TiledLinearAttentionBackwardOp::getGradientInputs() {
  return detail::floatInputsRead(*this, {&getGate(), &getBeta(), &getBonus()});
}

SmallVector<InputOp>
mlir::attn::detail::floatInputsRead(Operation *op, ArrayRef<Region *> regions) {
  llvm::StringSet<> read;
  for (Region *r : regions)
    r->walk([&](LoadOp l) {
      if (isa<FloatType>(l.getResult().getType()))
        read.insert(l.getInput());
    });
  SmallVector<InputOp> out;
  auto spec = op->getParentOfType<SpecOp>();
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (read.contains(in.getSymName()))
      out.push_back(in);
  return out;
}

//===----------------------------------------------------------------------===//
// DimOp
//===----------------------------------------------------------------------===//

LogicalResult DimOp::verify() {
  StringRef name = getName();
  if (isCanonicalDim(name))
    return success();
  auto spec = (*this)->getParentOfType<SpecOp>();
  if (!spec)
    return emitOpError() << "must be nested in an 'attn.spec'";
  for (auto input : spec.getBodyBlock().getOps<InputOp>())
    for (Attribute d : input.getDims())
      if (auto s = dyn_cast<StringAttr>(d); s && s.getValue() == name)
        return success();
  return emitOpError() << "unknown dim '" << name
                       << "': not canonical and not declared by any input";
}

//===----------------------------------------------------------------------===//
// GetParamOp
//===----------------------------------------------------------------------===//

LogicalResult GetParamOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto param =
      symbolTable.lookupNearestSymbolFrom<ParamOp>(*this, getParamAttr());
  if (!param)
    return emitOpError() << "'" << getParam() << "' is not an attn.param";
  if (param.getType() != getType())
    return emitOpError() << "type " << getType() << " does not match param @"
                         << getParam() << " of type " << param.getType();
  if (auto user = (*this)->getParentOfType<ParamOp>()) {
    if (user == param || !param->isBeforeInBlock(user))
      return emitOpError() << "param @" << getParam()
                           << " is used before its definition";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// LoadOp
//===----------------------------------------------------------------------===//

LogicalResult LoadOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto input =
      symbolTable.lookupNearestSymbolFrom<InputOp>(*this, getInputAttr());
  if (!input)
    return emitOpError() << "'" << getInput() << "' is not an attn.input";
  if (!canonicalInputDims(input.getSymName()).empty())
    return emitOpError() << "cannot index '" << getInput()
                         << "' element-wise: q, k and v enter only through "
                            "the score";
  if (input.getDims().size() != getIndices().size())
    return emitOpError() << "input '" << getInput() << "' has "
                         << input.getDims().size() << " dims but "
                         << getIndices().size() << " indices were given";
  if (input.getElementType() != getType())
    return emitOpError() << "result type " << getType()
                         << " does not match input '" << getInput()
                         << "' of element type " << input.getElementType();
  return success();
}

#define GET_OP_CLASSES
#include "attn/Dialect/Attn/IR/AttnOps.cpp.inc"
