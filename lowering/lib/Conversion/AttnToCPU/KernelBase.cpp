//===- KernelBase.cpp - shared helpers of the CPU kernel builders ---------===//

#include "KernelBase.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu;

MemRefType mlir::attn::cpu::stridedType(MLIRContext *ctx, int64_t rank,
                                        Type elt) {
  SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
  return MemRefType::get(
      dyn, elt, StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dyn));
}

func::FuncOp KernelBase::createKernelFunc(SpecOp spec) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  SmallVector<Type> args;
  for (StringRef name : {"q", "k", "v"}) {
    Type elt = f32; // the verifier allows f32, bf16 and f16
    for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
      if (in.getSymName() == name)
        elt = in.getElementType();
    args.push_back(stridedType(ctx, 4, elt));
  }
  args.push_back(stridedType(ctx, 4, f32)); // o
  args.push_back(stridedType(ctx, 3, f32)); // lse
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (canonicalInputDims(in.getSymName()).empty())
      args.push_back(
          stridedType(ctx, in.getDims().size(), in.getElementType()));
  args.push_back(b.getI64Type());
  args.push_back(b.getI64Type());
  std::string name = ("attn_" + spec.getSymName() + "_tiles").str();
  auto fn = func::FuncOp::create(b, name, FunctionType::get(ctx, args, {}));
  fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  b.setInsertionPointToStart(fn.addEntryBlock());
  return fn;
}

void KernelBase::bindEnv(SpecOp spec, Block *entry, unsigned firstAux,
                         KernelEnv &env) {
  auto dimOf = [&](Value m, int64_t d) {
    return Value(memref::DimOp::create(b, m, d));
  };
  Value q = entry->getArgument(0), k = entry->getArgument(1),
        v = entry->getArgument(2);
  Value hq = dimOf(q, 1), hkv = dimOf(k, 1);
  env.vectorWidth = vl;
  env.dims["B"] = toI64(dimOf(q, 0));
  env.dims["Hq"] = toI64(hq);
  env.dims["Hkv"] = toI64(hkv);
  env.dims["N"] = toI64(dimOf(q, 2));
  env.dims["M"] = toI64(dimOf(k, 2));
  env.dims["Dqk"] = toI64(dimOf(q, 3));
  env.dims["Dv"] = toI64(dimOf(v, 3));
  env.dims["G"] = toI64(arith::DivUIOp::create(b, hq, hkv));
  unsigned argNo = firstAux;
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>()) {
    if (!canonicalInputDims(in.getSymName()).empty())
      continue;
    Value mem = entry->getArgument(argNo++);
    env.aux[in.getSymName()] = mem;
    for (auto [d, attr] : llvm::enumerate(in.getDims()))
      if (auto s = dyn_cast<StringAttr>(attr); s && !env.dims.count(s))
        env.dims[s.getValue()] = toI64(dimOf(mem, d));
  }
  // Params, in order (defaults may use dims and earlier params).
  for (ParamOp p : spec.getBodyBlock().getOps<ParamOp>())
    env.params[p.getSymName()] = emitRegion(b, p.getDefaultValue(), {}, env);
}
