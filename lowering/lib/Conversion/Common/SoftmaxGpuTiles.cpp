//===- SoftmaxGpuTiles.cpp - what every GPU softmax kernel decides per tile
//===//

#include "attn/Conversion/SoftmaxGpuTiles.h"
#include "attn/Conversion/KernelScaffold.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include <limits>

using namespace mlir;
using namespace mlir::attn;

using P = arith::CmpIPredicate;

/// (nonEmpty, partial) from the mask's interval answer (lo, hi): lo = 1
/// where every element is visible, hi = 0 where none is.
static std::pair<Value, Value> tileClass(ImplicitLocOpBuilder &b, Value lo,
                                         Value hi, Value tail) {
  auto c64 = [&](int64_t v) {
    return arith::ConstantOp::create(b, b.getI64IntegerAttr(v));
  };
  Value nonEmpty = arith::CmpIOp::create(b, P::ne, hi, c64(0));
  Value partial = arith::OrIOp::create(
      b, tail, arith::CmpIOp::create(b, P::ne, lo, c64(1)));
  return {nonEmpty, partial};
}

/// (nonEmpty, partial) of queries [q0, qEnd) x keys [k0, kEnd) (ends
/// exclusive, clamped): the mask's interval analysis, partial also where
/// `tail` (the tile reaches past N or M).
static std::pair<Value, Value> classifyRange(ImplicitLocOpBuilder &b,
                                             Region &mask, const KernelEnv &env,
                                             Value bI64, Value hI64, Value q0,
                                             Value qEnd, Value k0, Value kEnd,
                                             Value tail) {
  auto cidx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, v); };
  auto i64 = [&](Value v) {
    return arith::IndexCastOp::create(b, b.getI64Type(), v);
  };
  auto [lo, hi] =
      emitMaskIntervals(b, mask, bI64, hI64, i64(q0),
                        i64(arith::SubIOp::create(b, qEnd, cidx(1))), i64(k0),
                        i64(arith::SubIOp::create(b, kEnd, cidx(1))), env);
  return tileClass(b, lo, hi, tail);
}

std::pair<Value, Value> GpuTileWalk::classify(Value kt) {
  auto cidx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, v); };
  Value k0 = arith::MulIOp::create(b, kt, cidx(BN));
  Value kNext = arith::AddIOp::create(b, k0, cidx(BN));
  Value tail = arith::CmpIOp::create(b, P::ult, M, kNext);
  if (!mask)
    return {arith::ConstantOp::create(b, b.getBoolAttr(true)), tail};
  Value kEnd = arith::MinUIOp::create(b, kNext, M);
  if (box) {
    auto i64 = [&](Value v) {
      return arith::IndexCastOp::create(b, b.getI64Type(), v);
    };
    auto [lo, hi] = emitMaskIntervals(
        b, *mask, bI64, hI64, box->hHi, box->qLo, box->qHi, i64(k0),
        i64(arith::SubIOp::create(b, kEnd, cidx(1))), env);
    return tileClass(b, lo, hi, tail);
  }
  Value qEnd =
      arith::MinUIOp::create(b, arith::AddIOp::create(b, q0, cidx(BM)), N);
  return classifyRange(b, *mask, env, bI64, hI64, q0, qEnd, k0, kEnd, tail);
}

Value GpuTileWalk::firstVisible(Value start) {
  if (!mask)
    return start;
  Type idx = b.getIndexType();
  auto w = scf::WhileOp::create(b, TypeRange{idx}, ValueRange{start});
  OpBuilder::InsertionGuard guard(b);
  Block *before = b.createBlock(&w.getBefore(), {}, {idx}, {b.getLoc()});
  Value x = before->getArgument(0);
  Value inRange = arith::CmpIOp::create(b, P::ult, x, numTiles);
  auto ifOp = scf::IfOp::create(b, TypeRange{b.getI1Type()}, inRange, true);
  {
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Value nonEmpty = classify(x).first;
    Value empty = arith::XOrIOp::create(
        b, nonEmpty, arith::ConstantOp::create(b, b.getBoolAttr(true)));
    scf::YieldOp::create(b, ValueRange{empty});
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(
        b, ValueRange{arith::ConstantOp::create(b, b.getBoolAttr(false))});
  }
  scf::ConditionOp::create(b, ifOp.getResult(0), ValueRange{x});
  Block *after = b.createBlock(&w.getAfter(), {}, {idx}, {b.getLoc()});
  scf::YieldOp::create(
      b, ValueRange{arith::AddIOp::create(
             b, after->getArgument(0), arith::ConstantIndexOp::create(b, 1))});
  return w.getResult(0);
}

Value ScoreElement::emit(Value s, Value hIdx, Value qIdx, Value kv,
                         bool withMask) const {
  auto cf32 = [&](float v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  };
  Value zero = cf32(0);
  Value kvIdx = arith::IndexCastOp::create(b, b.getI64Type(), kv);
  Value x = arith::MulFOp::create(b, s, scale);
  if (score)
    x = emitRegion(b, *score, {x, bI64, hIdx, qIdx, kvIdx}, env);
  Value visible;
  if (withMask) {
    visible = arith::CmpIOp::create(b, P::ult, kv, M);
    if (mask)
      visible = arith::AndIOp::create(
          b, visible, emitRegion(b, *mask, {bI64, hIdx, qIdx, kvIdx}, env));
  }
  Value p = x;
  switch (kind) {
  case NormalizerKind::softmax:
  case NormalizerKind::none:
    break;
  case NormalizerKind::sigmoid: {
    Value z = arith::AddFOp::create(b, x, bias);
    Value ez = math::ExpOp::create(b, arith::NegFOp::create(b, z));
    p = arith::DivFOp::create(b, cf32(1),
                              arith::AddFOp::create(b, cf32(1), ez));
    break;
  }
  case NormalizerKind::relu: {
    Value r0 = arith::MaximumFOp::create(b, x, zero);
    p = r0;
    for (int64_t i = 1; i < reluPower; ++i)
      p = arith::MulFOp::create(b, p, r0);
    break;
  }
  }
  if (!visible)
    return p;
  Value hidden = kind == NormalizerKind::softmax
                     ? cf32(-std::numeric_limits<float>::infinity())
                     : zero;
  return arith::SelectOp::create(b, visible, p, hidden);
}

//===----------------------------------------------------------------------===//
// The gradients' kernels
//===----------------------------------------------------------------------===//

std::pair<Value, Value>
mlir::attn::classifyPair(ImplicitLocOpBuilder &b, Region *mask,
                         const KernelEnv &env, Value bI64, Value hI64, Value q0,
                         Value k0, Value N, Value M, int64_t BM, int64_t BN) {
  auto cidx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, v); };
  Value qNext = arith::AddIOp::create(b, q0, cidx(BM));
  Value kNext = arith::AddIOp::create(b, k0, cidx(BN));
  Value tail =
      arith::OrIOp::create(b, arith::CmpIOp::create(b, P::ult, N, qNext),
                           arith::CmpIOp::create(b, P::ult, M, kNext));
  if (!mask)
    return {arith::ConstantOp::create(b, b.getBoolAttr(true)), tail};
  Value qEnd = arith::MinUIOp::create(b, qNext, N);
  Value kEnd = arith::MinUIOp::create(b, kNext, M);
  return classifyRange(b, *mask, env, bI64, hI64, q0, qEnd, k0, kEnd, tail);
}

/// An scf.for over [0, ub) carrying `init`, built by `body`.
static scf::ForOp
forLoop(ImplicitLocOpBuilder &b, Value ub, ValueRange init,
        function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  auto cidx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, v); };
  return buildFor(b, cidx(0), ub, cidx(1), init, body);
}

FailureOr<SmallVector<Value>> mlir::attn::emitBackwardPairLoop(
    ImplicitLocOpBuilder &b, Region *mask, const KernelEnv &env, Value bI64,
    Value hk, Value G, Value k0, Value N, Value M, int64_t BM, int64_t BN,
    ValueRange init,
    function_ref<FailureOr<SmallVector<Value>>(Value, Value, Value, Value,
                                               ValueRange)>
        step) {
  auto cidx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, v); };
  SmallVector<Type> types(init.size(), b.getF32Type());
  Value nQT = arith::CeilDivUIOp::create(b, N, cidx(BM));
  bool failed = false;
  auto heads = forLoop(b, G, init, [&](Value gi, ValueRange acc) {
    Value h = arith::AddIOp::create(b, arith::MulIOp::create(b, hk, G), gi);
    Value hI64 = arith::IndexCastOp::create(b, b.getI64Type(), h);
    auto tiles = forLoop(b, nQT, acc, [&](Value qt, ValueRange acc2) {
      Value q0 = arith::MulIOp::create(b, qt, cidx(BM));
      auto [nonEmpty, partial] =
          classifyPair(b, mask, env, bI64, hI64, q0, k0, N, M, BM, BN);
      auto ifOp = scf::IfOp::create(b, types, nonEmpty, true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        FailureOr<SmallVector<Value>> res = step(h, hI64, q0, partial, acc2);
        if (mlir::failed(res) || res->size() != types.size()) {
          failed |= mlir::failed(res);
          scf::YieldOp::create(b, acc2);
        } else {
          scf::YieldOp::create(b, *res);
        }
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, acc2);
      }
      return SmallVector<Value>(ifOp.getResults());
    });
    return SmallVector<Value>(tiles.getResults());
  });
  if (failed)
    return failure();
  return SmallVector<Value>(heads.getResults());
}

Value BackwardElement::weight(Value s, Value lseRow) const {
  auto cf32 = [&](float v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  };
  Value zero = cf32(0);
  Value hidden =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, s,
                            cf32(-std::numeric_limits<float>::infinity()));
  Value p;
  switch (kind) {
  case NormalizerKind::softmax:
    p = math::ExpOp::create(b, arith::SubFOp::create(b, s, lseRow));
    break;
  case NormalizerKind::sigmoid: {
    Value ez = math::ExpOp::create(
        b, arith::NegFOp::create(b, arith::AddFOp::create(b, s, bias)));
    p = arith::DivFOp::create(b, cf32(1),
                              arith::AddFOp::create(b, cf32(1), ez));
    break;
  }
  case NormalizerKind::relu: {
    Value r = arith::MaximumFOp::create(b, s, zero);
    p = r;
    for (int64_t i = 1; i < reluPower; ++i)
      p = arith::MulFOp::create(b, p, r);
    break;
  }
  case NormalizerKind::none:
    p = s;
    break;
  }
  return arith::SelectOp::create(b, hidden, zero, p);
}

Value BackwardElement::ds(Value p, Value s, Value dp, Value dRow) const {
  auto cf32 = [&](float v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  };
  Value zero = cf32(0);
  switch (kind) {
  case NormalizerKind::softmax:
    return arith::MulFOp::create(b, p, arith::SubFOp::create(b, dp, dRow));
  case NormalizerKind::sigmoid:
    return arith::MulFOp::create(
        b, dp,
        arith::MulFOp::create(b, p, arith::SubFOp::create(b, cf32(1), p)));
  case NormalizerKind::relu: {
    // power relu(s)^(power-1) [s > 0]; -inf (hidden) is not > 0.
    Value r = arith::MaximumFOp::create(b, s, zero);
    Value d = cf32(float(reluPower));
    for (int64_t i = 1; i < reluPower; ++i)
      d = arith::MulFOp::create(b, d, r);
    Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, s, zero);
    return arith::SelectOp::create(b, pos, arith::MulFOp::create(b, dp, d),
                                   zero);
  }
  case NormalizerKind::none: {
    Value hidden =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, s,
                              cf32(-std::numeric_limits<float>::infinity()));
    return arith::SelectOp::create(b, hidden, zero, dp);
  }
  }
  llvm_unreachable("normalizer");
}
