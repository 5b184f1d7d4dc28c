//===- RegionEmitter.cpp - inline attn regions into kernels ---------------===//

#include "attn/Conversion/RegionEmitter.h"
#include "attn/Analysis/MaskIntervals.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Vectorizing clone
//===----------------------------------------------------------------------===//

static Value cst(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantOp::create(b, b.getI64IntegerAttr(v));
}
static Value cstIndex(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantIndexOp::create(b, v);
}

/// The element type varying (SIMD) code uses for a region type.
static Type laneType(Type t) {
  return t.isF64() ? Float32Type::get(t.getContext()) : t;
}

/// Makes `v` a vector of `width` lanes (broadcast if scalar, f64 -> f32).
static Value toVector(ImplicitLocOpBuilder &b, Value v, int64_t width) {
  if (isa<VectorType>(v.getType()))
    return v;
  if (v.getType().isF64())
    v = arith::TruncFOp::create(b, b.getF32Type(), v);
  return vector::BroadcastOp::create(b, VectorType::get({width}, v.getType()),
                                     v);
}

/// Clamps an i64 scalar or vector index into [0, size - 1].
static Value clampIndex(ImplicitLocOpBuilder &b, Value idx, Value sizeI64,
                        int64_t width) {
  Value zero = cst(b, 0), one = cst(b, 1);
  Value last = arith::SubIOp::create(b, sizeI64, one);
  if (isa<VectorType>(idx.getType())) {
    zero = toVector(b, zero, width);
    last = toVector(b, last, width);
  }
  Value lo = arith::MaxSIOp::create(b, idx, zero);
  return arith::MinSIOp::create(b, lo, last);
}

static Value emitLoad(ImplicitLocOpBuilder &b, LoadOp load,
                      ArrayRef<Value> indices, const KernelEnv &env) {
  Value mem = env.aux.lookup(load.getInput());
  auto memTy = cast<MemRefType>(mem.getType());
  int64_t width = env.vectorWidth;
  bool varying = llvm::any_of(
      indices, [](Value v) { return isa<VectorType>(v.getType()); });
  SmallVector<Value> clamped;
  for (auto [d, idx] : llvm::enumerate(indices)) {
    Value size = arith::IndexCastOp::create(b, b.getI64Type(),
                                            memref::DimOp::create(b, mem, d));
    clamped.push_back(clampIndex(b, idx, size, width));
  }
  if (!varying) {
    SmallVector<Value> idxs;
    for (Value c : clamped)
      idxs.push_back(arith::IndexCastOp::create(b, b.getIndexType(), c));
    return memref::LoadOp::create(b, mem, idxs);
  }
  // Gather through a flat view: offset vector = sum(idx_d * stride_d).
  auto meta = memref::ExtractStridedMetadataOp::create(b, mem);
  Value offset;
  for (auto [d, idx] : llvm::enumerate(clamped)) {
    Value stride =
        arith::IndexCastOp::create(b, b.getI64Type(), meta.getStrides()[d]);
    Value term = arith::MulIOp::create(b, toVector(b, idx, width),
                                       toVector(b, stride, width));
    offset = offset ? arith::AddIOp::create(b, offset, term) : term;
  }
  // Extent of the flat view: 1 + sum((size_d - 1) * stride_d).
  Value extent = cstIndex(b, 1);
  for (int64_t d = 0; d < memTy.getRank(); ++d) {
    Value sizeM1 = arith::SubIOp::create(b, meta.getSizes()[d], cstIndex(b, 1));
    extent = arith::AddIOp::create(
        b, extent, arith::MulIOp::create(b, sizeM1, meta.getStrides()[d]));
  }
  auto flatTy = MemRefType::get(
      {ShapedType::kDynamic}, memTy.getElementType(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, {1}));
  Value flat = memref::ReinterpretCastOp::create(
      b, flatTy, mem, OpFoldResult(meta.getOffset()),
      ArrayRef<OpFoldResult>{OpFoldResult(extent)},
      ArrayRef<OpFoldResult>{OpFoldResult(b.getIndexAttr(1))});
  auto idxVecTy = VectorType::get({width}, b.getIndexType());
  Value idxVec = arith::IndexCastOp::create(b, idxVecTy, offset);
  auto resTy = VectorType::get({width}, memTy.getElementType());
  Value allTrue = arith::ConstantOp::create(
      b, DenseElementsAttr::get(VectorType::get({width}, b.getI1Type()), true));
  Value pass = arith::ConstantOp::create(b, resTy, b.getZeroAttr(resTy));
  return vector::GatherOp::create(b, resTy, flat, ValueRange{cstIndex(b, 0)},
                                  idxVec, allTrue, pass);
}

/// emitRegion for env.scalarLanes: varying values are tracked in a set
/// instead of by their vector type. Leaves the clone of every value in
/// `map`.
static Value emitScalarLanes(ImplicitLocOpBuilder &b, Region &region,
                             ValueRange args, const KernelEnv &env,
                             IRMapping &map) {
  llvm::DenseSet<Value> varyingVals;
  Block &block = region.front();
  for (auto [arg, v] : llvm::zip(block.getArguments(), args)) {
    map.map(arg, v);
    varyingVals.insert(v);
  }
  auto toLane = [&](Value v) -> Value {
    return v.getType().isF64() ? arith::TruncFOp::create(b, b.getF32Type(), v)
                               : v;
  };
  for (Operation &op : block.without_terminator()) {
    b.setLoc(op.getLoc());
    if (auto dim = dyn_cast<DimOp>(op)) {
      map.map(dim.getResult(), env.dims.lookup(dim.getName()));
      continue;
    }
    if (auto param = dyn_cast<GetParamOp>(op)) {
      map.map(param.getResult(), env.params.lookup(param.getParam()));
      continue;
    }
    SmallVector<Value> operands;
    bool varying = false;
    for (Value v : op.getOperands()) {
      operands.push_back(map.lookup(v));
      varying |= varyingVals.contains(operands.back());
    }
    if (auto load = dyn_cast<LoadOp>(op)) {
      Value mem = env.aux.lookup(load.getInput());
      SmallVector<Value> idxs;
      for (auto [d, idx] : llvm::enumerate(operands)) {
        Value size = arith::IndexCastOp::create(
            b, b.getI64Type(), memref::DimOp::create(b, mem, d));
        idxs.push_back(arith::IndexCastOp::create(b, b.getIndexType(),
                                                  clampIndex(b, idx, size, 1)));
      }
      Value r = memref::LoadOp::create(b, mem, idxs);
      map.map(load.getResult(), r);
      if (varying)
        varyingVals.insert(r);
      continue;
    }
    if (!varying) {
      b.clone(op, map);
      continue;
    }
    if (isa<arith::ExtFOp, arith::TruncFOp>(op) &&
        operands[0].getType() == laneType(op.getResult(0).getType())) {
      map.map(op.getResult(0), operands[0]);
      continue;
    }
    SmallVector<Value> laneOperands;
    for (Value v : operands)
      laneOperands.push_back(toLane(v));
    SmallVector<Type> resultTypes;
    for (Type t : op.getResultTypes())
      resultTypes.push_back(laneType(t));
    OperationState state(op.getLoc(), op.getName());
    state.addOperands(laneOperands);
    state.addTypes(resultTypes);
    state.addAttributes(op.getAttrs());
    Operation *created = b.create(state);
    for (auto [from, to] : llvm::zip(op.getResults(), created->getResults())) {
      map.map(from, to);
      varyingVals.insert(to);
    }
  }
  auto yield = cast<YieldOp>(block.getTerminator());
  return map.lookup(yield.getValues().front());
}

/// emitRegion with SIMD lanes, leaving the clone of every value in `map`.
static Value emitVectorRegion(ImplicitLocOpBuilder &b, Region &region,
                              ValueRange args, const KernelEnv &env,
                              IRMapping &map) {
  Block &block = region.front();
  for (auto [arg, v] : llvm::zip(block.getArguments(), args))
    map.map(arg, v);
  int64_t width = env.vectorWidth;
  for (Operation &op : block.without_terminator()) {
    b.setLoc(op.getLoc());
    if (auto dim = dyn_cast<DimOp>(op)) {
      map.map(dim.getResult(), env.dims.lookup(dim.getName()));
      continue;
    }
    if (auto param = dyn_cast<GetParamOp>(op)) {
      map.map(param.getResult(), env.params.lookup(param.getParam()));
      continue;
    }
    SmallVector<Value> operands;
    bool varying = false;
    for (Value v : op.getOperands()) {
      operands.push_back(map.lookup(v));
      varying |= isa<VectorType>(operands.back().getType());
    }
    if (auto load = dyn_cast<LoadOp>(op)) {
      map.map(load.getResult(), emitLoad(b, load, operands, env));
      continue;
    }
    if (!varying) {
      b.clone(op, map);
      continue;
    }
    // f64 <-> f32 conversions vanish in f32 lanes.
    if (isa<arith::ExtFOp, arith::TruncFOp>(op) &&
        cast<VectorType>(operands[0].getType()).getElementType() ==
            laneType(op.getResult(0).getType())) {
      map.map(op.getResult(0), operands[0]);
      continue;
    }
    SmallVector<Value> vecOperands;
    for (Value v : operands)
      vecOperands.push_back(toVector(b, v, width));
    SmallVector<Type> resultTypes;
    for (Type t : op.getResultTypes())
      resultTypes.push_back(VectorType::get({width}, laneType(t)));
    OperationState state(op.getLoc(), op.getName());
    state.addOperands(vecOperands);
    state.addTypes(resultTypes);
    state.addAttributes(op.getAttrs());
    Operation *created = b.create(state);
    for (auto [from, to] : llvm::zip(op.getResults(), created->getResults()))
      map.map(from, to);
  }
  auto yield = cast<YieldOp>(block.getTerminator());
  return map.lookup(yield.getValues().front());
}

Value mlir::attn::emitRegion(ImplicitLocOpBuilder &b, Region &region,
                             ValueRange args, const KernelEnv &env) {
  IRMapping map;
  if (env.scalarLanes)
    return emitScalarLanes(b, region, args, env, map);
  return emitVectorRegion(b, region, args, env, map);
}

//===----------------------------------------------------------------------===//
// Reverse mode over a region (the backward pass's score derivative)
//===----------------------------------------------------------------------===//

namespace {
/// Emits the adjoints of one cloned region, in f32 vectors of `width`
/// lanes (f32 scalars with env.scalarLanes: one GPU thread's element): the
/// rules of the reference evaluator (RegionProgram.cpp), with PyTorch's
/// conventions at kinks.
class AdjointEmitter {
public:
  AdjointEmitter(ImplicitLocOpBuilder &b, const KernelEnv &env,
                 const IRMapping &map, bool itemOwnsBH)
      : b(b), map(map), width(env.vectorWidth), scalar(env.scalarLanes),
        itemOwnsBH(itemOwnsBH) {}

  Value run(Region &region, Value seed,
            const llvm::StringMap<Value> &auxGrads) {
    Block &block = region.front();
    auto yield = cast<YieldOp>(block.getTerminator());
    add(yield.getValues().front(), seed);
    SmallVector<Operation *> ops;
    for (Operation &op : block.without_terminator())
      ops.push_back(&op);
    for (Operation *op : llvm::reverse(ops)) {
      if (op->getNumResults() != 1)
        continue;
      Value g = adj.lookup(op->getResult(0));
      if (!g)
        continue;
      b.setLoc(op->getLoc());
      propagate(op, g, auxGrads);
    }
    Value dx = adj.lookup(block.getArgument(0));
    return dx ? dx : splat(0);
  }

private:
  Value splat(float v) {
    if (scalar)
      return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
    auto t = VectorType::get({width}, b.getF32Type());
    return arith::ConstantOp::create(b, t, DenseElementsAttr::get(t, v));
  }
  /// The forward value of `v` as an f32 vector (scalar lanes: an f32).
  Value val(Value v) { return lanes(map.lookup(v)); }
  Value lanes(Value v) {
    if (!scalar)
      return toVector(b, v, width);
    if (v.getType().isF64())
      return arith::TruncFOp::create(b, b.getF32Type(), v);
    return v;
  }
  void add(Value v, Value g) {
    if (!isa<FloatType>(v.getType()))
      return;
    Value &slot = adj[v];
    slot = slot ? Value(arith::AddFOp::create(b, slot, g)) : g;
  }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, x, y); }
  Value cmp(arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, p, x, y);
  }
  Value sel(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }

  void propagate(Operation *op, Value g,
                 const llvm::StringMap<Value> &auxGrads) {
    using FP = arith::CmpFPredicate;
    auto operand = [&](unsigned i) { return op->getOperand(i); };
    llvm::TypeSwitch<Operation *>(op)
        .Case<arith::AddFOp>([&](auto) {
          add(operand(0), g);
          add(operand(1), g);
        })
        .Case<arith::SubFOp>([&](auto) {
          add(operand(0), g);
          add(operand(1), arith::NegFOp::create(b, g));
        })
        .Case<arith::MulFOp>([&](auto) {
          add(operand(0), mul(g, val(operand(1))));
          add(operand(1), mul(g, val(operand(0))));
        })
        .Case<arith::DivFOp>([&](auto) {
          Value y = val(operand(1));
          add(operand(0), div(g, y));
          add(operand(1),
              arith::NegFOp::create(b, div(mul(g, val(op->getResult(0))), y)));
        })
        .Case<arith::NegFOp>(
            [&](auto) { add(operand(0), arith::NegFOp::create(b, g)); })
        .Case<arith::ExtFOp, arith::TruncFOp>([&](auto) { add(operand(0), g); })
        .Case<arith::SelectOp>([&](auto) {
          // torch.where: the taken branch gets it.
          Value c = map.lookup(operand(0));
          Value zero = splat(0);
          add(operand(1), sel(c, g, zero));
          add(operand(2), sel(c, zero, g));
        })
        .Case<arith::MinimumFOp, arith::MaximumFOp>([&](Operation *o) {
          // torch.minimum/maximum: the chosen operand; a tie splits evenly.
          bool isMax = isa<arith::MaximumFOp>(o);
          Value x = val(operand(0)), y = val(operand(1));
          Value tie = cmp(FP::OEQ, x, y);
          Value xWins = cmp(isMax ? FP::OGT : FP::OLT, x, y);
          Value yWins = cmp(isMax ? FP::OGT : FP::OLT, y, x);
          Value half = mul(g, splat(0.5f)), zero = splat(0);
          add(operand(0), sel(tie, half, sel(yWins, zero, g)));
          add(operand(1), sel(tie, half, sel(xWins, zero, g)));
        })
        .Case<math::ExpOp>(
            [&](auto) { add(operand(0), mul(g, val(op->getResult(0)))); })
        .Case<math::Exp2Op>([&](auto) {
          add(operand(0),
              mul(g, mul(val(op->getResult(0)), splat(float(M_LN2)))));
        })
        .Case<math::LogOp>(
            [&](auto) { add(operand(0), div(g, val(operand(0)))); })
        .Case<math::Log2Op>([&](auto) {
          add(operand(0), div(g, mul(val(operand(0)), splat(float(M_LN2)))));
        })
        .Case<math::SqrtOp>([&](auto) {
          add(operand(0), div(mul(g, splat(0.5f)), val(op->getResult(0))));
        })
        .Case<math::TanhOp>([&](auto) {
          Value t = val(op->getResult(0));
          add(operand(0),
              mul(g, arith::SubFOp::create(b, splat(1), mul(t, t))));
        })
        .Case<math::AbsFOp>([&](auto) {
          // torch.abs: sign(x), 0 at 0.
          Value x = val(operand(0)), zero = splat(0);
          Value sign = sel(cmp(FP::OGT, x, zero), splat(1),
                           sel(cmp(FP::OLT, x, zero), splat(-1), zero));
          add(operand(0), mul(g, sign));
        })
        .Case<math::PowFOp>([&](auto) {
          // torch.pow: 0 for exponent 0, and for base 0 with exponent >= 0.
          Value x = val(operand(0)), y = val(operand(1));
          Value r = val(op->getResult(0)), zero = splat(0);
          Value dx = mul(y, math::PowFOp::create(
                                b, x, arith::SubFOp::create(b, y, splat(1))));
          dx = sel(cmp(FP::OEQ, y, zero), zero, dx);
          Value dy = mul(r, math::LogOp::create(b, x));
          dy = sel(arith::AndIOp::create(b, cmp(FP::OEQ, x, zero),
                                         cmp(FP::OGE, y, zero)),
                   zero, dy);
          add(operand(0), mul(g, dx));
          add(operand(1), mul(g, dy));
        })
        .Case<LoadOp>([&](LoadOp load) {
          Value grad = auxGrads.lookup(load.getInput());
          if (grad)
            scatterAdd(load, grad, g);
        })
        .Default([](Operation *) {}); // ints, constants, params: no gradient
  }

  /// daux[indices] += g, lane by lane (lanes may hit one element, and work
  /// items share the table: atomic adds). Indices are clamped as the
  /// forward's lookup clamps them.
  void scatterAdd(LoadOp load, Value grad, Value g) {
    auto memTy = cast<MemRefType>(grad.getType());
    bool owned = itemOwnsBH && ownedByItem(load);
    SmallVector<Value> idx;
    for (auto [d, operand] : llvm::enumerate(load.getIndices())) {
      Value size = arith::IndexCastOp::create(
          b, b.getI64Type(), memref::DimOp::create(b, grad, d));
      idx.push_back(clampIndex(b, lanes(map.lookup(operand)), size, width));
    }
    for (int64_t lane = 0; lane < (scalar ? 1 : width); ++lane) {
      auto laneOf = [&](Value x) -> Value {
        if (scalar)
          return x;
        return vector::ExtractOp::create(b, x, ArrayRef<int64_t>{lane});
      };
      Value x = laneOf(g);
      SmallVector<Value> at;
      for (Value i : idx)
        at.push_back(
            arith::IndexCastOp::create(b, b.getIndexType(), laneOf(i)));
      if (owned) {
        Value cur = memref::LoadOp::create(b, grad, at);
        memref::StoreOp::create(b, arith::AddFOp::create(b, cur, x), grad, at);
        continue;
      }
      memref::AtomicRMWOp::create(b, memTy.getElementType(),
                                  arith::AtomicRMWKind::addf, x, grad, at);
    }
  }

  /// Whether `load` reads input[b, h, ...] of an input declared [B, Hq,
  /// ...] with the region's own (b, h) arguments: elements only the
  /// caller's work item touches (its lanes add one after the other).
  bool ownedByItem(LoadOp load) {
    if (load.getIndices().size() < 2)
      return false;
    Block *body = load->getBlock();
    if (body->getNumArguments() < 2 ||
        load.getIndices()[0] != body->getArgument(0) ||
        load.getIndices()[1] != body->getArgument(1))
      return false;
    auto in = SymbolTable::lookupNearestSymbolFrom<InputOp>(
        load, load.getInputAttr());
    if (!in || in.getDims().size() < 2)
      return false;
    auto dim = [&](unsigned i) {
      auto s = dyn_cast<StringAttr>(in.getDims()[i]);
      return s ? s.getValue() : StringRef();
    };
    return dim(0) == "B" && dim(1) == "Hq";
  }

  ImplicitLocOpBuilder &b;
  const IRMapping &map;
  int64_t width;
  bool scalar;
  bool itemOwnsBH;
  llvm::DenseMap<Value, Value> adj;
};
} // namespace

Value mlir::attn::emitRegionGradient(ImplicitLocOpBuilder &b, Region &region,
                                     ValueRange args, Value seed,
                                     const KernelEnv &env,
                                     const llvm::StringMap<Value> &auxGrads,
                                     bool itemOwnsBH) {
  IRMapping map;
  if (env.scalarLanes)
    emitScalarLanes(b, region, args, env, map);
  else
    emitVectorRegion(b, region, args, env, map);
  return AdjointEmitter(b, env, map, itemOwnsBH).run(region, seed, auxGrads);
}

void mlir::attn::bindKernelEnv(ImplicitLocOpBuilder &b, SpecOp spec, Value q,
                               Value k, Value v, ValueRange auxArgs,
                               KernelEnv &env, Value m, Value hkvOverride) {
  auto dimOf = [&](Value m, int64_t d) -> Value {
    return arith::IndexCastOp::create(b, b.getI64Type(),
                                      memref::DimOp::create(b, m, d));
  };
  Value hq = dimOf(q, 1), hkv = hkvOverride ? hkvOverride : dimOf(k, 1);
  env.dims["B"] = dimOf(q, 0);
  env.dims["Hq"] = hq;
  env.dims["Hkv"] = hkv;
  env.dims["N"] = dimOf(q, 2);
  env.dims["M"] = m ? m : dimOf(k, 2);
  env.dims["Dqk"] = dimOf(q, 3);
  env.dims["Dv"] = dimOf(v, 3);
  env.dims["G"] = arith::DivUIOp::create(b, hq, hkv);
  auto aux = auxArgs.begin();
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>()) {
    if (!canonicalInputDims(in.getSymName()).empty())
      continue;
    Value mem = *aux++;
    env.aux[in.getSymName()] = mem;
    for (auto [d, attr] : llvm::enumerate(in.getDims()))
      if (auto s = dyn_cast<StringAttr>(attr); s && !env.dims.count(s))
        env.dims[s.getValue()] = dimOf(mem, d);
  }
  bindParams(b, spec, env);
}

void mlir::attn::bindParams(ImplicitLocOpBuilder &b, SpecOp spec,
                            KernelEnv &env) {
  // Params in order: defaults may use dims and earlier params.
  for (ParamOp p : spec.getBodyBlock().getOps<ParamOp>())
    env.params[p.getSymName()] = emitRegion(b, p.getDefaultValue(), {}, env);
}

//===----------------------------------------------------------------------===//
// Interval evaluation of masks: the shared engine (attn/Analysis/
// MaskIntervals.h) over a domain that emits the arith ops.
//===----------------------------------------------------------------------===//

namespace {
/// An i64 Value with a static bound on its magnitude (|v| <= mag; kUnbounded
/// when nothing is known), used only to leave out overflow checks that
/// cannot fire.
struct EInt {
  Value v;
  uint64_t mag = kUnbounded;
  static constexpr uint64_t kUnbounded = uint64_t(1) << 63;
};

/// Dims are extents of tensors in memory and indices are below them.
constexpr uint64_t kIndexMag = uint64_t(1) << 57;

struct EmitDomain {
  using Int = EInt;
  using Bool = Value;
  ImplicitLocOpBuilder &b;
  const KernelEnv &env;

  static uint64_t satAdd(uint64_t a, uint64_t b) {
    return std::min<uint64_t>(a + b, EInt::kUnbounded); // both <= 2^63
  }
  static uint64_t satMul(uint64_t a, uint64_t b) {
    unsigned __int128 p = (unsigned __int128)a * b;
    return p >= EInt::kUnbounded ? EInt::kUnbounded : uint64_t(p);
  }
  static uint64_t magOf(int64_t c) {
    return c == INT64_MIN ? EInt::kUnbounded : uint64_t(c < 0 ? -c : c);
  }

  Int cst(int64_t c) { return {::cst(b, c), magOf(c)}; }
  Int add(Int x, Int y) {
    return {arith::AddIOp::create(b, x.v, y.v), satAdd(x.mag, y.mag)};
  }
  Int sub(Int x, Int y) {
    return {arith::SubIOp::create(b, x.v, y.v), satAdd(x.mag, y.mag)};
  }
  Int mul(Int x, Int y) {
    return {arith::MulIOp::create(b, x.v, y.v), satMul(x.mag, y.mag)};
  }
  Int smin(Int x, Int y) {
    return {arith::MinSIOp::create(b, x.v, y.v), std::max(x.mag, y.mag)};
  }
  Int smax(Int x, Int y) {
    return {arith::MaxSIOp::create(b, x.v, y.v), std::max(x.mag, y.mag)};
  }
  Int floordiv(Int x, Int y) {
    return {arith::FloorDivSIOp::create(b, x.v, y.v), x.mag};
  }
  Int select(Bool c, Int x, Int y) {
    return {arith::SelectOp::create(b, c, x.v, y.v), std::max(x.mag, y.mag)};
  }
  Int zext(Bool c) { return {arith::ExtUIOp::create(b, b.getI64Type(), c), 1}; }
  Int andI(Int x, Int y) { return {arith::AndIOp::create(b, x.v, y.v), 1}; }
  Int orI(Int x, Int y) { return {arith::OrIOp::create(b, x.v, y.v), 1}; }
  Int xorI(Int x, Int y) { return {arith::XOrIOp::create(b, x.v, y.v), 1}; }
  Bool cmp(arith::CmpIPredicate p, Int x, Int y) {
    return arith::CmpIOp::create(b, p, x.v, y.v);
  }
  Bool band(Bool x, Bool y) { return arith::AndIOp::create(b, x, y); }
  Bool bor(Bool x, Bool y) { return arith::OrIOp::create(b, x, y); }
  Bool bnot(Bool x) {
    return arith::XOrIOp::create(
        b, x, arith::ConstantOp::create(b, b.getBoolAttr(true)));
  }
  Bool bfalse() { return arith::ConstantOp::create(b, b.getBoolAttr(false)); }

  bool mayOverflowAdd(Int x, Int y) {
    return satAdd(x.mag, y.mag) >= EInt::kUnbounded;
  }
  bool mayOverflowSub(Int x, Int y) { return mayOverflowAdd(x, y); }
  bool mayOverflowMul(Int x, Int y) {
    return satMul(x.mag, y.mag) >= EInt::kUnbounded;
  }
  bool mayBeMin(Int x) { return x.mag >= EInt::kUnbounded; }
  Value isNeg(Value v) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::slt, v, ::cst(b, 0));
  }
  /// Signed overflow of r = x + y: x and y agree in sign and r does not.
  Bool addOverflowed(Int x, Int y, Int r) {
    Value a = arith::XOrIOp::create(b, x.v, r.v);
    Value c = arith::XOrIOp::create(b, y.v, r.v);
    return isNeg(arith::AndIOp::create(b, a, c));
  }
  /// r = x - y: x and y differ in sign and r's sign is not x's.
  Bool subOverflowed(Int x, Int y, Int r) {
    Value a = arith::XOrIOp::create(b, x.v, y.v);
    Value c = arith::XOrIOp::create(b, x.v, r.v);
    return isNeg(arith::AndIOp::create(b, a, c));
  }
  /// The 128-bit product's high half is not the low half's sign.
  Bool mulOverflowed(Int x, Int y) {
    auto m = arith::MulSIExtendedOp::create(b, x.v, y.v);
    Value sign = arith::ShRSIOp::create(b, m.getLow(), ::cst(b, 63));
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, m.getHigh(),
                                 sign);
  }

  void at(Operation *op) { b.setLoc(op->getLoc()); }
  Int markIndex(Int x) { return {x.v, std::min(x.mag, kIndexMag)}; }

  std::optional<Int> asInt(Value v, uint64_t mag) {
    if (!v)
      return std::nullopt;
    Type t = v.getType();
    if (t.isInteger(1))
      return Int{arith::ExtUIOp::create(b, b.getI64Type(), v), 1};
    if (t.isInteger(32))
      return Int{arith::ExtSIOp::create(b, b.getI64Type(), v),
                 std::min<uint64_t>(mag, uint64_t(1) << 31)};
    if (t.isInteger(64))
      return Int{v, mag};
    return std::nullopt;
  }
  std::optional<Int> dim(StringRef name) {
    return asInt(env.dims.lookup(name), kIndexMag);
  }
  std::optional<Int> param(StringRef name) {
    Value v = env.params.lookup(name);
    APInt c;
    uint64_t mag = EInt::kUnbounded;
    if (v && matchPattern(v, m_ConstantInt(&c)) && c.getBitWidth() <= 64)
      mag = magOf(c.getSExtValue());
    return asInt(v, mag);
  }

  bool hasAux(LoadOp load) {
    Value mem = env.aux.lookup(load.getInput());
    return mem &&
           cast<MemRefType>(mem.getType()).getElementType().isInteger(32);
  }
  Int auxSize(LoadOp load, unsigned d) {
    Value mem = env.aux.lookup(load.getInput());
    return {arith::IndexCastOp::create(b, b.getI64Type(),
                                       memref::DimOp::create(b, mem, d)),
            kIndexMag};
  }
  std::pair<Int, Int> scan(LoadOp load, Bool doScan, ArrayRef<Int> lo,
                           ArrayRef<Int> hi) {
    Value mem = env.aux.lookup(load.getInput());
    int64_t rank = cast<MemRefType>(mem.getType()).getRank();
    Type i64 = b.getI64Type();
    auto ifOp = scf::IfOp::create(b, TypeRange{i64, i64}, doScan, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      // Nested loops over the box, carrying (min, max).
      SmallVector<Value> ivs;
      std::function<std::pair<Value, Value>(int64_t, Value, Value)> nest =
          [&](int64_t d, Value curMin,
              Value curMax) -> std::pair<Value, Value> {
        if (d == rank) {
          Value v = arith::ExtSIOp::create(b, i64,
                                           memref::LoadOp::create(b, mem, ivs));
          return {emin(b, curMin, v), emax(b, curMax, v)};
        }
        Value lb = arith::IndexCastOp::create(b, b.getIndexType(), lo[d].v);
        Value ub = arith::IndexCastOp::create(
            b, b.getIndexType(),
            arith::AddIOp::create(b, hi[d].v, ::cst(b, 1)));
        auto loop = scf::ForOp::create(b, lb, ub, cstIndex(b, 1),
                                       ValueRange{curMin, curMax});
        OpBuilder::InsertionGuard g2(b);
        if (!loop.getBody()->empty())
          loop.getBody()->getTerminator()->erase();
        b.setInsertionPointToEnd(loop.getBody());
        ivs.push_back(loop.getInductionVar());
        auto [mn, mx] = nest(d + 1, loop.getRegionIterArgs()[0],
                             loop.getRegionIterArgs()[1]);
        ivs.pop_back();
        scf::YieldOp::create(b, ValueRange{mn, mx});
        return {loop.getResult(0), loop.getResult(1)};
      };
      auto [mn, mx] = nest(0, ::cst(b, INT32_MAX), ::cst(b, INT32_MIN));
      scf::YieldOp::create(b, ValueRange{mn, mx});
    }
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(
          b, ValueRange{::cst(b, INT32_MIN), ::cst(b, INT32_MAX)});
    }
    uint64_t m = uint64_t(1) << 31;
    return {Int{ifOp.getResult(0), m}, Int{ifOp.getResult(1), m}};
  }

  static Value emin(ImplicitLocOpBuilder &b, Value x, Value y) {
    return arith::MinSIOp::create(b, x, y);
  }
  static Value emax(ImplicitLocOpBuilder &b, Value x, Value y) {
    return arith::MaxSIOp::create(b, x, y);
  }
};
} // namespace

std::pair<Value, Value>
mlir::attn::emitMaskIntervals(ImplicitLocOpBuilder &b, Region &mask, Value bIdx,
                              Value h, Value q0, Value q1, Value k0, Value k1,
                              const KernelEnv &env) {
  EmitDomain dom{b, env};
  maskintervals::Engine<EmitDomain> engine(dom);
  auto idx = [](Value v) { return EInt{v, kIndexMag}; };
  auto [lo, hi] =
      engine.run(mask, idx(bIdx), idx(h), idx(q0), idx(q1), idx(k0), idx(k1));
  return {lo.v, hi.v};
}

std::pair<Value, Value>
mlir::attn::emitMaskIntervals(ImplicitLocOpBuilder &b, Region &mask, Value bIdx,
                              Value h0, Value h1, Value q0, Value q1, Value k0,
                              Value k1, const KernelEnv &env) {
  EmitDomain dom{b, env};
  maskintervals::Engine<EmitDomain> engine(dom);
  auto idx = [](Value v) { return EInt{v, kIndexMag}; };
  auto [lo, hi] =
      engine.run(mask, idx(bIdx), idx(h0), idx(h1),
                 /*hPoint=*/false, idx(q0), idx(q1), idx(k0), idx(k1));
  return {lo.v, hi.v};
}
