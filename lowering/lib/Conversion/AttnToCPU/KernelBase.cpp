//===- KernelBase.cpp - shared helpers of the CPU kernel builders ---------===//

#include "KernelBase.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/runtime.h"

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
  auto fn = func::FuncOp::create(
      b, name, FunctionType::get(ctx, args, {b.getI32Type()}));
  fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  b.setInsertionPointToStart(fn.addEntryBlock());
  return fn;
}

void KernelBase::bindEnv(SpecOp spec, Block *entry, unsigned firstAux,
                         KernelEnv &env) {
  env.vectorWidth = vl;
  unsigned numAux = 0;
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    numAux += canonicalInputDims(in.getSymName()).empty();
  bindKernelEnv(b, spec, entry->getArgument(0), entry->getArgument(1),
                entry->getArgument(2),
                entry->getArguments().slice(firstAux, numAux), env);
}

Value KernelBase::allocScratch(MemRefType type, ValueRange dynamicSizes) {
  // Cache-line alignment: the buffers are read with full-width vector loads.
  Value buf =
      memref::AllocOp::create(b, type, dynamicSizes, b.getI64IntegerAttr(64));
  scratch.push_back(buf);
  return buf;
}

void KernelBase::beginGuardedBody() {
  Value ok = arith::ConstantOp::create(b, b.getBoolAttr(true));
  for (Value buf : scratch) {
    Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, buf);
    Value nonNull =
        arith::CmpIOp::create(b, arith::CmpIPredicate::ne, ptr, cidx(0));
    ok = arith::AndIOp::create(b, ok, nonNull);
  }
  guard = scf::IfOp::create(b, TypeRange{}, ok, /*withElseRegion=*/false);
  b.setInsertionPointToStart(&guard.getThenRegion().front());
}

void KernelBase::finishKernel() {
  assert(guard && "finishKernel() without beginGuardedBody()");
  b.setInsertionPointAfter(guard);
  // free(NULL) is a no-op, so a partly failed allocation frees the rest.
  for (Value buf : scratch)
    memref::DeallocOp::create(b, buf);
  Value status = arith::SelectOp::create(
      b, guard.getCondition(),
      arith::ConstantOp::create(b, b.getI32IntegerAttr(ATTN_KERNEL_OK)),
      arith::ConstantOp::create(
          b, b.getI32IntegerAttr(ATTN_KERNEL_OUT_OF_MEMORY)));
  func::ReturnOp::create(b, status);
  scratch.clear();
  guard = nullptr;
}
