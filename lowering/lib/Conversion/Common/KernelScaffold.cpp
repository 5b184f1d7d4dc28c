//===- KernelScaffold.cpp - what every kernel builder shares --------------===//

#include "attn/Conversion/KernelScaffold.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

using namespace mlir;
using namespace mlir::attn;

Type mlir::attn::declaredElementType(SpecOp spec, StringRef name,
                                     Type fallback) {
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (in.getSymName() == name)
      return in.getElementType();
  return fallback;
}

/// The flags of a linear attention, spec-level or tiled.
template <typename LinearOp> static LinearForm readLinearForm(LinearOp op) {
  LinearForm f;
  f.normalize = op.getNormalize();
  f.exclusive = op.getExclusive();
  f.causal = !op.getNoncausal();
  f.delta = !op.getBeta().empty();
  f.hasGate = !op.getGate().empty();
  f.vecGate = op.hasVectorGate();
  f.hasBonus = !op.getBonus().empty();
  f.fmQ = op.getFeatureMapQ();
  f.fmK = op.getFeatureMapK();
  return f;
}

LinearForm::LinearForm(LinearAttentionOp op) { *this = readLinearForm(op); }

LinearForm::LinearForm(TiledLinearAttentionOp op) {
  *this = readLinearForm(op);
}

LinearForm::LinearForm(TiledLinearAttentionBackwardOp op) {
  *this = readLinearForm(op);
}

SmallVector<Type>
mlir::attn::kernelArgTypes(SpecOp spec, function_ref<Type(StringRef)> qkvType,
                           bool unitInnerQKV) {
  MLIRContext *ctx = spec.getContext();
  auto strided = [&](int64_t rank, Type elt, bool unitInner) {
    SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
    SmallVector<int64_t> strides = dyn;
    if (unitInner)
      strides.back() = 1;
    return MemRefType::get(
        dyn, elt, StridedLayoutAttr::get(ctx, ShapedType::kDynamic, strides));
  };
  Type f32 = Float32Type::get(ctx);
  SmallVector<Type> args;
  for (StringRef name : {"q", "k", "v"})
    args.push_back(strided(4, qkvType(name), unitInnerQKV));
  args.push_back(strided(4, f32, false)); // o
  args.push_back(strided(3, f32, false)); // lse
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (canonicalInputDims(in.getSymName()).empty())
      args.push_back(strided(in.getDims().size(), in.getElementType(), false));
  return args;
}

MemRefType mlir::attn::decodePartialType(MLIRContext *ctx, int64_t rank) {
  SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
  return MemRefType::get(
      dyn, Float32Type::get(ctx),
      StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dyn));
}

MemRefType mlir::attn::batchTableType(MLIRContext *ctx, int64_t rank) {
  SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
  return MemRefType::get(
      dyn, IntegerType::get(ctx, 32),
      StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dyn));
}

FailureOr<Type> mlir::attn::uniformHalfPrecisionQKV(SpecOp spec,
                                                    StringRef why) {
  Type elt;
  for (StringRef name : {"q", "k", "v"}) {
    Type ty =
        declaredElementType(spec, name, Float32Type::get(spec.getContext()));
    if (!ty.isBF16() && !ty.isF16())
      return spec.emitError()
             << "CUDA kernels take bf16 or f16 q, k and v" << why << "; '"
             << name << "' is " << ty
             << " (leave it undeclared and pass --dtype=bf16|f16)";
    if (elt && elt != ty)
      return spec.emitError() << "CUDA kernels need q, k and v of one type";
    elt = ty;
  }
  return elt;
}

LogicalResult mlir::attn::checkSharedLimit(ModuleOp module,
                                           int64_t limitBytes) {
  WalkResult r = module.walk([&](gpu::GPUFuncOp fn) {
    auto bytes = fn->getAttrOfType<IntegerAttr>("attn.shared_bytes");
    if (!bytes || bytes.getInt() <= limitBytes)
      return WalkResult::advance();
    fn.emitError() << "kernel '" << fn.getName() << "' needs " << bytes.getInt()
                   << " bytes of shared memory per block; the target allows "
                   << limitBytes;
    return WalkResult::interrupt();
  });
  return failure(r.wasInterrupted());
}

void mlir::attn::setLaunchContract(gpu::GPUFuncOp fn, int64_t blockQ,
                                   int64_t numThreads, int64_t sharedBytes,
                                   int64_t maxHeadDim) {
  Builder b(fn.getContext());
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  fn.setKnownBlockSizeAttr(b.getDenseI32ArrayAttr({int32_t(numThreads), 1, 1}));
  fn->setAttr("attn.block_q", b.getI64IntegerAttr(blockQ));
  fn->setAttr("attn.num_threads", b.getI64IntegerAttr(numThreads));
  if (sharedBytes > 0)
    fn->setAttr("attn.shared_bytes", b.getI64IntegerAttr(sharedBytes));
  fn->setAttr("attn.max_head_dim", b.getI64IntegerAttr(maxHeadDim));
}

scf::ForOp
mlir::attn::buildFor(ImplicitLocOpBuilder &b, Value lb, Value ub, Value step,
                     ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  auto f = scf::ForOp::create(b, lb, ub, step, init);
  OpBuilder::InsertionGuard g(b);
  // A loop without results comes with an implicit yield; build our own.
  if (!f.getBody()->empty())
    f.getBody()->getTerminator()->erase();
  b.setInsertionPointToEnd(f.getBody());
  scf::YieldOp::create(b, body(f.getInductionVar(), f.getRegionIterArgs()));
  return f;
}

scf::ForOp
KernelScaffold::loop(Value lb, Value ub, Value step, ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  return buildFor(b, lb, ub, step, init, body);
}

void KernelScaffold::forEach(Value lb, Value ub,
                             function_ref<void(Value)> body) {
  loop(lb, ub, cidx(1), {}, [&](Value i, ValueRange) {
    body(i);
    return SmallVector<Value>{};
  });
}

void KernelScaffold::ifThen(Value cond, function_ref<void()> body) {
  auto op = scf::IfOp::create(b, TypeRange{}, cond, false);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&op.getThenRegion().front());
  body();
}

void KernelScaffold::ifThenElse(Value cond, function_ref<void()> thenBody,
                                function_ref<void()> elseBody) {
  auto op = scf::IfOp::create(b, TypeRange{}, cond, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&op.getThenRegion().front());
  thenBody();
  b.setInsertionPointToStart(&op.getElseRegion().front());
  elseBody();
}

SmallVector<Value>
KernelScaffold::ifIndices(Value cond, unsigned count,
                          function_ref<SmallVector<Value>()> thenBody,
                          function_ref<SmallVector<Value>()> elseBody) {
  SmallVector<Type> types(count, b.getIndexType());
  auto op = scf::IfOp::create(b, types, cond, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&op.getThenRegion().front());
  scf::YieldOp::create(b, thenBody());
  b.setInsertionPointToStart(&op.getElseRegion().front());
  scf::YieldOp::create(b, elseBody());
  return SmallVector<Value>(op.getResults());
}

Value KernelScaffold::present(Value m) {
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, m);
  return cmp(arith::CmpIPredicate::ne, ptr, cidx(0));
}

Value KernelScaffold::tableEntry(Value table, Value i) {
  Value last = sub(memref::DimOp::create(b, table, 0), cidx(1));
  return toIdx(memref::LoadOp::create(b, table, minu(i, last)));
}

std::pair<Value, Value> KernelScaffold::sequenceRows(Value table, Value bIdx,
                                                     Value rows) {
  SmallVector<Value> r = ifIndices(
      present(table), 2,
      [&]() -> SmallVector<Value> {
        Value end = minu(tableEntry(table, add(bIdx, cidx(1))), rows);
        return {minu(tableEntry(table, bIdx), end), end};
      },
      [&]() -> SmallVector<Value> { return {cidx(0), rows}; });
  return {r[0], r[1]};
}

void KernelScaffold::bindCanonical(Block *entry) {
  q = entry->getArgument(0);
  k = entry->getArgument(1);
  v = entry->getArgument(2);
  o = entry->getArgument(3);
  lse = entry->getArgument(4);
  auto dimOf = [&](Value m, int64_t d) {
    return Value(memref::DimOp::create(b, m, d));
  };
  Hq = dimOf(q, 1);
  N = dimOf(q, 2);
  Dqk = dimOf(q, 3);
  M = dimOf(k, 2);
  Dv = dimOf(v, 3);
  G = divu(Hq, dimOf(k, 1));
}

void KernelScaffold::bindRegionEnv(Block *entry, KernelEnv &env, Value m,
                                   Value hkv) {
  unsigned numAux = 0;
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    numAux += canonicalInputDims(in.getSymName()).empty();
  bindKernelEnv(b, spec, entry->getArgument(0), entry->getArgument(1),
                entry->getArgument(2), entry->getArguments().slice(5, numAux),
                env, m, hkv);
}

Value KernelScaffold::emitScale(Region &scaleRegion, KernelEnv &env) {
  if (!scaleRegion.empty())
    return toF32(emitRegion(b, scaleRegion, {}, env));
  Value d = arith::SIToFPOp::create(b, b.getF64Type(), env.dims["Dqk"]);
  return toF32(math::RsqrtOp::create(b, d));
}

Value KernelScaffold::emitBias(Region &biasRegion, KernelEnv &env) {
  return biasRegion.empty() ? cf32(0)
                            : toF32(emitRegion(b, biasRegion, {}, env));
}

KernelScaffold::BackwardArgs
KernelScaffold::bindBackwardArgs(Block *entry, ArrayRef<InputOp> gradInputs) {
  unsigned numAux = 0;
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    numAux += canonicalInputDims(in.getSymName()).empty();
  unsigned next = 5 + numAux; // after q, k, v, o, lse and the aux inputs
  BackwardArgs a;
  a.dout = entry->getArgument(next++);
  a.dlse = entry->getArgument(next++);
  a.dq = entry->getArgument(next++);
  a.dk = entry->getArgument(next++);
  a.dv = entry->getArgument(next++);
  for (InputOp in : gradInputs)
    a.auxGrads[in.getSymName()] = entry->getArgument(next++);
  return a;
}

SmallVector<Type>
mlir::attn::backwardKernelArgTypes(SpecOp spec, Type elt,
                                   ArrayRef<InputOp> gradInputs) {
  MLIRContext *ctx = spec.getContext();
  Type f32 = Float32Type::get(ctx);
  // A strided memref of `rank` dynamic dims, a unit inner stride if asked.
  auto strided = [&](int64_t rank, Type t, bool unitInner) {
    SmallVector<int64_t> dyn(rank, ShapedType::kDynamic), strides = dyn;
    if (unitInner)
      strides.back() = 1;
    return MemRefType::get(
        dyn, t, StridedLayoutAttr::get(ctx, ShapedType::kDynamic, strides));
  };
  SmallVector<Type> args = kernelArgTypes(
      spec, [&](StringRef) { return elt; }, /*unitInnerQKV=*/true);
  args.push_back(strided(4, elt, true));  // do
  args.push_back(strided(3, f32, false)); // dlse
  for (int i = 0; i < 3; ++i)             // dq, dk, dv
    args.push_back(strided(4, f32, false));
  for (InputOp in : gradInputs)
    args.push_back(strided(in.getDims().size(), f32, false));
  return args;
}

void mlir::attn::setBackwardContract(gpu::GPUFuncOp fn, int64_t blockKv,
                                     ArrayRef<InputOp> gradInputs) {
  Builder b(fn.getContext());
  SmallVector<Attribute> names;
  for (InputOp in : gradInputs)
    names.push_back(b.getStringAttr(in.getSymName()));
  fn->setAttr("attn.backward", b.getUnitAttr());
  fn->setAttr("attn.block_kv", b.getI64IntegerAttr(blockKv));
  fn->setAttr("attn.gradient_inputs", b.getArrayAttr(names));
}

void KernelScaffold::emitBackwardRowStatistics(
    Value tid, int64_t numThreads, int64_t width, Value bIdx, Value h, Value q0,
    int64_t BM, Value dout, Value dlse, Value hasDlse, Value LSEs, Value Ds) {
  using P = arith::CmpIPredicate;
  int64_t per = 1;
  while (2 * per * BM <= numThreads && 2 * per <= width)
    per *= 2;
  Value slot = divu(tid, cidx(per)), part = remu(tid, cidx(per));
  Value row = add(q0, slot);
  Value r = minu(row, sub(N, cidx(1)));
  Value lastCol = sub(Dv, cidx(1));
  Value dot =
      loop(cidx(0), ceilDiv(Dv, cidx(per)), cidx(1), ValueRange{cf32(0)},
           [&](Value c0, ValueRange acc) -> SmallVector<Value> {
             Value c = add(mul(c0, cidx(per)), part);
             Value cc = minu(c, lastCol);
             Value x = memref::LoadOp::create(b, o, ValueRange{bIdx, h, r, cc});
             Value y = toF32(
                 memref::LoadOp::create(b, dout, ValueRange{bIdx, h, r, cc}));
             return {select(ult(c, Dv), fma(x, y, acc[0]), acc[0])};
           })
          .getResult(0);
  for (int64_t off = per / 2; off >= 1; off /= 2) {
    auto sh =
        gpu::ShuffleOp::create(b, dot, ci32(int32_t(off)), ci32(int32_t(width)),
                               gpu::ShuffleMode::XOR);
    dot = fadd(dot, sh.getShuffleResult());
  }
  ifThen(land(ult(slot, cidx(BM)), cmp(P::eq, part, cidx(0))), [&] {
    Value inRow = ult(row, N);
    Value l = memref::LoadOp::create(b, lse, ValueRange{bIdx, h, r});
    auto ifDlse = scf::IfOp::create(b, TypeRange{b.getF32Type()}, hasDlse,
                                    /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifDlse.getThenRegion().front());
      scf::YieldOp::create(b, ValueRange{memref::LoadOp::create(
                                  b, dlse, ValueRange{bIdx, h, r})});
      b.setInsertionPointToStart(&ifDlse.getElseRegion().front());
      scf::YieldOp::create(b, ValueRange{cf32(0)});
    }
    Value d = fsub(dot, ifDlse.getResult(0));
    memref::StoreOp::create(b, select(inRow, l, cf32(0)), LSEs,
                            ValueRange{slot});
    memref::StoreOp::create(b, select(inRow, d, cf32(0)), Ds, ValueRange{slot});
  });
}
