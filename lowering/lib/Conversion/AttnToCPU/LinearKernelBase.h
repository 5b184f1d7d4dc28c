//===- LinearKernelBase.h - what the linear CPU kernels share ---*- C++ -*-===//
//
// The feature maps of the linear family, forward (phi(x) of a row of q or
// k) and backward (the vector-Jacobian product dx += (dphi/dx)^T dy), as
// scalar code over one row. The forward kernel (LinearToCPU.cpp) and the
// gradients' kernel (LinearBackwardToCPU.cpp) derive from it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOCPU_LINEARKERNELBASE_H
#define ATTN_LOWERING_ATTNTOCPU_LINEARKERNELBASE_H

#include "KernelBase.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"

namespace mlir::attn::cpu {

class LinearKernelBase : public KernelBase {
protected:
  /// `projection`: the random feature map's input (empty without one).
  LinearKernelBase(SpecOp spec, int64_t vl, StringRef projection)
      : KernelBase(spec, vl), projectionName(projection.str()) {}

  /// Row [b, head, t, :] of q or k (b: the work item's, bIdx): the input of
  /// a feature map.
  struct FeatureRow {
    Value mem, head, t;
  };

  /// phi(x) of the row x = mem[b, head, t, :] into buf[0 .. Dphi).
  void emitFeatureMap(FeatureMapKind kind, Value mem, Value head, Value t,
                      Value buf);
  /// dx[0 .. Dqk) += (dphi(x)/dx)^T dy[0 .. Dphi) for the row x =
  /// mem[b, head, t, :], with PyTorch's conventions at kinks (relu and
  /// relu^2: 0 at 0; l2norm of the zero vector: 0), as the reference's
  /// FeatureMap::vjp. `dx` is a 1-D f32 buffer.
  void emitFeatureVJP(FeatureMapKind kind, Value mem, Value head, Value t,
                      Value dy, Value dx);
  /// The feature dimension of `kind` (Dqk, 2 Dqk, 1 + Dqk + Dqk(Dqk+1)/2 or
  /// the projection's rows).
  Value dphi(FeatureMapKind kind);
  Value loadF32(Value mem, ValueRange idx) {
    return toF32(memref::LoadOp::create(b, mem, idx));
  }
  Value rowElem(const FeatureRow &row, Value i) {
    return loadF32(row.mem, ValueRange{bIdx, row.head, row.t, i});
  }
  Value projection() { return env.aux.lookup(projectionName); }

  KernelEnv env;
  /// The work item's batch index (rowElem reads it).
  Value bIdx;

private:
  /// The maps that take more than one loop, and the elementwise ones;
  /// `fZero`, `fOne`: f32 constants, `dF`: Dqk as f32.
  void emitTaylor2Map(const FeatureRow &row, Value buf, Value dF, Value fOne);
  void emitRandomMap(const FeatureRow &row, Value buf, Value dF, Value fZero,
                     Value fOne);
  void emitElementwiseMap(FeatureMapKind kind, const FeatureRow &row, Value buf,
                          Value fZero, Value fOne);
  /// The VJPs of taylor2, random and l2norm (the others are elementwise).
  void emitTaylor2VJP(const FeatureRow &row, Value dy, Value dx, Value dF);
  void emitRandomVJP(const FeatureRow &row, Value dy, Value dx, Value dF);
  void emitL2NormVJP(const FeatureRow &row, Value dy, Value dx);
  /// dx[i] += g, for a scalar g.
  void addTo(Value dx, Value i, Value g);

  std::string projectionName;
};

} // namespace mlir::attn::cpu

#endif
