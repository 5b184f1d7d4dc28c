//===- EmitPackedEntry.cpp - the runtime's fixed kernel signature ---------===//
//
// Implements attn-emit-packed-entry: `void attn_<name>(void **args, int64_t
// begin, int64_t end)` around the C-interface wrapper of each kernel, so the
// runtime calls every kernel the same way whatever its aux inputs. The
// kernel's i32 status (nonzero: its scratch could not be allocated) goes to
// the status word args[numDescriptors] points to, stored only when nonzero
// and atomically, as every thread of a launch shares that word (ABI version
// 2 in attn/runtime.h).
//
//===----------------------------------------------------------------------===//

#include "attn/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNEMITPACKEDENTRY
#include "attn/Transforms/Passes.h.inc"
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
      auto call = LLVM::CallOp::create(b, wrapper, callArgs);
      if (call.getNumResults() == 1)
        emitStatusStore(b, entry, call.getResult(), numPtrs);
      LLVM::ReturnOp::create(b, ValueRange{});
    }
  }

  /// if (status != 0) atomic store (monotonic) of status to *args[slot];
  /// leaves the builder in the join block.
  static void emitStatusStore(ImplicitLocOpBuilder &b, LLVM::LLVMFuncOp entry,
                              Value status, unsigned slot) {
    auto ptrTy = LLVM::LLVMPointerType::get(b.getContext());
    Block *fail = entry.addBlock();
    Block *done = entry.addBlock();
    Value zero = LLVM::ConstantOp::create(b, status.getType(), 0);
    Value failed =
        LLVM::ICmpOp::create(b, LLVM::ICmpPredicate::ne, status, zero);
    LLVM::CondBrOp::create(b, failed, fail, done);
    b.setInsertionPointToStart(fail);
    Value args = entry.getArgument(0);
    Value slotPtr = LLVM::GEPOp::create(b, ptrTy, ptrTy, args,
                                        ArrayRef<LLVM::GEPArg>{int32_t(slot)});
    Value word = LLVM::LoadOp::create(b, ptrTy, slotPtr);
    LLVM::StoreOp::create(b, status, word, /*alignment=*/4,
                          /*isVolatile=*/false, /*isNonTemporal=*/false,
                          /*isInvariantGroup=*/false,
                          LLVM::AtomicOrdering::monotonic);
    LLVM::BrOp::create(b, done);
    b.setInsertionPointToStart(done);
  }
};
} // namespace
