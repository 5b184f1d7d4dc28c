//===- ReferenceInternal.h - the reference evaluator's parts ----*- C++ -*-===//
//
// What the reference library's files share: widening inputs to float64, the
// feature dimension, and the two families' forward and backward evaluators.
// Private to dialect/lib/Reference.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LIB_REFERENCE_REFERENCEINTERNAL_H
#define ATTN_LIB_REFERENCE_REFERENCEINTERNAL_H

#include "RegionProgram.h"

namespace mlir::attn::reference {

/// A copy of `a` widened to float64 (or int64, when `asInt`).
std::string widen(const ::attn::HostArray &a, ::attn::HostArray &out,
                  bool asInt = false);

/// The feature dimension Dphi of a feature map on Dqk-vectors (R: the rows
/// of a random map's projection), saturating at UINT64_MAX.
uint64_t featureDim(FeatureMapKind kind, uint64_t dqk, uint64_t r);

/// q, k, v widened to float64, in the layouts of the spec's signature.
struct WideQKV {
  const double *q, *k, *v;
};

/// The backward pass's float64 buffers: the incoming gradients and the
/// outputs (zeroed by the caller, accumulated into).
struct GradientBuffers {
  const double *dout;   ///< [B, Hq, N, Dv]
  const double *dlse;   ///< [B, Hq, N] or null; softmax only
  double *dq, *dk, *dv; ///< shapes of q, k, v
};

/// Softmax, sigmoid, relu and none (attn.attention): o (and lse).
std::string evaluateAttention(AttentionOp att, const Env &env,
                              const WideQKV &in, ReferenceOutputs &out);
/// Gradients of sum(o ∘ dout) + sum(lse ∘ dlse); aux gradients go to
/// env.auxGrads.
std::string backwardAttention(AttentionOp att, const Env &env,
                              const WideQKV &in, const GradientBuffers &g);

/// The linear recurrence (attn.linear_attention): o.
std::string evaluateLinear(LinearAttentionOp lin, const Env &env,
                           const WideQKV &in, ReferenceOutputs &out);
/// Gradients of sum(o ∘ dout), by reverse mode through the recurrence with
/// checkpointed states; aux gradients go to env.auxGrads.
std::string backwardLinear(LinearAttentionOp lin, const Env &env,
                           const WideQKV &in, const GradientBuffers &g);

/// The scratch the linear backward allocates: sqrt(N)-spaced checkpoints
/// and one segment of states, each Dphi x Dv (+ Dphi), in bytes.
uint64_t linearBackwardScratch(uint64_t n, uint64_t dphi, uint64_t dv);

} // namespace mlir::attn::reference

#endif // ATTN_LIB_REFERENCE_REFERENCEINTERNAL_H
