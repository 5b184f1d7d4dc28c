//===- SetElementType.cpp - declare implicit q, k, v with a type ----------===//
//
// Implements attn-set-element-type. Specs usually leave q, k and v
// undeclared (f32). Declaring them here, rather than teaching every backend
// a "default type" knob, keeps the input signature the one source of truth:
// the runtime descriptor, the header, the reference and the kernels all read
// the types from the attn.input ops.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNSETELEMENTTYPE
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {
struct AttnSetElementTypePass
    : public mlir::attn::impl::AttnSetElementTypeBase<AttnSetElementTypePass> {
  using AttnSetElementTypeBase::AttnSetElementTypeBase;
  void runOnOperation() override {
    SpecOp spec = getOperation();
    OpBuilder b(spec.getContext());
    Type elt = llvm::StringSwitch<Type>(type)
                   .Case("bf16", b.getBF16Type())
                   .Case("f16", b.getF16Type())
                   .Case("f32", b.getF32Type())
                   .Default(Type());
    if (!elt) {
      spec.emitError() << "attn-set-element-type: unknown type '" << type
                       << "' (expected bf16, f16 or f32)";
      return signalPassFailure();
    }
    llvm::StringSet<> declared;
    for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
      declared.insert(in.getSymName());
    b.setInsertionPointToStart(&spec.getBodyBlock());
    for (StringRef name : {"q", "k", "v"}) {
      if (declared.contains(name))
        continue;
      SmallVector<Attribute> dims;
      for (StringRef d : canonicalInputDims(name))
        dims.push_back(b.getStringAttr(d));
      InputOp::create(b, spec.getLoc(), name, elt, b.getArrayAttr(dims));
    }
  }
};
} // namespace
