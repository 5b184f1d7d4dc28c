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

func::FuncOp KernelBase::createKernelFunc(ArrayRef<Type> extraArgs,
                                          StringRef suffix,
                                          ArrayRef<Type> outputTypes) {
  MLIRContext *ctx = b.getContext();
  // The verifier allows f32, bf16 and f16 q, k, v.
  SmallVector<Type> args = kernelArgTypes(
      spec,
      [&](StringRef name) {
        return declaredElementType(spec, name, b.getF32Type());
      },
      /*unitInnerQKV=*/false);
  if (!outputTypes.empty()) {
    assert(outputTypes.size() == 2 && "o and lse");
    args[3] = outputTypes[0];
    args[4] = outputTypes[1];
  }
  args.append(extraArgs.begin(), extraArgs.end());
  args.push_back(b.getI64Type()); // begin
  args.push_back(b.getI64Type()); // end
  std::string name = ("attn_" + spec.getSymName() + suffix + "_tiles").str();
  auto fn = func::FuncOp::create(
      b, name, FunctionType::get(ctx, args, {b.getI32Type()}));
  fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  b.setInsertionPointToStart(fn.addEntryBlock());
  return fn;
}

func::FuncOp
KernelBase::createBackwardKernelFunc(ArrayRef<InputOp> gradInputs) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  SmallVector<Type> extra;
  for (int64_t rank : {4, 3, 4, 4, 4}) // do, dlse, dq, dk, dv
    extra.push_back(stridedType(ctx, rank, f32));
  for (InputOp in : gradInputs)
    extra.push_back(stridedType(ctx, in.getDims().size(), f32));
  return createKernelFunc(extra, "_backward");
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
