//===- AttentionReference.cpp - attn.attention, forward and backward ------===//
//
// One query row at a time: the mask, x = scale·q·k, the score region, the
// normalizer's weights, o = Σ w_j v_j. Masked-out entries never evaluate the
// score (so a score lookup valid only under the mask is safe). The backward
// pass recomputes the row (no saved statistics: the oracle shares nothing
// with the kernels it checks) and differentiates it analytically:
//
//   dv_j += w_j do_i,  dP_j = do_i·v_j,
//   softmax: ds_j = w_j (dP_j − do_i·o_i) + w_j dlse_i
//   sigmoid: ds_j = dP_j σ(s_j + bias) (1 − σ(s_j + bias))
//   relu^p:  ds_j = dp_j p r_j^(p−1) [s_j > 0],  dp_j = dP_j, or
//            (dP_j − do_i·o_i) / Σ_k p_k when row-normalized
//   none:    ds_j = dP_j
//   dx_j = ds_j ∂score/∂x (reverse mode over the score region, which also
//   scatter-adds into the gradients of the f32 tables it reads), and
//   dq_i += scale dx_j k_j, dk_j += scale dx_j q_i.
//
//===----------------------------------------------------------------------===//

#include "ReferenceInternal.h"
#include <algorithm>
#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::reference;
using ::attn::DimBinding;
using ::attn::HostArray;

namespace {

/// The spec's attention bound to dims and params, and one row's values.
class Rows {
public:
  std::string init(AttentionOp att, const Env &env, const WideQKV &in);
  /// Evaluates row (b, h, i) into visible, x, s, p, denom (and lse).
  std::string eval(int64_t b, int64_t h, int64_t i);
  /// o_i = Σ_j w_j v_j with w_j = p_j / denom, into `oi` (Dv, zeroed here).
  void output(double *oi) const;

  int64_t B, Hq, Hkv, N, M, Dqk, Dv, G;
  NormalizerKind kind;
  double scale = 1, bias = 0;
  int64_t power = 1;
  bool rowNormalize = false, hasScore = false;
  Program scoreProg;

  // The row last evaluated.
  int64_t b = 0, h = 0, i = 0;
  const double *qi = nullptr, *kb = nullptr, *vb = nullptr;
  std::vector<char> visible;
  std::vector<double> x; ///< scale·q·k, visible entries only
  std::vector<double> s; ///< the score region's result
  std::vector<double> p; ///< the normalizer's weights before / denom
  double denom = 1, lse = 0, sum = 0;
  bool nanRow = false; ///< softmax with a NaN score: o and lse are NaN

private:
  const Env *env = nullptr;
  const WideQKV *in = nullptr;
  bool hasMask = false;
  Program maskProg;
};

} // namespace

std::string Rows::init(AttentionOp att, const Env &e, const WideQKV &w) {
  env = &e;
  in = &w;
  const DimBinding &dims = *e.dims;
  B = dims.at("B");
  Hq = dims.at("Hq");
  Hkv = dims.at("Hkv");
  N = dims.at("N");
  M = dims.at("M");
  Dqk = dims.at("Dqk");
  Dv = dims.at("Dv");
  G = dims.at("G");
  std::string err;
  scale = 1.0 / std::sqrt(static_cast<double>(Dqk));
  if (!att.getScale().empty()) {
    ScalarValue v;
    if (!(err = runConstantRegion(att.getScale(), e, v)).empty())
      return "scale: " + err;
    scale = v.asDouble();
  }
  if (!att.getBias().empty()) {
    ScalarValue v;
    if (!(err = runConstantRegion(att.getBias(), e, v)).empty())
      return "sigmoid bias: " + err;
    bias = v.asDouble();
  }
  hasMask = !att.getMask().empty();
  hasScore = !att.getScore().empty();
  if (hasMask && !(err = Program::build(att.getMask(), maskProg)).empty())
    return err;
  if (hasScore && !(err = Program::build(att.getScore(), scoreProg)).empty())
    return err;
  kind = att.getNormalizer();
  power = att.getReluPower();
  rowNormalize = att.getRowNormalize();
  visible.assign(M, 0);
  x.assign(M, 0.0);
  s.assign(M, 0.0);
  p.assign(M, 0.0);
  return "";
}

static std::string where(int64_t b, int64_t h, int64_t i, int64_t j) {
  return " [b=" + std::to_string(b) + ", h=" + std::to_string(h) +
         ", q_idx=" + std::to_string(i) + ", kv_idx=" + std::to_string(j) + "]";
}

std::string Rows::eval(int64_t rb, int64_t rh, int64_t ri) {
  b = rb;
  h = rh;
  i = ri;
  int64_t hk = h / G;
  kb = &in->k[((b * Hkv + hk) * M) * Dqk];
  vb = &in->v[((b * Hkv + hk) * M) * Dv];
  qi = &in->q[((b * Hq + h) * N + i) * Dqk];
  std::string err;
  double rowMax = -std::numeric_limits<double>::infinity();
  bool any = false;
  nanRow = false;
  for (int64_t j = 0; j < M; ++j) {
    ScalarValue idx[5] = {mkFloat(0), mkInt(b), mkInt(h), mkInt(i), mkInt(j)};
    bool vis = true;
    if (hasMask) {
      ScalarValue m;
      if (!(err = maskProg.run(llvm::ArrayRef(idx + 1, 4), *env, m)).empty())
        return "mask: " + err + where(b, h, i, j);
      vis = m.i != 0;
    }
    visible[j] = vis;
    if (!vis) {
      p[j] = 0;
      continue;
    }
    double dot = 0;
    for (int64_t d = 0; d < Dqk; ++d)
      dot += qi[d] * kb[j * Dqk + d];
    x[j] = dot * scale;
    double sj = x[j];
    if (hasScore) {
      idx[0] = mkFloat(x[j]);
      ScalarValue r;
      if (!(err = scoreProg.run(idx, *env, r)).empty())
        return "score: " + err + where(b, h, i, j);
      sj = r.asDouble();
    }
    s[j] = p[j] = sj;
    any = true;
    rowMax = std::max(rowMax, sj);
    nanRow |= std::isnan(sj); // std::max would drop it
  }
  denom = 1;
  sum = 0;
  switch (kind) {
  case NormalizerKind::softmax:
    if (nanRow) {
      // A NaN score makes the whole row's softmax NaN (IEEE, as
      // torch.softmax): o and lse are NaN, not an empty row.
      lse = std::numeric_limits<double>::quiet_NaN();
      return "";
    }
    // A row with no visible key, or only -inf scores, is all zeros.
    nanRow = false;
    if (any && rowMax != -std::numeric_limits<double>::infinity()) {
      for (int64_t j = 0; j < M; ++j)
        if (visible[j]) {
          p[j] = std::exp(p[j] - rowMax);
          sum += p[j];
        }
    } else {
      std::fill(p.begin(), p.end(), 0.0);
    }
    lse = sum > 0 ? rowMax + std::log(sum)
                  : -std::numeric_limits<double>::infinity();
    denom = sum > 0 ? sum : 1;
    break;
  case NormalizerKind::sigmoid:
    nanRow = false;
    for (int64_t j = 0; j < M; ++j)
      if (visible[j])
        p[j] = 1.0 / (1.0 + std::exp(-(p[j] + bias)));
    break;
  case NormalizerKind::relu:
    nanRow = false;
    for (int64_t j = 0; j < M; ++j)
      if (visible[j]) {
        double r = std::max(p[j], 0.0);
        p[j] = std::pow(r, static_cast<double>(power));
        sum += p[j];
      }
    if (rowNormalize)
      denom = sum > 0 ? sum : 1;
    break;
  case NormalizerKind::none:
    nanRow = false;
    break;
  }
  return "";
}

void Rows::output(double *oi) const {
  if (nanRow) {
    std::fill(oi, oi + Dv, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  std::fill(oi, oi + Dv, 0.0);
  for (int64_t j = 0; j < M; ++j) {
    if (!visible[j] || p[j] == 0)
      continue;
    double w = p[j] / denom;
    for (int64_t d = 0; d < Dv; ++d)
      oi[d] += w * vb[j * Dv + d];
  }
}

std::string mlir::attn::reference::evaluateAttention(AttentionOp att,
                                                     const Env &env,
                                                     const WideQKV &in,
                                                     ReferenceOutputs &out) {
  Rows rows;
  std::string err = rows.init(att, env, in);
  if (!err.empty())
    return err;
  if (!(err = HostArray::allocate(::attn::DType::F64,
                                  {rows.B, rows.Hq, rows.N, rows.Dv}, out.o))
           .empty())
    return "reference evaluator: o: " + err;
  bool isSoftmax = rows.kind == NormalizerKind::softmax;
  if (isSoftmax &&
      !(err = HostArray::allocate(::attn::DType::F64, {rows.B, rows.Hq, rows.N},
                                  out.lse))
           .empty())
    return "reference evaluator: lse: " + err;
  for (int64_t b = 0; b < rows.B; ++b)
    for (int64_t h = 0; h < rows.Hq; ++h)
      for (int64_t i = 0; i < rows.N; ++i) {
        if (!(err = rows.eval(b, h, i)).empty())
          return err;
        int64_t row = (b * rows.Hq + h) * rows.N + i;
        rows.output(&out.o.data<double>()[row * rows.Dv]);
        if (isSoftmax)
          out.lse.data<double>()[row] = rows.lse;
      }
  return "";
}

std::string mlir::attn::reference::backwardAttention(AttentionOp att,
                                                     const Env &env,
                                                     const WideQKV &in,
                                                     const GradientBuffers &g) {
  Rows rows;
  std::string err = rows.init(att, env, in);
  if (!err.empty())
    return err;
  const int64_t M = rows.M, Dqk = rows.Dqk, Dv = rows.Dv;
  std::vector<double> oi(Dv), dP(M), ds(M);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t b = 0; b < rows.B; ++b)
    for (int64_t h = 0; h < rows.Hq; ++h)
      for (int64_t i = 0; i < rows.N; ++i) {
        if (!(err = rows.eval(b, h, i)).empty())
          return err;
        int64_t row = (b * rows.Hq + h) * rows.N + i;
        int64_t hk = h / rows.G;
        const double *doi = &g.dout[row * Dv];
        double dlse = g.dlse ? g.dlse[row] : 0.0;
        double *dqi = &g.dq[row * Dqk];
        double *dkb = &g.dk[((b * rows.Hkv + hk) * M) * Dqk];
        double *dvb = &g.dv[((b * rows.Hkv + hk) * M) * Dv];
        rows.output(oi.data());
        // D = do·o = Σ_j w_j dP_j.
        double D = 0;
        for (int64_t d = 0; d < Dv; ++d)
          D += doi[d] * oi[d];
        for (int64_t j = 0; j < M; ++j) {
          if (!rows.visible[j])
            continue;
          double w = rows.nanRow ? nan : rows.p[j] / rows.denom;
          double acc = 0;
          for (int64_t d = 0; d < Dv; ++d) {
            acc += doi[d] * rows.vb[j * Dv + d];
            if (w != 0)
              dvb[j * Dv + d] += w * doi[d];
          }
          dP[j] = acc;
          switch (rows.kind) {
          case NormalizerKind::softmax:
            ds[j] = w * (dP[j] - D) + w * dlse;
            break;
          case NormalizerKind::sigmoid:
            ds[j] = dP[j] * rows.p[j] * (1.0 - rows.p[j]);
            break;
          case NormalizerKind::relu: {
            // torch.relu: derivative 0 at 0.
            double sj = rows.s[j];
            double dr = sj > 0 ? double(rows.power) *
                                     std::pow(sj, double(rows.power - 1))
                               : (std::isnan(sj) ? nan : 0.0);
            double dp = !rows.rowNormalize ? dP[j]
                        : rows.sum > 0     ? (dP[j] - D) / rows.sum
                                           : 0.0;
            ds[j] = dp * dr;
            break;
          }
          case NormalizerKind::none:
            ds[j] = dP[j];
            break;
          }
          if (ds[j] == 0)
            continue;
          double dx = ds[j];
          if (rows.hasScore) {
            // Re-run the score for this entry, then reverse mode: dx is the
            // adjoint of its `score` argument; the tables it read get theirs.
            ScalarValue idx[5] = {mkFloat(rows.x[j]), mkInt(b), mkInt(h),
                                  mkInt(i), mkInt(j)},
                        r;
            if (!(err = rows.scoreProg.run(idx, env, r)).empty())
              return "score: " + err + where(b, h, i, j);
            double adj[5] = {0, 0, 0, 0, 0};
            rows.scoreProg.backward(ds[j], env, adj);
            dx = adj[0];
          }
          double c = rows.scale * dx;
          for (int64_t d = 0; d < Dqk; ++d) {
            dqi[d] += c * rows.kb[j * Dqk + d];
            dkb[j * Dqk + d] += c * rows.qi[d];
          }
        }
      }
  return "";
}
