//===- ApproximateMath.cpp - polynomial math for SIMD kernels -------------===//
//
// Implements attn-approximate-math. Without it `math.exp` on vectors is
// scalarized into `expf` calls at LLVM lowering, which dominates softmax time.
//
//===----------------------------------------------------------------------===//

#include "attn/Transforms/Passes.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNAPPROXIMATEMATH
#include "attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct ApproximateMathPass
    : public mlir::attn::impl::AttnApproximateMathBase<ApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    // powf, exp2, ... in terms of exp/log; then polynomials for those.
    math::populateExpansionPatterns(
        patterns, {"powf", "exp2", "fpowi", "ctlz", "tan", "sinh", "cosh",
                   "asinh", "acosh", "atanh", "round", "roundeven", "rsqrt"});
    populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
      name.consume_front("math.");
      return name == "exp" || name == "log" || name == "log2" ||
             name == "tanh" || name == "expm1" || name == "log1p" ||
             name == "erf" || name == "atan" || name == "atan2" ||
             name == "sin" || name == "cos";
    });
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
