//===- LinearBackwardToGPU.cpp - the linear family's gradients on GPUs ---===//
//
// The GPU patterns of attn.tiled_linear_attention_backward
// (ChunkBackwardLowering): the CPU kernel's algorithm (LinearBackwardToCPU.cpp,
// the recurrence run backwards chunk by chunk from sqrt(N) checkpoints) with
// the value columns in threads instead of SIMD lanes.
//
// One CTA per (b, hk) runs the query heads of its group one after the other
// (they add to the same dk, dv rows: plain stores, no atomics), D + 32
// threads for the head-dim variant D: thread j owns column j of the state
// S [Dphi x Dv] and of its adjoint dS. The normalizer's state z is column
// Dv (its value is 1, its readout the denominator, its adjoint dz), so the
// normalized and the plain readout share every loop; the delta rule has no
// normalizer (the language forbids both).
//
// Per step, per feature row d, a thread updates its own element, so the
// state's products are thread-local; the row sums the gradients need
// (dphi_q[d] = S_d . dnum, dphi_k[d] = dS_d . corr, the gate's and the delta
// rule's dots) are warp shuffle sums written to scratch per warp and added
// up by thread d after the row loop. What is one value per step or per row
// of features (the feature maps and their VJPs, the gates and beta, the
// regions' chain rule into the aux gradients) runs in thread 0 between two
// barriers: a row is Dqk wide, next to the Dphi x Dv state work.
//
// Global scratch (an i8 buffer the runtime allocates, `perCta` floats per
// CTA): the checkpoints (one state per chunk of r = ceil(sqrt(N)) steps),
// one chunk's recomputed states, S and dS, then the per-row vectors. A state
// is dphiMax x T floats (the variant's largest Dphi, T threads), so the
// runtime sizes the buffer from two attributes and N alone:
//   perCta = (ceil(max(N, 1) / r) + r + 2) * attn.scratch_state_floats
//            + attn.scratch_fixed_floats.
// This is the correctness-first form: no tensor cores, ~6 barriers per step
// (the chunked, fla-style backward with mma tiles is the next step, as on
// the CPU).
//
//===----------------------------------------------------------------------===//

#include "attn/Conversion/LinearFeatureMapsImpl.h"
#include "attn/Conversion/LinearGpuKernels.h"
#include "attn/Conversion/TileLowering.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

using namespace mlir;
using namespace mlir::attn;

template class mlir::attn::LinearFeatureMaps<mlir::attn::KernelScaffold>;

namespace {

using P = arith::CmpIPredicate;
using F = arith::CmpFPredicate;

/// attn.block_kv of a kernel that runs all keys of a (b, hk) in one CTA.
constexpr int64_t kWholeSequence = int64_t(1) << 30;

class LinearBackwardGpuBuilder : public LinearFeatureMaps<KernelScaffold>,
                                 public ChunkBackwardLowering,
                                 private LinearForm {
public:
  LinearBackwardGpuBuilder(SpecOp spec, gpu::GPUModuleOp gpuModule,
                           int64_t headDim)
      : LinearFeatureMaps(
            spec.getTiledLinearAttentionBackward().getProjection().value_or(""),
            spec),
        LinearForm(spec.getTiledLinearAttentionBackward()),
        op(spec.getTiledLinearAttentionBackward()), D(headDim) {
    b.setInsertionPointToEnd(gpuModule.getBody());
  }
  LogicalResult build();

  ATTN_CHUNK_BACKWARD_LOWERING_PATTERNS

private:
  /// A state in scratch: rows row0 .. row0 + Dphi of `mem`, T per row.
  struct StateRef {
    Value mem, row0;
  };
  /// What a step reads besides the state: the scalar gate's exp(gate) (1
  /// without one; per-feature gates: gBuf), beta, the bonus term.
  struct Step {
    Value tI64, g, beta, c;
  };

  // Set-up.
  LogicalResult checkSpec();
  gpu::GPUFuncOp createKernel();
  void emitPrologue(Block *entry);
  void allocScratch(Value scratch);
  void emitItem();

  // Pieces of a step.
  Step stageStep(Value t, bool withQuery);
  /// corr = v (or beta (v - pred), pred = sum_d phi_k[d] g_d Sp[d][j]).
  std::pair<Value, Value> correction(const Step &s, StateRef sp, Value vj);
  void forwardStep(Value t, StateRef from, StateRef to);
  /// dnum (this column's) and dden of the readout of a step.
  std::pair<Value, Value> readoutAdjoint(const Step &s, StateRef sp,
                                         bool afterStep, Value vj, Value doj,
                                         Value corr);
  void reverseStep(Value t, StateRef sp);
  /// In thread 0: dq[b, h, t] = vjp(phi_q); dk[b, hk, t] += vjp(phi_k).
  void storeRowGrads(Value t, bool query, bool key);
  void regionGrad(Region &region, ArrayRef<Value> args, Value seed,
                  bool owned) {
    if (auxGrads.empty())
      return;
    emitRegionGradient(b, region, args, seed, env, auxGrads, owned);
    b.setLoc(spec.getLoc());
  }
  Value region(Region &r, ArrayRef<Value> args) {
    Value x = toF32(emitRegion(b, r, args, env));
    b.setLoc(spec.getLoc());
    return x;
  }

  // Threads and scratch.
  void barrier() { gpu::BarrierOp::create(b); }
  /// body() in thread 0, then a barrier.
  void serial(function_ref<void()> body) {
    ifThen(cmp(P::eq, tid, cidx(0)), body);
    barrier();
  }
  Value warpSum(Value x) {
    for (int32_t off = 16; off >= 1; off /= 2) {
      auto sh = gpu::ShuffleOp::create(b, x, ci32(off), ci32(32),
                                       gpu::ShuffleMode::XOR);
      x = fadd(x, sh.getShuffleResult());
    }
    return x;
  }
  /// The CTA's sum of x, in every thread (two barriers).
  Value ctaSum(Value x);
  /// Warp sums of row d's partial `x` into slot `which` of `part`.
  void storePart(int which, Value d, Value x);
  /// Row d's sum of slot `which` over the warps.
  Value partSum(int which, Value d);
  /// This thread's element of row d of a state.
  Value elem(StateRef s, Value d) {
    return add(mul(add(s.row0, d), cidx(T)), j);
  }
  Value ld(Value mem, Value i) {
    return memref::LoadOp::create(b, mem, ValueRange{i});
  }
  void st(Value x, Value mem, Value i) {
    memref::StoreOp::create(b, x, mem, ValueRange{i});
  }
  /// This thread's column of row [b, head, t, :] of `mem`: 0 past Dv,
  /// `zValue` in the normalizer's column.
  Value column(Value mem, Value head, Value t, Value zValue);
  Value gateAt(const Step &s, Value d) { return vecGate ? ld(gBuf, d) : s.g; }
  void zeroColumn(StateRef s) {
    forEach(cidx(0), dphiV, [&](Value d) { st(cf32(0), s.mem, elem(s, d)); });
  }
  void copyColumn(StateRef from, StateRef to) {
    forEach(cidx(0), dphiV, [&](Value d) {
      st(ld(from.mem, elem(from, d)), to.mem, elem(to, d));
    });
  }
  /// Rows d = tid, tid + T, ... < Dphi.
  void forRows(function_ref<void(Value)> body) {
    forEach(cidx(0), ceilDiv(dphiV, cidx(T)), [&](Value i) {
      Value d = add(tid, mul(i, cidx(T)));
      ifThen(ult(d, dphiV), [&] { body(d); });
    });
  }

  TiledLinearAttentionBackwardOp op;
  int64_t D, T = 0, nWarps = 0, dphiMax = 0;
  Type elt;
  Value dout, dq, dk, dv;
  llvm::StringMap<Value> auxGrads;
  Value scale, Hkv, dphiV, tid, warp, lane, j, colVal, colZ, red;
  Value hk, h, bI64, hI64;
  Value chunkLen, nChunks;
  // The chunk being lowered.
  ChunkCursor chunk;
  // Scratch views (f32, 1-D).
  Value Ck, Seg, S, dS, phiQ, phiK, gBuf, dGbuf, uBuf, du, dfq, dfk, part,
      dxBuf, scal;
};

} // namespace

//===----------------------------------------------------------------------===//
// Set-up
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardGpuBuilder::checkSpec() {
  FailureOr<Type> qkvType = uniformHalfPrecisionQKV(spec, "");
  if (failed(qkvType))
    return failure();
  elt = *qkvType;
  if (failed(rejectCarriedLinearState(spec)))
    return failure();
  if (D != 32 && D != 64 && D != 128)
    return spec.emitError() << "CUDA linear-attention kernels are generated "
                               "for head dims 32, 64 and 128, got "
                            << D;
  switch (fmK) {
  case FeatureMapKind::random:
    return spec.emitError()
           << "the CUDA backward does not support the random feature map yet "
              "(its feature count is the projection's rows, which the "
              "runtime's scratch sizing does not read); use the CPU target";
  case FeatureMapKind::pos_neg:
    dphiMax = 2 * D;
    break;
  case FeatureMapKind::taylor2:
    dphiMax = 1 + D + D * (D + 1) / 2;
    break;
  default:
    dphiMax = D;
  }
  // Columns 0 .. Dv - 1 and the normalizer's column Dv <= D.
  T = D + 32;
  nWarps = T / 32;
  return success();
}

gpu::GPUFuncOp LinearBackwardGpuBuilder::createKernel() {
  MLIRContext *ctx = b.getContext();
  SmallVector<Type> args =
      backwardKernelArgTypes(spec, elt, op.getGradientInputs());
  args.push_back(MemRefType::get({ShapedType::kDynamic}, b.getI8Type()));
  std::string name = ("attn_" + spec.getSymName() + "_bwd_d" + Twine(D)).str();
  auto fn = gpu::GPUFuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  setLaunchContract(fn, kWholeSequence, T, /*sharedBytes=*/nWarps * 4, D);
  setBackwardContract(fn, kWholeSequence, op.getGradientInputs());
  // The scratch layout (allocScratch): states of dphiMax x T floats; per-row
  // vectors (8), the row sums' per-warp slots (4), dx, 8 scalars.
  fn->setAttr("attn.scratch_state_floats", b.getI64IntegerAttr(dphiMax * T));
  fn->setAttr("attn.scratch_fixed_floats",
              b.getI64IntegerAttr((8 + 4 * nWarps) * dphiMax + D + 8));
  return fn;
}

void LinearBackwardGpuBuilder::emitPrologue(Block *entry) {
  bindCanonical(entry);
  env.scalarLanes = true;
  env.vectorWidth = 1;
  bindRegionEnv(entry, env);
  b.setLoc(spec.getLoc());
  // dlse is not read: a linear attention has no lse. The scratch is last.
  BackwardArgs args = bindBackwardArgs(entry, op.getGradientInputs());
  dout = args.dout;
  dq = args.dq;
  dk = args.dk;
  dv = args.dv;
  auxGrads = std::move(args.auxGrads);
  Value scratch = entry->getArguments().back();
  scale = normalize ? cf32(1) : emitScale(op.getScale(), env);
  b.setLoc(spec.getLoc());
  Hkv = memref::DimOp::create(b, k, 1);
  dphiV = dphi(fmK);

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  warp = divu(tid, cidx(32));
  lane = remu(tid, cidx(32));
  j = tid;
  colVal = ult(j, Dv);
  colZ = normalize ? cmp(P::eq, j, Dv)
                   : Value(arith::ConstantOp::create(b, b.getBoolAttr(false)));
  Value bh = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  hk = remu(bh, Hkv);
  bIdx = divu(bh, Hkv);
  bI64 = toI64(bIdx);

  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), nullptr, wg));
  red = memref::ViewOp::create(
      b, MemRefType::get({nWarps}, b.getF32Type(), nullptr, wg), smem, cidx(0),
      ValueRange{});
  allocScratch(scratch);
}

void LinearBackwardGpuBuilder::allocScratch(Value scratch) {
  // r = ceil(sqrt(N)) exactly: the f32 estimate corrected by one either
  // way (the runtime computes it in integers, and the layouts must agree).
  Value n = maxu(N, cidx(1));
  Value est = toIdx(arith::FPToUIOp::create(
      b, b.getI64Type(),
      math::SqrtOp::create(
          b, arith::UIToFPOp::create(b, b.getF32Type(), toI64(n)))));
  est = maxu(est, cidx(1));
  Value r = select(ult(mul(est, est), n), add(est, cidx(1)), est);
  Value rm1 = sub(r, cidx(1));
  r = select(land(ult(cidx(1), r), cmp(P::uge, mul(rm1, rm1), n)), rm1, r);
  // At least one checkpoint slot: the non-causal key scan saves one.
  Value nCk = ceilDiv(n, r);
  int64_t stateF = dphiMax * T;
  int64_t fixedF = (8 + 4 * nWarps) * dphiMax + D + 8;
  Value perCta =
      add(mul(add(add(nCk, r), cidx(2)), cidx(stateF)), cidx(fixedF));
  Value off = mul(gpu::BlockIdOp::create(b, gpu::Dimension::y), perCta);
  auto view = [&](Value floats) {
    Value v = memref::ViewOp::create(
        b, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()), scratch,
        mul(off, cidx(4)), ValueRange{floats});
    off = add(off, floats);
    return v;
  };
  Ck = view(mul(nCk, cidx(stateF)));
  Seg = view(mul(r, cidx(stateF)));
  S = view(cidx(stateF));
  dS = view(cidx(stateF));
  for (Value *buf : {&phiQ, &phiK, &gBuf, &dGbuf, &uBuf, &du, &dfq, &dfk})
    *buf = view(cidx(dphiMax));
  part = view(cidx(4 * nWarps * dphiMax));
  dxBuf = view(cidx(D));
  scal = view(cidx(8));
  // Causal: chunks of r steps; non-causal: the key scan is one chunk.
  chunkLen = causal ? r : maxu(cidx(1), M);
  nChunks = causal ? ceilDiv(N, r) : cidx(1);
}

LogicalResult LinearBackwardGpuBuilder::build() {
  if (!op)
    return spec.emitError() << "no attn.tiled_linear_attention_backward to "
                               "lower";
  if (failed(checkSpec()))
    return failure();
  gpu::GPUFuncOp fn = createKernel();
  OpBuilder::InsertionGuard guard(b);
  Block *entry = &fn.getBody().front();
  b.setInsertionPointToStart(entry);
  emitPrologue(entry);
  emitItem();
  LogicalResult result = success();
  // The group's query heads one after the other: they add to the same dk,
  // dv rows.
  forEach(cidx(0), G, [&](Value g) {
    h = add(mul(hk, G), g);
    hI64 = toI64(h);
    Block &body = op.getBodyBlock();
    map.map(body.getArgument(0), bIdx);
    map.map(body.getArgument(1), h);
    if (failed(lowerChunkBackwardBlock(body, *this)))
      result = failure();
  });
  gpu::ReturnOp::create(b);
  return result;
}

/// The CTA's dk, dv rows start at zero: its heads add to them.
void LinearBackwardGpuBuilder::emitItem() {
  Value jd = minu(j, sub(Dqk, cidx(1))), jv = minu(j, sub(Dv, cidx(1)));
  forEach(cidx(0), M, [&](Value t) {
    ifThen(ult(j, Dqk), [&] {
      memref::StoreOp::create(b, cf32(0), dk, ValueRange{bIdx, hk, t, jd});
    });
    ifThen(colVal, [&] {
      memref::StoreOp::create(b, cf32(0), dv, ValueRange{bIdx, hk, t, jv});
    });
  });
  barrier();
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

Value LinearBackwardGpuBuilder::ctaSum(Value x) {
  x = warpSum(x);
  ifThen(cmp(P::eq, lane, cidx(0)),
         [&] { memref::StoreOp::create(b, x, red, ValueRange{warp}); });
  barrier();
  Value sum = cf32(0);
  for (int64_t w = 0; w < nWarps; ++w)
    sum = fadd(sum, memref::LoadOp::create(b, red, ValueRange{cidx(w)}));
  // `red` is written again by the next sum.
  barrier();
  return sum;
}

void LinearBackwardGpuBuilder::storePart(int which, Value d, Value x) {
  x = warpSum(x);
  Value slot = add(mul(add(cidx(which * nWarps), warp), cidx(dphiMax)), d);
  ifThen(cmp(P::eq, lane, cidx(0)), [&] { st(x, part, slot); });
}

Value LinearBackwardGpuBuilder::partSum(int which, Value d) {
  Value sum = cf32(0);
  for (int64_t w = 0; w < nWarps; ++w)
    sum = fadd(sum, ld(part, add(cidx((which * nWarps + w) * dphiMax), d)));
  return sum;
}

Value LinearBackwardGpuBuilder::column(Value mem, Value head, Value t,
                                       Value zValue) {
  Value jc = minu(j, sub(Dv, cidx(1)));
  Value x =
      toF32(memref::LoadOp::create(b, mem, ValueRange{bIdx, head, t, jc}));
  return select(colVal, x, select(colZ, zValue, cf32(0)));
}

//===----------------------------------------------------------------------===//
// Pieces of a step
//===----------------------------------------------------------------------===//

LinearBackwardGpuBuilder::Step
LinearBackwardGpuBuilder::stageStep(Value t, bool withQuery) {
  Step s;
  s.tI64 = toI64(t);
  bool bonusTerm = withQuery && exclusive && hasBonus;
  serial([&] {
    emitFeatureMap(fmK, k, hk, t, phiK);
    if (withQuery)
      emitFeatureMap(fmQ, q, h, t, phiQ);
    if (vecGate)
      forEach(cidx(0), dphiV, [&](Value d) {
        st(fexp(region(op.getGate(), {bI64, hI64, s.tI64, toI64(d)})), gBuf, d);
      });
    if (bonusTerm) {
      auto c =
          loop(cidx(0), dphiV, cidx(1), {cf32(0)}, [&](Value d, ValueRange a) {
            Value x = fmul(ld(phiQ, d), ld(uBuf, d));
            return SmallVector<Value>{fma(x, ld(phiK, d), a[0])};
          });
      st(c.getResult(0), scal, cidx(0));
    }
  });
  // Scalars every thread evaluates itself (no barrier needed).
  s.g = hasGate && !vecGate
            ? fexp(region(op.getGate(), {bI64, hI64, s.tI64, toI64(cidx(0))}))
            : cf32(1);
  if (delta)
    s.beta = region(op.getBeta(), {bI64, hI64, s.tI64});
  s.c = bonusTerm ? ld(scal, cidx(0)) : cf32(0);
  return s;
}

std::pair<Value, Value>
LinearBackwardGpuBuilder::correction(const Step &s, StateRef sp, Value vj) {
  if (!delta)
    return {vj, Value()};
  auto acc =
      loop(cidx(0), dphiV, cidx(1), {cf32(0)}, [&](Value d, ValueRange a) {
        Value w = fmul(ld(phiK, d), gateAt(s, d));
        return SmallVector<Value>{fma(w, ld(sp.mem, elem(sp, d)), a[0])};
      });
  Value pred = acc.getResult(0);
  Value corr = select(colVal, fmul(s.beta, fsub(vj, pred)), cf32(0));
  return {corr, pred};
}

void LinearBackwardGpuBuilder::forwardStep(Value t, StateRef from,
                                           StateRef to) {
  Step s = stageStep(t, /*withQuery=*/false);
  Value vj = column(v, hk, t, cf32(1));
  Value corr = correction(s, from, vj).first;
  forEach(cidx(0), dphiV, [&](Value d) {
    Value x = fmul(gateAt(s, d), ld(from.mem, elem(from, d)));
    st(fma(ld(phiK, d), corr, x), to.mem, elem(to, d));
  });
  // The next step's thread 0 rewrites phi_k.
  barrier();
}

std::pair<Value, Value>
LinearBackwardGpuBuilder::readoutAdjoint(const Step &s, StateRef sp,
                                         bool afterStep, Value vj, Value doj,
                                         Value corr) {
  if (!normalize)
    return {fmul(doj, scale), cf32(0)};
  // num (this column's; the normalizer's column: den) = sum_d phi_q[d] X_d
  // (+ c v_t for the exclusive readout's bonus), X the state after the step
  // (inclusive) or before it.
  bool bonusTerm = !afterStep && exclusive && hasBonus;
  Value init = bonusTerm ? fmul(s.c, vj) : cf32(0);
  auto acc = loop(cidx(0), dphiV, cidx(1), {init}, [&](Value d, ValueRange a) {
    Value x = ld(sp.mem, elem(sp, d));
    if (afterStep)
      x = fma(ld(phiK, d), corr, fmul(gateAt(s, d), x));
    return SmallVector<Value>{fma(ld(phiQ, d), x, a[0])};
  });
  Value num = acc.getResult(0);
  ifThen(colZ, [&] { st(num, scal, cidx(1)); });
  barrier();
  Value den = ld(scal, cidx(1));
  // dnum = do / den, dden = -(do . num) / den^2; both 0 where den = 0 (the
  // output is 0 there).
  Value nz = arith::CmpFOp::create(b, F::UNE, den, cf32(0));
  Value inv = select(nz, arith::DivFOp::create(b, cf32(1), den), cf32(0));
  Value dot = ctaSum(select(colVal, fmul(doj, num), cf32(0)));
  Value dden = arith::NegFOp::create(b, fmul(dot, fmul(inv, inv)));
  Value dnum = select(colVal, fmul(doj, inv), select(colZ, dden, cf32(0)));
  return {dnum, dden};
}

void LinearBackwardGpuBuilder::reverseStep(Value t, StateRef sp) {
  Step s = stageStep(t, /*withQuery=*/true);
  Value vj = column(v, hk, t, cf32(1));
  Value doj = column(dout, h, t, cf32(0));
  auto [corr, pred] = correction(s, sp, vj);
  auto [dnum, dden] = readoutAdjoint(s, sp, !exclusive, vj, doj, corr);
  StateRef dst{dS, cidx(0)};

  // Pass B's work on row d (delta, gate, exclusive readout): slots 2, 3, 0.
  auto rowB = [&](Value d, Value fq, Value fk, Value gd, Value spv, Value ds,
                  Value dpred) {
    if (delta) {
      ds = fma(fk, dpred, ds);
      storePart(2, d, fmul(spv, dpred));
    }
    if (hasGate) {
      storePart(3, d, fmul(ds, spv));
      ds = fmul(ds, gd);
    }
    if (exclusive) {
      ds = fma(fq, dnum, ds);
      storePart(0, d, fmul(spv, dnum));
    }
    return ds;
  };
  // Pass A: the inclusive readout's and the update's adjoints (slots 0, 1);
  // pass B fused in without the delta rule (nothing waits for dcorr then).
  auto passA =
      loop(cidx(0), dphiV, cidx(1), {cf32(0)}, [&](Value d, ValueRange a) {
        Value fq = ld(phiQ, d), fk = ld(phiK, d), gd = gateAt(s, d);
        Value idx = elem(dst, d);
        Value ds = ld(dS, idx), spv = ld(sp.mem, elem(sp, d));
        if (!exclusive) {
          Value stv = fma(fk, corr, fmul(gd, spv));
          ds = fma(fq, dnum, ds);
          storePart(0, d, fmul(stv, dnum));
        }
        Value dcorr = fma(fk, ds, a[0]);
        storePart(1, d, fmul(ds, corr));
        if (!delta)
          ds = rowB(d, fq, fk, gd, spv, ds, Value());
        st(ds, dS, idx);
        return SmallVector<Value>{dcorr};
      });
  Value dcorr = passA.getResult(0);
  Value dvRow = select(colVal, dcorr, cf32(0));
  Value dbeta;
  if (delta) {
    // The update's adjoint into v and beta; pass B with dpred = -beta dcorr.
    dvRow = select(colVal, fmul(s.beta, dcorr), cf32(0));
    dbeta = ctaSum(select(colVal, fmul(dcorr, fsub(vj, pred)), cf32(0)));
    Value dpred =
        select(colVal, fmul(arith::NegFOp::create(b, s.beta), dcorr), cf32(0));
    forEach(cidx(0), dphiV, [&](Value d) {
      Value idx = elem(dst, d);
      Value ds = rowB(d, ld(phiQ, d), ld(phiK, d), gateAt(s, d),
                      ld(sp.mem, elem(sp, d)), ld(dS, idx), dpred);
      st(ds, dS, idx);
    });
  }
  // The exclusive readout's bonus term c v_t: into dv and dc.
  Value dc;
  if (exclusive && hasBonus) {
    Value dcv = ctaSum(select(colVal, fmul(dnum, vj), cf32(0)));
    dvRow = select(colVal, fma(s.c, dnum, dvRow), dvRow);
    dc = fadd(dden, dcv);
  }
  barrier(); // the row sums' slots are complete

  forRows([&](Value d) {
    Value gd = gateAt(s, d);
    st(partSum(0, d), dfq, d);
    Value dfkd = partSum(1, d);
    if (delta)
      dfkd = fma(gd, partSum(2, d), dfkd);
    st(dfkd, dfk, d);
    if (hasGate)
      st(fmul(gd, partSum(3, d)), dGbuf, d);
  });
  barrier();

  serial([&] {
    if (hasGate && vecGate)
      forEach(cidx(0), dphiV, [&](Value d) {
        regionGrad(op.getGate(), {bI64, hI64, s.tI64, toI64(d)}, ld(dGbuf, d),
                   /*owned=*/true);
      });
    if (hasGate && !vecGate) {
      auto sum =
          loop(cidx(0), dphiV, cidx(1), {cf32(0)}, [&](Value d, ValueRange a) {
            return SmallVector<Value>{fadd(a[0], ld(dGbuf, d))};
          });
      regionGrad(op.getGate(), {bI64, hI64, s.tI64, toI64(cidx(0))},
                 sum.getResult(0), /*owned=*/true);
    }
    if (delta)
      regionGrad(op.getBeta(), {bI64, hI64, s.tI64}, dbeta, /*owned=*/true);
    if (exclusive && hasBonus)
      forEach(cidx(0), dphiV, [&](Value d) {
        Value u = ld(uBuf, d), fq = ld(phiQ, d), fk = ld(phiK, d);
        Value dcu = fmul(dc, u);
        st(fma(dcu, fk, ld(dfq, d)), dfq, d);
        st(fma(dcu, fq, ld(dfk, d)), dfk, d);
        st(fma(fmul(dc, fq), fk, ld(du, d)), du, d);
      });
    storeRowGrads(t, /*query=*/true, /*key=*/true);
  });
  Value jv = minu(j, sub(Dv, cidx(1)));
  ifThen(colVal, [&] {
    Value cur = memref::LoadOp::create(b, dv, ValueRange{bIdx, hk, t, jv});
    memref::StoreOp::create(b, fadd(cur, dvRow), dv,
                            ValueRange{bIdx, hk, t, jv});
  });
}

void LinearBackwardGpuBuilder::storeRowGrads(Value t, bool query, bool key) {
  auto zeroDx = [&] {
    forEach(cidx(0), Dqk, [&](Value i) { st(cf32(0), dxBuf, i); });
  };
  if (query) {
    zeroDx();
    emitFeatureVJP(fmQ, q, h, t, dfq, dxBuf);
    forEach(cidx(0), Dqk, [&](Value i) {
      memref::StoreOp::create(b, ld(dxBuf, i), dq, ValueRange{bIdx, h, t, i});
    });
  }
  if (key) {
    zeroDx();
    emitFeatureVJP(fmK, k, hk, t, dfk, dxBuf);
    forEach(cidx(0), Dqk, [&](Value i) {
      Value cur = memref::LoadOp::create(b, dk, ValueRange{bIdx, hk, t, i});
      memref::StoreOp::create(b, fadd(cur, ld(dxBuf, i)), dk,
                              ValueRange{bIdx, hk, t, i});
    });
  }
}

//===----------------------------------------------------------------------===//
// The forward scan
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardGpuBuilder::lowerInitState(ChunkInitStateOp) {
  zeroColumn({S, cidx(0)});
  if (exclusive && hasBonus)
    serial([&] {
      forEach(cidx(0), dphiV, [&](Value d) {
        st(region(op.getBonus(), {hI64, toI64(d)}), uBuf, d);
      });
    });
  return success();
}

LogicalResult LinearBackwardGpuBuilder::lowerChunkLoop(ChunkLoopOp loopOp) {
  return lowerChunkScan(b, loopOp.getBody().front(), nChunks, chunkLen,
                        causal ? N : M, /*reverse=*/false, chunk, *this);
}

LogicalResult LinearBackwardGpuBuilder::lowerSave(ChunkBwdSaveOp) {
  copyColumn({S, cidx(0)}, {Ck, mul(chunk.idx, cidx(dphiMax))});
  return success();
}

// Features, values and gates are computed step by step where the update
// and the gradient need them (stageStep).
LogicalResult LinearBackwardGpuBuilder::lowerFeatures(ChunkFeaturesOp) {
  return success();
}
LogicalResult LinearBackwardGpuBuilder::lowerValues(ChunkValuesOp) {
  return success();
}
LogicalResult LinearBackwardGpuBuilder::lowerLogGates(ChunkLogGatesOp) {
  return success();
}
LogicalResult LinearBackwardGpuBuilder::lowerDelta(ChunkDeltaOp) {
  return success(); // forwardStep applies it (correction)
}

LogicalResult LinearBackwardGpuBuilder::lowerUpdate(ChunkUpdateOp) {
  StateRef st{S, cidx(0)};
  forEach(chunk.t0, chunk.t1, [&](Value t) { forwardStep(t, st, st); });
  return success();
}

//===----------------------------------------------------------------------===//
// The reverse scan
//===----------------------------------------------------------------------===//

LogicalResult LinearBackwardGpuBuilder::lowerBwdInit(ChunkBwdInitOp) {
  zeroColumn({dS, cidx(0)});
  forRows([&](Value d) {
    st(cf32(0), du, d);
    st(cf32(0), dGbuf, d);
  });
  barrier();
  return success();
}

LogicalResult
LinearBackwardGpuBuilder::lowerReverseLoop(ChunkBwdReverseLoopOp loopOp) {
  return lowerChunkScan(b, loopOp.getBody().front(), nChunks, chunkLen, N,
                        /*reverse=*/true, chunk, *this);
}

/// The chunk's checkpoint into Seg's first slot, then each step from its
/// slot into the next: slot i is the state before step t0 + i.
LogicalResult LinearBackwardGpuBuilder::lowerRestore(ChunkBwdRestoreOp) {
  copyColumn({Ck, mul(chunk.idx, cidx(dphiMax))}, {Seg, cidx(0)});
  forEach(chunk.t0, sub(chunk.t1, cidx(1)), [&](Value t) {
    Value slot = mul(sub(t, chunk.t0), cidx(dphiMax));
    forwardStep(t, {Seg, slot}, {Seg, add(slot, cidx(dphiMax))});
  });
  return success();
}

LogicalResult LinearBackwardGpuBuilder::lowerGrad(ChunkBwdGradOp) {
  Value n = sub(chunk.t1, chunk.t0);
  forEach(cidx(0), n, [&](Value i) {
    Value local = sub(sub(n, cidx(1)), i);
    reverseStep(add(chunk.t0, local), {Seg, mul(local, cidx(dphiMax))});
  });
  return success();
}

LogicalResult LinearBackwardGpuBuilder::lowerFinish(ChunkBwdFinishOp) {
  if (!hasBonus || auxGrads.empty())
    return success();
  // The bonus's arguments are (h, d), shared by the batch: atomic adds.
  serial([&] {
    forEach(cidx(0), dphiV, [&](Value d) {
      regionGrad(op.getBonus(), {hI64, toI64(d)}, ld(du, d), /*owned=*/false);
    });
  });
  return success();
}

//===----------------------------------------------------------------------===//
// Non-causal: every query reads the final state S = sum_j phi_k v_j^T
//===----------------------------------------------------------------------===//

LogicalResult
LinearBackwardGpuBuilder::lowerReadoutAllGrad(ChunkBwdReadoutAllOp) {
  StateRef fin{S, cidx(0)}, dst{dS, cidx(0)};
  zeroColumn(dst);
  forEach(cidx(0), N, [&](Value t) {
    serial([&] { emitFeatureMap(fmQ, q, h, t, phiQ); });
    Step s{toI64(t), cf32(1), Value(), cf32(0)};
    Value doj = column(dout, h, t, cf32(0));
    Value dnum =
        readoutAdjoint(s, fin, /*afterStep=*/false, Value(), doj, Value())
            .first;
    forEach(cidx(0), dphiV, [&](Value d) {
      Value idx = elem(dst, d);
      st(fma(ld(phiQ, d), dnum, ld(dS, idx)), dS, idx);
      storePart(0, d, fmul(ld(S, elem(fin, d)), dnum));
    });
    barrier();
    forRows([&](Value d) { st(partSum(0, d), dfq, d); });
    barrier();
    serial([&] { storeRowGrads(t, /*query=*/true, /*key=*/false); });
  });
  return success();
}

LogicalResult LinearBackwardGpuBuilder::lowerKeysAll(ChunkBwdKeysAllOp) {
  StateRef dst{dS, cidx(0)};
  forEach(cidx(0), M, [&](Value t) {
    serial([&] { emitFeatureMap(fmK, k, hk, t, phiK); });
    Value vj = column(v, hk, t, cf32(1));
    auto acc =
        loop(cidx(0), dphiV, cidx(1), {cf32(0)}, [&](Value d, ValueRange a) {
          Value ds = ld(dS, elem(dst, d));
          storePart(1, d, fmul(ds, vj));
          return SmallVector<Value>{fma(ld(phiK, d), ds, a[0])};
        });
    Value dvRow = acc.getResult(0);
    barrier();
    forRows([&](Value d) { st(partSum(1, d), dfk, d); });
    barrier();
    serial([&] { storeRowGrads(t, /*query=*/false, /*key=*/true); });
    Value jv = minu(j, sub(Dv, cidx(1)));
    ifThen(colVal, [&] {
      Value cur = memref::LoadOp::create(b, dv, ValueRange{bIdx, hk, t, jv});
      memref::StoreOp::create(b, fadd(cur, dvRow), dv,
                              ValueRange{bIdx, hk, t, jv});
    });
  });
  return success();
}

LogicalResult mlir::attn::buildLinearBackwardGpuKernels(
    SpecOp spec, gpu::GPUModuleOp gpuModule, ArrayRef<int64_t> headDims) {
  for (int64_t d : headDims) {
    LinearBackwardGpuBuilder kb(spec, gpuModule, d);
    if (failed(kb.build()))
      return failure();
  }
  return success();
}
