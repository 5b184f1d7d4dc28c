//===- RegionProgram.h - attn regions as scalar programs --------*- C++ -*-===//
//
// The reference evaluator's interpreter for a spec's regions (mask, score,
// scale, linear gate/delta/bonus, param defaults). A region is flattened once
// into a list of steps over numbered slots and then run per element.
//
// Programs are also differentiable: after run(), backward() propagates an
// adjoint from the yielded value to the region's float arguments and into
// the gradients of the f32 input tensors it looked up (reverse mode over the
// slots of the last run, which every step leaves in place because the IR is
// SSA). That is how the reference computes the score's derivative and the
// gradients of learnable tables, temperatures and gates analytically.
//
// Private to the reference library: nothing outside dialect/lib/Reference
// includes it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LIB_REFERENCE_REGIONPROGRAM_H
#define ATTN_LIB_REFERENCE_REGIONPROGRAM_H

#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Region.h"
#include "llvm/ADT/ArrayRef.h"
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mlir::attn::reference {

/// An auxiliary tensor, widened for the evaluator: int64 for i32 inputs,
/// float64 for the rest.
struct AuxTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool isInt;
  ::attn::HostArray values;
};

/// Everything a region can read besides its arguments, and where backward()
/// accumulates the gradients of looked-up f32 inputs (by name, float64, the
/// layout of AuxTensor::values; inputs without an entry get none).
struct Env {
  const ::attn::DimBinding *dims;
  const std::map<std::string, ScalarValue> *params;
  const std::map<std::string, AuxTensor> *aux;
  const std::map<std::string, double *> *auxGrads = nullptr;
};

using Slots = std::vector<ScalarValue>;

class Program {
public:
  /// Flattens `region` (one block ending in attn.yield). Reports unsupported
  /// ops as an error string.
  static std::string build(Region &region, Program &out);

  /// Runs with `args` bound to the block arguments; `result` gets the
  /// yielded value. Errors carry the failing op's location.
  std::string run(llvm::ArrayRef<ScalarValue> args, const Env &env,
                  ScalarValue &result);

  /// Reverse mode over the last run(): seeds the yielded value's adjoint
  /// with `seed`, adds the arguments' adjoints to `argAdjoints` (one per
  /// block argument; int arguments get nothing) and scatter-adds into
  /// env.auxGrads for every f32 lookup. The conventions at non-differentiable
  /// points are PyTorch's (see docs/language.md, "Gradients").
  void backward(double seed, const Env &env,
                llvm::MutableArrayRef<double> argAdjoints);

private:
  using Step = std::function<std::string(Slots &, const Env &)>;
  /// Adds the step's result adjoint `adj[r]` to its operands' adjoints.
  using Adjoint =
      std::function<void(const Slots &, std::vector<double> &, const Env &)>;

  std::vector<Step> steps;
  std::vector<Adjoint> adjoints; ///< parallel to steps; empty: no gradient
  std::vector<std::string> stepLocs;
  Slots slots;
  std::vector<double> adj;
  unsigned numArgs = 0;
  unsigned resultSlot = 0;
};

ScalarValue mkInt(int64_t v);
ScalarValue mkFloat(double v);

/// Runs a zero-argument region (param default, scale, bias).
std::string runConstantRegion(Region &region, const Env &env, ScalarValue &out);

} // namespace mlir::attn::reference

#endif // ATTN_LIB_REFERENCE_REGIONPROGRAM_H
