//===- ConstantCheck.cpp - overflow-checked compile-time integers ---------===//
//
// The spec language's ints are int64. Arithmetic on values known when the
// spec is compiled (literals, params once --param values are bound, and what
// library patterns compute from them) is evaluated here with overflow checks,
// so `param w = 9223372036854775807 + 1` is a located error instead of a
// silent wrap by MLIR's folders (which also refuse to fold an overflowing
// division, leaving `INT64_MIN // -1` to trap or wrap at run time), and a
// division by a constant zero is an error wherever its dividend comes from.
//
// Values computed at run time (from shape dims, indices or input lookups)
// are not known here: their arithmetic wraps in compiled kernels, as int64
// arithmetic does in C, and the reference evaluator reports a division by
// zero or INT64_MIN // -1 when it meets one.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/MLIRGen.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include <optional>

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Evaluates integer ops whose operands are known, in program order.
class ConstantChecker {
public:
  LogicalResult run(SpecOp spec);

private:
  LogicalResult visit(Operation *op);
  std::optional<int64_t> lookup(Value v) const {
    auto it = known.find(v);
    return it == known.end() ? std::nullopt : std::optional(it->second);
  }
  /// Reports `a <op> b` overflowing at `op`.
  LogicalResult overflow(Operation *op, llvm::StringRef what) {
    op->emitError() << "integer overflow: " << what
                    << " does not fit in 64 bits";
    return failure();
  }
  LogicalResult visitBinary(Operation *op, int64_t a, int64_t b);
  LogicalResult visitDivision(Operation *op);

  /// i64 and i1 values known at compile time.
  llvm::DenseMap<Value, int64_t> known;
  /// Int params whose (bound) value is known.
  llvm::StringMap<int64_t> params;
};

} // namespace

/// Whether `op` is MLIRGen's unary minus (`0 - x`, the zero made at the same
/// location as the subtraction).
static bool isNegation(arith::SubIOp op) {
  auto zero = op.getLhs().getDefiningOp<arith::ConstantOp>();
  auto attr = zero ? dyn_cast<IntegerAttr>(zero.getValue()) : IntegerAttr();
  return attr && attr.getValue().isZero() && zero.getLoc() == op.getLoc();
}

/// Whether floor division `op` is the first step of MLIRGen's floor modulo
/// (`a - (a // n) * n`, every op at the `%`'s location).
static bool isModulo(arith::FloorDivSIOp op) {
  return llvm::any_of(op->getUsers(), [&](Operation *user) {
    return isa<arith::MulIOp>(user) && user->getLoc() == op.getLoc();
  });
}

LogicalResult ConstantChecker::visitBinary(Operation *op, int64_t a,
                                           int64_t b) {
  int64_t r = 0;
  auto text = [&](llvm::StringRef sym) {
    return std::to_string(a) + " " + sym.str() + " " + std::to_string(b);
  };
  if (isa<arith::AddIOp>(op)) {
    if (__builtin_add_overflow(a, b, &r))
      return overflow(op, text("+"));
  } else if (auto sub = dyn_cast<arith::SubIOp>(op)) {
    if (__builtin_sub_overflow(a, b, &r))
      return overflow(op, isNegation(sub) ? "-(" + std::to_string(b) + ")"
                                          : text("-"));
  } else if (isa<arith::MulIOp>(op)) {
    if (__builtin_mul_overflow(a, b, &r))
      return overflow(op, text("*"));
  } else if (isa<arith::MinSIOp>(op)) {
    r = std::min(a, b);
  } else if (isa<arith::MaxSIOp>(op)) {
    r = std::max(a, b);
  } else {
    return success();
  }
  known[op->getResult(0)] = r;
  return success();
}

LogicalResult ConstantChecker::visitDivision(Operation *op) {
  std::optional<int64_t> a = lookup(op->getOperand(0)),
                         b = lookup(op->getOperand(1));
  llvm::StringRef sym = "//";
  if (auto floorDiv = dyn_cast<arith::FloorDivSIOp>(op);
      floorDiv && isModulo(floorDiv))
    sym = "%";
  if (b && *b == 0) {
    auto diag = op->emitError() << "integer division by zero";
    if (a)
      diag << ": " << *a << " " << sym << " 0";
    return failure();
  }
  if (!a || !b)
    return success();
  if (*a == INT64_MIN && *b == -1) {
    std::string quotient = std::to_string(*a) + " // -1";
    if (sym == "//")
      return overflow(op, quotient);
    // The floor modulo is computed through the quotient (see MLIRGen).
    op->emitError() << "integer overflow: " << *a << " % -1 needs the quotient "
                    << quotient << ", which does not fit in 64 bits";
    return failure();
  }
  int64_t q = *a / *b, rem = *a % *b;
  if (isa<arith::RemSIOp>(op)) {
    known[op->getResult(0)] = rem;
    return success();
  }
  if (isa<arith::FloorDivSIOp>(op) && rem != 0 && ((rem < 0) != (*b < 0)))
    --q;
  else if (isa<arith::CeilDivSIOp>(op) && rem != 0 && ((rem < 0) == (*b < 0)))
    ++q;
  known[op->getResult(0)] = q;
  return success();
}

LogicalResult ConstantChecker::visit(Operation *op) {
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    if (auto attr = dyn_cast<IntegerAttr>(c.getValue());
        attr && attr.getType().isSignlessInteger() &&
        attr.getType().getIntOrFloatBitWidth() <= 64)
      known[c.getResult()] = attr.getType().isInteger(1)
                                 ? attr.getValue().getZExtValue()
                                 : attr.getValue().getSExtValue();
    return success();
  }
  if (auto get = dyn_cast<GetParamOp>(op)) {
    auto it = params.find(get.getParam());
    if (it != params.end() && get.getType().isInteger(64))
      known[get.getResult()] = it->second;
    return success();
  }
  if (isa<arith::FloorDivSIOp, arith::DivSIOp, arith::CeilDivSIOp,
          arith::RemSIOp>(op))
    return visitDivision(op);
  if (auto abs = dyn_cast<math::AbsIOp>(op)) {
    if (std::optional<int64_t> a = lookup(abs.getOperand())) {
      if (*a == INT64_MIN)
        return overflow(op, "abs(" + std::to_string(*a) + ")");
      known[abs.getResult()] = *a < 0 ? -*a : *a;
    }
    return success();
  }
  if (auto select = dyn_cast<arith::SelectOp>(op)) {
    if (std::optional<int64_t> c = lookup(select.getCondition()))
      if (std::optional<int64_t> v =
              lookup(*c ? select.getTrueValue() : select.getFalseValue()))
        known[select.getResult()] = *v;
    return success();
  }
  if (auto cmp = dyn_cast<arith::CmpIOp>(op)) {
    std::optional<int64_t> a = lookup(cmp.getLhs()), b = lookup(cmp.getRhs());
    if (a && b)
      known[cmp.getResult()] = arith::applyCmpPredicate(
          cmp.getPredicate(), llvm::APInt(64, *a, /*isSigned=*/true),
          llvm::APInt(64, *b, /*isSigned=*/true));
    return success();
  }
  if (op->getNumOperands() == 2 && op->getNumResults() == 1 &&
      op->getResult(0).getType().isInteger(1) &&
      isa<arith::AndIOp, arith::OrIOp, arith::XOrIOp>(op)) {
    std::optional<int64_t> a = lookup(op->getOperand(0)),
                           b = lookup(op->getOperand(1));
    if (a && b)
      known[op->getResult(0)] = isa<arith::AndIOp>(op)  ? (*a & *b)
                                : isa<arith::OrIOp>(op) ? (*a | *b)
                                                        : (*a ^ *b);
    return success();
  }
  if (op->getNumOperands() == 2 && op->getNumResults() == 1 &&
      op->getResult(0).getType().isInteger(64)) {
    std::optional<int64_t> a = lookup(op->getOperand(0)),
                           b = lookup(op->getOperand(1));
    if (a && b)
      return visitBinary(op, *a, *b);
  }
  return success();
}

LogicalResult ConstantChecker::run(SpecOp spec) {
  // Params first, in order (a default may use only earlier params); then
  // every other region. Ops in a block come in def-before-use order.
  for (Operation &op : spec.getBodyBlock()) {
    WalkResult r = op.walk<WalkOrder::PreOrder>([&](Operation *nested) {
      return failed(visit(nested)) ? WalkResult::interrupt()
                                   : WalkResult::advance();
    });
    if (r.wasInterrupted())
      return failure();
    auto param = dyn_cast<ParamOp>(op);
    if (!param || param.getDefaultValue().empty() ||
        param.getDefaultValue().front().empty())
      continue;
    if (auto yield = dyn_cast<YieldOp>(param.getDefaultValue().front().back());
        yield && yield->getNumOperands() == 1)
      if (std::optional<int64_t> v = lookup(yield->getOperand(0)))
        params[param.getSymName()] = *v;
  }
  return success();
}

LogicalResult mlir::attn::checkConstantIntegers(SpecOp spec) {
  return ConstantChecker().run(spec);
}
