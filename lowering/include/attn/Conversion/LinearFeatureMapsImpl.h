//===- LinearFeatureMapsImpl.h - the feature maps' code ---------*- C++ -*-===//
//
// The definitions of LinearFeatureMaps (LinearFeatureMaps.h): phi and its
// vector-Jacobian product, row by row, as scalar loops. A row is Dqk (or
// Dphi) wide and the maps are a small share of a step's work next to the
// Dphi x Dv state products. Included by the one .cpp per backend that
// instantiates the template for its kernel base.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_LINEARFEATUREMAPSIMPL_H
#define ATTN_CONVERSION_LINEARFEATUREMAPSIMPL_H

#include "attn/Conversion/LinearFeatureMaps.h"

namespace mlir::attn {

template <typename Base>
Value LinearFeatureMaps<Base>::dphi(FeatureMapKind kind) {
  switch (kind) {
  case FeatureMapKind::pos_neg:
    return arith::MulIOp::create(b, Dqk, cidx(2));
  case FeatureMapKind::taylor2: {
    // 1 + D + D(D+1)/2
    Value dd =
        arith::MulIOp::create(b, Dqk, arith::AddIOp::create(b, Dqk, cidx(1)));
    return arith::AddIOp::create(b, arith::AddIOp::create(b, cidx(1), Dqk),
                                 arith::DivUIOp::create(b, dd, cidx(2)));
  }
  case FeatureMapKind::random:
    return memref::DimOp::create(b, projection(), 0);
  default:
    return Dqk;
  }
}

template <typename Base>
void LinearFeatureMaps<Base>::emitFeatureMap(FeatureMapKind kind, Value mem,
                                             Value head, Value t, Value buf) {
  Value fZero = cf32(0), fOne = cf32(1);
  FeatureRow row{mem, head, t};
  auto x = [&](Value i) { return rowElem(row, i); };
  auto store = [&](Value val, Value i) {
    memref::StoreOp::create(b, val, buf, ValueRange{i});
  };
  auto dF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(Dqk));
  switch (kind) {
  case FeatureMapKind::pos_neg:
    loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
      Value xi = x(i);
      store(xi, i);
      store(arith::NegFOp::create(b, xi), arith::AddIOp::create(b, i, Dqk));
      return SmallVector<Value>{};
    });
    return;
  case FeatureMapKind::l2norm: {
    auto sq =
        loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange acc) {
          Value xi = x(i);
          return SmallVector<Value>{arith::AddFOp::create(
              b, acc[0], arith::MulFOp::create(b, xi, xi))};
        });
    Value norm = math::SqrtOp::create(b, sq.getResult(0));
    Value pos =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, norm, fZero);
    Value inv = arith::SelectOp::create(
        b, pos, arith::DivFOp::create(b, fOne, norm), fZero);
    loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
      store(arith::MulFOp::create(b, x(i), inv), i);
      return SmallVector<Value>{};
    });
    return;
  }
  case FeatureMapKind::taylor2:
    emitTaylor2Map(row, buf, dF, fOne);
    return;
  case FeatureMapKind::random:
    emitRandomMap(row, buf, dF, fZero, fOne);
    return;
  default:
    emitElementwiseMap(kind, row, buf, fZero, fOne);
  }
}

template <typename Base>
void LinearFeatureMaps<Base>::emitTaylor2Map(const FeatureRow &row, Value buf,
                                             Value dF, Value fOne) {
  // [1, x/D^(1/4), x_a^2/sqrt(2D), x_a x_b/sqrt(D) (a<b)]
  auto x = [&](Value i) { return rowElem(row, i); };
  auto store = [&](Value val, Value i) {
    memref::StoreOp::create(b, val, buf, ValueRange{i});
  };
  Value r4 = math::SqrtOp::create(b, math::SqrtOp::create(b, dF));
  Value s1 = arith::DivFOp::create(b, fOne, r4);
  Value sDiag = arith::DivFOp::create(
      b, fOne, math::SqrtOp::create(b, arith::MulFOp::create(b, cf32(2), dF)));
  Value sOff = arith::DivFOp::create(b, fOne, math::SqrtOp::create(b, dF));
  store(fOne, cidx(0));
  loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
    store(arith::MulFOp::create(b, x(i), s1),
          arith::AddIOp::create(b, i, cidx(1)));
    return SmallVector<Value>{};
  });
  Value base = arith::AddIOp::create(b, cidx(1), Dqk);
  loop(cidx(0), Dqk, cidx(1), {base}, [&](Value a, ValueRange idx0) {
    Value xa = x(a);
    auto inner = loop(a, Dqk, cidx(1), {idx0[0]}, [&](Value c, ValueRange idx) {
      Value xc = x(c);
      Value isDiag = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, a, c);
      Value f = arith::SelectOp::create(b, isDiag, sDiag, sOff);
      store(arith::MulFOp::create(b, arith::MulFOp::create(b, xa, xc), f),
            idx[0]);
      return SmallVector<Value>{arith::AddIOp::create(b, idx[0], cidx(1))};
    });
    return SmallVector<Value>{inner.getResult(0)};
  });
}

template <typename Base>
void LinearFeatureMaps<Base>::emitRandomMap(const FeatureRow &row, Value buf,
                                            Value dF, Value fZero, Value fOne) {
  // exp(w_r . x' - |x'|^2 / 2) / sqrt(R), x' = x / D^(1/4)
  auto x = [&](Value i) { return rowElem(row, i); };
  Value W = projection();
  Value R = memref::DimOp::create(b, W, 0);
  Value s = arith::DivFOp::create(
      b, fOne, math::SqrtOp::create(b, math::SqrtOp::create(b, dF)));
  auto sq = loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange acc) {
    Value xi = arith::MulFOp::create(b, x(i), s);
    return SmallVector<Value>{
        arith::AddFOp::create(b, acc[0], arith::MulFOp::create(b, xi, xi))};
  });
  Value half = arith::MulFOp::create(b, sq.getResult(0), cf32(0.5));
  Value rF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(R));
  Value invSqrtR = arith::DivFOp::create(b, fOne, math::SqrtOp::create(b, rF));
  loop(cidx(0), R, cidx(1), {}, [&](Value r, ValueRange) {
    auto dot =
        loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange acc) {
          Value xi = arith::MulFOp::create(b, x(i), s);
          Value w = memref::LoadOp::create(b, W, ValueRange{r, i});
          return SmallVector<Value>{arith::AddFOp::create(
              b, acc[0], arith::MulFOp::create(b, w, xi))};
        });
    Value e = math::ExpOp::create(
        b, arith::SubFOp::create(b, dot.getResult(0), half));
    memref::StoreOp::create(b, arith::MulFOp::create(b, e, invSqrtR), buf,
                            ValueRange{r});
    return SmallVector<Value>{};
  });
}

template <typename Base>
void LinearFeatureMaps<Base>::emitElementwiseMap(FeatureMapKind kind,
                                                 const FeatureRow &row,
                                                 Value buf, Value fZero,
                                                 Value fOne) {
  loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
    Value xi = rowElem(row, i), y = xi;
    auto sigmoid = [&](Value a) {
      Value e = math::ExpOp::create(b, arith::NegFOp::create(b, a));
      return Value(
          arith::DivFOp::create(b, fOne, arith::AddFOp::create(b, fOne, e)));
    };
    switch (kind) {
    case FeatureMapKind::elu_plus_one: {
      Value pos =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, xi, fZero);
      y = arith::SelectOp::create(b, pos, arith::AddFOp::create(b, xi, fOne),
                                  math::ExpOp::create(b, xi));
      break;
    }
    case FeatureMapKind::relu:
      y = arith::MaximumFOp::create(b, xi, fZero);
      break;
    case FeatureMapKind::relu2: {
      Value r = arith::MaximumFOp::create(b, xi, fZero);
      y = arith::MulFOp::create(b, r, r);
      break;
    }
    case FeatureMapKind::sigmoid:
      y = sigmoid(xi);
      break;
    case FeatureMapKind::silu:
      y = arith::MulFOp::create(b, xi, sigmoid(xi));
      break;
    case FeatureMapKind::exp:
      y = math::ExpOp::create(b, xi);
      break;
    default:
      break;
    }
    memref::StoreOp::create(b, y, buf, ValueRange{i});
    return SmallVector<Value>{};
  });
}

//===----------------------------------------------------------------------===//
// Vector-Jacobian products
//===----------------------------------------------------------------------===//

template <typename Base>
void LinearFeatureMaps<Base>::addTo(Value dx, Value i, Value g) {
  Value cur = memref::LoadOp::create(b, dx, ValueRange{i});
  memref::StoreOp::create(b, fadd(cur, g), dx, ValueRange{i});
}

template <typename Base>
void LinearFeatureMaps<Base>::emitFeatureVJP(FeatureMapKind kind, Value mem,
                                             Value head, Value t, Value dy,
                                             Value dx) {
  FeatureRow row{mem, head, t};
  Value fZero = cf32(0), fOne = cf32(1);
  auto dyAt = [&](Value i) {
    return Value(memref::LoadOp::create(b, dy, ValueRange{i}));
  };
  auto dF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(Dqk));
  switch (kind) {
  case FeatureMapKind::l2norm:
    return emitL2NormVJP(row, dy, dx);
  case FeatureMapKind::taylor2:
    return emitTaylor2VJP(row, dy, dx, dF);
  case FeatureMapKind::random:
    return emitRandomVJP(row, dy, dx, dF);
  case FeatureMapKind::pos_neg:
    forEach(cidx(0), Dqk,
            [&](Value i) { addTo(dx, i, fsub(dyAt(i), dyAt(add(i, Dqk)))); });
    return;
  default:
    break;
  }
  forEach(cidx(0), Dqk, [&](Value i) {
    Value x = rowElem(row, i), g = dyAt(i);
    Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, x, fZero);
    auto sigmoid = [&](Value a) {
      Value e = fexp(arith::NegFOp::create(b, a));
      return Value(arith::DivFOp::create(b, fOne, fadd(fOne, e)));
    };
    switch (kind) {
    case FeatureMapKind::elu_plus_one:
      g = fmul(g, select(pos, fOne, fexp(x)));
      break;
    case FeatureMapKind::relu:
      g = select(pos, g, fZero);
      break;
    case FeatureMapKind::relu2:
      g = select(pos, fmul(fmul(cf32(2), x), g), fZero);
      break;
    case FeatureMapKind::sigmoid: {
      Value s = sigmoid(x);
      g = fmul(g, fmul(s, fsub(fOne, s)));
      break;
    }
    case FeatureMapKind::silu: {
      Value s = sigmoid(x);
      g = fmul(g, fmul(s, fadd(fOne, fmul(x, fsub(fOne, s)))));
      break;
    }
    case FeatureMapKind::exp:
      g = fmul(g, fexp(x));
      break;
    default: // identity
      break;
    }
    addTo(dx, i, g);
  });
}

template <typename Base>
void LinearFeatureMaps<Base>::emitL2NormVJP(const FeatureRow &row, Value dy,
                                            Value dx) {
  // y = x / n: dx += (dy - y (y . dy)) / n; nothing for the zero vector.
  Value fZero = cf32(0);
  auto sums =
      loop(cidx(0), Dqk, cidx(1), {fZero, fZero}, [&](Value i, ValueRange acc) {
        Value x = rowElem(row, i);
        Value g = memref::LoadOp::create(b, dy, ValueRange{i});
        return SmallVector<Value>{fma(x, x, acc[0]), fma(x, g, acc[1])};
      });
  Value n = math::SqrtOp::create(b, sums.getResult(0));
  Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, n, fZero);
  ifThen(pos, [&] {
    Value inv = arith::DivFOp::create(b, cf32(1), n);
    Value ydy = fmul(sums.getResult(1), inv); // (x . dy) / n
    forEach(cidx(0), Dqk, [&](Value i) {
      Value y = fmul(rowElem(row, i), inv);
      Value g = memref::LoadOp::create(b, dy, ValueRange{i});
      addTo(dx, i, fmul(fsub(g, fmul(y, ydy)), inv));
    });
  });
}

template <typename Base>
void LinearFeatureMaps<Base>::emitTaylor2VJP(const FeatureRow &row, Value dy,
                                             Value dx, Value dF) {
  // The forward's layout: [1, x_a / D^(1/4), then x_a x_c f(a, c) for
  // c >= a row by row], f = 1/sqrt(2D) on the diagonal, 1/sqrt(D) off it.
  Value fOne = cf32(1);
  auto x = [&](Value i) { return rowElem(row, i); };
  auto dyAt = [&](Value i) {
    return Value(memref::LoadOp::create(b, dy, ValueRange{i}));
  };
  Value s1 = arith::DivFOp::create(
      b, fOne, math::SqrtOp::create(b, math::SqrtOp::create(b, dF)));
  Value sDiag = arith::DivFOp::create(
      b, fOne, math::SqrtOp::create(b, fmul(cf32(2), dF)));
  Value sOff = arith::DivFOp::create(b, fOne, math::SqrtOp::create(b, dF));
  forEach(cidx(0), Dqk,
          [&](Value i) { addTo(dx, i, fmul(dyAt(add(i, cidx(1))), s1)); });
  Value base = add(cidx(1), Dqk);
  loop(cidx(0), Dqk, cidx(1), {base}, [&](Value a, ValueRange idx0) {
    Value xa = x(a);
    auto inner =
        loop(a, Dqk, cidx(1), {idx0[0], cf32(0)}, [&](Value c, ValueRange st) {
          Value xc = x(c);
          Value isDiag = cmp(arith::CmpIPredicate::eq, a, c);
          Value g = fmul(dyAt(st[0]), select(isDiag, sDiag, sOff));
          // d/dx_a of x_a x_c: x_c (2 x_a on the diagonal);
          // d/dx_c: x_a, added to dx[c] off the diagonal.
          Value ga = fmul(g, select(isDiag, fmul(cf32(2), xa), xc));
          ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ne, a, c),
                 [&] { addTo(dx, c, fmul(g, xa)); });
          return SmallVector<Value>{add(st[0], cidx(1)), fadd(st[1], ga)};
        });
    addTo(dx, a, inner.getResult(1));
    return SmallVector<Value>{inner.getResult(0)};
  });
}

template <typename Base>
void LinearFeatureMaps<Base>::emitRandomVJP(const FeatureRow &row, Value dy,
                                            Value dx, Value dF) {
  // y_r = exp(w_r . x' - |x'|^2 / 2) / sqrt(R), x' = x s, s = D^(-1/4):
  // dx += s sum_r dy_r y_r (w_r - x'). The projection gets no gradient.
  Value fZero = cf32(0), fOne = cf32(1);
  Value W = projection();
  Value R = memref::DimOp::create(b, W, 0);
  Value s = arith::DivFOp::create(
      b, fOne, math::SqrtOp::create(b, math::SqrtOp::create(b, dF)));
  auto xs = [&](Value i) { return fmul(rowElem(row, i), s); };
  auto sq = loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange acc) {
    Value xi = xs(i);
    return SmallVector<Value>{fma(xi, xi, acc[0])};
  });
  Value half = fmul(sq.getResult(0), cf32(0.5));
  Value rF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(R));
  Value invSqrtR = arith::DivFOp::create(b, fOne, math::SqrtOp::create(b, rF));
  forEach(cidx(0), R, [&](Value r) {
    auto dot =
        loop(cidx(0), Dqk, cidx(1), {fZero}, [&](Value i, ValueRange acc) {
          Value w = memref::LoadOp::create(b, W, ValueRange{r, i});
          return SmallVector<Value>{fma(w, xs(i), acc[0])};
        });
    Value y = fmul(fexp(fsub(dot.getResult(0), half)), invSqrtR);
    Value wy = fmul(fmul(memref::LoadOp::create(b, dy, ValueRange{r}), y), s);
    forEach(cidx(0), Dqk, [&](Value i) {
      Value w = memref::LoadOp::create(b, W, ValueRange{r, i});
      addTo(dx, i, fmul(wy, fsub(w, xs(i))));
    });
  });
}

} // namespace mlir::attn

#endif // ATTN_CONVERSION_LINEARFEATUREMAPSIMPL_H
