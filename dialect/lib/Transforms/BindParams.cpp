//===- BindParams.cpp - override parameter defaults -----------------------===//
//
// Implements attn-bind-params: `--param name=value` on the command line and
// the JIT's parameter map both end up here, so a bound spec prints (and
// hashes) with its values in place.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include <cmath>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNBINDPARAMS
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

std::string mlir::attn::bindParam(SpecOp spec, StringRef name,
                                  StringRef value) {
  auto param = dyn_cast_or_null<ParamOp>(SymbolTable::lookupSymbolIn(
      spec, StringAttr::get(spec.getContext(), name)));
  if (!param) {
    std::string known;
    for (auto p : spec.getBodyBlock().getOps<ParamOp>())
      known += (known.empty() ? "" : ", ") + p.getSymName().str();
    return "unknown param '" + name.str() + "' (spec '" +
           spec.getSymName().str() + "' has " +
           (known.empty() ? std::string("no params") : "params: " + known) +
           ")";
  }
  OpBuilder b(spec.getContext());
  TypedAttr attr;
  StringRef v = value.trim();
  if (param.getType().isInteger(64)) {
    int64_t iv;
    if (v.getAsInteger(10, iv))
      return "param '" + name.str() + "' is an int; cannot use value '" +
             value.str() + "'";
    attr = b.getI64IntegerAttr(iv);
  } else {
    double dv;
    if (v.getAsDouble(dv))
      return "param '" + name.str() + "' is a float; cannot use value '" +
             value.str() + "'";
    // getAsDouble accepts "nan", "inf" and rounds 1e400 to infinity; a
    // param is a finite float64, as a float literal in a spec is.
    if (!std::isfinite(dv))
      return "param '" + name.str() + "' is a float; value '" + value.str() +
             "' is " +
             (std::isnan(dv) ? "not a number"
                             : "not finite (float64 values are at most "
                               "about 1.8e308 in magnitude)");
    attr = b.getF64FloatAttr(dv);
  }
  Region &region = param.getDefaultValue();
  Location loc = param.getLoc();
  region.front().clear();
  b.setInsertionPointToStart(&region.front());
  Value c = arith::ConstantOp::create(b, loc, attr);
  YieldOp::create(b, loc, c);
  return "";
}

namespace {
struct BindParamsPass
    : public mlir::attn::impl::AttnBindParamsBase<BindParamsPass> {
  using AttnBindParamsBase::AttnBindParamsBase;
  void runOnOperation() override {
    for (const std::string &kv : values) {
      auto [name, value] = StringRef(kv).split('=');
      if (value.empty() && !StringRef(kv).contains('=')) {
        getOperation().emitError()
            << "param binding '" << kv << "' must be name=value";
        return signalPassFailure();
      }
      std::string err = bindParam(getOperation(), name.trim(), value);
      if (!err.empty()) {
        getOperation().emitError() << err;
        return signalPassFailure();
      }
    }
  }
};
} // namespace
