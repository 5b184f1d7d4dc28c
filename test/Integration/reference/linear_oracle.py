#!/usr/bin/env python3
# ===- linear_oracle.py - float64 oracle for linear attention specs --------===#
#
# An independent float64 numpy oracle for the tier-2 (linear attention)
# examples and a few built-in specs (exclusive readout + bonus, non-causal,
# random features, per-key-dim delta rule, pos_neg with a per-feature gate),
# checked against `attnc run --reference`. Nothing is imported from the
# repository; the semantics are written down again from
# /work/shared/design/VARIANTS.md (section 0 RECUR, D1-D3, E1-E6) and the
# attn.linear_attention op description:
#
#   per (b, h), hk = h // G, S [Dphi, Dv] = 0, z [Dphi] = 0; for t < N:
#     g = exp(log_gate_t)  (vector over the features, or one scalar, or 1)
#     S = g[:, None] * S;  z = g * z
#     S += outer(phi(k_t), v_t)                         (no delta rule)
#     S += beta_t * outer(phi(k_t), v_t - phi(k_t) @ S)  (delta rule)
#     z += phi(k_t)
#     o_t = scale * phi(q_t) @ S,  or  phi(q_t) @ S / (phi(q_t) @ z)  (0 if
#           the denominator is 0) when normalized.
#   exclusive readout: o_t is read before the step's decay and update, from
#     S + outer(u * phi(k_t), v_t) (and z + u * phi(k_t) when normalized);
#   non-causal: every o_t reads S and z summed over all M keys (M may be N).
#
# Every run computes the expected output twice and requires the two to agree
# to 1e-12 before comparing with attnc:
#   - RECUR, the recurrence above, step by step;
#   - a second form that never builds the recurrent state: the quadratic
#     "T form" o_t = scale * sum_{s<=t} (phi(q_t) * exp(c_t - c_s)) . phi(k_s) v_s
#     with c = cumsum(log gates) (normalized: divided by the same sum without
#     v_s; for taylor2 the kernel 1 + x + x^2/2, x = q.k/sqrt(D), is used in
#     closed form; exclusive: s < t, c_{t-1}, plus the bonus on the
#     diagonal), or, for the delta rule, the product of transition matrices
#     S_t = (I - beta_t k k^T) Diag(alpha_t) S_{t-1} + beta_t k v_t^T
#     (VARIANTS E5, E6).
#
# Driver (one lit RUN line):
#   linear_oracle.py --attnc BIN --variant NAME --tmp DIR [--example SPEC.attn]
#                    --shape B=..,Hq=..,Hkv=..,N=..,Dqk=..,Dv=.. [--shape ..]
#                    [--seed S] [--extreme-gates]
# Without --example the variant's built-in spec is written into DIR. M
# defaults to N (causal linear attention needs N == M). Inputs are float32
# .npy files (q, k, v, u, W standard normal; log gates = logsigmoid of
# normals, <= 0; beta = sigmoid of normals, in (0, 1)); --extreme-gates also
# sets a third of the log gates to about -1e30 (gate ~ 0: the state is wiped)
# and a third to 0 (gate = 1). o is compared in float64 with rtol = atol =
# 1e-10. The last line of stdout is PASS or FAIL.
#
#   linear_oracle.py --self-test     pure-numpy checks of the oracle itself
#   linear_oracle.py --list          the known variants
# ===----------------------------------------------------------------------===#

import argparse
import math
import os
import subprocess
import sys

import numpy as np

RTOL = 1e-10
ATOL = 1e-10
INTERNAL_RTOL = 1e-12  # RECUR vs the second form
DIMS = ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv")
# exp(-1000) == 0.0 in float64, like exp(-1e30). The T form treats a log gate
# at or below this as a gate of exactly 0: a pair (t, s) whose segment
# (s, t] holds one gets weight 0, and c sums only the other log gates, so c
# stays small and c_t - c_s keeps its precision.
LOG_GATE_FLOOR = -1000.0


# ===----------------------------------------------------------------------===#
# Feature maps (applied to the last axis)
# ===----------------------------------------------------------------------===#

def phi_identity(x):
    return np.asarray(x, np.float64)


def phi_elu_plus_one(x):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def phi_l2norm(x):
    x = np.asarray(x, np.float64)
    n = np.sqrt((x * x).sum(-1, keepdims=True))
    return np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)


def phi_taylor2(x):
    """[1, x/D^(1/4), x_a^2/sqrt(2D), x_a x_b/sqrt(D) (a < b)] (VARIANTS D3),
    so that phi(q).phi(k) = 1 + q.k/sqrt(D) + (q.k)^2/(2D)."""
    x = np.asarray(x, np.float64)
    D = x.shape[-1]
    a, b = np.triu_indices(D, 1)
    parts = [np.ones(x.shape[:-1] + (1,)), x / D ** 0.25,
             x * x / math.sqrt(2 * D), x[..., a] * x[..., b] / math.sqrt(D)]
    return np.concatenate(parts, -1)


def kernel_taylor2(q, k):
    """phi_taylor2(q) @ phi_taylor2(k).T in closed form: [Nq, Nk]."""
    x = (q @ k.T) / math.sqrt(q.shape[-1])
    return 1.0 + x + x * x / 2.0


# ===----------------------------------------------------------------------===#
# The two forms, for one (b, h)
# ===----------------------------------------------------------------------===#

def recur(q, k, v, logg=None, phi=phi_identity, norm=False, beta=None,
          scale=1.0, exclusive=False, u=None, phik=None):
    """VARIANTS.md section 0 RECUR, with log-space gates and a scale.
    logg: None, or [N] (scalar gate), or [N, Dphi] (per-feature gate).
    exclusive: o_t reads the state before step t plus the bonus
    (phi(q_t) * u) . phi(k_t) v_t (RWKV-6, VARIANTS E4); normalized, the
    denominator is phi(q_t) . (z + u * phi(k_t))."""
    fq, fk = phi(q), (phik or phi)(k)
    Dphi, Dv = fk.shape[1], v.shape[1]
    u = np.zeros(Dphi) if u is None else np.asarray(u, np.float64)
    S = np.zeros((Dphi, Dv))
    z = np.zeros(Dphi)
    o = np.zeros((len(q), Dv))

    def readout(t, c):
        num = fq[t] @ S + (c * v[t] if exclusive else 0.0)
        if norm:
            den = fq[t] @ z + (c if exclusive else 0.0)
            return num / den if den != 0 else 0.0
        return scale * num

    for t in range(len(q)):
        if exclusive:
            o[t] = readout(t, float((fq[t] * u) @ fk[t]))
        if logg is not None:
            g = np.broadcast_to(np.exp(np.asarray(logg[t], np.float64)),
                                (Dphi,))
            S = g[:, None] * S
            z = g * z
        kt = fk[t]
        if beta is None:
            S = S + np.outer(kt, v[t])
        else:
            S = S + beta[t] * np.outer(kt, v[t] - kt @ S)
        z = z + kt
        if not exclusive:
            o[t] = readout(t, 0.0)
    return o


def noncausal_state(q, k, v, phi=phi_identity, norm=False, scale=1.0,
                    phik=None):
    """Non-causal: every o_t reads S and z summed over all M keys."""
    fq, fk = phi(q), (phik or phi)(k)
    S = fk.T @ v
    z = fk.sum(0)
    num = fq @ S
    if norm:
        den = (fq @ z)[:, None]
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)
    return scale * num


def tform(q, k, v, logg=None, phi=phi_identity, kernel=None, norm=False,
          scale=1.0, exclusive=False, u=None, noncausal=False, phik=None):
    """The quadratic form: W[t, s] = sum_d phi(q_t)_d phi(k_s)_d
    exp(c_t,d - c_s,d) for s <= t (c = cumsum of the log gates), o = W v,
    scaled or divided by the row sums of W. Exclusive: s < t with
    exp(c_{t-1} - c_s), and W[t, t] = (phi(q_t) * u) . phi(k_t).
    Non-causal: every s, no gates."""
    N, M = len(q), len(k)
    phik = phik or phi
    if noncausal:
        vis = np.ones((N, M), bool)
    elif exclusive:
        vis = np.tril(np.ones((N, M), bool), -1)
    else:
        vis = np.tril(np.ones((N, M), bool))
    fq, fk = phi(q), phik(k)
    if logg is None:
        W = kernel(q, k) if kernel is not None else fq @ fk.T
    else:
        lg = np.asarray(logg, np.float64)
        if lg.ndim == 1:
            lg = lg[:, None]
        zero = lg <= LOG_GATE_FLOOR
        c = np.cumsum(np.where(zero, 0.0, lg), 0)  # [N, Dphi or 1]
        epoch = np.cumsum(zero, 0)  # number of zero gates so far
        if exclusive:  # o_t reads the state after step t - 1
            ct = np.concatenate([np.zeros_like(c[:1]), c[:-1]])
            et = np.concatenate([np.zeros_like(epoch[:1]), epoch[:-1]])
        else:
            ct, et = c, epoch
        expo = ct[:, None, :] - c[None, :, :]  # [t, s, d]
        live = vis[:, :, None] & (et[:, None, :] == epoch[None, :, :])
        expo = np.where(live, expo, -np.inf)
        decay = np.exp(expo)
        W = np.einsum("td,sd,tsd->ts", fq, fk,
                      np.broadcast_to(decay, (N, M, fq.shape[1])))
    W = np.where(vis, W, 0.0)
    if exclusive and u is not None:
        W = W + np.diag((fq * np.asarray(u, np.float64) * fk).sum(-1))
    num = W @ v
    if norm:
        den = W.sum(-1, keepdims=True)
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)
    return scale * num


def delta_matrix_form(q, k, v, logg, beta, phi, scale):
    """S_t = (I - beta_t k k^T) Diag(alpha_t) S_{t-1} + beta_t k v_t^T,
    o_t = scale q^T S_t (VARIANTS.md E5 for a scalar alpha, E6 KDA for a
    per-key-dim one), with explicit Dphi x Dphi transition matrices."""
    fq, fk = phi(q), phi(k)
    Dphi = fk.shape[1]
    S = np.zeros((Dphi, v.shape[1]))
    o = np.zeros((len(q), v.shape[1]))
    I = np.eye(Dphi)
    for t in range(len(q)):
        alpha = np.ones(Dphi) if logg is None else \
            np.broadcast_to(np.exp(np.asarray(logg[t], np.float64)), (Dphi,))
        A = (I - beta[t] * np.outer(fk[t], fk[t])) @ np.diag(alpha)
        S = A @ S + beta[t] * np.outer(fk[t], v[t])
        o[t] = scale * (fq[t] @ S)
    return o


# ===----------------------------------------------------------------------===#
# Inputs
# ===----------------------------------------------------------------------===#

def f32(x):
    """float32-representable float64 values (the .npy files are float32)."""
    return np.asarray(x, np.float32).astype(np.float64)


def logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def gen_log_gates(shape, rng, extreme):
    lg = logsigmoid(rng.standard_normal(shape) + 1.0)
    if extreme:
        pick = rng.integers(0, 3, shape)
        lg = np.where(pick == 0, -1e30, np.where(pick == 1, 0.0, lg))
    return f32(lg)


def gen_rwkv_w(shape, rng, extreme):
    """RWKV-6's w, with log gate -exp(w): w = 69 gives -9.3e29 (gate ~0),
    w = -200 gives -1.4e-87 (gate 1.0 in float64)."""
    w = rng.standard_normal(shape) - 1.0
    if extreme:
        pick = rng.integers(0, 3, shape)
        w = np.where(pick == 0, 69.0, np.where(pick == 1, -200.0, w))
    return f32(w)


def gen_beta(shape, rng):
    return f32(1.0 / (1.0 + np.exp(-rng.standard_normal(shape))))


def phi_random_with(W):
    """Performer FAVOR+ (VARIANTS D2): phi(x) = exp(-|x'|^2/2) R^-1/2
    [exp(w_r . x')]_r, x' = x / D^(1/4)."""
    W = np.asarray(W, np.float64)

    def phi(x):
        x = np.asarray(x, np.float64)
        xs = x / x.shape[-1] ** 0.25
        return (np.exp(-(xs * xs).sum(-1, keepdims=True) / 2) *
                np.exp(xs @ W.T) / math.sqrt(W.shape[0]))
    return phi


def phi_pos_neg(x):
    x = np.asarray(x, np.float64)
    return np.concatenate([x, -x], -1)


def phi_elementwise(f):
    return lambda x: f(np.asarray(x, np.float64))


# ===----------------------------------------------------------------------===#
# Variants: the tier-2 examples, then built-in specs
# ===----------------------------------------------------------------------===#

class Variant:
    def __init__(self, name, phi=phi_identity, phik=None, kernel=None,
                 norm=False, gate=None, gate_fn=None, gate_gen=gen_log_gates,
                 delta=False, scale=None, exclusive=False, bonus=False,
                 noncausal=False, projection=None, spec=None, doc=""):
        self.name = name
        self.phi = phi        # or fn(aux) -> phi for the random map
        self.phik = phik      # the k map when it differs
        self.kernel = kernel  # closed-form phi(q).phi(k) for the T form
        self.norm = norm
        # gate: None | "retnet" (log(1 - 2^(-5-h))) | ("vector", NAME)
        # (aux NAME [B,Hq,N,Dqk]) | ("scalar", NAME) (aux NAME [B,Hq,N]).
        # gate_fn(aux_bh [N] or [N, Dqk], Dphi) -> the log gate of (b, h).
        self.gate = gate
        self.gate_fn = gate_fn
        self.gate_gen = gate_gen
        self.delta = delta    # aux beta [B, Hq, N]
        self.scale = scale    # fn(dims) -> scale; None: Dqk^-1/2
        self.exclusive = exclusive
        self.bonus = bonus    # aux u [Hq, Dqk]
        self.noncausal = noncausal
        self.projection = projection  # R: aux W [R, Dqk] for random
        self.spec = spec      # built-in spec text (None: --example)
        self.doc = doc


VARIANTS = {}


def variant(*a, **kw):
    v = Variant(*a, **kw)
    VARIANTS[v.name] = v


# --- the examples/ specs ---------------------------------------------------

variant("linear_elu", phi=phi_elu_plus_one, norm=True,
        doc="feature_map = elu_plus_one, normalize (VARIANTS D1)")
variant("retnet", gate="retnet",
        doc="gate = log(1 - 2^(-5-h)), scale Dqk^-1/2 (VARIANTS E1)")
variant("gla", gate=("vector", "g"),
        doc="gate = g[b, h, t, d] (per key dim, VARIANTS E2)")
variant("mamba2", gate=("scalar", "a"), scale=lambda d: 1.0,
        doc="gate = a[b, h, t], scale 1 (VARIANTS E3)")
variant("gated_deltanet", phi=phi_l2norm, gate=("scalar", "alpha"),
        delta=True,
        doc="l2norm, gate = alpha[b, h, t], delta = beta[b, h, t] (E5)")
variant("based", phi=phi_taylor2, kernel=kernel_taylor2, norm=True,
        doc="feature_map = taylor2, normalize (VARIANTS D3)")

# --- built-in specs ---------------------------------------------------------

variant("rwkv6", gate=("vector", "w"), gate_fn=lambda w, Dphi: -np.exp(w),
        gate_gen=gen_rwkv_w, exclusive=True, bonus=True, spec="""
attention rwkv6 {
  input w : f32[B, Hq, N, Dqk]
  input u : f32[Hq, Dqk]
  linear {
    gate = -exp(w[b, h, t, d])
    readout = exclusive
    bonus = u[h, d]
  }
}
""", doc="exclusive readout + bonus u[h, d], gate -exp(w) (VARIANTS E4)")
variant("rwkv6_normalized", phi=phi_elu_plus_one, gate=("vector", "w"),
        gate_fn=lambda w, Dphi: -np.exp(w), gate_gen=gen_rwkv_w,
        exclusive=True, bonus=True, norm=True, spec="""
attention rwkv6_normalized {
  input w : f32[B, Hq, N, Dqk]
  input u : f32[Hq, Dqk]
  linear {
    feature_map = elu_plus_one
    normalize = true
    gate = -exp(w[b, h, t, d])
    readout = exclusive
    bonus = u[h, d] * u[h, d]     # >= 0, so the denominator stays > 0
  }
}
""", doc="exclusive + bonus u^2, normalized: / phi(q).(z + u^2 * phi(k))")
variant("kda", phi=phi_l2norm, gate=("vector", "g"), delta=True, spec="""
attention kda {
  input g : f32[B, Hq, N, Dqk]
  input beta : f32[B, Hq, N]
  linear {
    feature_map = l2norm
    gate = g[b, h, t, d]
    delta = beta[b, h, t]
  }
}
""", doc="per-key-dim gate + delta rule, l2norm (VARIANTS E6)")
variant("noncausal_elu", phi=phi_elu_plus_one, norm=True, noncausal=True,
        spec="""
attention noncausal_elu {
  linear {
    feature_map = elu_plus_one
    normalize = true
    causal = false
  }
}
""", doc="non-causal, normalized elu+1 (M may differ from N)")
variant("noncausal_mixed", phi=phi_elementwise(lambda x: x * x * (x > 0)),
        phik=phi_elementwise(lambda x: 1.0 / (1.0 + np.exp(-x))),
        noncausal=True, scale=lambda d: 1.0 / d["M"], spec="""
attention noncausal_mixed {
  scale = 1.0 / M
  linear {
    feature_map_q = relu2
    feature_map_k = sigmoid
    causal = false
  }
}
""", doc="non-causal, relu2 on q, sigmoid on k, scale 1/M")
variant("performer", phi=phi_random_with, norm=True, projection=16, spec="""
attention performer {
  input W : f32[R, Dqk]
  linear {
    feature_map = random(W)
    normalize = true
  }
}
""", doc="random features with projection W [R, Dqk] (VARIANTS D2)")
variant("pos_neg_gated", phi=phi_pos_neg, gate=("vector", "g"),
        gate_fn=lambda g, Dphi: g[..., np.arange(Dphi) % g.shape[-1]], spec="""
attention pos_neg_gated {
  input g : f32[B, Hq, N, Dqk]
  linear {
    feature_map = pos_neg          # 2 Dqk features: d runs to 2 Dqk - 1
    gate = g[b, h, t, d % Dqk]
  }
}
""", doc="pos_neg features, per-feature gate g[b, h, t, d % Dqk]")


def make_inputs(var, dims, rng, extreme):
    B, Hq, Hkv, N, M = (dims[x] for x in ("B", "Hq", "Hkv", "N", "M"))
    Dqk, Dv = dims["Dqk"], dims["Dv"]
    ins = {"q": f32(rng.standard_normal((B, Hq, N, Dqk))),
           "k": f32(rng.standard_normal((B, Hkv, M, Dqk))),
           "v": f32(rng.standard_normal((B, Hkv, M, Dv)))}
    if isinstance(var.gate, tuple):
        kind, name = var.gate
        shape = (B, Hq, N, Dqk) if kind == "vector" else (B, Hq, N)
        ins[name] = var.gate_gen(shape, rng, extreme)
    if var.delta:
        ins["beta"] = gen_beta((B, Hq, N), rng)
    if var.bonus:
        ins["u"] = f32(rng.standard_normal((Hq, Dqk)))
    if var.projection:
        ins["W"] = f32(rng.standard_normal((var.projection, Dqk)))
    return ins


def log_gate_of(var, ins, dims, b, h, Dphi):
    """The log gate of (b, h): None, [N] or [N, Dphi]."""
    if var.gate is None:
        return None
    if var.gate == "retnet":
        return np.full(dims["N"], math.log(1.0 - 2.0 ** (-5.0 - h)))
    raw = ins[var.gate[1]][b, h]
    return var.gate_fn(raw, Dphi) if var.gate_fn else raw


def expected(var, ins, dims):
    """(RECUR output, second-form output), both [B, Hq, N, Dv]."""
    B, Hq, Hkv, N = (dims[x] for x in ("B", "Hq", "Hkv", "N"))
    G = Hq // Hkv
    scale = var.scale(dims) if var.scale else dims["Dqk"] ** -0.5
    phi = var.phi(ins["W"]) if var.projection else var.phi
    Dphi = phi(np.zeros((1, dims["Dqk"]))).shape[1]
    o1 = np.zeros((B, Hq, N, dims["Dv"]))
    o2 = np.zeros_like(o1)
    for b in range(B):
        for h in range(Hq):
            hk = h // G
            q, k, v = ins["q"][b, h], ins["k"][b, hk], ins["v"][b, hk]
            lg = log_gate_of(var, ins, dims, b, h, Dphi)
            beta = ins["beta"][b, h] if var.delta else None
            u = None
            if var.bonus:
                u = ins["u"][h]
                if var.norm:  # rwkv6_normalized: bonus = u^2
                    u = u * u
            if var.noncausal:
                o1[b, h] = noncausal_state(q, k, v, phi, var.norm, scale,
                                           var.phik)
                o2[b, h] = tform(q, k, v, None, phi, var.kernel, var.norm,
                                 scale, noncausal=True, phik=var.phik)
                continue
            o1[b, h] = recur(q, k, v, lg, phi, var.norm, beta, scale,
                             var.exclusive, u, var.phik)
            if var.delta:
                o2[b, h] = delta_matrix_form(q, k, v, lg, beta, phi, scale)
            else:
                o2[b, h] = tform(q, k, v, lg, phi, var.kernel, var.norm,
                                 scale, var.exclusive, u, phik=var.phik)
    return o1, o2


# ===----------------------------------------------------------------------===#
# Driver
# ===----------------------------------------------------------------------===#

class Failure(Exception):
    pass


def compare(what, got, want, rtol=RTOL, atol=ATOL):
    if got.shape != want.shape:
        raise Failure("%s: shape %s, expected %s" % (what, got.shape,
                                                     want.shape))
    for name, arr in (("got", got), ("expected", want)):
        if not np.isfinite(arr).all():
            idx = tuple(int(x) for x in np.argwhere(~np.isfinite(arr))[0])
            raise Failure("%s: %s has a non-finite value %r at %s" %
                          (what, name, arr[idx], idx))
    err = np.abs(got - want)
    tol = atol + rtol * np.abs(want)
    if (err > tol).any():
        idx = tuple(int(x) for x in np.unravel_index(np.argmax(err - tol),
                                                     err.shape))
        raise Failure("%s: %d of %d entries differ; max |err| = %.3e; worst "
                      "at %s: got %.17g, expected %.17g" %
                      (what, int((err > tol).sum()), err.size,
                       float(err.max()), idx, got[idx], want[idx]))
    return float(err.max()) if err.size else 0.0


def parse_shape(text):
    dims = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        if key not in DIMS or not val:
            raise SystemExit("linear_oracle: bad --shape entry %r" % item)
        dims[key] = int(val)
    dims.setdefault("Hkv", dims.get("Hq"))
    dims.setdefault("M", dims.get("N"))
    dims.setdefault("Dv", dims.get("Dqk"))
    missing = [d for d in DIMS if dims.get(d) is None]
    if missing:
        raise SystemExit("linear_oracle: --shape lacks %s" % ",".join(missing))
    if dims["Hq"] % dims["Hkv"]:
        raise SystemExit("linear_oracle: Hq must be a multiple of Hkv")
    return dims


def run_one(args, var, spec, dims, run_idx, rundir):
    os.makedirs(rundir, exist_ok=True)
    if not var.noncausal and dims["N"] != dims["M"]:
        raise SystemExit("linear_oracle: causal linear attention needs N == M")
    rng = np.random.default_rng(args.seed * 1000 + run_idx)
    ins = make_inputs(var, dims, rng, args.extreme_gates)
    files = {}
    for name, arr in ins.items():
        files[name] = os.path.join(rundir, name + ".npy")
        np.save(files[name], arr.astype(np.float32))
    want, second = expected(var, ins, dims)
    compare("oracle self-consistency (%s vs %s)" %
            ("state" if var.noncausal else "RECUR",
             "matrix form" if var.delta else "T form"), want, second,
            INTERNAL_RTOL, INTERNAL_RTOL)
    out_o = os.path.join(rundir, "o.npy")
    if os.path.exists(out_o):
        os.remove(out_o)
    cmd = [args.attnc, "run", spec]
    for name in files:
        cmd += ["--input", "%s=%s" % (name, files[name])]
    cmd += ["--shape", ",".join("%s=%d" % (d, dims[d]) for d in DIMS),
            "--output", "o=" + out_o, "--reference"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise Failure("attnc exited with %d\n  command: %s\n  stderr: %s" %
                      (proc.returncode, " ".join(cmd), proc.stderr.strip()))
    if not os.path.exists(out_o):
        raise Failure("attnc wrote no o\n  command: %s" % " ".join(cmd))
    got = np.load(out_o)
    if got.dtype != np.float64:
        raise Failure("o.npy has dtype %s, expected float64" % got.dtype)
    err = compare("o", got, want)
    nz = 0
    if isinstance(var.gate, tuple):
        raw = ins[var.gate[1]]
        lg = var.gate_fn(raw, raw.shape[-1]) if var.gate_fn else raw
        nz = int((lg <= -1e29).sum())
    return "max|do|=%.2e max|o|=%.3g zero_gates=%d ok" % (
        err, float(np.abs(want).max()), nz)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--attnc")
    ap.add_argument("--example", help="the variant's .attn spec")
    ap.add_argument("--variant")
    ap.add_argument("--tmp")
    ap.add_argument("--shape", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--extreme-gates", action="store_true",
                    help="log gates of -1e30 and 0 among the random ones")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for name, v in VARIANTS.items():
            print("%-18s %s" % (name, v.doc))
        return 0
    if args.self_test:
        return self_test()
    for req in ("attnc", "variant", "tmp"):
        if getattr(args, req) is None:
            ap.error("--%s is required" % req)
    if not args.shape:
        ap.error("at least one --shape is required")
    if args.variant not in VARIANTS:
        ap.error("unknown variant %r (see --list)" % args.variant)
    var = VARIANTS[args.variant]
    if args.extreme_gates and not isinstance(var.gate, tuple):
        ap.error("--extreme-gates needs a variant with a gate input")
    os.makedirs(args.tmp, exist_ok=True)
    spec = args.example
    if spec is None:
        if var.spec is None:
            ap.error("variant %s has no built-in spec; pass --example" %
                     var.name)
        spec = os.path.join(args.tmp, var.name + ".attn")
        with open(spec, "w") as f:
            f.write(var.spec.lstrip())
    ok = True
    for i, text in enumerate(args.shape):
        dims = parse_shape(text)
        try:
            msg = run_one(args, var, spec, dims, i,
                          os.path.join(args.tmp, "%s-%d" % (var.name, i)))
            print("%s %s: %s" % (var.name, text, msg))
        except Failure as e:
            ok = False
            print("%s %s: FAIL" % (var.name, text))
            sys.stderr.write("linear_oracle: %s %s: %s\n" % (var.name, text,
                                                             e))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# ===----------------------------------------------------------------------===#
# Self-test (no attnc needed)
# ===----------------------------------------------------------------------===#

def self_test():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    def close(a, b, tol=1e-12):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.isfinite(a).all() and \
            bool((np.abs(a - b) <= tol * (1 + np.abs(b))).all())

    rng = np.random.default_rng(7)

    # taylor2: feature count and the kernel identity, element by element.
    for D in (1, 2, 3, 16):
        x = rng.standard_normal((5, D)) * 2
        y = rng.standard_normal((4, D)) * 2
        fx = phi_taylor2(x)
        check(fx.shape == (5, 1 + D + D * (D + 1) // 2),
              "taylor2 Dphi D=%d" % D)
        for i in range(5):
            for j in range(4):
                s = sum(x[i, d] * y[j, d] for d in range(D)) / math.sqrt(D)
                want = 1 + s + s * s / 2
                got = float(fx[i] @ phi_taylor2(y[j]))
                check(abs(got - want) <= 1e-12 * abs(want),
                      "taylor2 kernel D=%d" % D)
        check(close(fx @ phi_taylor2(y).T, kernel_taylor2(x, y)),
              "taylor2 closed form D=%d" % D)

    # elu+1 and l2norm by hand.
    check(close(phi_elu_plus_one([-1.0, 0.0, 2.0]),
                [math.exp(-1), 1.0, 3.0]), "elu+1")
    check(close(phi_l2norm([[3.0, 4.0], [0.0, 0.0]]), [[0.6, 0.8], [0, 0]]),
          "l2norm incl. zero vector")

    # RECUR with no gate and no normalizer == causal q k^T v, by loops.
    N, D, Dv = 6, 3, 2
    q, k, v = (rng.standard_normal((N, D)), rng.standard_normal((N, D)),
               rng.standard_normal((N, Dv)))
    want = np.zeros((N, Dv))
    for t in range(N):
        for s in range(t + 1):
            want[t] += 0.5 * sum(q[t, d] * k[s, d] for d in range(D)) * v[s]
    check(close(recur(q, k, v, scale=0.5), want), "recur plain")
    check(close(tform(q, k, v, scale=0.5), want), "tform plain")

    # RetNet decay by loops: lam^(t-s).
    lam = 1 - 2.0 ** -6
    want = np.zeros((N, Dv))
    for t in range(N):
        for s in range(t + 1):
            want[t] += lam ** (t - s) * float(q[t] @ k[s]) * v[s]
    lg = np.full(N, math.log(lam))
    check(close(recur(q, k, v, lg), want), "recur retnet")
    check(close(tform(q, k, v, lg), want), "tform retnet")

    # RECUR == T form: scalar and vector gates, incl. -1e30 and 0, GLA-style
    # normalized elu, and taylor2 through the kernel.
    for trial in range(4):
        N, D, Dv = 23, 5, 4
        q, k, v = (rng.standard_normal((N, D)), rng.standard_normal((N, D)),
                   rng.standard_normal((N, Dv)))
        extreme = trial % 2 == 1
        lv = gen_log_gates((N, D), rng, extreme)
        ls = gen_log_gates((N,), rng, extreme)
        check(close(recur(q, k, v, lv, scale=0.3),
                    tform(q, k, v, lv, scale=0.3)), "vector gate %d" % trial)
        check(close(recur(q, k, v, ls), tform(q, k, v, ls)),
              "scalar gate %d" % trial)
        check(close(recur(q, k, v, lv, phi_elu_plus_one, True),
                    tform(q, k, v, lv, phi_elu_plus_one, None, True)),
              "normalized gated elu %d" % trial)
        check(close(recur(q, k, v, None, phi_taylor2, True),
                    tform(q, k, v, None, phi_taylor2, kernel_taylor2, True)),
              "based %d" % trial)
    # A gate of ~0 at step t leaves only step t in the state.
    lg = np.zeros(N)
    lg[10] = -1e30
    o = recur(q, k, v, lg)
    check(close(o[10], float(q[10] @ k[10]) * v[10]), "gate 0 wipes")
    check(close(o[11], float(q[11] @ k[10]) * v[10] +
                float(q[11] @ k[11]) * v[11]), "gate 0 then 1")

    # Delta rule: RECUR == the transition-matrix form; with beta = 1 and
    # orthonormal keys the state stores v exactly (an associative memory).
    for trial in range(3):
        N, D, Dv = 17, 4, 3
        q, k, v = (rng.standard_normal((N, D)), rng.standard_normal((N, D)),
                   rng.standard_normal((N, Dv)))
        lg = gen_log_gates((N,), rng, trial == 2)
        beta = gen_beta((N,), rng)
        check(close(recur(q, k, v, lg, phi_l2norm, False, beta, 0.5),
                    delta_matrix_form(q, k, v, lg, beta, phi_l2norm, 0.5)),
              "delta %d" % trial)
    E = np.eye(3)
    vv = rng.standard_normal((3, 2))
    o = recur(E, E, vv, None, phi_identity, False, np.ones(3))
    check(close(o, vv), "delta rule stores v for orthonormal keys")

    # Vector-gated delta rule (KDA): RECUR == (I - beta k k^T) Diag(alpha).
    N, D, Dv = 13, 4, 3
    q, k, v = (rng.standard_normal((N, D)), rng.standard_normal((N, D)),
               rng.standard_normal((N, Dv)))
    lv = gen_log_gates((N, D), rng, True)
    beta = gen_beta((N,), rng)
    check(close(recur(q, k, v, lv, phi_l2norm, False, beta, 0.5),
                delta_matrix_form(q, k, v, lv, beta, phi_l2norm, 0.5)),
          "kda")

    # Exclusive readout (RWKV-6) by loops: o_t = sum_{s<t} (q_t *
    # prod_{r=s+1}^{t-1} g_r) . k_s v_s + (q_t * u) . k_t v_t.
    N, D, Dv = 7, 3, 2
    q, k, v = (rng.standard_normal((N, D)), rng.standard_normal((N, D)),
               rng.standard_normal((N, Dv)))
    lv = gen_log_gates((N, D), rng, False)
    u = rng.standard_normal(D)
    want = np.zeros((N, Dv))
    for t in range(N):
        for s in range(t):
            dec = np.exp(lv[s + 1:t].sum(0))
            want[t] += float((q[t] * dec) @ k[s]) * v[s]
        want[t] += float((q[t] * u) @ k[t]) * v[t]
    check(close(recur(q, k, v, lv, exclusive=True, u=u), want),
          "recur exclusive")
    check(close(tform(q, k, v, lv, exclusive=True, u=u), want),
          "tform exclusive")
    check(close(recur(q, k, v, lv, exclusive=True)[0], np.zeros(Dv)),
          "exclusive without bonus: o_0 = 0")
    for extreme in (False, True):
        lv = gen_log_gates((23, D), rng, extreme)
        q, k, v = (rng.standard_normal((23, D)), rng.standard_normal((23, D)),
                   rng.standard_normal((23, Dv)))
        uu = rng.random(D)
        check(close(recur(q, k, v, lv, phi_elu_plus_one, True, None, 1.0,
                          True, uu),
                    tform(q, k, v, lv, phi_elu_plus_one, None, True, 1.0,
                          True, uu)), "exclusive normalized %s" % extreme)

    # Non-causal, M != N: the full sums.
    q, k, v = (rng.standard_normal((5, D)), rng.standard_normal((8, D)),
               rng.standard_normal((8, Dv)))
    want = np.array([[sum(phi_elu_plus_one(q[t]) @ phi_elu_plus_one(k[s]) *
                          v[s, e] for s in range(8)) for e in range(Dv)]
                     for t in range(5)])
    den = np.array([sum(phi_elu_plus_one(q[t]) @ phi_elu_plus_one(k[s])
                        for s in range(8)) for t in range(5)])
    check(close(noncausal_state(q, k, v, phi_elu_plus_one, True),
                want / den[:, None]), "noncausal normalized")
    check(close(tform(q, k, v, None, phi_elu_plus_one, None, True,
                      noncausal=True), want / den[:, None]),
          "tform noncausal")

    # pos_neg: phi(q).phi(k) = 2 q.k; random features: the Performer
    # estimate of exp(q.k/sqrt(D)) (R = 200000, a few percent).
    x, y = rng.standard_normal(5), rng.standard_normal(5)
    check(close(phi_pos_neg(x) @ phi_pos_neg(y), 2 * x @ y), "pos_neg")
    x, y = 0.5 * rng.standard_normal(4), 0.5 * rng.standard_normal(4)
    phr = phi_random_with(rng.standard_normal((200000, 4)))
    est = float(phr(x) @ phr(y))
    check(abs(est / math.exp(x @ y / 2.0) - 1) < 0.03,
          "random features estimate %g vs %g" % (est, math.exp(x @ y / 2)))

    # compare() catches what it should.
    for bad in (np.array([1.0, np.nan]), np.array([1.0, 2.0 + 1e-8])):
        try:
            compare("x", bad, np.array([1.0, 2.0]))
            check(False, "compare accepted %r" % bad)
        except Failure:
            pass

    for f in failures:
        print("self-test failure: " + f)
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
