//===- AddLinearState.cpp - carried state for linear-attention kernels ----===//
//
// Implements attn-add-linear-state. The state becomes ordinary aux inputs, so
// the runtime validates its shape like any other tensor before a launch; the
// kernel reads it first and writes it back last (each (b, h) work item owns
// its slice, so threads never share one).
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/IR/Builders.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNADDLINEARSTATE
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {
struct AddLinearStatePass
    : public mlir::attn::impl::AttnAddLinearStateBase<AddLinearStatePass> {
  void runOnOperation() override {
    for (SpecOp spec : getOperation().getBody()->getOps<SpecOp>()) {
      LinearAttentionOp op = spec.getLinearAttention();
      if (!op)
        continue;
      if (op.getNoncausal()) {
        op.emitError() << "a carried state needs a causal recurrence";
        return signalPassFailure();
      }
      StringAttr dphi;
      switch (op.getFeatureMapK()) {
      case FeatureMapKind::pos_neg:
      case FeatureMapKind::taylor2:
        op.emitError() << "a carried state is not supported yet for feature "
                          "maps that change the dimension (pos_neg, taylor2)";
        return signalPassFailure();
      case FeatureMapKind::random: {
        auto w = SymbolTable::lookupNearestSymbolFrom<InputOp>(
            op, op.getProjectionAttr());
        dphi = dyn_cast<StringAttr>(w.getDims()[0]);
        if (!dphi) {
          op.emitError() << "a carried state needs a symbolic row count for "
                            "the projection";
          return signalPassFailure();
        }
        break;
      }
      default:
        dphi = StringAttr::get(&getContext(), "Dqk");
      }
      OpBuilder b(&getContext());
      b.setInsertionPoint(op);
      auto str = [&](StringRef s) { return b.getStringAttr(s); };
      for (StringRef name : {"state", "zstate"}) {
        if (SymbolTable::lookupSymbolIn(spec, str(name))) {
          spec.emitError() << "attn-add-linear-state: the spec already has an "
                              "input named '"
                           << name << "'";
          return signalPassFailure();
        }
      }
      InputOp::create(b, op.getLoc(), "state", b.getF32Type(),
                      b.getArrayAttr({str("B"), str("Hq"), dphi, str("Dv")}));
      if (op.getNormalize())
        InputOp::create(b, op.getLoc(), "zstate", b.getF32Type(),
                        b.getArrayAttr({str("B"), str("Hq"), dphi}));
    }
  }
};
} // namespace
