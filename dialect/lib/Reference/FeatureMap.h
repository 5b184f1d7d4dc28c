//===- FeatureMap.h - linear attention's feature maps, and their VJPs -----===//
//
// φ applied to one row of q or k, and the vector-Jacobian product the
// backward pass needs. Private to the reference library.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LIB_REFERENCE_FEATUREMAP_H
#define ATTN_LIB_REFERENCE_FEATUREMAP_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include <cmath>
#include <cstdint>

namespace mlir::attn::reference {

struct FeatureMap {
  FeatureMapKind kind = FeatureMapKind::identity;
  int64_t dqk = 0;
  int64_t dphi = 0;
  /// random: the projection W [R, Dqk], row-major.
  const double *proj = nullptr;

  void apply(const double *x, double *out) const {
    const int64_t D = dqk;
    switch (kind) {
    case FeatureMapKind::identity:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d];
      return;
    case FeatureMapKind::elu_plus_one:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] + 1.0 : std::exp(x[d]);
      return;
    case FeatureMapKind::relu:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] : 0.0;
      return;
    case FeatureMapKind::relu2:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] * x[d] : 0.0;
      return;
    case FeatureMapKind::sigmoid:
      for (int64_t d = 0; d < D; ++d)
        out[d] = 1.0 / (1.0 + std::exp(-x[d]));
      return;
    case FeatureMapKind::silu:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] / (1.0 + std::exp(-x[d]));
      return;
    case FeatureMapKind::exp:
      for (int64_t d = 0; d < D; ++d)
        out[d] = std::exp(x[d]);
      return;
    case FeatureMapKind::l2norm: {
      double ss = 0;
      for (int64_t d = 0; d < D; ++d)
        ss += x[d] * x[d];
      double n = std::sqrt(ss);
      for (int64_t d = 0; d < D; ++d)
        out[d] = n > 0 ? x[d] / n : 0.0; // the zero vector stays 0
      return;
    }
    case FeatureMapKind::pos_neg:
      for (int64_t d = 0; d < D; ++d) {
        out[d] = x[d];
        out[D + d] = -x[d];
      }
      return;
    case FeatureMapKind::taylor2: {
      // [1, x_a / D^(1/4), x_a^2 / sqrt(2D), x_a x_b / sqrt(D) (a < b)]:
      // φ(q)·φ(k) = 1 + q·k/sqrt(D) + (q·k)^2 / (2D).
      double r4 = std::pow(double(D), 0.25), s2 = std::sqrt(2.0 * double(D)),
             s1 = std::sqrt(double(D));
      out[0] = 1.0;
      for (int64_t a = 0; a < D; ++a) {
        out[1 + a] = x[a] / r4;
        out[1 + D + a] = x[a] * x[a] / s2;
      }
      int64_t f = 1 + 2 * D;
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = a + 1; b < D; ++b)
          out[f++] = x[a] * x[b] / s1;
      return;
    }
    case FeatureMapKind::random: {
      // x' = x / D^(1/4); φ_r = exp(w_r·x' - ||x'||^2 / 2) / sqrt(R).
      double r4 = std::pow(double(D), 0.25), n2 = 0;
      for (int64_t d = 0; d < D; ++d)
        n2 += (x[d] / r4) * (x[d] / r4);
      const double *W = proj;
      for (int64_t r = 0; r < dphi; ++r) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += W[r * D + d] * (x[d] / r4);
        out[r] = std::exp(dot - 0.5 * n2) / std::sqrt(double(dphi));
      }
      return;
    }
    }
  }

  /// dx += (∂φ(x)/∂x)ᵀ dy: the gradient of a row of q or k from the
  /// gradient of its features. Conventions at kinks are PyTorch's: relu and
  /// relu² have derivative 0 at 0, l2norm of the zero vector has gradient 0.
  void vjp(const double *x, const double *dy, double *dx) const {
    const int64_t D = dqk;
    switch (kind) {
    case FeatureMapKind::identity:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += dy[d];
      return;
    case FeatureMapKind::elu_plus_one:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += dy[d] * (x[d] > 0 ? 1.0 : std::exp(x[d]));
      return;
    case FeatureMapKind::relu:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += x[d] > 0 ? dy[d] : 0.0;
      return;
    case FeatureMapKind::relu2:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += x[d] > 0 ? 2.0 * x[d] * dy[d] : 0.0;
      return;
    case FeatureMapKind::sigmoid:
      for (int64_t d = 0; d < D; ++d) {
        double s = 1.0 / (1.0 + std::exp(-x[d]));
        dx[d] += dy[d] * s * (1.0 - s);
      }
      return;
    case FeatureMapKind::silu:
      for (int64_t d = 0; d < D; ++d) {
        double s = 1.0 / (1.0 + std::exp(-x[d]));
        dx[d] += dy[d] * s * (1.0 + x[d] * (1.0 - s));
      }
      return;
    case FeatureMapKind::exp:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += dy[d] * std::exp(x[d]);
      return;
    case FeatureMapKind::l2norm: {
      // y = x / n: dx = (dy - y (y . dy)) / n.
      double ss = 0;
      for (int64_t d = 0; d < D; ++d)
        ss += x[d] * x[d];
      double n = std::sqrt(ss);
      if (!(n > 0))
        return;
      double ydy = 0;
      for (int64_t d = 0; d < D; ++d)
        ydy += x[d] / n * dy[d];
      for (int64_t d = 0; d < D; ++d)
        dx[d] += (dy[d] - x[d] / n * ydy) / n;
      return;
    }
    case FeatureMapKind::pos_neg:
      for (int64_t d = 0; d < D; ++d)
        dx[d] += dy[d] - dy[D + d];
      return;
    case FeatureMapKind::taylor2: {
      double r4 = std::pow(double(D), 0.25), s2 = std::sqrt(2.0 * double(D)),
             s1 = std::sqrt(double(D));
      for (int64_t a = 0; a < D; ++a)
        dx[a] += dy[1 + a] / r4 + dy[1 + D + a] * 2.0 * x[a] / s2;
      int64_t f = 1 + 2 * D;
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = a + 1; b < D; ++b, ++f) {
          dx[a] += dy[f] * x[b] / s1;
          dx[b] += dy[f] * x[a] / s1;
        }
      return;
    }
    case FeatureMapKind::random: {
      // y_r = exp(w_r.x' - |x'|^2 / 2) / sqrt(R), x' = x / D^(1/4):
      // dx' = sum_r dy_r y_r (w_r - x'). The projection gets no gradient.
      double r4 = std::pow(double(D), 0.25), n2 = 0;
      for (int64_t d = 0; d < D; ++d)
        n2 += (x[d] / r4) * (x[d] / r4);
      const double *W = proj;
      for (int64_t r = 0; r < dphi; ++r) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += W[r * D + d] * (x[d] / r4);
        double wy = dy[r] * std::exp(dot - 0.5 * n2) / std::sqrt(double(dphi));
        for (int64_t d = 0; d < D; ++d)
          dx[d] += wy * (W[r * D + d] - x[d] / r4) / r4;
      }
      return;
    }
    }
  }
};

} // namespace mlir::attn::reference

#endif // ATTN_LIB_REFERENCE_FEATUREMAP_H
