//===- LinearReference.cpp - the linear family, forward and backward ------===//
//
// Runs the recurrent form of attn.linear_attention one step at a time per
// (b, h): feature maps, log-space gates, the delta rule, exclusive readout
// with bonus, the normalizer state (see AttnOps.td). Never the chunked or
// parallel forms a kernel uses.
//
// The backward pass is reverse mode through the same steps. Storing every
// state would take N x Dphi x Dv per head (0.5 GB at N = 4096, D = 128), so
// the forward keeps a checkpoint every C = ceil(sqrt(N)) steps and the
// reverse sweep recomputes one segment of C states at a time: 2 sqrt(N)
// states in all, one extra forward.
//
//===----------------------------------------------------------------------===//

#include "FeatureMap.h"
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

/// The spec's linear attention bound to dims and params.
struct LinearSpec {
  int64_t B, Hq, Hkv, N, M, Dqk, Dv, G, Dphi;
  bool causal, exclusive, normalize, hasGate, vectorGate, hasBeta, hasBonus;
  double scale;
  FeatureMap phiQ, phiK;
  Program gateProg, betaProg, bonusProg;
};

/// One (b, h): its rows of q, k, v and o, and the bonus u.
struct Head {
  int64_t b, h;
  const double *q, *k, *v;
  std::vector<double> u;
};

/// What a step computes besides the new state: the backward pass reads it.
struct StepValues {
  std::vector<double> fq, fk, g, corr, pred;
  double beta = 1, c = 0;
};

} // namespace

static std::string setupLinear(LinearAttentionOp lin, const Env &env,
                               LinearSpec &L) {
  const DimBinding &dims = *env.dims;
  L.B = dims.at("B");
  L.Hq = dims.at("Hq");
  L.Hkv = dims.at("Hkv");
  L.N = dims.at("N");
  L.M = dims.at("M");
  L.Dqk = dims.at("Dqk");
  L.Dv = dims.at("Dv");
  L.G = dims.at("G");
  L.causal = !lin.getNoncausal();
  if (L.causal && L.N != L.M)
    return "causal linear attention needs N == M (got N=" +
           std::to_string(L.N) + ", M=" + std::to_string(L.M) + ")";

  std::string err;
  L.scale = 1.0 / std::sqrt(static_cast<double>(L.Dqk));
  if (!lin.getScale().empty()) {
    ScalarValue s;
    if (!(err = runConstantRegion(lin.getScale(), env, s)).empty())
      return "scale: " + err;
    L.scale = s.asDouble();
  }

  // Feature maps. The verifier makes the q and k maps agree whenever they
  // change the dimension, so both give the same Dphi.
  L.phiQ.kind = lin.getFeatureMapQ();
  L.phiK.kind = lin.getFeatureMapK();
  const double *proj = nullptr;
  int64_t R = 0;
  if (auto p = lin.getProjectionAttr()) {
    std::string name = p.getValue().str();
    auto it = env.aux->find(name);
    if (it == env.aux->end())
      return "projection input '" + name + "' is not bound";
    const AuxTensor &w = it->second;
    if (w.isInt || w.shape.size() != 2 || w.shape[1] != L.Dqk)
      return "projection input '" + name +
             "' must be f32 [R, Dqk] with Dqk=" + std::to_string(L.Dqk);
    proj = w.values.data<double>();
    R = w.shape[0];
  }
  for (FeatureMap *f : {&L.phiQ, &L.phiK}) {
    f->dqk = L.Dqk;
    f->proj = proj;
    // Within the budget checked before (the state alone is Dphi x Dv).
    f->dphi = static_cast<int64_t>(std::min<uint64_t>(
        featureDim(f->kind, L.Dqk, R), std::numeric_limits<int64_t>::max()));
  }
  if (L.phiQ.dphi != L.phiK.dphi)
    return "the q and k feature maps give different feature dimensions (" +
           std::to_string(L.phiQ.dphi) + " and " + std::to_string(L.phiK.dphi) +
           ")";
  L.Dphi = L.phiQ.dphi;
  if (L.Dphi <= 0)
    return "the feature dimension is 0 (projection with R=0 rows?)";

  L.hasGate = !lin.getGate().empty();
  L.hasBeta = !lin.getBeta().empty();
  L.hasBonus = !lin.getBonus().empty();
  if (L.hasGate && !(err = Program::build(lin.getGate(), L.gateProg)).empty())
    return err;
  if (L.hasBeta && !(err = Program::build(lin.getBeta(), L.betaProg)).empty())
    return err;
  if (L.hasBonus &&
      !(err = Program::build(lin.getBonus(), L.bonusProg)).empty())
    return err;
  L.vectorGate = L.hasGate && lin.hasVectorGate();
  L.exclusive = lin.getExclusive();
  L.normalize = lin.getNormalize();
  return "";
}

static std::string where(const Head &hd, int64_t t, int64_t d) {
  std::string s = " [b=" + std::to_string(hd.b) +
                  ", h=" + std::to_string(hd.h) + ", t=" + std::to_string(t);
  if (d >= 0)
    s += ", d=" + std::to_string(d);
  return s + "]";
}

/// Binds the head's rows and evaluates its bonus u.
static std::string bindHead(LinearSpec &L, const Env &env, const WideQKV &in,
                            int64_t b, int64_t h, Head &hd) {
  int64_t hk = h / L.G;
  hd.b = b;
  hd.h = h;
  hd.k = &in.k[(b * L.Hkv + hk) * L.M * L.Dqk];
  hd.v = &in.v[(b * L.Hkv + hk) * L.M * L.Dv];
  hd.q = &in.q[(b * L.Hq + h) * L.N * L.Dqk];
  hd.u.assign(L.Dphi, 0.0);
  if (!L.hasBonus)
    return "";
  for (int64_t d = 0; d < L.Dphi; ++d) {
    ScalarValue args[2] = {mkInt(h), mkInt(d)}, r;
    if (std::string err = L.bonusProg.run(args, env, r); !err.empty())
      return "bonus: " + err + " [h=" + std::to_string(h) +
             ", d=" + std::to_string(d) + "]";
    hd.u[d] = r.asDouble();
  }
  return "";
}

/// o = φq^T S (+ c v_t), scaled, or divided by φq·z (+ c); 0 when that
/// denominator is 0. `den` gets the denominator, `num` the numerator.
static void readout(const LinearSpec &L, const double *S, const double *z,
                    const double *fq, double c, const double *vt, double *oi,
                    std::vector<double> &num, double &den) {
  for (int64_t e = 0; e < L.Dv; ++e)
    num[e] = vt ? c * vt[e] : 0.0;
  den = vt ? c : 0.0;
  for (int64_t d = 0; d < L.Dphi; ++d) {
    const double *Sd = &S[d * L.Dv];
    for (int64_t e = 0; e < L.Dv; ++e)
      num[e] += fq[d] * Sd[e];
    den += fq[d] * z[d];
  }
  for (int64_t e = 0; e < L.Dv; ++e)
    oi[e] = L.normalize ? (den != 0 ? num[e] / den : 0.0) : L.scale * num[e];
}

/// One causal step t on the state (S, z), in place; writes o_t when `ot` is
/// given. `sv` keeps the features, gates and correction.
static std::string step(LinearSpec &L, const Env &env, const Head &hd,
                        int64_t t, double *S, double *z, StepValues &sv,
                        double *ot, std::vector<double> &num) {
  const int64_t Dphi = L.Dphi, Dv = L.Dv;
  const double *vt = &hd.v[t * Dv];
  std::string err;
  L.phiQ.apply(&hd.q[t * L.Dqk], sv.fq.data());
  L.phiK.apply(&hd.k[t * L.Dqk], sv.fk.data());
  double den;

  // Exclusive readout: the state before this step, plus the bonus term
  // (φq ⊙ u)·φk v_t.
  if (L.exclusive) {
    sv.c = 0;
    for (int64_t d = 0; d < Dphi; ++d)
      sv.c += sv.fq[d] * hd.u[d] * sv.fk[d];
    if (ot)
      readout(L, S, z, sv.fq.data(), sv.c, vt, ot, num, den);
  }

  // Decay: S = diag(g) S, z = g ⊙ z, g = exp(log gate).
  if (L.hasGate) {
    for (int64_t d = 0; d < (L.vectorGate ? Dphi : 1); ++d) {
      ScalarValue args[4] = {mkInt(hd.b), mkInt(hd.h), mkInt(t), mkInt(d)}, r;
      if (!(err = L.gateProg.run(args, env, r)).empty())
        return "gate: " + err + where(hd, t, L.vectorGate ? d : -1);
      sv.g[d] = std::exp(r.asDouble());
    }
    if (!L.vectorGate)
      std::fill(sv.g.begin() + 1, sv.g.end(), sv.g[0]);
    for (int64_t d = 0; d < Dphi; ++d) {
      for (int64_t e = 0; e < Dv; ++e)
        S[d * Dv + e] *= sv.g[d];
      z[d] *= sv.g[d];
    }
  }

  // Update: the delta rule S += β φk (v - S^T φk)^T, or S += φk v^T.
  if (L.hasBeta) {
    ScalarValue args[3] = {mkInt(hd.b), mkInt(hd.h), mkInt(t)}, r;
    if (!(err = L.betaProg.run(args, env, r)).empty())
      return "beta: " + err + where(hd, t, -1);
    sv.beta = r.asDouble();
    for (int64_t e = 0; e < Dv; ++e) {
      double pred = 0;
      for (int64_t d = 0; d < Dphi; ++d)
        pred += S[d * Dv + e] * sv.fk[d];
      sv.pred[e] = pred;
      sv.corr[e] = sv.beta * (vt[e] - pred);
    }
  } else {
    for (int64_t e = 0; e < Dv; ++e)
      sv.corr[e] = vt[e];
  }
  for (int64_t d = 0; d < Dphi; ++d) {
    for (int64_t e = 0; e < Dv; ++e)
      S[d * Dv + e] += sv.fk[d] * sv.corr[e];
    z[d] += sv.fk[d];
  }

  if (!L.exclusive && ot)
    readout(L, S, z, sv.fq.data(), 0.0, nullptr, ot, num, den);
  return "";
}

static void resize(const LinearSpec &L, StepValues &sv) {
  sv.fq.assign(L.Dphi, 0.0);
  sv.fk.assign(L.Dphi, 0.0);
  sv.g.assign(L.Dphi, 1.0);
  sv.corr.assign(L.Dv, 0.0);
  sv.pred.assign(L.Dv, 0.0);
}

std::string mlir::attn::reference::evaluateLinear(LinearAttentionOp lin,
                                                  const Env &env,
                                                  const WideQKV &in,
                                                  ReferenceOutputs &out) {
  LinearSpec L;
  std::string err = setupLinear(lin, env, L);
  if (!err.empty())
    return err;
  if (!(err = HostArray::allocate(::attn::DType::F64, {L.B, L.Hq, L.N, L.Dv},
                                  out.o))
           .empty())
    return "reference evaluator: o: " + err;
  double *o = out.o.data<double>();
  // The state S [Dphi, Dv] is the big one (Dphi grows as Dqk^2 for taylor2).
  HostArray state;
  if (!(err = HostArray::allocate(::attn::DType::F64, {L.Dphi, L.Dv}, state))
           .empty())
    return "reference evaluator: the recurrent state: " + err;
  double *S = state.data<double>();
  std::vector<double> z(L.Dphi), num(L.Dv);
  StepValues sv;
  resize(L, sv);

  for (int64_t b = 0; b < L.B; ++b) {
    for (int64_t h = 0; h < L.Hq; ++h) {
      Head hd;
      if (!(err = bindHead(L, env, in, b, h, hd)).empty())
        return err;
      double *ob = &o[(b * L.Hq + h) * L.N * L.Dv];
      std::fill(S, S + L.Dphi * L.Dv, 0.0);
      std::fill(z.begin(), z.end(), 0.0);

      if (!L.causal) {
        // Every query reads the state after all M keys.
        for (int64_t j = 0; j < L.M; ++j) {
          L.phiK.apply(&hd.k[j * L.Dqk], sv.fk.data());
          for (int64_t d = 0; d < L.Dphi; ++d) {
            for (int64_t e = 0; e < L.Dv; ++e)
              S[d * L.Dv + e] += sv.fk[d] * hd.v[j * L.Dv + e];
            z[d] += sv.fk[d];
          }
        }
        double den;
        for (int64_t t = 0; t < L.N; ++t) {
          L.phiQ.apply(&hd.q[t * L.Dqk], sv.fq.data());
          readout(L, S, z.data(), sv.fq.data(), 0.0, nullptr, &ob[t * L.Dv],
                  num, den);
        }
        continue;
      }
      for (int64_t t = 0; t < L.N; ++t)
        if (!(err = step(L, env, hd, t, S, z.data(), sv, &ob[t * L.Dv], num))
                 .empty())
          return err;
    }
  }
  return "";
}

//===----------------------------------------------------------------------===//
// Backward
//===----------------------------------------------------------------------===//

namespace {

/// The adjoints of one head's state and of its readouts.
struct Adjoints {
  std::vector<double> dS, dz, dfq, dfk, dnum, dcorr, du, dg;
  std::vector<double> num; ///< scratch: a readout's numerator
};

} // namespace

/// Adjoint of readout(S, z, fq, c, vt) for the output gradient `dot`: adds
/// to dS, dz, dfq, and returns dc (the adjoint of c; 0 without vt).
static double readoutBackward(const LinearSpec &L, const double *S,
                              const double *z, const double *fq, double c,
                              const double *vt, const double *dot, Adjoints &a,
                              double *dvt) {
  const int64_t Dphi = L.Dphi, Dv = L.Dv;
  // Recompute num and den.
  std::vector<double> &num = a.num;
  double den = vt ? c : 0.0;
  for (int64_t e = 0; e < Dv; ++e)
    num[e] = vt ? c * vt[e] : 0.0;
  for (int64_t d = 0; d < Dphi; ++d) {
    for (int64_t e = 0; e < Dv; ++e)
      num[e] += fq[d] * S[d * Dv + e];
    den += fq[d] * z[d];
  }
  double dden = 0;
  if (L.normalize) {
    // o = num / den (0 when den = 0: no gradient there either).
    if (den == 0) {
      std::fill(a.dnum.begin(), a.dnum.end(), 0.0);
    } else {
      double dot_num = 0;
      for (int64_t e = 0; e < Dv; ++e) {
        a.dnum[e] = dot[e] / den;
        dot_num += dot[e] * num[e];
      }
      dden = -dot_num / (den * den);
    }
  } else {
    for (int64_t e = 0; e < Dv; ++e)
      a.dnum[e] = L.scale * dot[e];
  }
  for (int64_t d = 0; d < Dphi; ++d) {
    double acc = dden * z[d];
    for (int64_t e = 0; e < Dv; ++e) {
      acc += S[d * Dv + e] * a.dnum[e];
      a.dS[d * Dv + e] += fq[d] * a.dnum[e];
    }
    a.dfq[d] += acc;
    a.dz[d] += dden * fq[d];
  }
  if (!vt)
    return 0;
  double dc = dden;
  for (int64_t e = 0; e < Dv; ++e) {
    dc += a.dnum[e] * vt[e];
    dvt[e] += c * a.dnum[e];
  }
  return dc;
}

/// Reverse of step(): `Sp`, `zp` hold the state before step t, and `sv` the
/// step's values (from running step() on a copy). On entry a.dS, a.dz are
/// the adjoints of the state after the step; on exit, of the state before.
static std::string stepBackward(LinearSpec &L, const Env &env, const Head &hd,
                                int64_t t, const double *Sp, const double *zp,
                                const double *St, const double *zt,
                                const StepValues &sv, const GradientBuffers &g,
                                Adjoints &a, double *dq, double *dk,
                                double *dv) {
  const int64_t Dphi = L.Dphi, Dv = L.Dv;
  const double *vt = &hd.v[t * Dv];
  const double *dot = &g.dout[((hd.b * L.Hq + hd.h) * L.N + t) * Dv];
  double *dvt = &dv[t * Dv];
  std::fill(a.dfq.begin(), a.dfq.end(), 0.0);
  std::fill(a.dfk.begin(), a.dfk.end(), 0.0);
  std::string err;

  // Inclusive readout of the state after the step.
  if (!L.exclusive)
    readoutBackward(L, St, zt, sv.fq.data(), 0.0, nullptr, dot, a, nullptr);

  // Update: S_t = Sd + φk corrᵀ, z_t = zd + φk, with Sd = diag(g) S_{t-1}.
  for (int64_t e = 0; e < Dv; ++e) {
    double acc = 0;
    for (int64_t d = 0; d < Dphi; ++d)
      acc += sv.fk[d] * a.dS[d * Dv + e];
    a.dcorr[e] = acc;
  }
  for (int64_t d = 0; d < Dphi; ++d) {
    double acc = a.dz[d];
    for (int64_t e = 0; e < Dv; ++e)
      acc += a.dS[d * Dv + e] * sv.corr[e];
    a.dfk[d] += acc;
  }
  if (L.hasBeta) {
    // corr = β (v - Sdᵀ φk).
    double dbeta = 0;
    for (int64_t e = 0; e < Dv; ++e) {
      dbeta += a.dcorr[e] * (vt[e] - sv.pred[e]);
      dvt[e] += sv.beta * a.dcorr[e];
    }
    for (int64_t d = 0; d < Dphi; ++d) {
      double acc = 0;
      for (int64_t e = 0; e < Dv; ++e) {
        double dpred = -sv.beta * a.dcorr[e];
        double sd = sv.g[d] * Sp[d * Dv + e];
        acc += sd * dpred;
        a.dS[d * Dv + e] += sv.fk[d] * dpred;
      }
      a.dfk[d] += acc;
    }
    ScalarValue args[3] = {mkInt(hd.b), mkInt(hd.h), mkInt(t)}, r;
    if (!(err = L.betaProg.run(args, env, r)).empty())
      return "beta: " + err + where(hd, t, -1);
    L.betaProg.backward(dbeta, env, {});
  } else {
    for (int64_t e = 0; e < Dv; ++e)
      dvt[e] += a.dcorr[e];
  }

  // Decay: the adjoint of g from dSd·S_{t-1}, then back to S_{t-1}.
  if (L.hasGate) {
    for (int64_t d = 0; d < Dphi; ++d) {
      double acc = a.dz[d] * zp[d];
      for (int64_t e = 0; e < Dv; ++e) {
        acc += a.dS[d * Dv + e] * Sp[d * Dv + e];
        a.dS[d * Dv + e] *= sv.g[d];
      }
      a.dz[d] *= sv.g[d];
      a.dg[d] = acc * sv.g[d]; // d/d(log g) = g d/dg
    }
    if (!L.vectorGate)
      for (int64_t d = 1; d < Dphi; ++d)
        a.dg[0] += a.dg[d];
    for (int64_t d = 0; d < (L.vectorGate ? Dphi : 1); ++d) {
      ScalarValue args[4] = {mkInt(hd.b), mkInt(hd.h), mkInt(t), mkInt(d)}, r;
      if (!(err = L.gateProg.run(args, env, r)).empty())
        return "gate: " + err + where(hd, t, L.vectorGate ? d : -1);
      L.gateProg.backward(a.dg[d], env, {});
    }
  }

  // Exclusive readout of the state before the step, with the bonus term.
  if (L.exclusive) {
    double dc = readoutBackward(L, Sp, zp, sv.fq.data(), sv.c, vt, dot, a, dvt);
    for (int64_t d = 0; d < Dphi; ++d) {
      a.dfq[d] += dc * hd.u[d] * sv.fk[d];
      a.dfk[d] += dc * hd.u[d] * sv.fq[d];
      a.du[d] += dc * sv.fq[d] * sv.fk[d];
    }
  }

  L.phiQ.vjp(&hd.q[t * L.Dqk], a.dfq.data(), &dq[t * L.Dqk]);
  L.phiK.vjp(&hd.k[t * L.Dqk], a.dfk.data(), &dk[t * L.Dqk]);
  return "";
}

uint64_t mlir::attn::reference::linearBackwardScratch(uint64_t n, uint64_t dphi,
                                                      uint64_t dv) {
  using ::attn::saturatingAdd;
  using ::attn::saturatingMul;
  uint64_t c = static_cast<uint64_t>(std::ceil(std::sqrt(double(n)))) + 1;
  uint64_t perState =
      saturatingMul(saturatingAdd(saturatingMul(dphi, dv), dphi), 8);
  // checkpoints (n / c + 1), one segment (c + 1), the adjoints and a copy.
  return saturatingMul(perState, saturatingAdd(saturatingAdd(n / c + 1, c), 4));
}

/// The non-causal form: every query reads the state after all M keys.
static void backwardNoncausal(LinearSpec &L, const Head &hd,
                              const GradientBuffers &g, Adjoints &a,
                              StepValues &sv, double *dq, double *dk,
                              double *dv) {
  const int64_t Dphi = L.Dphi, Dv = L.Dv;
  std::vector<double> S(Dphi * Dv, 0.0), z(Dphi, 0.0);
  for (int64_t j = 0; j < L.M; ++j) {
    L.phiK.apply(&hd.k[j * L.Dqk], sv.fk.data());
    for (int64_t d = 0; d < Dphi; ++d) {
      for (int64_t e = 0; e < Dv; ++e)
        S[d * Dv + e] += sv.fk[d] * hd.v[j * Dv + e];
      z[d] += sv.fk[d];
    }
  }
  for (int64_t t = 0; t < L.N; ++t) {
    const double *dot = &g.dout[((hd.b * L.Hq + hd.h) * L.N + t) * Dv];
    L.phiQ.apply(&hd.q[t * L.Dqk], sv.fq.data());
    std::fill(a.dfq.begin(), a.dfq.end(), 0.0);
    readoutBackward(L, S.data(), z.data(), sv.fq.data(), 0.0, nullptr, dot, a,
                    nullptr);
    L.phiQ.vjp(&hd.q[t * L.Dqk], a.dfq.data(), &dq[t * L.Dqk]);
  }
  for (int64_t j = 0; j < L.M; ++j) {
    L.phiK.apply(&hd.k[j * L.Dqk], sv.fk.data());
    for (int64_t d = 0; d < Dphi; ++d) {
      double acc = a.dz[d];
      for (int64_t e = 0; e < Dv; ++e)
        acc += a.dS[d * Dv + e] * hd.v[j * Dv + e];
      a.dfk[d] = acc;
    }
    for (int64_t e = 0; e < Dv; ++e) {
      double acc = 0;
      for (int64_t d = 0; d < Dphi; ++d)
        acc += a.dS[d * Dv + e] * sv.fk[d];
      dv[j * Dv + e] += acc;
    }
    L.phiK.vjp(&hd.k[j * L.Dqk], a.dfk.data(), &dk[j * L.Dqk]);
  }
}

std::string mlir::attn::reference::backwardLinear(LinearAttentionOp lin,
                                                  const Env &env,
                                                  const WideQKV &in,
                                                  const GradientBuffers &g) {
  LinearSpec L;
  std::string err = setupLinear(lin, env, L);
  if (!err.empty())
    return err;
  const int64_t Dphi = L.Dphi, Dv = L.Dv, stateSize = Dphi * Dv;
  const int64_t C = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(std::sqrt(double(L.N)))));
  const int64_t segments = (L.N + C - 1) / C;
  // Checkpoints before steps 0, C, 2C, ...; one segment's states (S, z)
  // before each of its steps; the state after a step.
  HostArray ckpt, seg;
  if (L.causal &&
      (!(err = HostArray::allocate(
             ::attn::DType::F64,
             {std::max<int64_t>(segments, 1), stateSize + Dphi}, ckpt))
            .empty() ||
       !(err = HostArray::allocate(::attn::DType::F64, {C, stateSize + Dphi},
                                   seg))
            .empty()))
    return "reference evaluator: the checkpointed states: " + err;
  std::vector<double> S(stateSize), z(Dphi), St(stateSize), zt(Dphi), num(Dv);
  StepValues sv;
  resize(L, sv);
  Adjoints a;
  a.dS.assign(stateSize, 0.0);
  a.dz.assign(Dphi, 0.0);
  a.dfq.assign(Dphi, 0.0);
  a.dfk.assign(Dphi, 0.0);
  a.dnum.assign(Dv, 0.0);
  a.dcorr.assign(Dv, 0.0);
  a.num.assign(Dv, 0.0);
  a.du.assign(Dphi, 0.0);
  a.dg.assign(Dphi, 0.0);

  for (int64_t b = 0; b < L.B; ++b) {
    for (int64_t h = 0; h < L.Hq; ++h) {
      Head hd;
      if (!(err = bindHead(L, env, in, b, h, hd)).empty())
        return err;
      int64_t hk = h / L.G;
      double *dq = &g.dq[(b * L.Hq + h) * L.N * L.Dqk];
      double *dk = &g.dk[(b * L.Hkv + hk) * L.M * L.Dqk];
      double *dv = &g.dv[(b * L.Hkv + hk) * L.M * Dv];
      std::fill(a.dS.begin(), a.dS.end(), 0.0);
      std::fill(a.dz.begin(), a.dz.end(), 0.0);
      std::fill(a.du.begin(), a.du.end(), 0.0);
      if (!L.causal) {
        backwardNoncausal(L, hd, g, a, sv, dq, dk, dv);
        continue;
      }

      // Forward, keeping a checkpoint at the start of every segment.
      std::fill(S.begin(), S.end(), 0.0);
      std::fill(z.begin(), z.end(), 0.0);
      for (int64_t t = 0; t < L.N; ++t) {
        if (t % C == 0) {
          double *c = &ckpt.data<double>()[(t / C) * (stateSize + Dphi)];
          std::copy(S.begin(), S.end(), c);
          std::copy(z.begin(), z.end(), c + stateSize);
        }
        if (!(err = step(L, env, hd, t, S.data(), z.data(), sv, nullptr, num))
                 .empty())
          return err;
      }

      // Reverse sweep, one recomputed segment at a time.
      for (int64_t s = segments - 1; s >= 0; --s) {
        int64_t t0 = s * C, t1 = std::min(L.N, t0 + C);
        const double *c = &ckpt.data<double>()[s * (stateSize + Dphi)];
        std::copy(c, c + stateSize, S.begin());
        std::copy(c + stateSize, c + stateSize + Dphi, z.begin());
        for (int64_t t = t0; t < t1; ++t) {
          double *before = &seg.data<double>()[(t - t0) * (stateSize + Dphi)];
          std::copy(S.begin(), S.end(), before);
          std::copy(z.begin(), z.end(), before + stateSize);
          if (t + 1 < t1 &&
              !(err = step(L, env, hd, t, S.data(), z.data(), sv, nullptr, num))
                   .empty())
            return err;
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const double *Sp = &seg.data<double>()[(t - t0) * (stateSize + Dphi)];
          const double *zp = Sp + stateSize;
          std::copy(Sp, Sp + stateSize, St.begin());
          std::copy(zp, zp + Dphi, zt.begin());
          if (!(err =
                    step(L, env, hd, t, St.data(), zt.data(), sv, nullptr, num))
                   .empty())
            return err;
          if (!(err = stepBackward(L, env, hd, t, Sp, zp, St.data(), zt.data(),
                                   sv, g, a, dq, dk, dv))
                   .empty())
            return err;
        }
      }

      if (L.hasBonus)
        for (int64_t d = 0; d < Dphi; ++d) {
          ScalarValue args[2] = {mkInt(h), mkInt(d)}, r;
          if (!(err = L.bonusProg.run(args, env, r)).empty())
            return "bonus: " + err;
          L.bonusProg.backward(a.du[d], env, {});
        }
    }
  }
  return "";
}
