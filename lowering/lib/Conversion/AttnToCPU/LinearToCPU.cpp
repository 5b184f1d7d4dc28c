//===- LinearToCPU.cpp - linear attention to a recurrent CPU kernel -------===//
//
// The recurrent form of attn.linear_attention: one work item per (b, h), the
// state S (Dphi x Dv, Dv padded to the vector width) lives in a heap buffer,
// and every step is vector code along Dv:
//
//   phi_q, phi_k = feature maps of q_t, k_t;  g = exp(gate)  (per feature d)
//   exclusive:  acc = sum_d phi_q[d] S[d,:],  bonus term added after
//   delta:      w = sum_d phi_k[d] g_d S[d,:];  u = beta (v - w)
//   S[d,:] = g_d S[d,:] + phi_k[d] (delta ? u : v);  z = g z + phi_k
//   inclusive:  acc = sum_d phi_q[d] S[d,:]  (fused into the update loop)
//   o_t = scale * acc   or   acc / (phi_q . z)   with normalize
//
// Loops run vector chunks of Dv outermost and features innermost, so the
// accumulator stays in a register. The chunked (matmul) form for long
// prefills is the next step; this form is also the decode kernel.
//
//===----------------------------------------------------------------------===//

#include "LinearToCPU.h"
#include "KernelBase.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include <limits>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

namespace {

using P = arith::CmpIPredicate;

class LinearKernelBuilder : public KernelBase {
public:
  LinearKernelBuilder(SpecOp spec, ModuleOp module, int64_t vectorWidth,
                      int64_t chunk)
      : KernelBase(spec, vectorWidth), op(spec.getLinearAttention()),
        chunk(chunk) {
    b.setInsertionPointToEnd(module.getBody());
  }
  LogicalResult build();

private:
  /// phi(x) of row `row` of `mem` ([b, head, t, :]) into buf[0 .. Dphi).
  void emitFeatureMap(FeatureMapKind kind, Value mem, Value bIdx, Value head,
                      Value t, Value buf);
  Value dphi(FeatureMapKind kind);
  Value loadF32(Value mem, ValueRange idx) {
    return toF32(memref::LoadOp::create(b, mem, idx));
  }
  /// Register-blocked C[r][c] = init(r, c) + sum_{k < kEnd} a(r, k) * bv(k, c)
  /// over rows [0, rows) and column vectors [0, nCols) (c counts vectors);
  /// kEnd(rowBlockEnd) bounds k for a block of rows (causal blocks).
  void gemm(Value rows, Value nCols, function_ref<Value(Value)> kEnd,
            function_ref<Value(Value, Value)> a,
            function_ref<Value(Value, Value)> bv,
            function_ref<Value(Value, Value)> init,
            function_ref<void(Value, Value, Value)> store);

  LinearAttentionOp op;
  /// Time steps per chunk for the chunked form; 0 selects the recurrence.
  int64_t chunk;
  KernelEnv env;
};

} // namespace

Value LinearKernelBuilder::dphi(FeatureMapKind kind) {
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
    return memref::DimOp::create(b, env.aux.lookup(*op.getProjection()), 0);
  default:
    return Dqk;
  }
}

void LinearKernelBuilder::emitFeatureMap(FeatureMapKind kind, Value mem,
                                         Value bIdx, Value head, Value t,
                                         Value buf) {
  Value zero = cf32(0), one = cf32(1);
  auto x = [&](Value i) { return loadF32(mem, ValueRange{bIdx, head, t, i}); };
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
    auto sq = loop(cidx(0), Dqk, cidx(1), {zero}, [&](Value i, ValueRange acc) {
      Value xi = x(i);
      return SmallVector<Value>{
          arith::AddFOp::create(b, acc[0], arith::MulFOp::create(b, xi, xi))};
    });
    Value norm = math::SqrtOp::create(b, sq.getResult(0));
    Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, norm, zero);
    Value inv = arith::SelectOp::create(
        b, pos, arith::DivFOp::create(b, one, norm), zero);
    loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
      store(arith::MulFOp::create(b, x(i), inv), i);
      return SmallVector<Value>{};
    });
    return;
  }
  case FeatureMapKind::taylor2: {
    // [1, x/D^(1/4), x_a^2/sqrt(2D), x_a x_b/sqrt(D) (a<b)]
    Value r4 = math::SqrtOp::create(b, math::SqrtOp::create(b, dF));
    Value s1 = arith::DivFOp::create(b, one, r4);
    Value sDiag = arith::DivFOp::create(
        b, one, math::SqrtOp::create(b, arith::MulFOp::create(b, cf32(2), dF)));
    Value sOff = arith::DivFOp::create(b, one, math::SqrtOp::create(b, dF));
    store(one, cidx(0));
    loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
      store(arith::MulFOp::create(b, x(i), s1),
            arith::AddIOp::create(b, i, cidx(1)));
      return SmallVector<Value>{};
    });
    Value base = arith::AddIOp::create(b, cidx(1), Dqk);
    loop(cidx(0), Dqk, cidx(1), {base}, [&](Value a, ValueRange idx0) {
      Value xa = x(a);
      auto inner =
          loop(a, Dqk, cidx(1), {idx0[0]}, [&](Value c, ValueRange idx) {
            Value xc = x(c);
            Value isDiag = arith::CmpIOp::create(b, P::eq, a, c);
            Value f = arith::SelectOp::create(b, isDiag, sDiag, sOff);
            store(arith::MulFOp::create(b, arith::MulFOp::create(b, xa, xc), f),
                  idx[0]);
            return SmallVector<Value>{
                arith::AddIOp::create(b, idx[0], cidx(1))};
          });
      return SmallVector<Value>{inner.getResult(0)};
    });
    return;
  }
  case FeatureMapKind::random: {
    // exp(w_r . x' - |x'|^2 / 2) / sqrt(R), x' = x / D^(1/4)
    Value W = env.aux.lookup(*op.getProjection());
    Value R = memref::DimOp::create(b, W, 0);
    Value s = arith::DivFOp::create(
        b, one, math::SqrtOp::create(b, math::SqrtOp::create(b, dF)));
    auto sq = loop(cidx(0), Dqk, cidx(1), {zero}, [&](Value i, ValueRange acc) {
      Value xi = arith::MulFOp::create(b, x(i), s);
      return SmallVector<Value>{
          arith::AddFOp::create(b, acc[0], arith::MulFOp::create(b, xi, xi))};
    });
    Value half = arith::MulFOp::create(b, sq.getResult(0), cf32(0.5));
    Value rF = arith::UIToFPOp::create(b, b.getF32Type(), toI64(R));
    Value invSqrtR = arith::DivFOp::create(b, one, math::SqrtOp::create(b, rF));
    loop(cidx(0), R, cidx(1), {}, [&](Value r, ValueRange) {
      auto dot =
          loop(cidx(0), Dqk, cidx(1), {zero}, [&](Value i, ValueRange acc) {
            Value xi = arith::MulFOp::create(b, x(i), s);
            Value w = memref::LoadOp::create(b, W, ValueRange{r, i});
            return SmallVector<Value>{arith::AddFOp::create(
                b, acc[0], arith::MulFOp::create(b, w, xi))};
          });
      Value e = math::ExpOp::create(
          b, arith::SubFOp::create(b, dot.getResult(0), half));
      store(arith::MulFOp::create(b, e, invSqrtR), r);
      return SmallVector<Value>{};
    });
    return;
  }
  default:
    break;
  }
  // Elementwise maps.
  loop(cidx(0), Dqk, cidx(1), {}, [&](Value i, ValueRange) {
    Value xi = x(i), y = xi;
    auto sigmoid = [&](Value a) {
      Value e = math::ExpOp::create(b, arith::NegFOp::create(b, a));
      return Value(
          arith::DivFOp::create(b, one, arith::AddFOp::create(b, one, e)));
    };
    switch (kind) {
    case FeatureMapKind::elu_plus_one: {
      Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, xi, zero);
      y = arith::SelectOp::create(b, pos, arith::AddFOp::create(b, xi, one),
                                  math::ExpOp::create(b, xi));
      break;
    }
    case FeatureMapKind::relu:
      y = arith::MaximumFOp::create(b, xi, zero);
      break;
    case FeatureMapKind::relu2: {
      Value r = arith::MaximumFOp::create(b, xi, zero);
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
    store(y, i);
    return SmallVector<Value>{};
  });
}

void LinearKernelBuilder::gemm(Value rows, Value nCols,
                               function_ref<Value(Value)> kEnd,
                               function_ref<Value(Value, Value)> a,
                               function_ref<Value(Value, Value)> bv,
                               function_ref<Value(Value, Value)> init,
                               function_ref<void(Value, Value, Value)> store) {
  constexpr int64_t R = 4, CV = 4;
  auto block = [&](Value r0, int64_t nr, Value c0, int64_t nc) {
    SmallVector<Value> acc;
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j)
        acc.push_back(init(arith::AddIOp::create(b, r0, cidx(i)),
                           arith::AddIOp::create(b, c0, cidx(j))));
    Value kn = kEnd(arith::AddIOp::create(b, r0, cidx(nr)));
    auto f = loop(cidx(0), kn, cidx(1), acc, [&](Value k, ValueRange cur) {
      SmallVector<Value> bvs;
      for (int64_t j = 0; j < nc; ++j)
        bvs.push_back(bv(k, arith::AddIOp::create(b, c0, cidx(j))));
      SmallVector<Value> next;
      for (int64_t i = 0; i < nr; ++i) {
        Value av = bcast(a(arith::AddIOp::create(b, r0, cidx(i)), k));
        for (int64_t j = 0; j < nc; ++j)
          next.push_back(vector::FMAOp::create(b, av, bvs[j], cur[i * nc + j]));
      }
      return next;
    });
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j)
        store(arith::AddIOp::create(b, r0, cidx(i)),
              arith::AddIOp::create(b, c0, cidx(j)), f.getResult(i * nc + j));
  };
  Value rFull =
      arith::SubIOp::create(b, rows, arith::RemUIOp::create(b, rows, cidx(R)));
  Value cFull = arith::SubIOp::create(
      b, nCols, arith::RemUIOp::create(b, nCols, cidx(CV)));
  auto rowsLoop = [&](Value lb, Value ub, int64_t nr) {
    loop(lb, ub, cidx(nr), {}, [&](Value r0, ValueRange) {
      loop(cidx(0), cFull, cidx(CV), {}, [&](Value c0, ValueRange) {
        block(r0, nr, c0, CV);
        return SmallVector<Value>{};
      });
      loop(cFull, nCols, cidx(1), {}, [&](Value c0, ValueRange) {
        block(r0, nr, c0, 1);
        return SmallVector<Value>{};
      });
      return SmallVector<Value>{};
    });
  };
  rowsLoop(cidx(0), rFull, R);
  rowsLoop(rFull, rows, 1);
}

LogicalResult LinearKernelBuilder::build() {
  Type f32 = b.getF32Type();
  auto fn = createKernelFunc();
  Block *entry = &fn.getBody().front();
  bindCanonical(entry);
  env.vectorWidth = vl;
  bindRegionEnv(entry, env);

  bool normalize = op.getNormalize(), exclusive = op.getExclusive();
  bool causal = !op.getNoncausal(), delta = !op.getBeta().empty();
  bool hasGate = !op.getGate().empty(), vecGate = op.hasVectorGate();
  Value scale = emitScale(op.getScale(), env);
  if (normalize)
    scale = cf32(1);

  // Buffers: S [Dphi x DvPad] on the heap (taylor2 features can be large),
  // feature vectors and per-feature gates/bonus on the heap too.
  Value dq = dphi(op.getFeatureMapQ()), dk = dphi(op.getFeatureMapK());
  Value nC = arith::CeilDivUIOp::create(b, Dv, cidx(vl));
  Value dvPad = arith::MulIOp::create(b, nC, cidx(vl));
  auto dyn1 = MemRefType::get({ShapedType::kDynamic}, f32);
  Value S = allocScratch(
      MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32),
      ValueRange{dk, dvPad});
  Value z = allocScratch(dyn1, ValueRange{dk});
  Value phiQ = allocScratch(dyn1, ValueRange{dq});
  Value phiK = allocScratch(dyn1, ValueRange{dk});
  Value gBuf = allocScratch(dyn1, ValueRange{dk});
  Value uBuf = allocScratch(dyn1, ValueRange{dk});
  Value vBuf = allocScratch(dyn1, ValueRange{dvPad});
  Value wBuf = allocScratch(dyn1, ValueRange{dvPad});

  Value begin = toIdx(entry->getArgument(entry->getNumArguments() - 2));
  Value end = toIdx(entry->getArgument(entry->getNumArguments() - 1));
  Value zeroV = vsplat(0), zero = cf32(0);

  // Loads v_t into vBuf (zero padded).
  auto loadV = [&](Value bIdx, Value hk, Value t) {
    loop(cidx(0), dvPad, cidx(1), {}, [&](Value i, ValueRange) {
      Value inRange = arith::CmpIOp::create(b, P::ult, i, Dv);
      auto ifOp = scf::IfOp::create(b, TypeRange{f32}, inRange, true);
      {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        scf::YieldOp::create(b, loadF32(v, ValueRange{bIdx, hk, t, i}));
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, zero);
      }
      memref::StoreOp::create(b, ifOp.getResult(0), vBuf, ValueRange{i});
      return SmallVector<Value>{};
    });
  };
  // o[b, h, t, :] = acc chunk c (lanes below Dv) * factor.
  auto storeO = [&](Value bIdx, Value h, Value t, Value c, Value acc,
                    Value factor) {
    Value outV = arith::MulFOp::create(b, acc, bcast(factor));
    Value base = arith::MulIOp::create(b, c, cidx(vl));
    for (int64_t l = 0; l < vl; ++l) {
      Value col = arith::AddIOp::create(b, base, cidx(l));
      ifThen(arith::CmpIOp::create(b, P::ult, col, Dv), [&] {
        Value e = vector::ExtractOp::create(b, outV, ArrayRef<int64_t>{l});
        memref::StoreOp::create(b, e, o, ValueRange{bIdx, h, t, col});
      });
    }
  };
  // 1 / (phi_q . z + extra), 0 when the denominator is 0 (normalize only).
  auto normFactor = [&](Value extra) -> Value {
    if (!normalize)
      return scale;
    auto den = loop(cidx(0), dq, cidx(1), {zero}, [&](Value d, ValueRange a) {
      Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
      Value zd = memref::LoadOp::create(b, z, ValueRange{d});
      return SmallVector<Value>{
          arith::AddFOp::create(b, a[0], arith::MulFOp::create(b, qd, zd))};
    });
    Value dn = den.getResult(0);
    if (extra)
      dn = arith::AddFOp::create(b, dn, extra);
    Value nz = arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, dn, zero);
    return arith::SelectOp::create(b, nz, arith::DivFOp::create(b, cf32(1), dn),
                                   zero);
  };

  // ---------------------------------------------------------------------
  // The chunked form (causal, inclusive, no delta rule). Per chunk of C steps
  // with cumulative log gates L (f64, each log gate clamped at -80, relative
  // to the chunk start):
  //   A[t][s] = sum_d phiq[t,d] phik[s,d] exp(L[t,d] - L[s,d])   (s <= t)
  //   o_t     = scale (sum_s A[t][s] v_s + sum_d phiq[t,d] exp(L[t,d]) S[d,:])
  //   S[d,:]  = exp(L[C-1,d]) S[d,:] + sum_s phik[s,d] exp(L[C-1,d]-L[s,d]) v_s
  // Every exponent is L[a] - L[b] with b <= a inside the chunk (L[-1] = 0):
  // the exact decay the recurrence applies between steps b and a, of either
  // sign, so positive (growing) gates are exact too; a factor overflows only
  // where the state grows by more than e^88 inside one chunk, as the
  // recurrence's own state would. The masked upper triangle (s > t) takes
  // exp(0) instead of its difference, which with decaying gates would
  // overflow (inf * 0 = NaN).
  // ---------------------------------------------------------------------
  bool chunked = chunk > 0 && causal && !exclusive && !delta;
  Value C = cidx(chunk > 0 ? chunk : 1);
  int64_t cPadStatic = ((std::max<int64_t>(chunk, 1) + vl - 1) / vl) * vl;
  Value cPad = cidx(cPadStatic);
  auto f64 = b.getF64Type();
  Value Qc, Kc, Kt, Vc, Lc, Lt, A, Oc, Qd, Kh, Qh, Kr;
  // Feature widths: only identity-width maps share one d range for q and k;
  // the chunked path reads phi_q and phi_k over dk (equal when both apply).
  Value gw = vecGate ? dk : cidx(1); // gate width
  if (chunked) {
    auto dyn2 = [&](Type t) {
      return MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, t);
    };
    Qc = allocScratch(dyn2(f32), ValueRange{C, dq});
    Kc = allocScratch(dyn2(f32), ValueRange{C, dk});
    Kt = allocScratch(dyn2(f32), ValueRange{dk, cPad});
    Vc = allocScratch(dyn2(f32), ValueRange{C, dvPad});
    Lc = allocScratch(dyn2(f64), ValueRange{C, gw});
    Lt = allocScratch(dyn2(f64), ValueRange{gw, cPad});
    A = allocScratch(dyn2(f32), ValueRange{C, cPad});
    Oc = allocScratch(dyn2(f32), ValueRange{C, dvPad});
    Qd = allocScratch(dyn2(f32), ValueRange{C, dq});
    Kh = allocScratch(dyn2(f32), ValueRange{C, dk});
    Qh = allocScratch(dyn2(f32), ValueRange{C, dk});
    Kr = allocScratch(dyn2(f32), ValueRange{dk, cPad});
  }
  Value cf64Zero = arith::ConstantOp::create(b, b.getF64FloatAttr(0));
  Value floorLog = arith::ConstantOp::create(b, b.getF64FloatAttr(-80.0));
  auto expDiff = [&](Value hi, Value lo) -> Value {
    // exp(hi - lo) with the difference in f64 (of either sign: callers pass
    // cumulative log gates with lo's step at or before hi's).
    Value d = arith::SubFOp::create(b, hi, lo);
    return math::ExpOp::create(b, arith::TruncFOp::create(b, f32, d));
  };
  // dst[t][d] = src[t][d] * exp(L[hi][d] - L[lo][d]) for d < w, vectorized
  // along d (L rows are the cumulative log gates, row lo at or before row
  // hi; a null row stands for 0; without a gate this is a copy).
  auto decayRow = [&](Value dst, Value src, Value t, Value w, Value hiRow,
                      Value loRow) {
    auto vf64 = VectorType::get({vl}, f64);
    Value scalarFactor;
    if (hasGate && !vecGate) {
      Value hi =
          hiRow
              ? Value(memref::LoadOp::create(b, Lc, ValueRange{hiRow, cidx(0)}))
              : cf64Zero;
      Value lo =
          loRow
              ? Value(memref::LoadOp::create(b, Lc, ValueRange{loRow, cidx(0)}))
              : cf64Zero;
      scalarFactor = expDiff(hi, lo);
    }
    auto body = [&](Value d, bool vec) {
      Value x =
          vec ? Value(vector::LoadOp::create(b, vf32(), src, ValueRange{t, d}))
              : Value(memref::LoadOp::create(b, src, ValueRange{t, d}));
      if (hasGate && !vecGate) {
        x = arith::MulFOp::create(b, x,
                                  vec ? bcast(scalarFactor) : scalarFactor);
      } else if (vecGate) {
        auto row = [&](Value r) -> Value {
          if (!r)
            return vec ? Value(vector::BroadcastOp::create(b, vf64, cf64Zero))
                       : cf64Zero;
          return vec ? Value(vector::LoadOp::create(b, vf64, Lc,
                                                    ValueRange{r, d}))
                     : Value(memref::LoadOp::create(b, Lc, ValueRange{r, d}));
        };
        Value diff = arith::SubFOp::create(b, row(hiRow), row(loRow));
        Value e = math::ExpOp::create(
            b,
            arith::TruncFOp::create(b, vec ? Type(vf32()) : Type(f32), diff));
        x = arith::MulFOp::create(b, x, e);
      }
      if (vec)
        vector::StoreOp::create(b, x, dst, ValueRange{t, d});
      else
        memref::StoreOp::create(b, x, dst, ValueRange{t, d});
    };
    Value full =
        arith::SubIOp::create(b, w, arith::RemUIOp::create(b, w, cidx(vl)));
    loop(cidx(0), full, cidx(vl), {}, [&](Value d, ValueRange) {
      body(d, true);
      return SmallVector<Value>{};
    });
    loop(full, w, cidx(1), {}, [&](Value d, ValueRange) {
      body(d, false);
      return SmallVector<Value>{};
    });
  };
  auto emitChunks = [&](Value bIdx, Value h, Value hk) {
    Value bI64 = toI64(bIdx), hI64 = toI64(h);
    Value nChunks = arith::CeilDivUIOp::create(b, N, C);
    loop(cidx(0), nChunks, cidx(1), {}, [&](Value ch, ValueRange) {
      Value t0 = arith::MulIOp::create(b, ch, C);
      Value cn = arith::MinUIOp::create(b, C, arith::SubIOp::create(b, N, t0));
      // 1. Features, values and cumulative log gates of the chunk.
      loop(cidx(0), cn, cidx(1), {}, [&](Value i, ValueRange) {
        Value t = arith::AddIOp::create(b, t0, i);
        emitFeatureMap(op.getFeatureMapQ(), q, bIdx, h, t, phiQ);
        emitFeatureMap(op.getFeatureMapK(), k, bIdx, hk, t, phiK);
        loadV(bIdx, hk, t);
        loop(cidx(0), dq, cidx(1), {}, [&](Value d, ValueRange) {
          memref::StoreOp::create(
              b, memref::LoadOp::create(b, phiQ, ValueRange{d}), Qc,
              ValueRange{i, d});
          return SmallVector<Value>{};
        });
        loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
          Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
          memref::StoreOp::create(b, kd, Kc, ValueRange{i, d});
          memref::StoreOp::create(b, kd, Kt, ValueRange{d, i});
          return SmallVector<Value>{};
        });
        loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
          Value col = arith::MulIOp::create(b, c, cidx(vl));
          vector::StoreOp::create(
              b, vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col}), Vc,
              ValueRange{i, col});
          return SmallVector<Value>{};
        });
        loop(cidx(0), gw, cidx(1), {}, [&](Value d, ValueRange) {
          Value lg = cf64Zero;
          if (hasGate) {
            lg = emitRegion(b, op.getGate(), {bI64, hI64, toI64(t), toI64(d)},
                            env);
            lg = arith::MaximumFOp::create(b, lg, floorLog);
          }
          Value prev = cf64Zero;
          Value isFirst = arith::CmpIOp::create(b, P::eq, i, cidx(0));
          Value iPrev = arith::SelectOp::create(
              b, isFirst, cidx(0), arith::SubIOp::create(b, i, cidx(1)));
          prev = arith::SelectOp::create(
              b, isFirst, cf64Zero,
              memref::LoadOp::create(b, Lc, ValueRange{iPrev, d}));
          Value cum = arith::AddFOp::create(b, prev, lg);
          memref::StoreOp::create(b, cum, Lc, ValueRange{i, d});
          memref::StoreOp::create(b, cum, Lt, ValueRange{d, i});
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{};
      });
      // Pad columns s >= cn: zero keys (masked anyway).
      loop(cn, cPad, cidx(1), {}, [&](Value i, ValueRange) {
        loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
          memref::StoreOp::create(b, zero, Kt, ValueRange{d, i});
          return SmallVector<Value>{};
        });
        loop(cidx(0), gw, cidx(1), {}, [&](Value d, ValueRange) {
          memref::StoreOp::create(b, cf64Zero, Lt, ValueRange{d, i});
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{};
      });
      // 2. A[t][s] (s <= t), vectorized along s, in blocks of vl rows. For a
      // row block starting at r0 and the columns s < r0 before it, with the
      // block's first row as reference point:
      //   A[t][s] = sum_d (phiq[t,d] e^{L[t,d]-L[r0,d]}) (phik[s,d]
      //   e^{L[r0,d]-L[s,d]})
      // is a GEMM of exact decays over the steps s..r0 and r0..t (each <= 1
      // for decaying gates; either one overflows only where the state of the
      // recurrence grows as much). The diagonal block takes e^{L[t,d]-L[s,d]}
      // per element.
      auto vidx = VectorType::get({vl}, b.getIndexType());
      Value step = vector::StepOp::create(b, vidx);
      auto vf64 = VectorType::get({vl}, f64);
      Value vZero64 = vector::BroadcastOp::create(b, vf64, cf64Zero);
      // The causal mask of columns s0 .. s0 + vl of row t: s <= t.
      auto causalKeep = [&](Value t, Value s0) -> Value {
        Value sIdx = arith::AddIOp::create(
            b, vector::BroadcastOp::create(b, vidx, s0), step);
        return arith::CmpIOp::create(b, P::ule, sIdx,
                                     vector::BroadcastOp::create(b, vidx, t));
      };
      // exp(L[t] - L[s]) for those columns, exp(0) where masked: the masked
      // differences (s > t) would overflow for decaying gates.
      auto maskedDecay = [&](Value t, Value s0, Value lt, Value ls) -> Value {
        Value diff = arith::SelectOp::create(
            b, causalKeep(t, s0), arith::SubFOp::create(b, lt, ls), vZero64);
        return math::ExpOp::create(b, arith::TruncFOp::create(b, vf32(), diff));
      };
      auto maskStore = [&](Value t, Value s0, Value aV) {
        vector::StoreOp::create(
            b, arith::SelectOp::create(b, causalKeep(t, s0), aV, zeroV), A,
            ValueRange{t, s0});
      };
      Value nRB = arith::CeilDivUIOp::create(b, cn, cidx(vl));
      if (vecGate) {
        loop(cidx(0), cn, cidx(1), {}, [&](Value t, ValueRange) {
          Value r0 = arith::MulIOp::create(
              b, arith::DivUIOp::create(b, t, cidx(vl)), cidx(vl));
          decayRow(Qh, Qc, t, dk, t, r0);
          return SmallVector<Value>{};
        });
      }
      loop(cidx(0), nRB, cidx(1), {}, [&](Value rb, ValueRange) {
        Value r0 = arith::MulIOp::create(b, rb, cidx(vl));
        Value rows = arith::MinUIOp::create(b, cidx(vl),
                                            arith::SubIOp::create(b, cn, r0));
        if (vecGate) {
          // Kr[d][s] = phik[s,d] e^{L[r0,d]-L[s,d]} for s < r0.
          loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
            Value lr = vector::BroadcastOp::create(
                b, vf64, memref::LoadOp::create(b, Lc, ValueRange{r0, d}));
            loop(cidx(0), r0, cidx(vl), {}, [&](Value s0, ValueRange) {
              Value diff = arith::SubFOp::create(
                  b, lr,
                  vector::LoadOp::create(b, vf64, Lt, ValueRange{d, s0}));
              Value e = math::ExpOp::create(
                  b, arith::TruncFOp::create(b, vf32(), diff));
              Value kv =
                  vector::LoadOp::create(b, vf32(), Kt, ValueRange{d, s0});
              vector::StoreOp::create(b, arith::MulFOp::create(b, kv, e), Kr,
                                      ValueRange{d, s0});
              return SmallVector<Value>{};
            });
            return SmallVector<Value>{};
          });
          gemm(
              rows, rb, [&](Value) { return dk; },
              [&](Value i, Value d) {
                return Value(memref::LoadOp::create(
                    b, Qh, ValueRange{arith::AddIOp::create(b, r0, i), d}));
              },
              [&](Value d, Value sv) {
                return Value(vector::LoadOp::create(
                    b, vf32(), Kr,
                    ValueRange{d, arith::MulIOp::create(b, sv, cidx(vl))}));
              },
              [&](Value, Value) { return zeroV; },
              [&](Value i, Value sv, Value v) {
                vector::StoreOp::create(
                    b, v, A,
                    ValueRange{arith::AddIOp::create(b, r0, i),
                               arith::MulIOp::create(b, sv, cidx(vl))});
              });
          // Diagonal block, element-wise decay.
          loop(cidx(0), rows, cidx(1), {}, [&](Value i, ValueRange) {
            Value t = arith::AddIOp::create(b, r0, i);
            auto acc =
                loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
                  Value qd = memref::LoadOp::create(b, Qc, ValueRange{t, d});
                  Value kv =
                      vector::LoadOp::create(b, vf32(), Kt, ValueRange{d, r0});
                  Value lt = vector::BroadcastOp::create(
                      b, vf64, memref::LoadOp::create(b, Lc, ValueRange{t, d}));
                  Value e = maskedDecay(
                      t, r0, lt,
                      vector::LoadOp::create(b, vf64, Lt, ValueRange{d, r0}));
                  return SmallVector<Value>{vector::FMAOp::create(
                      b, bcast(qd), arith::MulFOp::create(b, kv, e), a[0])};
                });
            maskStore(t, r0, acc.getResult(0));
            return SmallVector<Value>{};
          });
          return SmallVector<Value>{};
        }
        // No gate or a scalar gate: A = phiq phik^T over the columns up to
        // the end of this row block, then the scalar decay e^{L[t]-L[s]}.
        Value nCols = arith::AddIOp::create(b, rb, cidx(1));
        gemm(
            rows, nCols, [&](Value) { return dk; },
            [&](Value i, Value d) {
              return Value(memref::LoadOp::create(
                  b, Qc, ValueRange{arith::AddIOp::create(b, r0, i), d}));
            },
            [&](Value d, Value sv) {
              return Value(vector::LoadOp::create(
                  b, vf32(), Kt,
                  ValueRange{d, arith::MulIOp::create(b, sv, cidx(vl))}));
            },
            [&](Value, Value) { return zeroV; },
            [&](Value i, Value sv, Value v) {
              Value t = arith::AddIOp::create(b, r0, i);
              Value s0 = arith::MulIOp::create(b, sv, cidx(vl));
              if (hasGate) {
                Value lt = vector::BroadcastOp::create(
                    b, vf64,
                    memref::LoadOp::create(b, Lc, ValueRange{t, cidx(0)}));
                v = arith::MulFOp::create(
                    b, v,
                    maskedDecay(t, s0, lt,
                                vector::LoadOp::create(
                                    b, vf64, Lt, ValueRange{cidx(0), s0})));
              }
              maskStore(t, s0, v);
            });
        return SmallVector<Value>{};
      });
      // Decay-weighted features, computed once per chunk:
      //   Qt~[t][d] = phiq[t,d] exp(L[t,d]),  Kh[s][d] = phik[s,d]
      //   exp(L[last,d] - L[s,d]), gamma[d] = exp(L[last,d]).
      Value last = arith::SubIOp::create(b, cn, cidx(1));
      loop(cidx(0), cn, cidx(1), {}, [&](Value t, ValueRange) {
        decayRow(Qd, Qc, t, dq, t, Value());
        decayRow(Kh, Kc, t, dk, last, t);
        return SmallVector<Value>{};
      });
      // 3. Outputs: Oc = A Vc (intra, causal blocks) + Qt~ S (inter).
      gemm(
          cn, nC,
          [&](Value rowEnd) {
            return Value(arith::MinUIOp::create(b, rowEnd, cn));
          },
          [&](Value t, Value s2) {
            return Value(memref::LoadOp::create(b, A, ValueRange{t, s2}));
          },
          [&](Value s2, Value c) {
            return Value(vector::LoadOp::create(
                b, vf32(), Vc,
                ValueRange{s2, arith::MulIOp::create(b, c, cidx(vl))}));
          },
          [&](Value, Value) { return zeroV; },
          [&](Value t, Value c, Value v) {
            vector::StoreOp::create(
                b, v, Oc, ValueRange{t, arith::MulIOp::create(b, c, cidx(vl))});
          });
      gemm(
          cn, nC, [&](Value) { return dq; },
          [&](Value t, Value d) {
            return Value(memref::LoadOp::create(b, Qd, ValueRange{t, d}));
          },
          [&](Value d, Value c) {
            return Value(vector::LoadOp::create(
                b, vf32(), S,
                ValueRange{d, arith::MulIOp::create(b, c, cidx(vl))}));
          },
          [&](Value t, Value c) {
            return Value(vector::LoadOp::create(
                b, vf32(), Oc,
                ValueRange{t, arith::MulIOp::create(b, c, cidx(vl))}));
          },
          [&](Value t, Value c, Value v) {
            vector::StoreOp::create(
                b, v, Oc, ValueRange{t, arith::MulIOp::create(b, c, cidx(vl))});
          });
      loop(cidx(0), cn, cidx(1), {}, [&](Value t, ValueRange) {
        Value tAbs = arith::AddIOp::create(b, t0, t);
        Value factor = scale;
        if (normalize) {
          auto den = loop(
              cidx(0), arith::AddIOp::create(b, t, cidx(1)), cidx(1), {zero},
              [&](Value s2, ValueRange a) {
                return SmallVector<Value>{arith::AddFOp::create(
                    b, a[0], memref::LoadOp::create(b, A, ValueRange{t, s2}))};
              });
          auto den2 =
              loop(cidx(0), dq, cidx(1), {den.getResult(0)},
                   [&](Value d, ValueRange a) {
                     Value qd = memref::LoadOp::create(b, Qd, ValueRange{t, d});
                     Value zd = memref::LoadOp::create(b, z, ValueRange{d});
                     return SmallVector<Value>{arith::AddFOp::create(
                         b, a[0], arith::MulFOp::create(b, qd, zd))};
                   });
          Value dn = den2.getResult(0);
          Value nz =
              arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, dn, zero);
          factor = arith::SelectOp::create(
              b, nz, arith::DivFOp::create(b, cf32(1), dn), zero);
        }
        loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
          Value col = arith::MulIOp::create(b, c, cidx(vl));
          storeO(bIdx, h, tAbs, c,
                 vector::LoadOp::create(b, vf32(), Oc, ValueRange{t, col}),
                 factor);
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{};
      });
      // 4. State: z = gamma z + sum_s Kh[s]; S = gamma S + Kh^T Vc.
      loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
        Value gd = vecGate ? d : cidx(0);
        Value gamma = cf32(1);
        if (hasGate)
          gamma = math::ExpOp::create(
              b,
              arith::TruncFOp::create(
                  b, f32, memref::LoadOp::create(b, Lc, ValueRange{last, gd})));
        memref::StoreOp::create(b, gamma, gBuf, ValueRange{d});
        auto zs =
            loop(cidx(0), cn, cidx(1), {zero}, [&](Value s2, ValueRange a) {
              return SmallVector<Value>{arith::AddFOp::create(
                  b, a[0], memref::LoadOp::create(b, Kh, ValueRange{s2, d}))};
            });
        Value zd = memref::LoadOp::create(b, z, ValueRange{d});
        memref::StoreOp::create(
            b,
            arith::AddFOp::create(b, arith::MulFOp::create(b, zd, gamma),
                                  zs.getResult(0)),
            z, ValueRange{d});
        return SmallVector<Value>{};
      });
      gemm(
          dk, nC, [&](Value) { return cn; },
          [&](Value d, Value s2) {
            return Value(memref::LoadOp::create(b, Kh, ValueRange{s2, d}));
          },
          [&](Value s2, Value c) {
            return Value(vector::LoadOp::create(
                b, vf32(), Vc,
                ValueRange{s2, arith::MulIOp::create(b, c, cidx(vl))}));
          },
          [&](Value d, Value c) {
            Value sd = vector::LoadOp::create(
                b, vf32(), S,
                ValueRange{d, arith::MulIOp::create(b, c, cidx(vl))});
            Value g = memref::LoadOp::create(b, gBuf, ValueRange{d});
            return Value(arith::MulFOp::create(b, sd, bcast(g)));
          },
          [&](Value d, Value c, Value v) {
            vector::StoreOp::create(
                b, v, S, ValueRange{d, arith::MulIOp::create(b, c, cidx(vl))});
          });
      return SmallVector<Value>{};
    });
  };

  // The work items run only when every scratch buffer was allocated.
  beginGuardedBody();
  loop(begin, end, cidx(1), {}, [&](Value item, ValueRange) {
    Value h = arith::RemUIOp::create(b, item, Hq);
    Value bIdx = arith::DivUIOp::create(b, item, Hq);
    Value hk = arith::DivUIOp::create(b, h, G);
    Value bI64 = toI64(bIdx), hI64 = toI64(h);
    // The state starts at zero, or from the carried state (decode).
    Value stateIn = env.aux.lookup("state"), zIn = env.aux.lookup("zstate");
    loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(
          b,
          zIn ? Value(memref::LoadOp::create(b, zIn, ValueRange{bIdx, h, d}))
              : zero,
          z, ValueRange{d});
      loop(cidx(0), dvPad, cidx(1), {}, [&](Value c, ValueRange) {
        Value x = zero;
        if (stateIn) {
          Value inRange = arith::CmpIOp::create(b, P::ult, c, Dv);
          auto ifOp = scf::IfOp::create(b, TypeRange{f32}, inRange, true);
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(&ifOp.getThenRegion().front());
          scf::YieldOp::create(b, Value(memref::LoadOp::create(
                                      b, stateIn, ValueRange{bIdx, h, d, c})));
          b.setInsertionPointToStart(&ifOp.getElseRegion().front());
          scf::YieldOp::create(b, zero);
          b.setInsertionPointAfter(ifOp);
          x = ifOp.getResult(0);
        }
        memref::StoreOp::create(b, x, S, ValueRange{d, c});
        return SmallVector<Value>{};
      });
      return SmallVector<Value>{};
    });
    // Writes the final state back (decode).
    auto writeState = [&]() {
      if (!stateIn)
        return;
      loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
        if (zIn)
          memref::StoreOp::create(b,
                                  memref::LoadOp::create(b, z, ValueRange{d}),
                                  zIn, ValueRange{bIdx, h, d});
        loop(cidx(0), Dv, cidx(1), {}, [&](Value c, ValueRange) {
          memref::StoreOp::create(
              b, memref::LoadOp::create(b, S, ValueRange{d, c}), stateIn,
              ValueRange{bIdx, h, d, c});
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{};
      });
    };
    if (exclusive && !op.getBonus().empty())
      loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
        Value u = emitRegion(b, op.getBonus(), {hI64, toI64(d)}, env);
        memref::StoreOp::create(b, toF32(u), uBuf, ValueRange{d});
        return SmallVector<Value>{};
      });

    if (chunked) {
      emitChunks(bIdx, h, hk);
      writeState();
      return SmallVector<Value>{};
    }
    Value steps = causal ? N : M;
    loop(cidx(0), steps, cidx(1), {}, [&](Value t, ValueRange) {
      Value tI64 = toI64(t);
      emitFeatureMap(op.getFeatureMapK(), k, bIdx, hk, t, phiK);
      if (causal)
        emitFeatureMap(op.getFeatureMapQ(), q, bIdx, h, t, phiQ);
      loadV(bIdx, hk, t);
      // Gates g_d = exp(gate).
      Value scalarG = cf32(1);
      if (hasGate && !vecGate)
        scalarG = toF32(math::ExpOp::create(
            b, emitRegion(b, op.getGate(), {bI64, hI64, tI64, toI64(cidx(0))},
                          env)));
      if (vecGate)
        loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
          Value lg =
              emitRegion(b, op.getGate(), {bI64, hI64, tI64, toI64(d)}, env);
          memref::StoreOp::create(b, toF32(math::ExpOp::create(b, lg)), gBuf,
                                  ValueRange{d});
          return SmallVector<Value>{};
        });
      auto gateAt = [&](Value d) -> Value {
        return vecGate ? Value(memref::LoadOp::create(b, gBuf, ValueRange{d}))
                       : scalarG;
      };
      Value beta;
      if (delta)
        beta = toF32(emitRegion(b, op.getBeta(), {bI64, hI64, tI64}, env));
      // Exclusive bonus scalar: sum_d phi_q[d] u[d] phi_k[d].
      Value bonusDot;
      if (exclusive) {
        bonusDot = zero;
        if (!op.getBonus().empty())
          bonusDot =
              loop(cidx(0), dq, cidx(1), {zero}, [&](Value d, ValueRange a) {
                Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
                Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
                Value ud = memref::LoadOp::create(b, uBuf, ValueRange{d});
                return SmallVector<Value>{arith::AddFOp::create(
                    b, a[0],
                    arith::MulFOp::create(b, qd,
                                          arith::MulFOp::create(b, ud, kd)))};
              }).getResult(0);
      }
      // Delta rule: w = sum_d phi_k[d] g_d S[d,:]; vBuf <- beta (v - w).
      if (delta)
        loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
          Value col = arith::MulIOp::create(b, c, cidx(vl));
          auto w =
              loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
                Value sd =
                    vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
                Value kd = arith::MulFOp::create(
                    b, memref::LoadOp::create(b, phiK, ValueRange{d}),
                    gateAt(d));
                return SmallVector<Value>{
                    vector::FMAOp::create(b, bcast(kd), sd, a[0])};
              });
          Value vv = vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col});
          // The exclusive bonus reads this step's v itself (not the delta
          // update that replaces it in vBuf): keep its term in wBuf.
          if (exclusive)
            vector::StoreOp::create(
                b, arith::MulFOp::create(b, bcast(bonusDot), vv), wBuf,
                ValueRange{col});
          Value u = arith::MulFOp::create(
              b, bcast(beta), arith::SubFOp::create(b, vv, w.getResult(0)));
          vector::StoreOp::create(b, u, vBuf, ValueRange{col});
          return SmallVector<Value>{};
        });
      // The exclusive readout normalizes by the state before this step:
      // phi_q . (z + u * phi_k).
      Value exclusiveFactor;
      if (exclusive && normalize)
        exclusiveFactor = normFactor(bonusDot);
      // Update S (and z), reading out inclusive / exclusive on the way.
      loop(cidx(0), dk, cidx(1), {}, [&](Value d, ValueRange) {
        Value zd = memref::LoadOp::create(b, z, ValueRange{d});
        Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
        Value zn = arith::AddFOp::create(
            b, arith::MulFOp::create(b, zd, gateAt(d)), kd);
        memref::StoreOp::create(b, zn, z, ValueRange{d});
        return SmallVector<Value>{};
      });
      loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
        Value col = arith::MulIOp::create(b, c, cidx(vl));
        Value vv = vector::LoadOp::create(b, vf32(), vBuf, ValueRange{col});
        auto acc =
            loop(cidx(0), dk, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
              Value sd =
                  vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
              Value kd = memref::LoadOp::create(b, phiK, ValueRange{d});
              Value sn = vector::FMAOp::create(
                  b, bcast(kd), vv,
                  arith::MulFOp::create(b, sd, bcast(gateAt(d))));
              vector::StoreOp::create(b, sn, S, ValueRange{d, col});
              if (!causal)
                return SmallVector<Value>{a[0]};
              // phi_q has Dq entries; Dq == Dk whenever both are read here.
              Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
              Value readS = exclusive ? sd : sn;
              return SmallVector<Value>{
                  vector::FMAOp::create(b, bcast(qd), readS, a[0])};
            });
        if (causal) {
          Value a = acc.getResult(0);
          if (exclusive && delta)
            a = arith::AddFOp::create(
                b, a, vector::LoadOp::create(b, vf32(), wBuf, ValueRange{col}));
          else if (exclusive)
            a = vector::FMAOp::create(b, bcast(bonusDot), vv, a);
          vector::StoreOp::create(b, a, wBuf, ValueRange{col});
        }
        return SmallVector<Value>{};
      });
      if (causal) {
        Value factor = exclusiveFactor ? exclusiveFactor : normFactor(Value());
        loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
          Value col = arith::MulIOp::create(b, c, cidx(vl));
          Value a = vector::LoadOp::create(b, vf32(), wBuf, ValueRange{col});
          storeO(bIdx, h, t, c, a, factor);
          return SmallVector<Value>{};
        });
      }
      return SmallVector<Value>{};
    });
    writeState();
    // Non-causal: every query reads the final state.
    if (!causal)
      loop(cidx(0), N, cidx(1), {}, [&](Value t, ValueRange) {
        emitFeatureMap(op.getFeatureMapQ(), q, bIdx, h, t, phiQ);
        Value factor = normFactor(Value());
        loop(cidx(0), nC, cidx(1), {}, [&](Value c, ValueRange) {
          Value col = arith::MulIOp::create(b, c, cidx(vl));
          auto acc =
              loop(cidx(0), dq, cidx(1), {zeroV}, [&](Value d, ValueRange a) {
                Value sd =
                    vector::LoadOp::create(b, vf32(), S, ValueRange{d, col});
                Value qd = memref::LoadOp::create(b, phiQ, ValueRange{d});
                return SmallVector<Value>{
                    vector::FMAOp::create(b, bcast(qd), sd, a[0])};
              });
          storeO(bIdx, h, t, c, acc.getResult(0), factor);
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{};
      });
    return SmallVector<Value>{};
  });
  finishKernel();
  return success();
}

LogicalResult mlir::attn::cpu::buildLinearKernel(SpecOp spec, ModuleOp module,
                                                 int64_t vectorWidth,
                                                 int64_t chunk) {
  return LinearKernelBuilder(spec, module, vectorWidth, chunk).build();
}
