//===- RegionEmitter.cpp - inline attn regions into kernels ---------------===//

#include "attn/Conversion/RegionEmitter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
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
/// instead of by their vector type.
static Value emitScalarLanes(ImplicitLocOpBuilder &b, Region &region,
                             ValueRange args, const KernelEnv &env) {
  IRMapping map;
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

Value mlir::attn::emitRegion(ImplicitLocOpBuilder &b, Region &region,
                             ValueRange args, const KernelEnv &env) {
  if (env.scalarLanes)
    return emitScalarLanes(b, region, args, env);
  IRMapping map;
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

void mlir::attn::bindKernelEnv(ImplicitLocOpBuilder &b, SpecOp spec, Value q,
                               Value k, Value v, ValueRange auxArgs,
                               KernelEnv &env) {
  auto dimOf = [&](Value m, int64_t d) -> Value {
    return arith::IndexCastOp::create(b, b.getI64Type(),
                                      memref::DimOp::create(b, m, d));
  };
  Value hq = dimOf(q, 1), hkv = dimOf(k, 1);
  env.dims["B"] = dimOf(q, 0);
  env.dims["Hq"] = hq;
  env.dims["Hkv"] = hkv;
  env.dims["N"] = dimOf(q, 2);
  env.dims["M"] = dimOf(k, 2);
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
  // Params in order: defaults may use dims and earlier params.
  for (ParamOp p : spec.getBodyBlock().getOps<ParamOp>())
    env.params[p.getSymName()] = emitRegion(b, p.getDefaultValue(), {}, env);
}

//===----------------------------------------------------------------------===//
// Interval evaluation of masks
//===----------------------------------------------------------------------===//

namespace {
struct Itv {
  Value lo, hi;
  bool top = false;
  /// Statically known to be a single value (uniform over the tile).
  bool point = false;
};
} // namespace

static Value emin(ImplicitLocOpBuilder &b, Value x, Value y) {
  return arith::MinSIOp::create(b, x, y);
}
static Value emax(ImplicitLocOpBuilder &b, Value x, Value y) {
  return arith::MaxSIOp::create(b, x, y);
}
static Value sel(ImplicitLocOpBuilder &b, Value c, Value x, Value y) {
  return arith::SelectOp::create(b, c, x, y);
}
static Value cmp(ImplicitLocOpBuilder &b, arith::CmpIPredicate p, Value x,
                 Value y) {
  return arith::CmpIOp::create(b, p, x, y);
}
static Value boolToI64(ImplicitLocOpBuilder &b, Value c) {
  return arith::ExtUIOp::create(b, b.getI64Type(), c);
}

/// The unknown boolean: [0, 1].
static Itv unknownBool(ImplicitLocOpBuilder &b) {
  return Itv{cst(b, 0), cst(b, 1), false, false};
}

static Itv pointOf(ImplicitLocOpBuilder &b, Value v) {
  Type t = v.getType();
  if (t.isInteger(1))
    v = boolToI64(b, v);
  else if (t.isInteger(32))
    v = arith::ExtSIOp::create(b, b.getI64Type(), v);
  else if (!t.isInteger(64))
    return Itv{{}, {}, true, false};
  return Itv{v, v, false, true};
}

/// Tri-state result of comparing intervals `x` and `y`.
static Itv compare(ImplicitLocOpBuilder &b, arith::CmpIPredicate pred,
                   const Itv &x, const Itv &y) {
  using P = arith::CmpIPredicate;
  if (x.top || y.top)
    return unknownBool(b);
  Value always, never;
  switch (pred) {
  case P::slt:
    always = cmp(b, P::slt, x.hi, y.lo);
    never = cmp(b, P::sge, x.lo, y.hi);
    break;
  case P::sle:
    always = cmp(b, P::sle, x.hi, y.lo);
    never = cmp(b, P::sgt, x.lo, y.hi);
    break;
  case P::sgt:
    always = cmp(b, P::sgt, x.lo, y.hi);
    never = cmp(b, P::sle, x.hi, y.lo);
    break;
  case P::sge:
    always = cmp(b, P::sge, x.lo, y.hi);
    never = cmp(b, P::slt, x.hi, y.lo);
    break;
  case P::eq:
  case P::ne: {
    Value xp = cmp(b, P::eq, x.lo, x.hi), yp = cmp(b, P::eq, y.lo, y.hi);
    Value same = arith::AndIOp::create(b, arith::AndIOp::create(b, xp, yp),
                                       cmp(b, P::eq, x.lo, y.lo));
    Value disjoint = arith::OrIOp::create(b, cmp(b, P::slt, x.hi, y.lo),
                                          cmp(b, P::slt, y.hi, x.lo));
    always = pred == P::eq ? same : disjoint;
    never = pred == P::eq ? disjoint : same;
    break;
  }
  default:
    return unknownBool(b);
  }
  Value lo = boolToI64(b, always);
  Value hi = sel(b, never, cst(b, 0), cst(b, 1));
  return Itv{lo, hi, false, x.point && y.point};
}

/// min/max of an i32 aux tensor over the box of index intervals, by a scan
/// (tiles are small, so the box is too); a box larger than `kMaxScan`
/// elements falls back to the full i32 range.
static Itv scanLoad(ImplicitLocOpBuilder &b, LoadOp load, ArrayRef<Itv> idx,
                    const KernelEnv &env) {
  constexpr int64_t kMaxScan = 1 << 14;
  Value mem = env.aux.lookup(load.getInput());
  auto memTy = cast<MemRefType>(mem.getType());
  if (!memTy.getElementType().isInteger(32))
    return Itv{{}, {}, true, false};
  Value fullLo = cst(b, INT32_MIN), fullHi = cst(b, INT32_MAX);
  if (llvm::any_of(idx, [](const Itv &i) { return i.top; }))
    return Itv{fullLo, fullHi, false, false};
  int64_t rank = memTy.getRank();
  SmallVector<Value> lo, hi; // clamped, inclusive, i64
  Value count = cst(b, 1),
        empty = arith::ConstantOp::create(b, b.getBoolAttr(false));
  for (int64_t d = 0; d < rank; ++d) {
    Value size = arith::IndexCastOp::create(b, b.getI64Type(),
                                            memref::DimOp::create(b, mem, d));
    Value l = emax(b, idx[d].lo, cst(b, 0));
    Value h = emin(b, idx[d].hi, arith::SubIOp::create(b, size, cst(b, 1)));
    empty =
        arith::OrIOp::create(b, empty, cmp(b, arith::CmpIPredicate::sgt, l, h));
    Value n = emax(
        b, arith::AddIOp::create(b, arith::SubIOp::create(b, h, l), cst(b, 1)),
        cst(b, 0));
    count = arith::MulIOp::create(b, count, emin(b, n, cst(b, kMaxScan + 1)));
    lo.push_back(l);
    hi.push_back(h);
  }
  Value small = cmp(b, arith::CmpIPredicate::sle, count, cst(b, kMaxScan));
  Value doScan = arith::AndIOp::create(
      b, small,
      arith::XOrIOp::create(b, empty,
                            arith::ConstantOp::create(b, b.getBoolAttr(true))));
  Type i64 = b.getI64Type();
  auto ifOp = scf::IfOp::create(b, TypeRange{i64, i64}, doScan, true);
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    // Nested loops over the box, carrying (min, max).
    SmallVector<Value> ivs;
    std::function<std::pair<Value, Value>(int64_t, Value, Value)> nest =
        [&](int64_t d, Value curMin, Value curMax) -> std::pair<Value, Value> {
      if (d == rank) {
        SmallVector<Value> idxs;
        for (Value iv : ivs)
          idxs.push_back(iv);
        Value v = arith::ExtSIOp::create(b, i64,
                                         memref::LoadOp::create(b, mem, idxs));
        return {emin(b, curMin, v), emax(b, curMax, v)};
      }
      Value lb = arith::IndexCastOp::create(b, b.getIndexType(), lo[d]);
      Value ub = arith::IndexCastOp::create(
          b, b.getIndexType(), arith::AddIOp::create(b, hi[d], cst(b, 1)));
      auto loop = scf::ForOp::create(b, lb, ub, cstIndex(b, 1),
                                     ValueRange{curMin, curMax});
      OpBuilder::InsertionGuard g2(b);
      if (!loop.getBody()->empty())
        loop.getBody()->getTerminator()->erase();
      b.setInsertionPointToEnd(loop.getBody());
      ivs.push_back(loop.getInductionVar());
      auto [mn, mx] =
          nest(d + 1, loop.getRegionIterArgs()[0], loop.getRegionIterArgs()[1]);
      ivs.pop_back();
      scf::YieldOp::create(b, ValueRange{mn, mx});
      return {loop.getResult(0), loop.getResult(1)};
    };
    auto [mn, mx] = nest(0, cst(b, INT32_MAX), cst(b, INT32_MIN));
    scf::YieldOp::create(b, ValueRange{mn, mx});
  }
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(b, ValueRange{fullLo, fullHi});
  }
  return Itv{ifOp.getResult(0), ifOp.getResult(1), false, false};
}

std::pair<Value, Value>
mlir::attn::emitMaskIntervals(ImplicitLocOpBuilder &b, Region &mask, Value bIdx,
                              Value h, Value q0, Value q1, Value k0, Value k1,
                              const KernelEnv &env) {
  using P = arith::CmpIPredicate;
  llvm::DenseMap<Value, Itv> map;
  Block &block = mask.front();
  map[block.getArgument(0)] = Itv{bIdx, bIdx, false, true};
  map[block.getArgument(1)] = Itv{h, h, false, true};
  map[block.getArgument(2)] = Itv{q0, q1, false, false};
  map[block.getArgument(3)] = Itv{k0, k1, false, false};
  for (Operation &op : block.without_terminator()) {
    b.setLoc(op.getLoc());
    if (op.getNumResults() != 1)
      continue;
    Value res = op.getResult(0);
    SmallVector<Itv> in;
    for (Value v : op.getOperands())
      in.push_back(map.lookup(v));
    bool anyTop = llvm::any_of(in, [](const Itv &i) { return i.top; });
    bool allPoint = llvm::all_of(in, [](const Itv &i) { return i.point; });
    Itv out{{}, {}, true, false};
    Type rt = res.getType();
    bool isInt = rt.isInteger(64) || rt.isInteger(1) || rt.isInteger(32);

    if (auto c = dyn_cast<arith::ConstantOp>(op)) {
      if (auto ia = dyn_cast<IntegerAttr>(c.getValue())) {
        int64_t v = rt.isInteger(1) ? (ia.getValue().getBoolValue() ? 1 : 0)
                                    : ia.getInt();
        out = Itv{cst(b, v), cst(b, v), false, true};
      }
    } else if (auto dim = dyn_cast<DimOp>(op)) {
      out = pointOf(b, env.dims.lookup(dim.getName()));
    } else if (auto param = dyn_cast<GetParamOp>(op)) {
      out = pointOf(b, env.params.lookup(param.getParam()));
    } else if (auto load = dyn_cast<LoadOp>(op)) {
      out = scanLoad(b, load, in, env);
    } else if (!isInt) {
      out = Itv{{}, {}, true, false};
    } else if (anyTop) {
      out = rt.isInteger(1) ? unknownBool(b) : Itv{{}, {}, true, false};
    } else {
      const Itv &x = in.size() > 0 ? in[0] : out;
      const Itv &y = in.size() > 1 ? in[1] : out;
      out = llvm::TypeSwitch<Operation *, Itv>(&op)
                .Case<arith::AddIOp>([&](auto) {
                  return Itv{arith::AddIOp::create(b, x.lo, y.lo),
                             arith::AddIOp::create(b, x.hi, y.hi), false,
                             allPoint};
                })
                .Case<arith::SubIOp>([&](auto) {
                  return Itv{arith::SubIOp::create(b, x.lo, y.hi),
                             arith::SubIOp::create(b, x.hi, y.lo), false,
                             allPoint};
                })
                .Case<arith::MulIOp>([&](auto) {
                  Value p1 = arith::MulIOp::create(b, x.lo, y.lo);
                  Value p2 = arith::MulIOp::create(b, x.lo, y.hi);
                  Value p3 = arith::MulIOp::create(b, x.hi, y.lo);
                  Value p4 = arith::MulIOp::create(b, x.hi, y.hi);
                  return Itv{emin(b, emin(b, p1, p2), emin(b, p3, p4)),
                             emax(b, emax(b, p1, p2), emax(b, p3, p4)), false,
                             allPoint};
                })
                .Case<arith::MinSIOp>([&](auto) {
                  return Itv{emin(b, x.lo, y.lo), emin(b, x.hi, y.hi), false,
                             allPoint};
                })
                .Case<arith::MaxSIOp>([&](auto) {
                  return Itv{emax(b, x.lo, y.lo), emax(b, x.hi, y.hi), false,
                             allPoint};
                })
                .Case<arith::FloorDivSIOp>([&](auto) -> Itv {
                  if (!y.point)
                    return Itv{{}, {}, true, false};
                  // Guard a zero divisor (the reference reports it; here it
                  // only has to stay defined).
                  Value d =
                      sel(b, cmp(b, P::eq, y.lo, cst(b, 0)), cst(b, 1), y.lo);
                  Value a = arith::FloorDivSIOp::create(b, x.lo, d);
                  Value c = arith::FloorDivSIOp::create(b, x.hi, d);
                  Value pos = cmp(b, P::sgt, d, cst(b, 0));
                  return Itv{sel(b, pos, a, c), sel(b, pos, c, a), false,
                             allPoint};
                })
                .Case<arith::ExtSIOp, arith::ExtUIOp>([&](auto) { return x; })
                .Case<math::AbsIOp>([&](auto) {
                  Value zero = cst(b, 0);
                  Value negHi = arith::SubIOp::create(b, zero, x.hi);
                  Value negLo = arith::SubIOp::create(b, zero, x.lo);
                  Value lo =
                      sel(b, cmp(b, P::sge, x.lo, zero), x.lo,
                          sel(b, cmp(b, P::sle, x.hi, zero), negHi, zero));
                  return Itv{lo, emax(b, negLo, x.hi), false, allPoint};
                })
                .Case<arith::CmpIOp>([&](arith::CmpIOp c) {
                  return compare(b, c.getPredicate(), x, y);
                })
                .Case<arith::AndIOp>([&](auto) -> Itv {
                  if (!rt.isInteger(1))
                    return Itv{{}, {}, true, false};
                  return Itv{arith::AndIOp::create(b, x.lo, y.lo),
                             arith::AndIOp::create(b, x.hi, y.hi), false,
                             allPoint};
                })
                .Case<arith::OrIOp>([&](auto) -> Itv {
                  if (!rt.isInteger(1))
                    return Itv{{}, {}, true, false};
                  return Itv{arith::OrIOp::create(b, x.lo, y.lo),
                             arith::OrIOp::create(b, x.hi, y.hi), false,
                             allPoint};
                })
                .Case<arith::XOrIOp>([&](auto) -> Itv {
                  if (!rt.isInteger(1))
                    return Itv{{}, {}, true, false};
                  Value decided = arith::AndIOp::create(
                      b, cmp(b, P::eq, x.lo, x.hi), cmp(b, P::eq, y.lo, y.hi));
                  Value v = arith::XOrIOp::create(b, x.lo, y.lo);
                  return Itv{sel(b, decided, v, cst(b, 0)),
                             sel(b, decided, v, cst(b, 1)), false, allPoint};
                })
                .Case<arith::SelectOp>([&](auto) -> Itv {
                  const Itv &c = in[0], &t = in[1], &f = in[2];
                  Value isT = cmp(b, P::eq, c.lo, cst(b, 1));
                  Value isF = cmp(b, P::eq, c.hi, cst(b, 0));
                  Value lo =
                      sel(b, isT, t.lo, sel(b, isF, f.lo, emin(b, t.lo, f.lo)));
                  Value hi =
                      sel(b, isT, t.hi, sel(b, isF, f.hi, emax(b, t.hi, f.hi)));
                  return Itv{lo, hi, false, allPoint};
                })
                .Default([&](Operation *) {
                  return rt.isInteger(1) ? unknownBool(b)
                                         : Itv{{}, {}, true, false};
                });
    }
    if (out.top && rt.isInteger(1))
      out = unknownBool(b);
    map[res] = out;
  }
  auto yield = cast<YieldOp>(block.getTerminator());
  Itv r = map.lookup(yield.getValues().front());
  if (r.top)
    r = unknownBool(b);
  return {r.lo, r.hi};
}
