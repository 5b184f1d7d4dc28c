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
#include <memory>
#include <vector>

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
  ::attn::HostArray lse; ///< [B, Hq, N] float64; softmax only (empty else)
  ::attn::DimBinding dims;
  std::map<std::string, ScalarValue> params;
};

/// What evaluateReference allocates, in bytes, saturating at UINT64_MAX.
struct ReferenceMemory {
  uint64_t widened = 0; ///< float64 (int64) copies of every input
  uint64_t outputs = 0; ///< o, and lse for softmax, in float64
  uint64_t scratch = 0; ///< a row of scores, or the linear recurrence's state
  uint64_t total() const;
};

/// The memory evaluateReference needs for inputs of these shapes (q, k, v
/// and the aux inputs, including a random feature map's projection). The
/// shapes need not be validated: missing or short ones count as 0.
ReferenceMemory
referenceMemory(SpecOp spec,
                const std::map<std::string, std::vector<int64_t>> &shapes);

/// Binds shapes, evaluates params, scale and bias, then computes every
/// output row. Returns "" or a one-line message (shape mismatch, index out
/// of range in a lookup, division by zero in an index expression, ...).
///
/// NaN propagates as in IEEE arithmetic: a NaN score makes its softmax row
/// NaN (o and lse), it does not turn it into an empty row.
///
/// It allocates referenceMemory() bytes; more than `maxBytes` (0: the
/// ::attn::defaultMemoryBudget()) is an error before anything is allocated,
/// and so is a failed allocation.
///
/// For attn.linear_attention it runs the recurrent form of the op's
/// definition step by step per (b, h): feature maps, log-space gates, the
/// delta rule, exclusive readout with bonus, the normalizer state (see
/// AttnOps.td). Causal needs N == M; non-causal reads the state after all M
/// keys. The taylor2 features are ordered [1, x_a, x_a^2, x_a x_b (a < b,
/// a outer)], pos_neg [x, -x]; a per-feature gate's d indexes that order.
/// With `exclusive` and `normalize` the denominator is φq·(z + u ⊙ φk).
/// Linear specs have no lse.
std::string
evaluateReference(SpecOp spec,
                  const std::map<std::string, ::attn::HostArray> &inputs,
                  ReferenceOutputs &out, uint64_t maxBytes = 0);

/// The gradients of the scalar loss L = sum(o ∘ do) + sum(lse ∘ dlse)
/// (dlse: softmax only) with respect to q, k, v and the differentiable aux
/// inputs, in float64.
struct ReferenceGradients {
  ::attn::HostArray dq, dk, dv; ///< the shapes of q, k and v
  /// One per differentiableInputs() name, the shape of that input.
  std::map<std::string, ::attn::HostArray> daux;
};

/// The aux inputs that get a gradient: the float (f32/bf16/f16) inputs the
/// score region (softmax family) or the linear gate, delta and bonus read,
/// in declaration order (the compiled kernels' order). Integer inputs (document
/// ids) and the random feature map's projection (a fixed buffer) have none.
std::vector<std::string> differentiableInputs(SpecOp spec);

/// What evaluateReferenceBackward allocates, for inputs of these shapes
/// plus "do" (and "lse" for dlse).
ReferenceMemory referenceBackwardMemory(
    SpecOp spec, const std::map<std::string, std::vector<int64_t>> &shapes);

/// Computes the gradients analytically (not by differencing): the softmax
/// family by recomputing each row and differentiating the normalizer and,
/// by reverse mode, the score region; the linear family by reverse mode
/// through its recurrence. GQA: dk and dv sum over the query heads of a
/// group. Non-differentiable points follow PyTorch (docs/language.md,
/// "Gradients"). `dout` must be [B, Hq, N, Dv], `dlse` (optional, softmax
/// only) [B, Hq, N], any float dtype. Returns "" or a one-line message;
/// the budget is as for evaluateReference.
std::string evaluateReferenceBackward(
    SpecOp spec, const std::map<std::string, ::attn::HostArray> &inputs,
    const ::attn::HostArray &dout, const ::attn::HostArray *dlse,
    ReferenceGradients &grads, uint64_t maxBytes = 0);

/// Evaluates only the params (for reporting and random-input generation).
std::string evaluateParams(SpecOp spec, const ::attn::DimBinding &dims,
                           std::map<std::string, ScalarValue> &params);

/// Element-wise evaluation of a spec's mask predicate, the oracle for block
/// classification: binds shapes, params and aux inputs once (exactly as
/// evaluateReference does) and then evaluates any rectangle of any (b, h).
class MaskEvaluator {
public:
  MaskEvaluator();
  ~MaskEvaluator();
  MaskEvaluator(const MaskEvaluator &) = delete;
  MaskEvaluator &operator=(const MaskEvaluator &) = delete;

  /// `inputs` must hold every input of the spec (q, k and v fix the dims;
  /// only the aux tensors are read, and copied in float64, within
  /// `maxBytes`; 0: the default budget). Returns "" or a message.
  std::string init(SpecOp spec,
                   const std::map<std::string, ::attn::HostArray> &inputs,
                   uint64_t maxBytes = 0);
  const ::attn::DimBinding &dims() const;
  const std::map<std::string, ScalarValue> &params() const;

  /// mask[(i - q0) * (k1 - k0) + (j - k0)] = 1 where key j is visible to
  /// query i, for i in [q0, q1), j in [k0, k1). Returns "" or a message (an
  /// index out of range in a lookup, a division by zero, ...).
  std::string evaluate(int64_t b, int64_t h, int64_t q0, int64_t q1, int64_t k0,
                       int64_t k1, uint8_t *mask);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// The element-wise mask of one (b, h): `mask` gets N * M bytes, row-major
/// (query-major), 1 = visible. `bound`, when given, receives the dims and
/// params (its o and lse stay empty). The mask and the widened aux inputs
/// must fit in `maxBytes` (0: the default budget). Returns "" or a one-line
/// message.
std::string evaluateMask(SpecOp spec,
                         const std::map<std::string, ::attn::HostArray> &inputs,
                         int64_t b, int64_t h, std::vector<uint8_t> &mask,
                         ReferenceOutputs *bound = nullptr,
                         uint64_t maxBytes = 0);

} // namespace mlir::attn

#endif // ATTN_REFERENCE_REFERENCEEVALUATOR_H
