//===- HeadDimLanes.cpp - decode micro-kernels, head dim in lanes ---------===//
//
// See HeadDimLanes.h. Register budget (32 zmm / 16 ymm): Q·Kᵀ keeps at most
// 16 accumulators (rows x queries), P·V at most 16 (queries x value
// vectors), so both fit beside their loads on AVX-512 and spill little on
// AVX2, whose vl = 8 allows two queries at most.
//
//===----------------------------------------------------------------------===//

#include "HeadDimLanes.h"
#include "attn/Conversion/KernelScaffold.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::attn::cpu;

namespace {
/// Accumulators a micro-kernel keeps live.
constexpr int64_t kAccumulators = 16;
} // namespace

Value HeadDimLanes::cidx(int64_t v) {
  return arith::ConstantIndexOp::create(b, v);
}

VectorType HeadDimLanes::vf32() {
  return VectorType::get({vl}, b.getF32Type());
}

Value HeadDimLanes::zeros() {
  return arith::ConstantOp::create(b, vf32(),
                                   DenseElementsAttr::get(vf32(), 0.0f));
}

scf::ForOp
HeadDimLanes::loop(Value lb, Value ub, Value step, ValueRange init,
                   function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  return buildFor(b, lb, ub, step, init, body);
}

Value HeadDimLanes::loadRow(const RowRef &row, Value d, Value count) {
  Type elt = cast<MemRefType>(row.mem.getType()).getElementType();
  auto type = VectorType::get({vl}, elt);
  SmallVector<Value, 4> idx(row.idx.begin(), row.idx.end());
  idx.push_back(d);
  Value x;
  if (count && !elt.isF32()) {
    // Element by element: a masked load of a bf16 vector on a CPU without
    // AVX512-BF16 is scalarized by LLVM, which rounds each promoted lane
    // back through __truncsfbf2, a libgcc/compiler-rt call the kernel
    // libraries do not link (the decode kernels failed to load on AVX2 and
    // skylake-avx512). This is only the D % vl columns of a row.
    Value n = arith::MinUIOp::create(b, count, cidx(vl));
    return loop(cidx(0), n, cidx(1), {zeros()},
                [&](Value i, ValueRange acc) -> SmallVector<Value> {
                  SmallVector<Value, 4> at(row.idx.begin(), row.idx.end());
                  at.push_back(arith::AddIOp::create(b, d, i));
                  Value raw = memref::LoadOp::create(b, row.mem, at);
                  Value e = arith::ExtFOp::create(b, b.getF32Type(), raw);
                  return {vector::InsertOp::create(b, e, acc[0], i)};
                })
        .getResult(0);
  }
  if (count) {
    // create_mask clamps: count >= vl is a full vector.
    Value mask = vector::CreateMaskOp::create(
        b, VectorType::get({vl}, b.getI1Type()), ValueRange{count});
    Value pass = arith::ConstantOp::create(
        b, type, DenseElementsAttr::get(type, b.getZeroAttr(elt)));
    x = vector::MaskedLoadOp::create(b, type, row.mem, idx, mask, pass);
  } else {
    x = vector::LoadOp::create(b, type, row.mem, idx);
  }
  return elt.isF32() ? x : Value(arith::ExtFOp::create(b, vf32(), x));
}

SmallVector<Value> HeadDimLanes::scores(Value Qr, int64_t gn,
                                        ArrayRef<RowRef> rows, Value D) {
  int64_t sb = std::max<int64_t>(1, kAccumulators / gn);
  Value rem = arith::RemUIOp::create(b, D, cidx(vl));
  Value full = arith::SubIOp::create(b, D, rem);
  Value hasTail =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ne, rem, cidx(0));
  SmallVector<Value> out;
  for (size_t r0 = 0; r0 < rows.size(); r0 += sb) {
    int64_t nr = std::min<int64_t>(sb, rows.size() - r0);
    // acc[r * gn + g] += K_r[d ..] * Qr[g, d ..]: each K vector feeds gn
    // FMAs, each Q vector nr.
    auto step = [&](Value d, ValueRange acc, Value count) {
      SmallVector<Value> qv;
      for (int64_t g = 0; g < gn; ++g)
        qv.push_back(
            vector::LoadOp::create(b, vf32(), Qr, ValueRange{cidx(g), d}));
      SmallVector<Value> next;
      for (int64_t r = 0; r < nr; ++r) {
        Value kv = loadRow(rows[r0 + r], d, count);
        for (int64_t g = 0; g < gn; ++g)
          next.push_back(vector::FMAOp::create(b, kv, qv[g], acc[r * gn + g]));
      }
      return next;
    };
    SmallVector<Value> init(nr * gn, zeros());
    auto body = loop(cidx(0), full, cidx(vl), init,
                     [&](Value d, ValueRange acc) { return step(d, acc, {}); });
    // D % vl columns: K masked (Qr is zero there, K's next bytes may not be
    // numbers).
    SmallVector<Type> types(nr * gn, vf32());
    auto tail = scf::IfOp::create(b, types, hasTail, true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&tail.getThenRegion().front());
      scf::YieldOp::create(b, step(full, body.getResults(), rem));
      b.setInsertionPointToStart(&tail.getElseRegion().front());
      scf::YieldOp::create(b, body.getResults());
    }
    // One vector per row, lane g its query's score: gn divides vl, so a
    // row's sums share a vector of `sums`.
    SmallVector<Value> sums;
    SmallVector<int64_t> lanes;
    sumLanes(SmallVector<Value>(tail.getResults()), sums, lanes);
    for (int64_t r = 0; r < nr; ++r) {
      SmallVector<int64_t> mask(vl, vl); // lane 0 of zeros()
      for (int64_t g = 0; g < gn; ++g)
        mask[g] = lanes[r * gn + g];
      out.push_back(
          vector::ShuffleOp::create(b, sums[r * gn / vl], zeros(), mask));
    }
  }
  return out;
}

/// A transposing tree: each level adds the lower and upper halves of every
/// segment of two vectors into one vector with twice the segments (two
/// shuffles and an add per pair), so vl vectors end as one vector of their
/// vl sums in 3 (vl - 1) operations, where one horizontal sum each took
/// 2 log2(vl) and an insert (about 9 per key row and query at vl = 16).
void HeadDimLanes::sumLanes(ArrayRef<Value> xs, SmallVector<Value> &sums,
                            SmallVector<int64_t> &lanes) {
  lanes.assign(xs.size(), 0);
  for (size_t first = 0; first < xs.size(); first += vl) {
    // vl vectors (zeros past the end); source[v][t]: the x whose partial
    // sums fill segment t of vector v.
    SmallVector<Value> vecs;
    SmallVector<SmallVector<int64_t>> source;
    for (int64_t i = 0; i < vl; ++i) {
      size_t x = first + i;
      vecs.push_back(x < xs.size() ? xs[x] : zeros());
      source.push_back({x < xs.size() ? int64_t(x) : -1});
    }
    for (int64_t seg = vl; seg > 1; seg /= 2) {
      int64_t half = seg / 2;
      SmallVector<int64_t> lo, hi;
      for (int64_t t = 0; t < vl / seg; ++t)
        for (int64_t from : {int64_t(0), vl})
          for (int64_t u = 0; u < half; ++u) {
            lo.push_back(from + t * seg + u);
            hi.push_back(from + t * seg + half + u);
          }
      SmallVector<Value> next;
      SmallVector<SmallVector<int64_t>> nextSource;
      for (size_t v = 0; v + 1 < vecs.size(); v += 2) {
        Value a = vecs[v], c = vecs[v + 1];
        next.push_back(
            arith::AddFOp::create(b, vector::ShuffleOp::create(b, a, c, lo),
                                  vector::ShuffleOp::create(b, a, c, hi)));
        SmallVector<int64_t> s;
        for (size_t t = 0; t < source[v].size(); ++t)
          s.append({source[v][t], source[v + 1][t]});
        nextSource.push_back(std::move(s));
      }
      vecs = std::move(next);
      source = std::move(nextSource);
    }
    sums.push_back(vecs.front());
    for (int64_t p = 0; p < vl; ++p)
      if (source.front()[p] >= 0)
        lanes[source.front()[p]] = p;
  }
}

void HeadDimLanes::accumulatePV(Value Or, Value St, Value alpha, int64_t gn,
                                Value kn, Value Dv,
                                function_ref<RowRef(Value j)> vRow,
                                bool rescale) {
  int64_t nd = std::clamp<int64_t>(kAccumulators / gn, 1, 8);
  SmallVector<Value> scales;
  if (rescale)
    for (int64_t g = 0; g < gn; ++g)
      scales.push_back(vector::BroadcastOp::create(
          b, vf32(), memref::LoadOp::create(b, alpha, ValueRange{cidx(g)})));
  // Value columns [dvb, dvb + n * vl): acc[g * n + c] += P[j, g] * V_j[c]
  // over the tile's rows, then once into Or. `masked`: V's columns past Dv
  // read as 0.
  auto block = [&](Value dvb, int64_t n, bool masked) {
    SmallVector<Value> cols;
    for (int64_t c = 0; c < n; ++c)
      cols.push_back(arith::AddIOp::create(b, dvb, cidx(c * vl)));
    SmallVector<Value> init(gn * n, zeros());
    auto rowsLoop =
        loop(cidx(0), kn, cidx(1), init, [&](Value j, ValueRange acc) {
          RowRef row = vRow(j);
          SmallVector<Value> p;
          for (int64_t g = 0; g < gn; ++g)
            p.push_back(vector::BroadcastOp::create(
                b, vf32(),
                memref::LoadOp::create(b, St, ValueRange{j, cidx(g)})));
          SmallVector<Value> next(acc.begin(), acc.end());
          for (int64_t c = 0; c < n; ++c) {
            Value vv =
                loadRow(row, cols[c],
                        masked ? Value(arith::SubIOp::create(b, Dv, cols[c]))
                               : Value());
            for (int64_t g = 0; g < gn; ++g)
              next[g * n + c] =
                  vector::FMAOp::create(b, p[g], vv, acc[g * n + c]);
          }
          return next;
        });
    for (int64_t g = 0; g < gn; ++g)
      for (int64_t c = 0; c < n; ++c) {
        SmallVector<Value, 2> at{cidx(g), cols[c]};
        Value o = vector::LoadOp::create(b, vf32(), Or, at);
        if (rescale)
          o = arith::MulFOp::create(b, o, scales[g]);
        o = arith::AddFOp::create(b, o, rowsLoop.getResult(g * n + c));
        vector::StoreOp::create(b, o, Or, at);
      }
  };
  Value width = cidx(nd * vl);
  Value dvFull =
      arith::SubIOp::create(b, Dv, arith::RemUIOp::create(b, Dv, width));
  loop(cidx(0), dvFull, width, {}, [&](Value dvb, ValueRange) {
    block(dvb, nd, false);
    return SmallVector<Value>{};
  });
  // The rest one vector at a time, the last one masked to Dv.
  Value dvPad = arith::MulIOp::create(
      b, arith::CeilDivUIOp::create(b, Dv, cidx(vl)), cidx(vl));
  loop(dvFull, dvPad, cidx(vl), {}, [&](Value dvb, ValueRange) {
    block(dvb, 1, true);
    return SmallVector<Value>{};
  });
}
