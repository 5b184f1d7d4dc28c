//===- LinearFeatureMaps.h - the linear family's feature maps ---*- C++ -*-===//
//
// The feature maps of the linear family, forward (phi(x) of a row of q or
// k) and backward (the vector-Jacobian product dx += (dphi/dx)^T dy), as
// scalar code over one row, for any kernel builder: `Base` is the backend's
// kernel base (a KernelScaffold). The CPU kernels (LinearToCPU.cpp,
// LinearBackwardToCPU.cpp) and the CUDA backward (LinearBackwardToGPU.cpp)
// derive from it; the definitions are LinearFeatureMapsImpl.h, instantiated
// once per base.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_LINEARFEATUREMAPS_H
#define ATTN_CONVERSION_LINEARFEATUREMAPS_H

#include "attn/Conversion/KernelScaffold.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include <string>
#include <utility>

namespace mlir::attn {

template <typename Base> class LinearFeatureMaps : public Base {
protected:
  /// `projection`: the random feature map's input (empty without one);
  /// `args`: the base's constructor arguments.
  template <typename... Args>
  LinearFeatureMaps(StringRef projection, Args &&...args)
      : Base(std::forward<Args>(args)...), projectionName(projection.str()) {}

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

  // The base's helpers this code uses (a dependent base's members need
  // naming).
  using Base::add;
  using Base::b;
  using Base::cf32;
  using Base::cidx;
  using Base::cmp;
  using Base::Dqk;
  using Base::fadd;
  using Base::fexp;
  using Base::fma;
  using Base::fmul;
  using Base::forEach;
  using Base::fsub;
  using Base::ifThen;
  using Base::loop;
  using Base::select;
  using Base::toF32;
  using Base::toI64;

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

} // namespace mlir::attn

#endif // ATTN_CONVERSION_LINEARFEATUREMAPS_H
