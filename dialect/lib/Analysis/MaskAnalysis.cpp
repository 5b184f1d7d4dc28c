//===- MaskAnalysis.cpp - block classification of masks -------------------===//
//
// The mask region is flattened once into steps over numbered slots (like the
// reference evaluator's Program, but over abstract values). Steps that depend
// on no index argument are evaluated once, at construction; classify() runs
// only the rest.
//
// Abstract value (AV): an interval [lo, hi] of i64 where -2^62 / 2^62 stand
// for "unbounded" (a bound that would pass them saturates; arithmetic on an
// unbounded value gives top, since its concrete value might have wrapped).
// When `aff` is set the value is, for every element of the tile, exactly
// cq * q_idx + ck * kv_idx + c0 (no wrap-around: its range over the tile is
// within +-2^62), and [lo, hi] is that form's exact range over the tile.
// Constants are affine forms with cq = ck = 0. i1 values are [0,0] (false),
// [1,1] (true) or [0,1] (unknown).
//
// Soundness argument, per op: each transfer function returns a set that
// contains the concrete result for every element (q, kv) of the tile, given
// operands that contain theirs; affine forms are used only where they are
// exact. So a yielded [1,1] means every element is visible (Full), [0,0]
// that none is (Empty).
//
// Splitting: intervals lose correlations a split recovers. When a tile stays
// undecided, it is cut where the first undecided comparison / min / max whose
// operand difference is an affine form of ONE index changes sign (e.g. a
// NATTEN window clamped at the image border), or at a quotient boundary of a
// floordiv/floor-mod of one index (a tile spanning two image rows); the
// halves are classified recursively (Full/Empty only if both halves agree),
// at most 8 levels and 24 evaluations a tile. The halves cover the tile, so
// splitting never affects soundness, and an actually partial tile stops at
// its first partial half.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis/MaskAnalysis.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/TypeSwitch.h"
#include <algorithm>
#include <numeric>
#include <unordered_map>

using namespace mlir;
using namespace mlir::attn;
using ::attn::DimBinding;
using ::attn::HostArray;

const char *mlir::attn::blockClassName(BlockClass c) {
  switch (c) {
  case BlockClass::Empty:
    return "empty";
  case BlockClass::Full:
    return "full";
  case BlockClass::Partial:
    return "partial";
  }
  return "?";
}

namespace {

using i128 = __int128;
constexpr int64_t kInf = int64_t(1) << 62;

/// The tile: q_idx in [qa, qb], kv_idx in [ka, kb] (inclusive).
struct Box {
  int64_t qa, qb, ka, kb;
};

struct AV {
  int64_t lo = -kInf, hi = kInf;
  bool aff = false;
  int64_t cq = 0, ck = 0, c0 = 0;

  bool finite() const { return lo > -kInf && hi < kInf; }
  bool isPoint() const { return lo == hi && finite(); }
};

AV top() { return AV(); }

AV point(i128 v) {
  if (v <= -kInf || v >= kInf)
    return top();
  AV a;
  a.lo = a.hi = int64_t(v);
  a.aff = true;
  a.c0 = int64_t(v);
  return a;
}

/// [lo, hi] as computed in exact arithmetic from finite operands (or from
/// bounds of unbounded ones, for min/max/select): saturates at +-2^62; a value
/// outside i64 may have wrapped concretely, so it is top.
AV range(i128 lo, i128 hi) {
  if (lo < i128(INT64_MIN) || hi > i128(INT64_MAX) || lo >= kInf || hi <= -kInf)
    return top();
  if (lo == hi)
    return point(lo);
  AV a;
  a.lo = int64_t(std::max<i128>(lo, -kInf));
  a.hi = int64_t(std::min<i128>(hi, kInf));
  return a;
}

AV boolAV(int t) { return t == 2 ? range(0, 1) : point(t); }

/// cq * q + ck * kv + c0 over `box`; `fallback` (a sound interval) when the
/// form's coefficients or range leave +-2^62.
AV affine(i128 cq, i128 ck, i128 c0, const Box &box, const AV &fallback) {
  auto small = [](i128 v) { return v > -kInf && v < kInf; };
  if (!small(cq) || !small(ck) || !small(c0))
    return fallback;
  i128 lo = c0 + (cq >= 0 ? cq * box.qa : cq * box.qb) +
            (ck >= 0 ? ck * box.ka : ck * box.kb);
  i128 hi = c0 + (cq >= 0 ? cq * box.qb : cq * box.qa) +
            (ck >= 0 ? ck * box.kb : ck * box.ka);
  if (!small(lo) || !small(hi))
    return fallback;
  AV a;
  a.lo = int64_t(lo);
  a.hi = int64_t(hi);
  a.aff = true;
  a.cq = int64_t(cq);
  a.ck = int64_t(ck);
  a.c0 = int64_t(c0);
  return a;
}

bool sameForm(const AV &a, const AV &b) {
  return a.aff && b.aff && a.cq == b.cq && a.ck == b.ck && a.c0 == b.c0;
}

AV add(const AV &a, const AV &b, const Box &box) {
  if (!a.finite() || !b.finite())
    return top();
  AV iv = range(i128(a.lo) + b.lo, i128(a.hi) + b.hi);
  if (a.aff && b.aff)
    return affine(i128(a.cq) + b.cq, i128(a.ck) + b.ck, i128(a.c0) + b.c0, box,
                  iv);
  return iv;
}

AV sub(const AV &a, const AV &b, const Box &box) {
  if (!a.finite() || !b.finite())
    return top();
  AV iv = range(i128(a.lo) - b.hi, i128(a.hi) - b.lo);
  if (a.aff && b.aff)
    return affine(i128(a.cq) - b.cq, i128(a.ck) - b.ck, i128(a.c0) - b.c0, box,
                  iv);
  return iv;
}

AV neg(const AV &a, const Box &box) { return sub(point(0), a, box); }

AV mul(const AV &a, const AV &b, const Box &box) {
  if (!a.finite() || !b.finite())
    return top();
  i128 c[4] = {i128(a.lo) * b.lo, i128(a.lo) * b.hi, i128(a.hi) * b.lo,
               i128(a.hi) * b.hi};
  AV iv = range(*std::min_element(c, c + 4), *std::max_element(c, c + 4));
  if (a.aff && b.isPoint())
    return affine(i128(a.cq) * b.lo, i128(a.ck) * b.lo, i128(a.c0) * b.lo, box,
                  iv);
  if (b.aff && a.isPoint())
    return affine(i128(b.cq) * a.lo, i128(b.ck) * a.lo, i128(b.c0) * a.lo, box,
                  iv);
  return iv;
}

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b, r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    --q;
  return q;
}

/// floordivsi (floor = true) or divsi: both are monotone in each operand on a
/// divisor range of one sign, so the extremes are at the corners.
AV divide(const AV &a, const AV &n, bool floor, const Box &box) {
  if (!a.finite() || !n.finite() || (n.lo <= 0 && n.hi >= 0))
    return top();
  if (n.isPoint() && n.lo == 1)
    return a;
  if (n.isPoint() && n.lo == -1)
    return neg(a, box);
  auto f = [&](int64_t x, int64_t y) { return floor ? floorDiv(x, y) : x / y; };
  int64_t c[4] = {f(a.lo, n.lo), f(a.lo, n.hi), f(a.hi, n.lo), f(a.hi, n.hi)};
  return range(*std::min_element(c, c + 4), *std::max_element(c, c + 4));
}

/// a - (a floordiv n) * n, the frontend's floor modulo (the result has n's
/// sign, |result| < |n|; this holds even if the concrete product wrapped).
AV floorMod(const AV &a, const AV &n, const Box &box) {
  if (n.lo <= 0 && n.hi >= 0)
    return top(); // a division by zero somewhere: the reference reports it
  if (n.isPoint()) {
    int64_t p = n.lo;
    if (a.finite()) {
      int64_t k = floorDiv(a.lo, p);
      if (k == floorDiv(a.hi, p)) // one period: a - k * p exactly
        return sub(a, point(i128(k) * p), box);
    }
    return p > 0 ? range(0, p - 1) : range(i128(p) + 1, 0);
  }
  if (n.lo > 0) {
    if (a.finite() && a.lo >= 0 && a.hi < n.lo)
      return a;
    return range(0, n.hi >= kInf ? i128(kInf) : i128(n.hi) - 1);
  }
  return range(n.lo <= -kInf ? i128(-kInf) : i128(n.lo) + 1, 0);
}

/// arith.remsi: truncated remainder, sign of the dividend.
AV remS(const AV &a, const AV &n, const Box &box) {
  if (!a.finite() || !n.finite() || (n.lo <= 0 && n.hi >= 0))
    return top();
  int64_t m = std::max(std::abs(n.lo), std::abs(n.hi)); // |n| <= m
  if (n.isPoint() && (a.lo >= 0 || a.hi <= 0)) {
    int64_t p = m, k = a.lo / p;
    if (k == a.hi / p)
      return sub(a, point(i128(k) * p), box);
  }
  if (a.lo >= 0)
    return range(0, std::min<i128>(a.hi, m - 1));
  if (a.hi <= 0)
    return range(std::max<i128>(a.lo, -(m - 1)), 0);
  return range(-(m - 1), m - 1);
}

/// 0 false, 1 true, 2 unknown.
int tri(const AV &a) {
  if (a.lo == 0 && a.hi == 0)
    return 0;
  if (a.lo >= 1 && a.hi <= 1 && a.lo == a.hi)
    return 1;
  return 2;
}

/// Signed a < b (strict) or a <= b.
int lessThan(const AV &a, const AV &b, bool orEqual, const Box &box) {
  AV d = sub(a, b, box); // top when unbounded: then only the raw bounds decide
  if (orEqual) {
    if (a.hi <= b.lo || (d.finite() && d.hi <= 0))
      return 1;
    if (a.lo > b.hi || (d.finite() && d.lo > 0))
      return 0;
  } else {
    if (a.hi < b.lo || (d.finite() && d.hi < 0))
      return 1;
    if (a.lo >= b.hi || (d.finite() && d.lo >= 0))
      return 0;
  }
  return 2;
}

int equal(const AV &a, const AV &b, const Box &box) {
  if (a.isPoint() && b.isPoint())
    return a.lo == b.lo ? 1 : 0;
  if (a.hi < b.lo || b.hi < a.lo)
    return 0;
  AV d = sub(a, b, box);
  if (d.isPoint())
    return d.lo == 0 ? 1 : 0;
  if (d.finite() && (d.lo > 0 || d.hi < 0))
    return 0;
  if (d.aff) {
    // cq*q + ck*kv + c0 == 0 has no integer solution unless gcd | c0.
    int64_t g = std::gcd(d.cq, d.ck);
    if (g > 1 && d.c0 % g != 0)
      return 0;
  }
  return 2;
}

int compare(arith::CmpIPredicate p, const AV &a, const AV &b, const Box &box) {
  using P = arith::CmpIPredicate;
  auto notT = [](int t) { return t == 2 ? 2 : 1 - t; };
  bool nonNeg = a.lo >= 0 && b.lo >= 0; // unsigned order = signed order
  switch (p) {
  case P::eq:
    return equal(a, b, box);
  case P::ne:
    return notT(equal(a, b, box));
  case P::slt:
    return lessThan(a, b, false, box);
  case P::sle:
    return lessThan(a, b, true, box);
  case P::sgt:
    return lessThan(b, a, false, box);
  case P::sge:
    return lessThan(b, a, true, box);
  case P::ult:
    return nonNeg ? lessThan(a, b, false, box) : 2;
  case P::ule:
    return nonNeg ? lessThan(a, b, true, box) : 2;
  case P::ugt:
    return nonNeg ? lessThan(b, a, false, box) : 2;
  case P::uge:
    return nonNeg ? lessThan(b, a, true, box) : 2;
  }
  return 2;
}

AV minMax(const AV &a, const AV &b, bool isMin, const Box &box,
          bool &undecided) {
  int aLeB = lessThan(a, b, true, box); // 1: a <= b everywhere
  int bLeA = lessThan(b, a, true, box);
  undecided = aLeB != 1 && bLeA != 1;
  if (aLeB == 1)
    return isMin ? a : b;
  if (bLeA == 1)
    return isMin ? b : a;
  if (isMin)
    return range(std::min(a.lo, b.lo), std::min(a.hi, b.hi));
  return range(std::max(a.lo, b.lo), std::max(a.hi, b.hi));
}

AV absI(const AV &a, const Box &box) {
  if (!a.finite())
    return top();
  if (a.lo >= 0)
    return a;
  if (a.hi <= 0)
    return neg(a, box);
  return range(0, std::max(-a.lo, a.hi));
}

enum class Kind : uint8_t {
  Const,
  Copy,
  Add,
  Sub,
  Mul,
  FloorDiv,
  DivS,
  RemS,
  FloorMod,
  MinS,
  MaxS,
  AbsI,
  Cmp,
  And,
  Or,
  Xor,
  Select,
  Load,
  Unknown,
};

struct Step {
  Kind kind;
  unsigned result;
  unsigned in[3] = {0, 0, 0};
  arith::CmpIPredicate pred = arith::CmpIPredicate::eq;
  AV constant;         ///< Const, and the top of the result type for Unknown
  int load = -1;       ///< Load: index into Impl::loads
  unsigned width = 64; ///< result int width (narrower results are checked)
};

/// One aux tensor, widened, with its global min/max.
struct AuxData {
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
  int64_t gmin = 0, gmax = 0;
};

struct BoxKeyHash {
  size_t operator()(const std::vector<int64_t> &v) const {
    return llvm::hash_combine_range(v.begin(), v.end());
  }
};

struct LoadInfo {
  int aux = -1; ///< index into Impl::auxData, -1: no data (top)
  std::vector<unsigned> indices;
  std::unordered_map<std::vector<int64_t>, std::pair<int64_t, int64_t>,
                     BoxKeyHash>
      cache;
};

} // namespace

struct MaskClassifier::Impl {
  MaskAnalysisOptions options;
  bool dense = false;
  bool broken = false; ///< the region could not be flattened: always Partial
  std::vector<Step> constSteps, steps;
  std::vector<AV> slots;
  unsigned resultSlot = 0;
  std::vector<LoadInfo> loads;
  std::vector<AuxData> auxData;
  std::vector<std::string> unknownOps;
  Box box{0, 0, 0, 0};

  /// The first undecided comparison (or min/max) met in this evaluation
  /// whose operand difference is an affine form of ONE index: splitting the
  /// tile there decides it in both halves. var: 0 q_idx, 1 kv_idx, -1 none;
  /// the halves are [.., t] and [t + 1, ..].
  struct Split {
    int var = -1;
    int64_t t = 0;
  } split;
  int evals = 0;

  void noteSplit(const AV &a, const AV &b, arith::CmpIPredicate pred);
  void noteQuotientSplit(const AV &a, const AV &n);
  int evaluate(const Box &bx, int64_t b, int64_t h);
  BlockClass classifyBox(const Box &bx, int64_t b, int64_t h, int depth);

  void build(AttentionOp att, const DimBinding &dims,
             const std::map<std::string, ScalarValue> &params,
             const std::map<std::string, HostArray> *aux);
  AV evalLoad(LoadInfo &l);
  void run(const Step &s);
};

static AV topOf(Type t) {
  if (t.isInteger(1))
    return range(0, 1);
  return top();
}

void MaskClassifier::Impl::build(
    AttentionOp att, const DimBinding &dims,
    const std::map<std::string, ScalarValue> &params,
    const std::map<std::string, HostArray> *aux) {
  Region &region = att.getMask();
  if (region.empty()) {
    dense = true;
    return;
  }
  if (!region.hasOneBlock() || region.front().getNumArguments() != 4) {
    broken = true;
    return;
  }
  Block &block = region.front();
  llvm::DenseMap<Value, unsigned> slotOf;
  std::vector<bool> dependent;
  unsigned next = 0;
  for (BlockArgument a : block.getArguments()) {
    slotOf[a] = next++;
    dependent.push_back(true);
  }
  std::map<std::string, int> auxIndex;
  bool haveResult = false;
  for (Operation &op : block) {
    if (auto y = dyn_cast<YieldOp>(op)) {
      if (y.getValues().size() != 1 || !slotOf.count(y.getValues().front())) {
        broken = true;
        return;
      }
      resultSlot = slotOf.lookup(y.getValues().front());
      haveResult = true;
      continue;
    }
    if (op.getNumResults() != 1 || op.getNumRegions() != 0) {
      broken = true;
      return;
    }
    Step s;
    s.result = next++;
    slotOf[op.getResult(0)] = s.result;
    bool dep = false;
    unsigned i = 0;
    for (Value v : op.getOperands()) {
      auto it = slotOf.find(v);
      if (it == slotOf.end()) { // defined outside the region: not flattenable
        broken = true;
        return;
      }
      if (i < 3)
        s.in[i] = it->second;
      ++i;
      dep |= dependent[it->second];
    }
    Type rt = op.getResult(0).getType();
    if (rt.isSignlessInteger())
      s.width = rt.getIntOrFloatBitWidth();
    bool known = true;
    auto markUnknown = [&](Operation *o) {
      known = false;
      s.kind = Kind::Unknown;
      s.constant = topOf(o->getResult(0).getType());
      std::string name = o->getName().getStringRef().str();
      if (!llvm::is_contained(unknownOps, name))
        unknownOps.push_back(name);
    };
    if (!rt.isSignlessInteger() && !isa<LoadOp>(op)) {
      markUnknown(&op); // float values: the analysis does not track them
      dep = false;      // (a top is a top whatever the indices)
    } else {
      llvm::TypeSwitch<Operation *>(&op)
          .Case<arith::ConstantOp>([&](arith::ConstantOp c) {
            s.kind = Kind::Const;
            auto ia = dyn_cast<IntegerAttr>(c.getValue());
            if (!ia)
              return markUnknown(c);
            s.constant = rt.isInteger(1)
                             ? point(ia.getValue().getBoolValue() ? 1 : 0)
                         : ia.getValue().getSignificantBits() <= 64
                             ? point(ia.getValue().getSExtValue())
                             : top();
          })
          .Case<DimOp>([&](DimOp d) {
            s.kind = Kind::Const;
            auto it = dims.find(d.getName().str());
            s.constant = it == dims.end() ? top() : point(it->second);
          })
          .Case<GetParamOp>([&](GetParamOp g) {
            s.kind = Kind::Const;
            auto it = params.find(g.getParam().str());
            s.constant = it == params.end() || !it->second.isInt
                             ? top()
                             : point(it->second.i);
          })
          .Case<arith::AddIOp>([&](auto) { s.kind = Kind::Add; })
          .Case<arith::SubIOp>([&](arith::SubIOp o) {
            s.kind = Kind::Sub;
            // a - (a floordiv n) * n: the frontend's floor modulo.
            auto m = o.getRhs().getDefiningOp<arith::MulIOp>();
            if (!m)
              return;
            for (int side = 0; side < 2; ++side) {
              Value fdv = side ? m.getRhs() : m.getLhs();
              Value n = side ? m.getLhs() : m.getRhs();
              auto fd = fdv.getDefiningOp<arith::FloorDivSIOp>();
              if (fd && fd.getLhs() == o.getLhs() && fd.getRhs() == n &&
                  slotOf.count(n)) {
                s.kind = Kind::FloorMod;
                s.in[1] = slotOf.lookup(n);
                return;
              }
            }
          })
          .Case<arith::MulIOp>([&](auto) { s.kind = Kind::Mul; })
          .Case<arith::FloorDivSIOp>([&](auto) { s.kind = Kind::FloorDiv; })
          .Case<arith::DivSIOp>([&](auto) { s.kind = Kind::DivS; })
          .Case<arith::RemSIOp>([&](auto) { s.kind = Kind::RemS; })
          .Case<arith::MinSIOp>([&](auto) { s.kind = Kind::MinS; })
          .Case<arith::MaxSIOp>([&](auto) { s.kind = Kind::MaxS; })
          .Case<math::AbsIOp>([&](auto) { s.kind = Kind::AbsI; })
          .Case<arith::CmpIOp>([&](arith::CmpIOp c) {
            s.kind = Kind::Cmp;
            s.pred = c.getPredicate();
          })
          .Case<arith::AndIOp>([&](auto) { s.kind = Kind::And; })
          .Case<arith::OrIOp>([&](auto) { s.kind = Kind::Or; })
          .Case<arith::XOrIOp>([&](auto) { s.kind = Kind::Xor; })
          .Case<arith::SelectOp>([&](auto) { s.kind = Kind::Select; })
          .Case<arith::ExtSIOp>([&](auto) { s.kind = Kind::Copy; })
          .Case<LoadOp>([&](LoadOp l) {
            s.kind = Kind::Load;
            LoadInfo info;
            for (Value v : l.getIndices())
              info.indices.push_back(slotOf.lookup(v));
            std::string name = l.getInput().str();
            const HostArray *data = nullptr;
            if (aux && rt.isSignlessInteger()) {
              auto it = aux->find(name);
              if (it != aux->end() &&
                  it->second.shape.size() == info.indices.size())
                data = &it->second;
            }
            if (data) {
              auto [it, inserted] = auxIndex.emplace(name, auxData.size());
              if (inserted) {
                AuxData d;
                d.shape = data->shape;
                int64_t n = data->numel();
                d.values.resize(n);
                for (int64_t e = 0; e < n; ++e)
                  d.values[e] = static_cast<int64_t>(data->getDouble(e));
                if (n) {
                  auto [mn, mx] =
                      std::minmax_element(d.values.begin(), d.values.end());
                  d.gmin = *mn;
                  d.gmax = *mx;
                }
                auxData.push_back(std::move(d));
              }
              info.aux = it->second;
            }
            s.load = loads.size();
            loads.push_back(std::move(info));
          })
          .Default([&](Operation *o) { markUnknown(o); });
    }
    if (!known)
      dep = false;
    dependent.push_back(dep);
    (dep ? steps : constSteps).push_back(s);
  }
  if (!haveResult) {
    broken = true;
    return;
  }
  slots.assign(next, top());
  // Everything independent of the block arguments is evaluated once (the box
  // is irrelevant to those steps: their operands hold no index).
  for (const Step &s : constSteps)
    run(s);
}

AV MaskClassifier::Impl::evalLoad(LoadInfo &l) {
  if (l.aux < 0)
    return top();
  const AuxData &d = auxData[l.aux];
  std::vector<int64_t> key;
  key.reserve(2 * l.indices.size());
  i128 count = 1;
  for (size_t k = 0; k < l.indices.size(); ++k) {
    const AV &ix = slots[l.indices[k]];
    int64_t lo = std::max<int64_t>(ix.lo, 0);
    int64_t hi = std::min<int64_t>(ix.hi, d.shape[k] - 1);
    if (lo > hi) // entirely out of range: the reference reports an error
      return top();
    key.push_back(lo);
    key.push_back(hi);
    count *= i128(hi - lo + 1);
  }
  if (count > options.maxScan)
    return range(d.gmin, d.gmax);
  auto it = l.cache.find(key);
  if (it != l.cache.end())
    return range(it->second.first, it->second.second);
  // Scan the box in C order.
  size_t rank = l.indices.size();
  std::vector<int64_t> idx(rank);
  for (size_t k = 0; k < rank; ++k)
    idx[k] = key[2 * k];
  int64_t mn = INT64_MAX, mx = INT64_MIN;
  while (true) {
    int64_t flat = 0;
    for (size_t k = 0; k < rank; ++k)
      flat = flat * d.shape[k] + idx[k];
    mn = std::min(mn, d.values[flat]);
    mx = std::max(mx, d.values[flat]);
    bool done = true;
    for (size_t k = rank; k-- > 0;) {
      if (idx[k] < key[2 * k + 1]) {
        ++idx[k];
        done = false;
        break;
      }
      idx[k] = key[2 * k];
    }
    if (done)
      break;
  }
  if (l.cache.size() >= (size_t(1) << 16))
    l.cache.clear();
  l.cache.emplace(std::move(key), std::make_pair(mn, mx));
  return range(mn, mx);
}

void MaskClassifier::Impl::run(const Step &s) {
  const AV &a = slots[s.in[0]], &b = slots[s.in[1]], &c = slots[s.in[2]];
  AV r;
  switch (s.kind) {
  case Kind::Const:
  case Kind::Unknown:
    r = s.constant;
    break;
  case Kind::Copy:
    r = a;
    break;
  case Kind::Add:
    r = add(a, b, box);
    break;
  case Kind::Sub:
    r = sub(a, b, box);
    break;
  case Kind::Mul:
    r = mul(a, b, box);
    break;
  case Kind::FloorDiv:
    r = divide(a, b, true, box);
    if (split.var < 0 && !r.isPoint())
      noteQuotientSplit(a, b);
    break;
  case Kind::DivS:
    r = divide(a, b, false, box);
    break;
  case Kind::RemS:
    r = remS(a, b, box);
    break;
  case Kind::FloorMod:
    r = floorMod(a, b, box);
    if (split.var < 0 && !r.aff)
      noteQuotientSplit(a, b);
    break;
  case Kind::MinS:
  case Kind::MaxS: {
    bool undecided;
    r = minMax(a, b, s.kind == Kind::MinS, box, undecided);
    if (undecided && split.var < 0)
      noteSplit(a, b, arith::CmpIPredicate::sle);
    break;
  }
  case Kind::AbsI:
    r = absI(a, box);
    break;
  case Kind::Cmp:
    r = boolAV(compare(s.pred, a, b, box));
    if (split.var < 0 && !r.isPoint())
      noteSplit(a, b, s.pred);
    break;
  case Kind::And:
  case Kind::Or:
  case Kind::Xor:
    if (s.width == 1) {
      int x = tri(a), y = tri(b);
      int t;
      if (s.kind == Kind::And)
        t = (x == 0 || y == 0) ? 0 : (x == 1 && y == 1) ? 1 : 2;
      else if (s.kind == Kind::Or)
        t = (x == 1 || y == 1) ? 1 : (x == 0 && y == 0) ? 0 : 2;
      else
        t = (x == 2 || y == 2) ? 2 : (x ^ y);
      r = boolAV(t);
    } else if (a.isPoint() && b.isPoint()) {
      r = point(s.kind == Kind::And  ? (a.lo & b.lo)
                : s.kind == Kind::Or ? (a.lo | b.lo)
                                     : (a.lo ^ b.lo));
    } else {
      r = top();
    }
    break;
  case Kind::Select: {
    int t = tri(a);
    if (t == 1)
      r = b;
    else if (t == 0)
      r = c;
    else if (sameForm(b, c))
      r = b;
    else
      r = range(std::min(b.lo, c.lo), std::max(b.hi, c.hi));
    break;
  }
  case Kind::Load:
    r = evalLoad(loads[s.load]);
    break;
  }
  if (s.width == 1) {
    if (r.lo < 0 || r.hi > 1) // cannot happen for well-typed IR; stay sound
      r = range(0, 1);
  } else if (s.width < 64) {
    int64_t lim = int64_t(1) << (s.width - 1);
    if (r.lo < -lim || r.hi > lim - 1)
      r = top(); // would wrap at this width
  }
  slots[s.result] = r;
}

MaskClassifier::MaskClassifier(AttentionOp att, const DimBinding &dims,
                               const std::map<std::string, ScalarValue> &params,
                               const std::map<std::string, HostArray> *aux,
                               MaskAnalysisOptions options)
    : impl(std::make_unique<Impl>()) {
  impl->options = options;
  impl->build(att, dims, params, aux);
}

MaskClassifier::~MaskClassifier() = default;

bool MaskClassifier::isDense() const { return impl->dense; }

const std::vector<std::string> &MaskClassifier::unknownOps() const {
  return impl->unknownOps;
}

static int64_t floorDiv128(i128 a, i128 b) {
  i128 q = a / b, r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    --q;
  return int64_t(q);
}

void MaskClassifier::Impl::noteSplit(const AV &a, const AV &b,
                                     arith::CmpIPredicate pred) {
  AV d = sub(a, b, box);
  if (!d.aff)
    return;
  // An index whose range is one value is a constant here.
  i128 cq = d.cq, ck = d.ck, c0 = d.c0;
  if (box.qa == box.qb) {
    c0 += cq * box.qa;
    cq = 0;
  }
  if (box.ka == box.kb) {
    c0 += ck * box.ka;
    ck = 0;
  }
  if ((cq != 0) == (ck != 0))
    return;
  // The predicate as "sgn * d <= theta"; eq/ne split at their first
  // transition (the next level splits again if needed).
  using P = arith::CmpIPredicate;
  int sgn = 1;
  int64_t theta = 0;
  switch (pred) {
  case P::slt:
  case P::ult:
    theta = -1;
    break;
  case P::sgt:
  case P::ugt:
    sgn = -1;
    theta = -1;
    break;
  case P::sge:
  case P::uge:
    sgn = -1;
    break;
  case P::eq:
  case P::ne:
    // d == 0 splits into d <= -1 | d >= 0 when that is inside the range,
    // else into d <= 0 | d >= 1.
    theta = d.lo <= -1 ? -1 : 0;
    break;
  default:
    break;
  }
  int var = cq != 0 ? 0 : 1;
  i128 c = sgn * (var == 0 ? cq : ck), e = sgn * c0;
  int64_t xa = var == 0 ? box.qa : box.ka, xb = var == 0 ? box.qb : box.kb;
  if (xa >= xb)
    return;
  // c * x + e <= theta: x <= floor((theta - e) / c) for c > 0, x >= ceil(..)
  // for c < 0 (the halves are then swapped, which does not matter).
  int64_t t = c > 0 ? floorDiv128(theta - e, c)
                    : -floorDiv128(theta - e, -c) - 1; // ceil(..) - 1
  t = std::clamp<int64_t>(t, xa, xb - 1);
  split = Split{var, t};
}

/// a floordiv n (or its floor modulo) spans several quotients: split where
/// `a` crosses the quotient boundary nearest the middle of its range.
void MaskClassifier::Impl::noteQuotientSplit(const AV &a, const AV &n) {
  if (!a.aff || !n.isPoint() || n.lo <= 0)
    return;
  int64_t p = n.lo;
  int64_t kLo = floorDiv(a.lo, p), kHi = floorDiv(a.hi, p);
  if (kLo == kHi)
    return;
  int64_t mid = a.lo + (a.hi - a.lo) / 2;
  int64_t k = std::clamp<int64_t>(floorDiv(mid, p) + 1, kLo + 1, kHi);
  // a <= k * p - 1 | a >= k * p
  noteSplit(a, point(i128(k) * p), arith::CmpIPredicate::slt);
}

/// Runs the program over `bx`: 0 / 1 / 2 (unknown).
int MaskClassifier::Impl::evaluate(const Box &bx, int64_t b, int64_t h) {
  ++evals;
  box = bx;
  split = Split();
  slots[0] = point(b);
  slots[1] = point(h);
  slots[2] = affine(1, 0, 0, box, range(bx.qa, bx.qb));
  slots[3] = affine(0, 1, 0, box, range(bx.ka, bx.kb));
  for (const Step &s : steps)
    run(s);
  return tri(slots[resultSlot]);
}

/// Evaluates the tile; when undecided, splits it at the first undecided
/// one-index comparison and classifies the halves (bounded: a few levels and
/// evaluations per tile, so an actually partial tile costs little more).
BlockClass MaskClassifier::Impl::classifyBox(const Box &bx, int64_t b,
                                             int64_t h, int depth) {
  constexpr int kMaxDepth = 8, kMaxEvals = 24;
  int t = evaluate(bx, b, h);
  if (t == 0)
    return BlockClass::Empty;
  if (t == 1)
    return BlockClass::Full;
  if (split.var < 0 || depth >= kMaxDepth || evals >= kMaxEvals)
    return BlockClass::Partial;
  Split sp = split;
  Box lo = bx, hi = bx;
  if (sp.var == 0) {
    lo.qb = sp.t;
    hi.qa = sp.t + 1;
  } else {
    lo.kb = sp.t;
    hi.ka = sp.t + 1;
  }
  BlockClass c1 = classifyBox(lo, b, h, depth + 1);
  if (c1 == BlockClass::Partial)
    return c1;
  BlockClass c2 = classifyBox(hi, b, h, depth + 1);
  return c1 == c2 ? c1 : BlockClass::Partial;
}

BlockClass MaskClassifier::classify(int64_t b, int64_t h, int64_t q0,
                                    int64_t q1, int64_t k0, int64_t k1) {
  if (q0 >= q1 || k0 >= k1)
    return BlockClass::Empty;
  if (impl->dense)
    return BlockClass::Full;
  if (impl->broken)
    return BlockClass::Partial;
  impl->evals = 0;
  return impl->classifyBox(Box{q0, q1 - 1, k0, k1 - 1}, b, h, 0);
}

BlockClass
mlir::attn::classifyBlock(AttentionOp att, const DimBinding &dims,
                          const std::map<std::string, ScalarValue> &params,
                          const std::map<std::string, HostArray> *aux,
                          int64_t b, int64_t h, int64_t q0, int64_t q1,
                          int64_t k0, int64_t k1) {
  MaskClassifier c(att, dims, params, aux);
  return c.classify(b, h, q0, q1, k0, k1);
}

BlockStats mlir::attn::classifyTiles(MaskClassifier &classifier, int64_t N,
                                     int64_t M, int64_t b, int64_t h,
                                     int64_t tileQ, int64_t tileKv,
                                     std::vector<BlockClass> *classes) {
  BlockStats st;
  if (tileQ <= 0 || tileKv <= 0)
    return st;
  st.numQTiles = (N + tileQ - 1) / tileQ;
  st.numKvTiles = (M + tileKv - 1) / tileKv;
  if (classes)
    classes->assign(st.total(), BlockClass::Partial);
  for (int64_t i = 0; i < st.numQTiles; ++i) {
    int64_t q0 = i * tileQ, q1 = std::min(N, q0 + tileQ);
    for (int64_t j = 0; j < st.numKvTiles; ++j) {
      int64_t k0 = j * tileKv, k1 = std::min(M, k0 + tileKv);
      BlockClass c = classifier.classify(b, h, q0, q1, k0, k1);
      (c == BlockClass::Full    ? st.full
       : c == BlockClass::Empty ? st.empty
                                : st.partial)++;
      if (classes)
        (*classes)[i * st.numKvTiles + j] = c;
    }
  }
  return st;
}

BlockStats
mlir::attn::classifyTiles(AttentionOp att, const DimBinding &dims,
                          const std::map<std::string, ScalarValue> &params,
                          const std::map<std::string, HostArray> *aux,
                          int64_t b, int64_t h, int64_t tileQ, int64_t tileKv,
                          std::vector<BlockClass> *classes) {
  MaskClassifier c(att, dims, params, aux);
  auto get = [&](const char *n) {
    auto it = dims.find(n);
    return it == dims.end() ? int64_t(0) : it->second;
  };
  return classifyTiles(c, get("N"), get("M"), b, h, tileQ, tileKv, classes);
}
