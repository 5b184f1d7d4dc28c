//===- ReferenceEvaluator.h - float64 oracle for attn specs -----*- C++ -*-===//
//
// Computes an attn.spec's semantics naively, in float64, by interpreting its
// regions element by element. It is the oracle for every numeric test and for
// `attnc run --reference`, so it deliberately shares nothing with the tiling
// and lowering code it checks.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_REFERENCE_REFERENCEEVALUATOR_H
#define ATTN_REFERENCE_REFERENCEEVALUATOR_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Signature.h"
#include "attn/npy.h"
#include <map>

namespace mlir::attn {

/// The runtime signature (inputs, element types, symbolic dims) of `spec`.
::attn::Signature getSignature(SpecOp spec);

/// A scalar as the evaluator sees it: ints are exact, floats are float64.
struct ScalarValue {
  bool isInt = false;
  int64_t i = 0;
  double f = 0;
  double asDouble() const { return isInt ? static_cast<double>(i) : f; }
};

struct ReferenceOutputs {
  ::attn::HostArray o;   ///< [B, Hq, N, Dv] float64
  ::attn::HostArray lse; ///< [B, Hq, N] float64; softmax only
  ::attn::DimBinding dims;
  std::map<std::string, ScalarValue> params;
};

/// Binds shapes, evaluates params, scale and bias, then computes every
/// output row. Returns "" or a one-line message (shape mismatch, index out
/// of range in a lookup, division by zero in an index expression, ...).
std::string evaluateReference(
    SpecOp spec, const std::map<std::string, ::attn::HostArray> &inputs,
    ReferenceOutputs &out);

/// Evaluates only the params (for reporting and random-input generation).
std::string evaluateParams(SpecOp spec, const ::attn::DimBinding &dims,
                           std::map<std::string, ScalarValue> &params);

} // namespace mlir::attn

#endif // ATTN_REFERENCE_REFERENCEEVALUATOR_H
