//===- EmitPackedEntry.cpp - the runtime's fixed kernel signature ---------===//
//
// Implements attn-emit-packed-entry: `void attn_<name>(void **args, int64_t
// begin, int64_t end)` around the C-interface wrapper of each kernel, so the
// runtime calls every kernel the same way whatever its aux inputs.
//
//===----------------------------------------------------------------------===//

#include "attn/Conversion/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNEMITPACKEDENTRY
#include "attn/Conversion/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct EmitPackedEntryPass
    : public mlir::attn::impl::AttnEmitPackedEntryBase<EmitPackedEntryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    constexpr StringRef prefix = "_mlir_ciface_attn_";
    SmallVector<LLVM::LLVMFuncOp> wrappers;
    for (auto fn : module.getOps<LLVM::LLVMFuncOp>())
      if (fn.getName().starts_with(prefix) && fn.getName().ends_with("_tiles"))
        wrappers.push_back(fn);
    MLIRContext *ctx = &getContext();
    auto ptrTy = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    for (LLVM::LLVMFuncOp wrapper : wrappers) {
      StringRef base = wrapper.getName().drop_front(strlen("_mlir_ciface_"));
      std::string name = base.drop_back(strlen("_tiles")).str();
      if (module.lookupSymbol(name))
        continue; // already emitted (the pass is idempotent)
      ImplicitLocOpBuilder b(wrapper.getLoc(), ctx);
      b.setInsertionPointToEnd(module.getBody());
      auto fnTy = LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx),
                                              {ptrTy, i64, i64});
      auto entry = LLVM::LLVMFuncOp::create(b, name, fnTy);
      Block *block = entry.addEntryBlock(b);
      b.setInsertionPointToStart(block);
      auto params = wrapper.getFunctionType().getParams();
      SmallVector<Value> callArgs;
      unsigned numPtrs = params.size() - 2;
      for (unsigned i = 0; i < numPtrs; ++i) {
        Value slot = LLVM::GEPOp::create(b, ptrTy, ptrTy, block->getArgument(0),
                                         ArrayRef<LLVM::GEPArg>{int32_t(i)});
        callArgs.push_back(LLVM::LoadOp::create(b, ptrTy, slot));
      }
      callArgs.push_back(block->getArgument(1));
      callArgs.push_back(block->getArgument(2));
      LLVM::CallOp::create(b, wrapper, callArgs);
      LLVM::ReturnOp::create(b, ValueRange{});
    }
  }
};
} // namespace
