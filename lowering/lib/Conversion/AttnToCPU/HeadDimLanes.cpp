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
    for (int64_t r = 0; r < nr; ++r) {
      Value s = zeros();
      for (int64_t g = 0; g < gn; ++g) {
        Value x = vector::ReductionOp::create(b, vector::CombiningKind::ADD,
                                              tail.getResult(r * gn + g),
                                              arith::FastMathFlags::reassoc);
        s = vector::InsertOp::create(b, x, s, ArrayRef<int64_t>{g});
      }
      out.push_back(s);
    }
  }
  return out;
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
