//===- MaskAnalysis.cpp - block classification of masks -------------------===//
//
// MaskClassifier runs the shared interval engine (attn/Analysis/
// MaskIntervals.h) with concrete int64 values: the very rules whose arith
// ops the CPU and CUDA kernels emit to classify each (q tile, kv tile) at run
// time, computed here on the host with the dims, params and aux data bound.
// So a tile is Empty / Full / Partial here exactly when the kernel skips it /
// runs it without the mask / runs it with the per-element mask.
//
// The concrete domain checks every i64 operation for overflow (the engine
// then widens the interval to the whole i64 range, as the kernel's checks
// do where they cannot be proved unnecessary), so it has no undefined
// behaviour whatever the params.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis/MaskAnalysis.h"
#include "attn/Analysis/MaskIntervals.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "llvm/ADT/STLExtras.h"
#include <algorithm>

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

int64_t wrapAdd(int64_t a, int64_t b) {
  return int64_t(uint64_t(a) + uint64_t(b));
}
int64_t wrapSub(int64_t a, int64_t b) {
  return int64_t(uint64_t(a) - uint64_t(b));
}
int64_t wrapMul(int64_t a, int64_t b) {
  return int64_t(uint64_t(a) * uint64_t(b));
}

/// One aux tensor, widened to int64.
struct AuxData {
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
};

/// The engine's domain on the host: int64 values, with the i64 semantics of
/// the kernel's arith ops (wrapping; the engine never divides by 0 or
/// MIN by -1).
struct HostDomain {
  using Int = int64_t;
  using Bool = bool;
  const DimBinding *dims = nullptr;
  const std::map<std::string, ScalarValue> *params = nullptr;
  /// Aux data by input name (i32 tensors only: what the kernel scans).
  std::map<std::string, AuxData> aux;

  Int cst(int64_t c) { return c; }
  Int add(Int x, Int y) { return wrapAdd(x, y); }
  Int sub(Int x, Int y) { return wrapSub(x, y); }
  Int mul(Int x, Int y) { return wrapMul(x, y); }
  Int smin(Int x, Int y) { return std::min(x, y); }
  Int smax(Int x, Int y) { return std::max(x, y); }
  Int floordiv(Int a, Int b) {
    int64_t q = a / b, r = a % b;
    if (r != 0 && ((r < 0) != (b < 0)))
      --q;
    return q;
  }
  Int select(Bool c, Int x, Int y) { return c ? x : y; }
  Int zext(Bool c) { return c ? 1 : 0; }
  Int andI(Int x, Int y) { return x & y; }
  Int orI(Int x, Int y) { return x | y; }
  Int xorI(Int x, Int y) { return x ^ y; }
  Bool cmp(arith::CmpIPredicate p, Int x, Int y) {
    using P = arith::CmpIPredicate;
    switch (p) {
    case P::eq:
      return x == y;
    case P::ne:
      return x != y;
    case P::slt:
      return x < y;
    case P::sle:
      return x <= y;
    case P::sgt:
      return x > y;
    case P::sge:
      return x >= y;
    case P::ult:
      return uint64_t(x) < uint64_t(y);
    case P::ule:
      return uint64_t(x) <= uint64_t(y);
    case P::ugt:
      return uint64_t(x) > uint64_t(y);
    case P::uge:
      return uint64_t(x) >= uint64_t(y);
    }
    return false;
  }
  Bool band(Bool x, Bool y) { return x && y; }
  Bool bor(Bool x, Bool y) { return x || y; }
  Bool bnot(Bool x) { return !x; }
  Bool bfalse() { return false; }
  bool mayOverflowAdd(Int, Int) { return true; }
  bool mayOverflowSub(Int, Int) { return true; }
  bool mayOverflowMul(Int, Int) { return true; }
  bool mayBeMin(Int) { return true; }
  Bool addOverflowed(Int x, Int y, Int) {
    int64_t r;
    return __builtin_add_overflow(x, y, &r);
  }
  Bool subOverflowed(Int x, Int y, Int) {
    int64_t r;
    return __builtin_sub_overflow(x, y, &r);
  }
  Bool mulOverflowed(Int x, Int y) {
    int64_t r;
    return __builtin_mul_overflow(x, y, &r);
  }
  void at(Operation *) {}
  Int markIndex(Int x) { return x; }
  std::optional<Int> dim(StringRef name) {
    auto it = dims->find(name.str());
    if (it == dims->end())
      return std::nullopt;
    return it->second;
  }
  std::optional<Int> param(StringRef name) {
    auto it = params->find(name.str());
    if (it == params->end() || !it->second.isInt)
      return std::nullopt;
    return it->second.i;
  }
  bool hasAux(LoadOp load) {
    auto it = aux.find(load.getInput().str());
    return it != aux.end() &&
           it->second.shape.size() == load.getIndices().size();
  }
  Int auxSize(LoadOp load, unsigned d) {
    return aux.at(load.getInput().str()).shape[d];
  }
  std::pair<Int, Int> scan(LoadOp load, Bool doScan, ArrayRef<Int> lo,
                           ArrayRef<Int> hi) {
    if (!doScan)
      return {INT32_MIN, INT32_MAX};
    const AuxData &d = aux.at(load.getInput().str());
    size_t rank = lo.size();
    std::vector<int64_t> idx(lo.begin(), lo.end());
    int64_t mn = INT32_MAX, mx = INT32_MIN;
    while (true) {
      int64_t flat = 0;
      for (size_t k = 0; k < rank; ++k)
        flat = flat * d.shape[k] + idx[k];
      mn = std::min(mn, d.values[flat]);
      mx = std::max(mx, d.values[flat]);
      bool done = true;
      for (size_t k = rank; k-- > 0;) {
        if (idx[k] < hi[k]) {
          ++idx[k];
          done = false;
          break;
        }
        idx[k] = lo[k];
      }
      if (done)
        break;
    }
    return {mn, mx};
  }
};

} // namespace

struct MaskClassifier::Impl {
  bool dense = false;
  bool broken = false; ///< not a one-block, 4-argument region: Partial
  Region *mask = nullptr;
  std::vector<std::string> unknownOps;
  DimBinding dims;
  std::map<std::string, ScalarValue> params;
  HostDomain domain;
  std::optional<maskintervals::Engine<HostDomain>> engine;
};

MaskClassifier::MaskClassifier(AttentionOp att, const DimBinding &dims,
                               const std::map<std::string, ScalarValue> &params,
                               const std::map<std::string, HostArray> *aux)
    : impl(std::make_unique<Impl>()) {
  Impl &m = *impl;
  Region &region = att.getMask();
  if (region.empty()) {
    m.dense = true;
    return;
  }
  if (!region.hasOneBlock() || region.front().getNumArguments() != 4 ||
      !isa<YieldOp>(region.front().getTerminator()) ||
      region.front().getTerminator()->getNumOperands() != 1) {
    m.broken = true;
    return;
  }
  m.mask = &region;
  // Copies: the caller's maps need not outlive the classifier.
  m.dims = dims;
  m.params = params;
  m.domain.dims = &m.dims;
  m.domain.params = &m.params;
  for (Operation &op : region.front().without_terminator()) {
    if (!maskintervals::isSupported(&op) ||
        llvm::any_of(op.getResultTypes(),
                     [](Type t) { return !t.isSignlessInteger(); })) {
      std::string name = op.getName().getStringRef().str();
      if (!llvm::is_contained(m.unknownOps, name))
        m.unknownOps.push_back(name);
    }
    auto load = dyn_cast<LoadOp>(op);
    if (!load || !aux)
      continue;
    std::string name = load.getInput().str();
    auto it = aux->find(name);
    if (it == aux->end() || it->second.dtype != ::attn::DType::I32 ||
        m.domain.aux.count(name))
      continue;
    AuxData d;
    d.shape = it->second.shape;
    int64_t n = it->second.numel();
    d.values.resize(n);
    for (int64_t e = 0; e < n; ++e)
      d.values[e] = static_cast<int64_t>(it->second.getDouble(e));
    m.domain.aux.emplace(name, std::move(d));
  }
  m.engine.emplace(m.domain);
}

MaskClassifier::~MaskClassifier() = default;

bool MaskClassifier::isDense() const { return impl->dense; }

const std::vector<std::string> &MaskClassifier::unknownOps() const {
  return impl->unknownOps;
}

BlockClass MaskClassifier::classify(int64_t b, int64_t h, int64_t q0,
                                    int64_t q1, int64_t k0, int64_t k1) {
  if (q0 >= q1 || k0 >= k1)
    return BlockClass::Empty;
  if (impl->dense)
    return BlockClass::Full;
  if (impl->broken)
    return BlockClass::Partial;
  auto [lo, hi] = impl->engine->run(*impl->mask, b, h, q0, q1 - 1, k0, k1 - 1);
  if (hi == 0)
    return BlockClass::Empty;
  if (lo == 1)
    return BlockClass::Full;
  return BlockClass::Partial;
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
