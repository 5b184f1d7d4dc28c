//===- MaskIntervals.h - the one interval engine for masks ------*- C++ -*-===//
//
// Block classification evaluates the mask region of an attention op over
// index intervals: b and h fixed, q_idx in [q0, q1], kv_idx in [k0, k1]
// (inclusive). Integers become intervals [lo, hi]; booleans become intervals
// of 0/1 (lo == 1: true for every element, hi == 0: false for every element,
// else unknown). The rules live here ONCE, as a template over a value
// domain D:
//  * the kernels instantiate it with a domain whose values are MLIR i64
//    Values (RegionEmitter.cpp: emitMaskIntervals), i.e. every rule *emits*
//    the arith ops that compute the bounds at run time, per (q tile, kv
//    tile);
//  * `attnc show-mask`, the soundness tests and anything else that wants the
//    classification at compile time instantiate it with int64_t values
//    (MaskAnalysis.cpp: MaskClassifier), i.e. the same rules computed on the
//    host for concrete dims, params and aux data.
// Every decision that is not a computation on values (which rule applies,
// whether an operand is "top" = nothing known, whether a value is uniform
// over the tile) depends only on the region's structure, so both domains
// take the same path and the host computes exactly the bounds the kernel
// computes: show-mask's tiles are the kernel's tiles.
//
// Soundness: i64 arithmetic wraps in the kernel, so a bound whose exact value
// leaves i64 widens the interval to the whole i64 range (which is then a
// true over-approximation of the wrapped concrete value). The concrete
// domain checks every operation; the emitting domain elides the check where
// a static bound on the operands' magnitudes (dims and indices are extents of
// tensors in memory: below 2^57) proves it cannot overflow, so affine masks
// (causal, windows, ...) cost no more than plain interval arithmetic.
//
// Domain interface (D):
//   using Int, Bool;                      i64 and i1 values
//   Int cst(int64_t);
//   Int add/sub/mul/smin/smax(Int, Int);  wrapping
//   Int floordiv(Int, Int);               divisor != 0, no MIN / -1
//   Int select(Bool, Int, Int);  Int zext(Bool);
//   Int andI/orI/xorI(Int, Int);          on 0/1 values
//   Bool cmp(arith::CmpIPredicate, Int, Int);
//   Bool band/bor/bnot(Bool[, Bool]);  Bool bfalse();
//   bool mayOverflowAdd/Sub/Mul(Int, Int); bool mayBeMin(Int);
//   void at(Operation *);                 location of what follows
//   std::optional<Int> dim(StringRef), param(StringRef);
//   Int markIndex(Int);                   an index or dim-sized value
//   bool hasAux(LoadOp);                  i32 data the lookup can scan
//   Int auxSize(LoadOp, unsigned d);
//   std::pair<Int, Int> scan(LoadOp, Bool doScan, ArrayRef<Int> lo,
//                            ArrayRef<Int> hi);   min/max over the box when
//                            doScan, else the full i32 range
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_ANALYSIS_MASKINTERVALS_H
#define ATTN_ANALYSIS_MASKINTERVALS_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"
#include <cstdint>
#include <optional>
#include <utility>

namespace mlir::attn::maskintervals {

/// A lookup whose (clamped) index box holds more elements than this is not
/// scanned: its value is the whole i32 range.
constexpr int64_t kMaxScan = int64_t(1) << 14;

/// Ops the engine has a rule for (anything else is "nothing known").
inline bool isSupported(Operation *op) {
  return isa<arith::ConstantOp, DimOp, GetParamOp, LoadOp, arith::AddIOp,
             arith::SubIOp, arith::MulIOp, arith::MinSIOp, arith::MaxSIOp,
             arith::FloorDivSIOp, arith::ExtSIOp, arith::ExtUIOp, math::AbsIOp,
             arith::CmpIOp, arith::AndIOp, arith::OrIOp, arith::XOrIOp,
             arith::SelectOp>(op);
}

template <class D> class Engine {
public:
  using Int = typename D::Int;
  using Bool = typename D::Bool;
  using P = arith::CmpIPredicate;

  struct Itv {
    Int lo{}, hi{};
    bool top = true;    ///< nothing known (lo/hi meaningless)
    bool point = false; ///< uniform over the tile (b, h, dims, params, ...)
  };

  explicit Engine(D &d) : d(d) {}

  /// The mask over the tile; returns (lo, hi) of the predicate as 0/1.
  std::pair<Int, Int> run(Region &mask, Int bIdx, Int h, Int q0, Int q1, Int k0,
                          Int k1) {
    return run(mask, bIdx, h, h, /*hPoint=*/true, q0, q1, k0, k1);
  }

  /// The mask over a tile whose rows span heads [h0, h1] (the decode
  /// schedule packs the query heads of a GQA group into one tile); hPoint
  /// says h0 == h1 by construction, which must not depend on run-time values
  /// (both domains take the same path).
  std::pair<Int, Int> run(Region &mask, Int bIdx, Int h0, Int h1, bool hPoint,
                          Int q0, Int q1, Int k0, Int k1) {
    map.clear();
    Block &block = mask.front();
    map[block.getArgument(0)] =
        known(d.markIndex(bIdx), d.markIndex(bIdx), true);
    map[block.getArgument(1)] = known(d.markIndex(h0), d.markIndex(h1), hPoint);
    map[block.getArgument(2)] = known(d.markIndex(q0), d.markIndex(q1), false);
    map[block.getArgument(3)] = known(d.markIndex(k0), d.markIndex(k1), false);
    for (Operation &op : block.without_terminator()) {
      if (op.getNumResults() != 1)
        continue;
      d.at(&op);
      Value res = op.getResult(0);
      Itv out = visit(op);
      if (out.top && res.getType().isInteger(1))
        out = unknownBool();
      map[res] = out;
    }
    auto yield = cast<YieldOp>(block.getTerminator());
    Itv r = lookup(yield.getValues().front());
    if (r.top)
      r = unknownBool();
    return {r.lo, r.hi};
  }

private:
  D &d;
  llvm::DenseMap<Value, Itv> map;

  static Itv topItv() { return Itv(); }
  static Itv known(Int lo, Int hi, bool point) {
    Itv r;
    r.lo = lo;
    r.hi = hi;
    r.top = false;
    r.point = point;
    return r;
  }
  Itv lookup(Value v) {
    auto it = map.find(v);
    return it == map.end() ? topItv() : it->second;
  }
  Itv unknownBool() { return known(d.cst(0), d.cst(1), false); }

  /// A value of an i1/i32/i64 scalar as a point; others are top.
  Itv pointOf(std::optional<Int> v, Type t) {
    if (!v || !(t.isInteger(1) || t.isInteger(32) || t.isInteger(64)))
      return topItv();
    return known(*v, *v, true);
  }

  /// OR of optional overflow flags (nullopt: statically no overflow).
  void orOv(std::optional<Bool> &acc, Bool b) {
    acc = acc ? d.bor(*acc, b) : b;
  }
  Int addOv(Int a, Int b, std::optional<Bool> &ov) {
    Int r = d.add(a, b);
    if (d.mayOverflowAdd(a, b))
      orOv(ov, d.addOverflowed(a, b, r));
    return r;
  }
  Int subOv(Int a, Int b, std::optional<Bool> &ov) {
    Int r = d.sub(a, b);
    if (d.mayOverflowSub(a, b))
      orOv(ov, d.subOverflowed(a, b, r));
    return r;
  }
  Int mulOv(Int a, Int b, std::optional<Bool> &ov) {
    if (d.mayOverflowMul(a, b))
      orOv(ov, d.mulOverflowed(a, b));
    return d.mul(a, b);
  }
  /// [lo, hi], or the whole i64 range where a bound overflowed.
  Itv widened(Int lo, Int hi, const std::optional<Bool> &ov, bool point) {
    if (ov) {
      lo = d.select(*ov, d.cst(INT64_MIN), lo);
      hi = d.select(*ov, d.cst(INT64_MAX), hi);
    }
    return known(lo, hi, point);
  }

  Itv compare(P pred, const Itv &x, const Itv &y) {
    Bool always, never;
    switch (pred) {
    case P::slt:
      always = d.cmp(P::slt, x.hi, y.lo);
      never = d.cmp(P::sge, x.lo, y.hi);
      break;
    case P::sle:
      always = d.cmp(P::sle, x.hi, y.lo);
      never = d.cmp(P::sgt, x.lo, y.hi);
      break;
    case P::sgt:
      always = d.cmp(P::sgt, x.lo, y.hi);
      never = d.cmp(P::sle, x.hi, y.lo);
      break;
    case P::sge:
      always = d.cmp(P::sge, x.lo, y.hi);
      never = d.cmp(P::slt, x.hi, y.lo);
      break;
    case P::eq:
    case P::ne: {
      Bool xp = d.cmp(P::eq, x.lo, x.hi), yp = d.cmp(P::eq, y.lo, y.hi);
      Bool same = d.band(d.band(xp, yp), d.cmp(P::eq, x.lo, y.lo));
      Bool disjoint =
          d.bor(d.cmp(P::slt, x.hi, y.lo), d.cmp(P::slt, y.hi, x.lo));
      always = pred == P::eq ? same : disjoint;
      never = pred == P::eq ? disjoint : same;
      break;
    }
    default:
      return unknownBool();
    }
    return known(d.zext(always), d.select(never, d.cst(0), d.cst(1)),
                 x.point && y.point);
  }

  /// a floordiv n over intervals. A uniform divisor: the quotient is monotone
  /// in a (2 divisions); else the divisor must keep one sign over the tile
  /// (4 corners). A zero divisor (the reference reports it) and MIN / -1 only
  /// have to stay defined: they widen to the whole range.
  Itv floorDiv(const Itv &x, const Itv &y, bool point) {
    std::optional<Bool> ov;
    if (y.point) {
      Int dv = d.select(d.cmp(P::eq, y.lo, d.cst(0)), d.cst(1), y.lo);
      if (d.mayBeMin(x.lo)) {
        Bool bad = d.band(d.cmp(P::eq, x.lo, d.cst(INT64_MIN)),
                          d.cmp(P::eq, dv, d.cst(-1)));
        dv = d.select(bad, d.cst(1), dv);
        orOv(ov, bad);
      }
      Int a = d.floordiv(x.lo, dv), c = d.floordiv(x.hi, dv);
      Bool pos = d.cmp(P::sgt, dv, d.cst(0));
      return widened(d.select(pos, a, c), d.select(pos, c, a), ov, point);
    }
    Bool oneSign =
        d.bor(d.cmp(P::sgt, y.lo, d.cst(0)), d.cmp(P::slt, y.hi, d.cst(0)));
    orOv(ov, d.bnot(oneSign));
    Int n1 = d.select(oneSign, y.lo, d.cst(1));
    Int n2 = d.select(oneSign, y.hi, d.cst(1));
    if (d.mayBeMin(x.lo)) {
      Bool bad = d.band(
          d.cmp(P::eq, x.lo, d.cst(INT64_MIN)),
          d.bor(d.cmp(P::eq, n1, d.cst(-1)), d.cmp(P::eq, n2, d.cst(-1))));
      n1 = d.select(bad, d.cst(1), n1);
      n2 = d.select(bad, d.cst(1), n2);
      orOv(ov, bad);
    }
    Int c1 = d.floordiv(x.lo, n1), c2 = d.floordiv(x.lo, n2);
    Int c3 = d.floordiv(x.hi, n1), c4 = d.floordiv(x.hi, n2);
    return widened(d.smin(d.smin(c1, c2), d.smin(c3, c4)),
                   d.smax(d.smax(c1, c2), d.smax(c3, c4)), ov, point);
  }

  /// min/max of an i32 aux tensor over the box of index intervals (clamped
  /// into the tensor), by a scan; an empty or too large box, or an index
  /// nothing is known about, gives the full i32 range.
  Itv scanLoad(LoadOp load, ArrayRef<Itv> idx) {
    if (!d.hasAux(load))
      return topItv();
    Int fullLo = d.cst(INT32_MIN), fullHi = d.cst(INT32_MAX);
    for (const Itv &i : idx)
      if (i.top)
        return known(fullLo, fullHi, false);
    llvm::SmallVector<Int> lo, hi;
    Int count = d.cst(1);
    Bool empty = d.bfalse();
    for (unsigned k = 0; k < idx.size(); ++k) {
      Int size = d.auxSize(load, k);
      Int l = d.smax(idx[k].lo, d.cst(0));
      Int h = d.smin(idx[k].hi, d.sub(size, d.cst(1)));
      empty = d.bor(empty, d.cmp(P::sgt, l, h));
      // Widths are capped before multiplying, so the count cannot wrap.
      Int n = d.smax(d.add(d.sub(h, l), d.cst(1)), d.cst(0));
      count = d.mul(count, d.smin(n, d.cst(kMaxScan + 1)));
      lo.push_back(l);
      hi.push_back(h);
    }
    Bool small = d.cmp(P::sle, count, d.cst(kMaxScan));
    Bool doScan = d.band(small, d.bnot(empty));
    auto [mn, mx] = d.scan(load, doScan, lo, hi);
    return known(mn, mx, false);
  }

  Itv visit(Operation &op) {
    Type rt = op.getResult(0).getType();
    if (auto c = dyn_cast<arith::ConstantOp>(op)) {
      auto ia = dyn_cast<IntegerAttr>(c.getValue());
      if (!ia || !(rt.isInteger(1) || rt.isInteger(32) || rt.isInteger(64)))
        return topItv();
      int64_t v = rt.isInteger(1) ? (ia.getValue().getBoolValue() ? 1 : 0)
                                  : ia.getValue().getSExtValue();
      Int cv = d.cst(v);
      return known(cv, cv, true);
    }
    if (auto dim = dyn_cast<DimOp>(op))
      return pointOf(d.dim(dim.getName()), rt);
    if (auto param = dyn_cast<GetParamOp>(op))
      return pointOf(d.param(param.getParam()), rt);
    llvm::SmallVector<Itv, 3> in;
    for (Value v : op.getOperands())
      in.push_back(lookup(v));
    if (auto load = dyn_cast<LoadOp>(op))
      return rt.isInteger(32) ? scanLoad(load, in) : topItv();
    // Only i64 arithmetic and i1 logic: a narrower integer op could wrap at
    // its width, which the rules below do not model.
    if (!(rt.isInteger(64) || rt.isInteger(1)))
      return topItv();
    for (const Itv &i : in)
      if (i.top)
        return topItv();
    bool allPoint = true;
    for (const Itv &i : in)
      allPoint &= i.point;
    const Itv &x = in.size() > 0 ? in[0] : Itv();
    const Itv &y = in.size() > 1 ? in[1] : Itv();
    std::optional<Bool> ov;
    if (isa<arith::AddIOp>(op) && rt.isInteger(64)) {
      Int lo = addOv(x.lo, y.lo, ov), hi = addOv(x.hi, y.hi, ov);
      return widened(lo, hi, ov, allPoint);
    }
    if (isa<arith::SubIOp>(op) && rt.isInteger(64)) {
      Int lo = subOv(x.lo, y.hi, ov), hi = subOv(x.hi, y.lo, ov);
      return widened(lo, hi, ov, allPoint);
    }
    if (isa<arith::MulIOp>(op) && rt.isInteger(64)) {
      Int p1 = mulOv(x.lo, y.lo, ov), p2 = mulOv(x.lo, y.hi, ov);
      Int p3 = mulOv(x.hi, y.lo, ov), p4 = mulOv(x.hi, y.hi, ov);
      return widened(d.smin(d.smin(p1, p2), d.smin(p3, p4)),
                     d.smax(d.smax(p1, p2), d.smax(p3, p4)), ov, allPoint);
    }
    if (isa<arith::MinSIOp>(op))
      return known(d.smin(x.lo, y.lo), d.smin(x.hi, y.hi), allPoint);
    if (isa<arith::MaxSIOp>(op))
      return known(d.smax(x.lo, y.lo), d.smax(x.hi, y.hi), allPoint);
    if (isa<arith::FloorDivSIOp>(op) && rt.isInteger(64))
      return floorDiv(x, y, allPoint);
    if (isa<arith::ExtSIOp>(op)) // (an i1 sign-extends to -1)
      return op.getOperand(0).getType().isInteger(1) ? topItv() : x;
    if (isa<arith::ExtUIOp>(op))
      return op.getOperand(0).getType().isInteger(1) ? x : topItv();
    if (isa<math::AbsIOp>(op)) {
      Int zero = d.cst(0);
      if (d.mayBeMin(x.lo))
        orOv(ov, d.cmp(P::eq, x.lo, d.cst(INT64_MIN)));
      Int negHi = d.sub(zero, x.hi);
      Int negLo = d.sub(zero, x.lo);
      Int lo = d.select(d.cmp(P::sge, x.lo, zero), x.lo,
                        d.select(d.cmp(P::sle, x.hi, zero), negHi, zero));
      return widened(lo, d.smax(negLo, x.hi), ov, allPoint);
    }
    if (auto c = dyn_cast<arith::CmpIOp>(op))
      return compare(c.getPredicate(), x, y);
    if (isa<arith::SelectOp>(op)) {
      const Itv &c = in[0], &t = in[1], &f = in[2];
      Bool isT = d.cmp(P::eq, c.lo, d.cst(1));
      Bool isF = d.cmp(P::eq, c.hi, d.cst(0));
      Int lo = d.select(isT, t.lo, d.select(isF, f.lo, d.smin(t.lo, f.lo)));
      Int hi = d.select(isT, t.hi, d.select(isF, f.hi, d.smax(t.hi, f.hi)));
      return known(lo, hi, allPoint);
    }
    if (!rt.isInteger(1))
      return topItv(); // bitwise i64 logic, ...
    if (isa<arith::AndIOp>(op))
      return known(d.andI(x.lo, y.lo), d.andI(x.hi, y.hi), allPoint);
    if (isa<arith::OrIOp>(op))
      return known(d.orI(x.lo, y.lo), d.orI(x.hi, y.hi), allPoint);
    if (isa<arith::XOrIOp>(op)) {
      Bool decided = d.band(d.cmp(P::eq, x.lo, x.hi), d.cmp(P::eq, y.lo, y.hi));
      Int v = d.xorI(x.lo, y.lo);
      return known(d.select(decided, v, d.cst(0)),
                   d.select(decided, v, d.cst(1)), allPoint);
    }
    return topItv();
  }
};

} // namespace mlir::attn::maskintervals

#endif // ATTN_ANALYSIS_MASKINTERVALS_H
