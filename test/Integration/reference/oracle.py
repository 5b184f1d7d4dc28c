#!/usr/bin/env python3
# ===- oracle.py - independent float64 oracle for `attnc run --reference` ---===#
#
# A float64 numpy oracle for the .attn examples and for a set of extra specs
# that exercise the library mask patterns, the expression language and the
# normalizers. It is deliberately independent of the C++ code: nothing here
# is imported from the repository, and every variant's semantics is written
# down a second time below from docs/language.md and
# /work/shared/design/VARIANTS.md (sections 0, A1-A3, B3, B4, C2, C4).
#
# Driver (one lit RUN line):
#   oracle.py --attnc BIN --variant NAME --tmp DIR --shape B=2,Hq=4,... \
#             [--example SPEC.attn] [--shape ...]... [--param NAME=VALUE]... \
#             [--seed S] [--dtype f32|f64] [--expect-empty-rows]
# For every --shape it draws random inputs (float32-representable values),
# writes them as .npy, runs `BIN run SPEC --input ... --reference --output o=..
# [--output lse=..]`, recomputes o (and lse for softmax specs) here and
# compares them in float64 with rtol = atol = 1e-10. Without --example the
# variant's built-in spec text is written into DIR and used. The last line of
# stdout is PASS when every run agreed, FAIL otherwise (exit status 1);
# details of a failure go to stderr.
#
#   oracle.py --self-test     pure-numpy checks of the oracle itself
#   oracle.py --bad-inputs --attnc BIN --examples DIR --tmp DIR
#                             attnc must reject malformed inputs with a
#                             non-zero exit and an `error:` message
#   oracle.py --list          the known variants
# ===----------------------------------------------------------------------===#

import argparse
import math
import os
import subprocess
import sys

import numpy as np

RTOL = 1e-10
ATOL = 1e-10
DIMS = ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv")


# ===----------------------------------------------------------------------===#
# Core dense oracle (VARIANTS.md section 0, float64)
# ===----------------------------------------------------------------------===#

class Ctx:
    """What a mask / score function may look at for one (b, h)."""

    def __init__(self, dims, params, aux, b, h, I, J):
        self.__dict__.update(dims)
        self.G = dims["Hq"] // dims["Hkv"]
        self.p = params
        self.aux = aux
        self.b, self.h, self.hk = b, h, h // self.G
        self.I, self.J = I, J  # q_idx, kv_idx as int64 [N, M] grids


def dense(Q, K, V, mask, score=None, norm="softmax", tau=None, dims=None,
          params=None, aux=None):
    """Returns (O [B,Hq,N,Dv], LSE [B,Hq,N] or None).

    norm: 'softmax' | ('sigmoid', bias_fn(ctx)) | ('relu', power, normalize)
          | 'none'.
    A softmax row with no visible key gives o = 0 and lse = -inf.
    """
    Q = np.asarray(Q, np.float64)
    K = np.asarray(K, np.float64)
    V = np.asarray(V, np.float64)
    B, Hq, N, Dqk = Q.shape
    Hkv, M, Dv = K.shape[1], K.shape[2], V.shape[3]
    assert Hq % Hkv == 0, "Hq must be a multiple of Hkv"
    G = Hq // Hkv
    if dims is None:
        dims = dict(B=B, Hq=Hq, Hkv=Hkv, N=N, M=M, Dqk=Dqk, Dv=Dv)
    tau = Dqk ** -0.5 if tau is None else tau
    I, J = np.indices((N, M), dtype=np.int64)
    O = np.zeros((B, Hq, N, Dv))
    LSE = np.full((B, Hq, N), np.nan) if norm == "softmax" else None
    for b in range(B):
        for h in range(Hq):
            hk = h // G
            c = Ctx(dims, params or {}, aux or {}, b, h, I, J)
            X = tau * (Q[b, h] @ K[b, hk].T)
            if score is not None:
                X = np.broadcast_to(np.asarray(score(c, X), np.float64),
                                    (N, M))
            mk = np.broadcast_to(np.asarray(mask(c), bool), (N, M))
            if norm == "softmax":
                Xm = np.where(mk, X, -np.inf)
                mx = Xm.max(-1, keepdims=True)
                empty = ~np.isfinite(mx)
                mx = np.where(empty, 0.0, mx)
                P = np.exp(Xm - mx)
                ssum = P.sum(-1, keepdims=True)
                P = np.where(ssum > 0, P / np.where(ssum > 0, ssum, 1.0), 0.0)
                with np.errstate(divide="ignore"):
                    lse = (mx + np.log(ssum))[:, 0]
                lse[empty[:, 0]] = -np.inf
                LSE[b, h] = lse
            elif isinstance(norm, tuple) and norm[0] == "sigmoid":
                bias = float(norm[1](c))
                P = np.where(mk, 1.0 / (1.0 + np.exp(-(X + bias))), 0.0)
            elif isinstance(norm, tuple) and norm[0] == "relu":
                power, normalize = norm[1], norm[2]
                P = np.where(mk, np.maximum(X, 0.0) ** power, 0.0)
                if normalize:
                    ssum = P.sum(-1, keepdims=True)
                    P = np.where(ssum > 0, P / np.where(ssum > 0, ssum, 1.0),
                                 0.0)
            elif norm == "none":
                P = np.where(mk, X, 0.0)
            else:
                raise ValueError("unknown normalizer %r" % (norm,))
            O[b, h] = P @ V[b, hk]
    return O, LSE


def visible_counts(mask, dims, params, aux):
    """Number of visible keys per (b, h, i): [B, Hq, N]."""
    N, M = dims["N"], dims["M"]
    I, J = np.indices((N, M), dtype=np.int64)
    out = np.zeros((dims["B"], dims["Hq"], N), np.int64)
    for b in range(dims["B"]):
        for h in range(dims["Hq"]):
            c = Ctx(dims, params, aux, b, h, I, J)
            out[b, h] = np.broadcast_to(np.asarray(mask(c), bool),
                                        (N, M)).sum(-1)
    return out


# ===----------------------------------------------------------------------===#
# Mask building blocks, written from the definitions (not from the C++)
# ===----------------------------------------------------------------------===#

def m_causal(c):  # bottom-right aligned
    return c.J <= c.I + c.M - c.N


def m_causal_top_left(c):
    return c.J <= c.I


def m_sliding_window(c, w):  # causal && (q_idx + M - N) - kv_idx < w
    pos = c.I + c.M - c.N
    return (c.J <= pos) & (pos - c.J < w)


def m_sinks(c, s):
    return c.J < s


def m_prefix_lm(c, p):
    return (c.J < p) | (c.J <= c.I)


def m_document(c, doc):
    return doc[c.b][c.I] == doc[c.b][c.J]


def natten_axis_len(L, d, g):
    """Length of dilation group g of an axis of length L (NATTEN's
    qkv_fix_dilation). Equals ceil((L - g) / d) = len(range(g, L, d))."""
    return (L // d) + 1 - ((g + d - (L % d)) // d)


def na_axis(i, j, L, w, s=1, d=1, causal=False):
    """NATTEN's per-axis neighborhood predicate (reference mask.hpp; the
    na(i, j) of VARIANTS.md A3), vectorised over integer arrays i, j."""
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    same_group = (i % d) == (j % d)
    g = i % d
    ii, jj = i // d, j // d
    Lg = natten_axis_len(L, d, g)
    wl = w // 2
    wr = w // 2 + w % 2 - 1
    if causal:
        lead = np.minimum((ii // s) * s + s - 1, Lg - 1)
        lo = np.maximum(lead - wl - wr, 0)
        hi = np.minimum(ii + 1, Lg)
    else:
        lead = np.minimum((ii // s) * s + s // 2, Lg - 1)
        lo = (np.maximum(lead - wl, 0)
              + (lead + wr >= Lg).astype(np.int64) * (Lg - wr - lead - 1))
        hi = lo + w
    return same_group & (lo <= jj) & (jj < hi)


def split_row_major(idx, extents):
    """Token index -> per-axis coordinates, last axis fastest."""
    coords = []
    rest = np.asarray(idx, np.int64)
    for e in reversed(extents):
        coords.append(rest % e)
        rest = rest // e
    return list(reversed(coords))


def m_neighborhood(c, extents, kernel, dilation=1, stride=1, causal=False):
    qi = split_row_major(c.I, extents)
    kj = split_row_major(c.J, extents)
    ok = np.ones(c.I.shape, bool)
    for a, L in enumerate(extents):
        ok &= na_axis(qi[a], kj[a], L, kernel, stride, dilation, causal)
    return ok


def check_na_counts(extents, kernel, dilation=1):
    """Invariant for non-causal NA: each query sees exactly
    prod_a min(kernel, Lg_a) keys, Lg_a its dilation group's axis length."""
    def inv(c, mask):
        qi = split_row_major(c.I[:, 0], extents)
        want = np.ones(c.N, np.int64)
        for a, L in enumerate(extents):
            want *= np.minimum(kernel,
                               natten_axis_len(L, dilation, qi[a] % dilation))
        got = mask.sum(-1)
        if not np.array_equal(got, want):
            bad = np.nonzero(got != want)[0][0]
            return ("query %d sees %d keys, expected %d" %
                    (bad, got[bad], want[bad]))
        return None
    return inv


# ===----------------------------------------------------------------------===#
# Auxiliary input generators
# ===----------------------------------------------------------------------===#

def gen_doc(rng, dims, params, run):
    """Document ids int32 [B, N]. Even runs: contiguous segments of random
    lengths (varlen packing); odd runs: ids drawn i.i.d. from {0..3}, i.e.
    interleaved documents, which the mask must also handle."""
    B, N = dims["B"], dims["N"]
    doc = np.zeros((B, N), np.int32)
    for b in range(B):
        if run % 2 == 0:
            cur, i = 0, 0
            while i < N:
                ln = int(rng.integers(1, max(2, N // 3) + 1))
                doc[b, i:i + ln] = cur
                cur += 1
                i += ln
        else:
            doc[b] = rng.integers(0, 4, N)
    return doc


def gen_f32(shape_fn, scale=1.0):
    def g(rng, dims, params, run):
        shp = shape_fn(dims)
        return (scale * rng.standard_normal(shp)).astype(np.float32)
    return g


# ===----------------------------------------------------------------------===#
# Variant registry
# ===----------------------------------------------------------------------===#

class Variant:
    def __init__(self, name, mask=None, score=None, norm="softmax",
                 scale=None, params=(), aux=(), spec=None, square=False,
                 extents=None, qscale=1.0, invariant=None, doc=""):
        self.name = name
        self.mask = mask or (lambda c: np.ones(c.I.shape, bool))
        self.score = score
        self.norm = norm
        self.scale = scale        # fn(dims, params) -> tau, or None
        self.params = params      # [(name, int|float, default_fn(dims, p))]
        self.aux = aux            # [(name, generator)]
        self.spec = spec          # built-in spec text (None: --example)
        self.square = square      # requires N == M
        self.extents = extents    # fn(params) -> axis extents (N = prod)
        self.qscale = qscale      # multiplies q to reach larger scores
        self.invariant = invariant  # fn(params, dims) -> fn(ctx, mask)->err
        self.doc = doc


VARIANTS = {}


def variant(*args, **kw):
    v = Variant(*args, **kw)
    VARIANTS[v.name] = v
    return v


def P(name, typ, default):
    return (name, typ, default)


# --- the examples/ specs ---------------------------------------------------

variant("dense", doc="no mask, softmax")
variant("causal", mask=m_causal, doc="bottom-right causal")
variant("sliding_window",
        params=[P("window", int, lambda d, p: 256)],
        mask=lambda c: m_sliding_window(c, c.p["window"]),
        doc="causal and (q_idx+M-N) - kv_idx < window")
variant("softcap",
        params=[P("cap", float, lambda d, p: 30.0)],
        mask=m_causal,
        score=lambda c, x: c.p["cap"] * np.tanh(x / c.p["cap"]),
        qscale=6.0, doc="causal, score -> cap*tanh(score/cap)")


def alibi_score(c, x):
    slope = 2.0 ** (-8.0 * (c.h + 1) / c.Hq)
    return x - slope * ((c.I + c.M - c.N) - c.J)


variant("alibi", mask=m_causal, score=alibi_score,
        doc="causal, score - 2^(-8(h+1)/Hq) * ((q_idx+M-N) - kv_idx)")
variant("document", square=True, aux=[("doc", gen_doc)],
        mask=lambda c: m_document(c, c.aux["doc"]) & m_causal(c),
        doc="same document and causal (N == M)")
variant("prefix_lm",
        params=[P("prefix", int, lambda d, p: 16)],
        mask=lambda c: m_prefix_lm(c, c.p["prefix"]),
        doc="kv_idx < prefix or kv_idx <= q_idx")
variant("sigmoid",
        params=[P("bias", float, lambda d, p: -math.log(d["M"]))],
        norm=("sigmoid", lambda c: c.p["bias"]),
        doc="no mask, sigmoid(score + bias), bias = -log(M)")
variant("neighborhood_2d", square=True,
        params=[P("height", int, lambda d, p: 8),
                P("width", int, lambda d, p: 8),
                P("kernel", int, lambda d, p: 3)],
        extents=lambda p: (p["height"], p["width"]),
        mask=lambda c: m_neighborhood(c, (c.p["height"], c.p["width"]),
                                      c.p["kernel"]),
        invariant=lambda p, d: check_na_counts((p["height"], p["width"]),
                                               p["kernel"]),
        doc="NATTEN 2-D, dilation 1, stride 1, non-causal")
variant("sinks_window",
        params=[P("window", int, lambda d, p: 256),
                P("sinks", int, lambda d, p: 4)],
        mask=lambda c: m_causal(c) & ((c.I + c.M - c.N - c.J < c.p["window"])
                                      | (c.J < c.p["sinks"])),
        doc="causal and ((q_idx+M-N) - kv_idx < window or kv_idx < sinks)")

# --- library patterns (built-in specs) -------------------------------------

variant("lib_causal_top_left", mask=m_causal_top_left, spec="""
attention lib_causal_top_left {
  mask = causal_top_left
}
""")
variant("lib_not_causal", mask=lambda c: ~m_causal_top_left(c), spec="""
attention lib_not_causal {
  mask = !causal_top_left          # strictly above the top-left diagonal
}
""")
variant("lib_causal_or_sinks",
        params=[P("nsink", int, lambda d, p: 2)],
        mask=lambda c: m_causal(c) | m_sinks(c, c.p["nsink"]), spec="""
attention lib_causal_or_sinks {
  param nsink = 2
  mask = causal() || sinks(nsink)
}
""")
variant("lib_sliding_window",
        params=[P("window", int, lambda d, p: 7)],
        mask=lambda c: m_sliding_window(c, c.p["window"]), spec="""
attention lib_sliding_window {
  param window = 7
  mask = sliding_window(window)
}
""")
variant("lib_sinks_window",
        params=[P("window", int, lambda d, p: 6),
                P("nsink", int, lambda d, p: 3)],
        mask=lambda c: (m_sliding_window(c, c.p["window"])
                        | (m_sinks(c, c.p["nsink"]) & m_causal(c))), spec="""
attention lib_sinks_window {
  param window = 6
  param nsink = 3
  mask = sliding_window(window) || (sinks(nsink) && causal)
}
""")
variant("lib_prefix_lm",
        params=[P("prefix", int, lambda d, p: 5)],
        mask=lambda c: m_prefix_lm(c, c.p["prefix"]), spec="""
attention lib_prefix_lm {
  param prefix = 5
  mask = prefix_lm(prefix)
}
""")
variant("lib_document", square=True, aux=[("doc", gen_doc)],
        mask=lambda c: m_document(c, c.aux["doc"]), spec="""
attention lib_document {
  input doc : i32[B, N]
  mask = document(doc)
}
""")
variant("lib_na1d_dilated", square=True,
        params=[P("kernel", int, lambda d, p: 5),
                P("dil", int, lambda d, p: 2)],
        mask=lambda c: m_neighborhood(c, (c.N,), c.p["kernel"],
                                      dilation=c.p["dil"]),
        invariant=lambda p, d: check_na_counts((d["N"],), p["kernel"],
                                               p["dil"]),
        spec="""
attention lib_na1d_dilated {
  param kernel = 5
  param dil = 2
  mask = neighborhood_1d(kernel, dilation = dil)
}
""")
variant("lib_na1d_causal_strided", square=True,
        params=[P("kernel", int, lambda d, p: 6),
                P("st", int, lambda d, p: 2)],
        mask=lambda c: m_neighborhood(c, (c.N,), c.p["kernel"],
                                      stride=c.p["st"], causal=True), spec="""
attention lib_na1d_causal_strided {
  param kernel = 6
  param st = 2
  mask = neighborhood_1d(kernel, stride = st, causal = true)
}
""")
variant("lib_na2d_all_options", square=True,
        params=[P("height", int, lambda d, p: 6),
                P("width", int, lambda d, p: 7),
                P("kernel", int, lambda d, p: 3)],
        extents=lambda p: (p["height"], p["width"]),
        mask=lambda c: m_neighborhood(c, (c.p["height"], c.p["width"]),
                                      c.p["kernel"], dilation=2, stride=2),
        invariant=lambda p, d: check_na_counts((p["height"], p["width"]),
                                               p["kernel"], 2),
        spec="""
attention lib_na2d_all_options {
  param height = 6
  param width = 7
  param kernel = 3
  mask = neighborhood_2d(height, width, kernel, dilation = 2, stride = 2)
}
""")
variant("lib_na2d_causal", square=True,
        params=[P("height", int, lambda d, p: 5),
                P("width", int, lambda d, p: 6),
                P("kernel", int, lambda d, p: 3)],
        extents=lambda p: (p["height"], p["width"]),
        mask=lambda c: m_neighborhood(c, (c.p["height"], c.p["width"]),
                                      c.p["kernel"], causal=True),
        spec="""
attention lib_na2d_causal {
  param height = 5
  param width = 6
  param kernel = 3
  mask = neighborhood_2d(height, width, kernel, causal = true)
}
""")
variant("lib_na3d", square=True,
        params=[P("depth", int, lambda d, p: 3),
                P("height", int, lambda d, p: 4),
                P("width", int, lambda d, p: 5),
                P("kernel", int, lambda d, p: 3)],
        extents=lambda p: (p["depth"], p["height"], p["width"]),
        mask=lambda c: m_neighborhood(
            c, (c.p["depth"], c.p["height"], c.p["width"]), c.p["kernel"]),
        invariant=lambda p, d: check_na_counts(
            (p["depth"], p["height"], p["width"]), p["kernel"]),
        spec="""
attention lib_na3d {
  param depth = 3
  param height = 4
  param width = 5
  param kernel = 3
  mask = neighborhood_3d(depth, height, width, kernel)
}
""")
# The same 2-D neighborhood as examples/neighborhood_2d.attn, spelled out in
# the expression language (valid for kernel <= height, width): exercises
# lets, //, %, min, max against the NATTEN formula.
variant("expr_na2d_spelled", square=True,
        params=[P("height", int, lambda d, p: 5),
                P("width", int, lambda d, p: 7),
                P("kernel", int, lambda d, p: 3)],
        extents=lambda p: (p["height"], p["width"]),
        mask=lambda c: m_neighborhood(c, (c.p["height"], c.p["width"]),
                                      c.p["kernel"]),
        invariant=lambda p, d: check_na_counts((p["height"], p["width"]),
                                               p["kernel"]),
        spec="""
attention expr_na2d_spelled {
  param height = 5
  param width = 7
  param kernel = 3
  let qr = q_idx // width
  let qc = q_idx % width
  let kr = kv_idx // width
  let kc = kv_idx % width
  let r0 = max(0, min(qr - kernel // 2, height - kernel))
  let c0 = max(0, min(qc - kernel // 2, width - kernel))
  mask = r0 <= kr && kr < r0 + kernel && c0 <= kc && kc < c0 + kernel
}
""")

# --- expressions -----------------------------------------------------------

variant("expr_floor_ops",
        mask=lambda c: ((((c.I - c.J) // 3) % 2 == 0)
                        | ((c.I - c.J) % -4 == -1)), spec="""
attention expr_floor_ops {
  let d = q_idx - kv_idx          # negative above the diagonal
  mask = (d // 3) % 2 == 0 || d % -4 == -1
}
""")


# Constants here are dyadic (exact in f32 and f64) so that this test is about
# the builtins, not about literal rounding (see expr_float_literal).
def builtins_score(c, x):
    I = c.I.astype(np.float64)
    J = c.J.astype(np.float64)
    t = (0.125 * np.log(1.0 + J) - 0.0625 * np.sqrt(I + 1.0) + 2.0 ** -3.0
         + 0.25 * np.log2(2.0 + I))
    u = (0.5 * np.minimum(c.I, 2.5) - 0.125 * 2.0 ** c.h
         - 7 // 2 + 7 / 2 + (-7) // 2 + (-7) % 3)
    return (np.where(c.J % 2 == 0, np.abs(x), -x)
            + np.minimum(x, 1.5) - np.maximum(x, -0.5)
            + np.exp(-np.abs(x)) + np.tanh(x) + t + u)


variant("expr_builtins", mask=m_causal, score=builtins_score, spec="""
attention expr_builtins {
  mask = causal
  let t = 0.125 * log(1.0 + kv_idx) - 0.0625 * sqrt(float(q_idx + 1)) + pow(2.0, -3.0) + 0.25 * log2(2.0 + float(q_idx))
  let u = 0.5 * min(q_idx, 2.5) - 0.125 * exp2(float(h)) - 7 // 2 + 7 / 2 + (-7) // 2 + (-7) % 3
  score = select(kv_idx % 2 == 0, abs(score), -score) + min(score, 1.5) - max(score, -0.5) + exp(-abs(score)) + tanh(score) + t + u
}
""")
# A float literal means its decimal value: 0.1 is float64(0.1) in the
# float64 reference (kernels round it to f32 like everything else).
variant("expr_float_literal", mask=m_causal,
        score=lambda c, x: 0.1 * x, spec="""
attention expr_float_literal {
  mask = causal
  score = 0.1 * score
}
""")
# Same for float params: default literal 0.7, or a --param value.
variant("expr_float_param",
        params=[P("c", float, lambda d, p: 0.7)],
        mask=m_causal, score=lambda c, x: c.p["c"] * x, spec="""
attention expr_float_param {
  param c = 0.7
  mask = causal
  score = c * score
}
""")
variant("expr_param_defaults",
        params=[P("w", int, lambda d, p: d["N"] // 4),
                P("span", int, lambda d, p: p["w"] + 1),
                P("temp", float, lambda d, p: 2 * 1.5)],
        mask=lambda c: m_causal(c) & (c.I + c.M - c.N - c.J < c.p["span"]),
        score=lambda c, x: x / c.p["temp"], spec="""
attention expr_param_defaults {
  param w: int = N // 4           # default from a shape dim
  param span = w + 1              # default from an earlier param
  param temp: float = 2 * 1.5     # int expression, explicit float type
  mask = causal && q_idx + M - N - kv_idx < span
  score = score / temp
}
""")
variant("expr_aux_f32",
        aux=[("kb", gen_f32(lambda d: (d["B"], d["M"]))),
             ("tbl", gen_f32(lambda d: (d["Hq"], 8)))],
        mask=m_causal,
        score=lambda c, x: (x + c.aux["kb"][c.b][c.J]
                            + c.aux["tbl"][c.h][np.minimum(np.abs(c.I - c.J),
                                                           7)]), spec="""
attention expr_aux_f32 {
  input kb : f32[B, M]            # per-key bias
  input tbl : f32[Hq, 8]          # T5-style clamped relative-position table
  mask = causal
  score = score + kb[b, kv_idx] + tbl[h, min(abs(q_idx - kv_idx), 7)]
}
""")
def gen_rpb(rng, dims, params, run):
    return rng.standard_normal((dims["Hq"], 2 * params["R"] + 1)
                               ).astype(np.float32)


variant("expr_rpb_newdim",
        params=[P("R", int, lambda d, p: 4)],
        aux=[("rpb", gen_rpb)], mask=m_causal,
        score=lambda c, x: (x + c.aux["rpb"][c.h][np.clip(c.I - c.J, -c.p["R"],
                                                          c.p["R"])
                                                  + c.p["R"]]
                            + c.aux["rpb"].shape[1] / 4.0), spec="""
attention expr_rpb_newdim {
  param R = 4
  input rpb : f32[Hq, T]          # T: a new dim, bound from the tensor (2R+1)
  mask = causal
  score = score + rpb[h, max(-R, min(q_idx - kv_idx, R)) + R] + T / 4
}
""")
variant("expr_head_terms", mask=m_causal,
        score=lambda c, x: x + 0.125 * c.hk - 0.0625 * c.b + 0.03125 * c.G,
        norm="softmax", spec="""
attention expr_head_terms {
  mask = causal
  score = score + 0.125 * hk - 0.0625 * b + 0.03125 * G
  normalizer = softmax(lse = true)
}
""")
variant("scale_override", mask=m_causal,
        scale=lambda d, p: 1.0 / d["Dv"], spec="""
attention scale_override {
  mask = causal
  scale = 1.0 / Dv
}
""")

# --- normalizers -----------------------------------------------------------

variant("norm_relu", mask=m_causal, norm=("relu", 1, False), spec="""
attention norm_relu {
  mask = causal
  normalizer = relu
}
""")
variant("norm_relu2_normalized", mask=m_causal, norm=("relu", 2, True),
        spec="""
attention norm_relu2_normalized {
  mask = causal
  normalizer = relu(power = 2, normalize = true)
}
""")
variant("norm_none", mask=m_causal_top_left, norm="none", spec="""
attention norm_none {
  mask = causal_top_left
  normalizer = none
}
""")
def retnet_score(c, x):
    with np.errstate(over="ignore", invalid="ignore"):
        return x * np.power(c.p["lam"], (c.I - c.J).astype(np.float64))


# RetNet's fixed decay in its quadratic form (VARIANTS.md E1). Above the
# diagonal lam^(i-j) overflows to inf (and inf * x may be NaN): masked
# scores must be ignored, not multiplied by 0.
variant("norm_none_retnet",
        params=[P("lam", float, lambda d, p: 0.0625)],
        mask=m_causal, score=retnet_score, norm="none", spec="""
attention norm_none_retnet {
  param lam = 0.0625
  mask = causal
  score = score * pow(lam, q_idx - kv_idx)
  normalizer = none
}
""")
variant("norm_sigmoid_masked", mask=m_causal,
        norm=("sigmoid", lambda c: -math.log(float(c.N))), spec="""
attention norm_sigmoid_masked {
  mask = causal
  normalizer = sigmoid(bias = -log(float(N)))
}
""")


# ===----------------------------------------------------------------------===#
# Driver
# ===----------------------------------------------------------------------===#

def parse_shape(text):
    dims = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        k, _, v = item.partition("=")
        if k not in DIMS or not v:
            raise SystemExit("oracle: bad --shape entry %r (want %s)" %
                             (item, ",".join(d + "=INT" for d in DIMS)))
        dims[k] = int(v)
    dims.setdefault("Hkv", dims.get("Hq", 1))
    dims.setdefault("M", dims.get("N"))
    dims.setdefault("Dv", dims.get("Dqk"))
    missing = [d for d in DIMS if dims.get(d) is None]
    if missing:
        raise SystemExit("oracle: --shape lacks %s" % ",".join(missing))
    if dims["Hq"] % dims["Hkv"]:
        raise SystemExit("oracle: Hq must be a multiple of Hkv")
    return dims


def resolve_params(var, dims, overrides):
    params = {}
    known = {n for n, _, _ in var.params}
    for k in overrides:
        if k not in known:
            raise SystemExit("oracle: variant %s has no param %r" %
                             (var.name, k))
    for name, typ, dflt in var.params:
        if name in overrides:
            params[name] = typ(overrides[name]) if typ is float else \
                int(overrides[name])
        else:
            params[name] = typ(dflt(dims, params))
    return params


class Failure(Exception):
    pass


def compare(what, got, want, rtol=RTOL, atol=ATOL):
    """Raises Failure with a precise description on mismatch; returns the
    max abs error over finite entries."""
    if got.shape != want.shape:
        raise Failure("%s: shape %s, expected %s" % (what, got.shape,
                                                     want.shape))
    if np.isnan(got).any():
        idx = tuple(int(x) for x in np.argwhere(np.isnan(got))[0])
        raise Failure("%s: NaN at %s (%d NaNs); expected %r" %
                      (what, idx, int(np.isnan(got).sum()), want[idx]))
    inf_g, inf_w = np.isinf(got), np.isinf(want)
    bad_inf = (inf_g != inf_w) | (inf_g & inf_w & (np.sign(got) !=
                                                   np.sign(want)))
    if bad_inf.any():
        idx = tuple(int(x) for x in np.argwhere(bad_inf)[0])
        raise Failure("%s: infinity mismatch at %s (%d entries): got %r, "
                      "expected %r" % (what, idx, int(bad_inf.sum()),
                                       got[idx], want[idx]))
    fin = ~inf_w
    with np.errstate(invalid="ignore"):
        err = np.where(fin, np.abs(got - want), 0.0)
    tol = atol + rtol * np.abs(np.where(fin, want, 0.0))
    maxerr = float(err.max()) if err.size else 0.0
    if (err > tol).any():
        nbad = int((err > tol).sum())
        idx = tuple(int(x) for x in np.unravel_index(np.argmax(err - tol),
                                                     err.shape))
        raise Failure("%s: %d of %d entries differ; max |err| = %.3e; worst "
                      "at %s: got %.17g, expected %.17g" %
                      (what, nbad, err.size, maxerr, idx, got[idx],
                       want[idx]))
    return maxerr


def run_one(args, var, spec, dims, params, overrides, run_idx, rundir):
    os.makedirs(rundir, exist_ok=True)
    seed = args.seed * 1000 + run_idx
    rng = np.random.default_rng(seed)
    B, Hq, Hkv, N, M = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M"))
    Dqk, Dv = dims["Dqk"], dims["Dv"]
    if var.square and N != M:
        raise SystemExit("oracle: variant %s needs N == M" % var.name)
    if var.extents is not None and var.extents(params) is not None:
        ext = var.extents(params)
        if int(np.prod(ext)) != N:
            raise SystemExit("oracle: variant %s needs N = %s = %d, got N=%d"
                             % (var.name, "*".join(map(str, ext)),
                                int(np.prod(ext)), N))
    fdt = np.float32 if args.dtype == "f32" else np.float64
    # float32-representable values, so a reader that narrows to f32 and one
    # that keeps f64 see identical numbers.
    q = (var.qscale * rng.standard_normal((B, Hq, N, Dqk))).astype(np.float32)
    k = rng.standard_normal((B, Hkv, M, Dqk)).astype(np.float32)
    v = rng.standard_normal((B, Hkv, M, Dv)).astype(np.float32)
    aux = {}
    files = {}
    for name, arr in (("q", q), ("k", k), ("v", v)):
        files[name] = os.path.join(rundir, name + ".npy")
        np.save(files[name], arr.astype(fdt))
    for name, gen in var.aux:
        arr = gen(rng, dims, params, run_idx)
        aux[name] = arr.astype(np.float64) if arr.dtype.kind == "f" else \
            arr.astype(np.int64)
        files[name] = os.path.join(rundir, name + ".npy")
        np.save(files[name], arr.astype(fdt) if arr.dtype.kind == "f"
                else arr)

    tau = var.scale(dims, params) if var.scale else None
    want_o, want_lse = dense(q, k, v, var.mask, var.score, var.norm, tau,
                             dims, params, aux)
    counts = visible_counts(var.mask, dims, params, aux)
    n_empty = int((counts == 0).sum())
    if var.invariant is not None:
        inv = var.invariant(params, dims)
        if inv is not None:
            I, J = np.indices((N, M), dtype=np.int64)
            c = Ctx(dims, params, aux, 0, 0, I, J)
            err = inv(c, np.broadcast_to(np.asarray(var.mask(c), bool),
                                         (N, M)))
            if err:
                raise Failure("oracle invariant violated: " + err)

    is_softmax = var.norm == "softmax"
    out_o = os.path.join(rundir, "o.npy")
    out_lse = os.path.join(rundir, "lse.npy")
    for f in (out_o, out_lse):
        if os.path.exists(f):
            os.remove(f)
    cmd = [args.attnc, "run", spec]
    for name in ["q", "k", "v"] + [n for n, _ in var.aux]:
        cmd += ["--input", "%s=%s" % (name, files[name])]
    for kname, kval in overrides.items():
        cmd += ["--param", "%s=%s" % (kname, kval)]
    cmd += ["--shape", ",".join("%s=%d" % (d, dims[d]) for d in DIMS),
            "--seed", str(seed), "--output", "o=" + out_o]
    if is_softmax:
        cmd += ["--output", "lse=" + out_lse]
    cmd += ["--reference"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise Failure("attnc exited with %d\n  command: %s\n  stderr: %s" %
                      (proc.returncode, " ".join(cmd), proc.stderr.strip()))
    got = {}
    for name, path in (("o", out_o),) + ((("lse", out_lse),)
                                          if is_softmax else ()):
        if not os.path.exists(path):
            raise Failure("attnc wrote no %s (%s)\n  command: %s" %
                          (name, path, " ".join(cmd)))
        arr = np.load(path)
        if arr.dtype != np.float64:
            raise Failure("%s.npy has dtype %s, expected float64" %
                          (name, arr.dtype))
        got[name] = arr
    err_o = compare("o", got["o"], want_o)
    msg = "max|do|=%.2e" % err_o
    if is_softmax:
        err_lse = compare("lse", got["lse"], want_lse)
        msg += " max|dlse|=%.2e" % err_lse
        empty = counts == 0
        if empty.any():
            # Explicit all-masked-row contract: o == 0 exactly, lse == -inf.
            if not (got["o"][empty] == 0).all():
                raise Failure("all-masked rows: o is not exactly 0")
            if not np.isneginf(got["lse"][empty]).all():
                raise Failure("all-masked rows: lse is not -inf")
    elif n_empty:
        if not (got["o"][counts == 0] == 0).all():
            raise Failure("all-masked rows: o is not exactly 0")
    if args.expect_empty_rows and n_empty == 0:
        raise Failure("test expected all-masked rows but this shape has none"
                      " (fix the test's shape)")
    return "%s empty_rows=%d min_visible=%d %s" % (
        msg, n_empty, int(counts.min()), "ok")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--attnc")
    ap.add_argument("--example", help="spec file; default: built-in spec")
    ap.add_argument("--variant")
    ap.add_argument("--tmp", help="scratch directory (created)")
    ap.add_argument("--shape", action="append", default=[])
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dtype", choices=("f32", "f64"), default="f32",
                    help="element type of the q/k/v (and f32 aux) .npy files")
    ap.add_argument("--expect-empty-rows", action="store_true",
                    help="fail unless every shape has an all-masked row")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--bad-inputs", action="store_true",
                    help="check that attnc rejects bad inputs cleanly")
    ap.add_argument("--examples", help="examples/ directory (--bad-inputs)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)

    if args.list:
        for name, v in VARIANTS.items():
            print("%-26s %s" % (name, v.doc or "(built-in spec)"))
        return 0
    if args.self_test:
        return self_test()
    if args.bad_inputs:
        if not (args.attnc and args.examples and args.tmp):
            ap.error("--bad-inputs needs --attnc, --examples and --tmp")
        return bad_inputs(args.attnc, args.examples, args.tmp)
    for req in ("attnc", "variant", "tmp"):
        if getattr(args, req) is None:
            ap.error("--%s is required" % req)
    if not args.shape:
        ap.error("at least one --shape is required")
    if args.variant not in VARIANTS:
        ap.error("unknown variant %r (see --list)" % args.variant)
    var = VARIANTS[args.variant]
    overrides = {}
    for item in args.param:
        k, _, v = item.partition("=")
        overrides[k] = v

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
    for idx, shp in enumerate(args.shape):
        dims = parse_shape(shp)
        params = resolve_params(var, dims, overrides)
        label = "%s [%s] params{%s}" % (
            var.name, shp, ",".join("%s=%s" % kv for kv in params.items()))
        rundir = os.path.join(args.tmp, "%s-%d" % (var.name, idx))
        try:
            res = run_one(args, var, spec, dims, params, overrides, idx,
                          rundir)
            print("run %d: %s: %s" % (idx, label, res))
        except Failure as e:
            ok = False
            print("run %d: %s: MISMATCH" % (idx, label))
            sys.stderr.write("oracle: MISMATCH in %s (spec %s, inputs in %s)"
                             "\n  %s\n" % (label, spec, rundir, e))
        sys.stdout.flush()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# ===----------------------------------------------------------------------===#
# Bad inputs: attnc must exit non-zero with an `error:` line, never crash
# ===----------------------------------------------------------------------===#

def bad_inputs(attnc, examples, tmp):
    os.makedirs(tmp, exist_ok=True)
    rng = np.random.default_rng(0)

    def arr(shape, dt=np.float32):
        return rng.standard_normal(shape).astype(dt)

    def save(name, a):
        path = os.path.join(tmp, name + ".npy")
        np.save(path, a)
        return path

    ex = lambda n: os.path.join(examples, n + ".attn")
    q, k, v = (save("q", arr((1, 2, 9, 4))), save("k", arr((1, 1, 11, 4))),
               save("v", arr((1, 1, 11, 3))))
    qkv = ["--input", "q=" + q, "--input", "k=" + k, "--input", "v=" + v]
    k9, v9 = save("k9", arr((1, 1, 9, 4))), save("v9", arr((1, 1, 9, 3)))
    qkv9 = ["--input", "q=" + q, "--input", "k=" + k9, "--input", "v=" + v9]
    garbage = os.path.join(tmp, "garbage.npy")
    with open(garbage, "w") as f:
        f.write("not an npy file\n")
    bad_spec = os.path.join(tmp, "syntax.attn")
    with open(bad_spec, "w") as f:
        f.write("attention broken {\n  mask = q_idx <\n}\n")
    out = ["--output", "o=" + os.path.join(tmp, "o.npy"), "--reference"]
    cases = [
        ("q of rank 3", ex("causal"),
         ["--input", "q=" + save("q3", arr((2, 9, 4)))] + qkv[2:]),
        ("q and k disagree on Dqk", ex("causal"),
         qkv[:2] + ["--input", "k=" + save("k5", arr((1, 1, 11, 5)))] +
         qkv[4:]),
        ("Hq not a multiple of Hkv", ex("causal"),
         ["--input", "q=" + save("q3h", arr((1, 3, 9, 4))),
          "--input", "k=" + save("k2h", arr((1, 2, 11, 4))),
          "--input", "v=" + save("v2h", arr((1, 2, 11, 3)))]),
        ("k and v disagree on M", ex("causal"),
         qkv[:4] + ["--input", "v=" + save("v12", arr((1, 1, 12, 3)))]),
        ("q as int32", ex("causal"),
         ["--input", "q=" + save("qi", np.zeros((1, 2, 9, 4), np.int32))]
         + qkv[2:]),
        ("doc as float32 for an i32 input", ex("document"),
         qkv9 + ["--input", "doc=" + save("docf", arr((1, 9)))]),
        ("doc of the wrong shape", ex("document"),
         qkv9 + ["--input", "doc=" + save("doc10",
                                          np.zeros((1, 10), np.int32))]),
        ("document with N != M", ex("document"),
         qkv + ["--input", "doc=" + save("doc9", np.zeros((1, 9), np.int32))]),
        ("unknown input name", ex("causal"),
         qkv + ["--input", "nosuch=" + q]),
        ("unknown --param", ex("causal"), qkv + ["--param", "nosuch=3"]),
        ("non-numeric --param", ex("sliding_window"),
         qkv + ["--param", "window=abc"]),
        ("float value for an int --param", ex("sliding_window"),
         qkv + ["--param", "window=2.5"]),
        ("missing input file", ex("causal"),
         ["--input", "q=" + os.path.join(tmp, "nope.npy")] + qkv[2:]),
        ("input file that is not .npy", ex("causal"),
         ["--input", "q=" + garbage] + qkv[2:]),
        ("--shape disagrees with the inputs", ex("causal"),
         qkv + ["--shape", "B=1,Hq=2,Hkv=1,N=10,M=11,Dqk=4,Dv=3"]),
        ("missing spec file", os.path.join(tmp, "nope.attn"), qkv),
        ("spec with a syntax error", bad_spec, qkv),
        ("lse for a sigmoid spec", ex("sigmoid"),
         qkv + ["--output", "lse=" + os.path.join(tmp, "lse.npy")]),
    ]
    ok = True
    for what, spec, extra in cases:
        # No --shape unless the case is about it: every dim comes from the
        # given q, k, v files, so each case trips the check it names.
        cmd = [attnc, "run", spec] + extra + out
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
        if proc.returncode < 0 or proc.returncode >= 128:
            status = "CRASH (rc %d)" % proc.returncode
        elif proc.returncode == 0:
            status = "ACCEPTED (rc 0)"
        elif "error:" not in proc.stderr:
            status = "no 'error:' on stderr (rc %d)" % proc.returncode
        else:
            status = None
        if status:
            ok = False
            print("bad input: %s: %s" % (what, status))
            sys.stderr.write("oracle: bad input '%s' not rejected properly: "
                             "%s\n  command: %s\n  stderr: %s\n" %
                             (what, status, " ".join(cmd),
                              proc.stderr.strip()[-2000:]))
        else:
            msg = [l for l in proc.stderr.splitlines() if "error:" in l][0]
            print("bad input: %s: rejected: %s" % (what, msg.strip()))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# ===----------------------------------------------------------------------===#
# Self-test of the oracle (no attnc needed)
# ===----------------------------------------------------------------------===#

def self_test():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    def grid(N, M):
        d = dict(B=1, Hq=1, Hkv=1, N=N, M=M, Dqk=1, Dv=1)
        I, J = np.indices((N, M), dtype=np.int64)
        return Ctx(d, {}, {}, 0, 0, I, J)

    # Bottom-right causal, checked by hand: N=3, M=5 -> row i sees j <= i+2.
    check(np.array_equal(m_causal(grid(3, 5)).astype(int),
                         [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
                          [1, 1, 1, 1, 1]]), "causal N<M")
    # M < N: the first N-M rows see nothing.
    check(np.array_equal(m_causal(grid(4, 2)).astype(int),
                         [[0, 0], [0, 0], [1, 0], [1, 1]]), "causal N>M")
    check(np.array_equal(m_causal_top_left(grid(2, 3)).astype(int),
                         [[1, 0, 0], [1, 1, 0]]), "causal_top_left")
    # prefix_lm p=2 on 4x4.
    check(np.array_equal(m_prefix_lm(grid(4, 4), 2).astype(int),
                         [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0],
                          [1, 1, 1, 1]]), "prefix_lm")
    # sliding window w=2 on 4x4: diagonal and one below.
    check(np.array_equal(m_sliding_window(grid(4, 4), 2).astype(int),
                         [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0],
                          [0, 0, 1, 1]]), "sliding_window")
    # sliding window w=2 with N=2, M=4: rows are absolute positions 2, 3.
    check(np.array_equal(m_sliding_window(grid(2, 4), 2).astype(int),
                         [[0, 1, 1, 0], [0, 0, 1, 1]]), "sliding_window N<M")
    # sinks_window (window 2, sinks 1) on 4x4.
    c = grid(4, 4)
    c.p = {"window": 2, "sinks": 1}
    check(np.array_equal(VARIANTS["sinks_window"].mask(c).astype(int),
                         [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0],
                          [1, 0, 1, 1]]), "sinks_window")
    # Floor semantics used by expr_floor_ops.
    check((-7) // 2 == -4 and (-7) % 3 == 2 and 5 % -4 == -3,
          "python floor ops")
    check(np.array_equal(np.array([-7]) // 2, [-4]) and
          np.array_equal(np.array([5]) % -4, [-3]), "numpy floor ops")

    # NATTEN axis length == ceil((L-g)/d) == len(range(g, L, d)).
    for L in range(1, 30):
        for d in range(1, 6):
            for g in range(d):
                if g >= L:
                    continue
                check(natten_axis_len(L, d, g) == len(range(g, L, d)) ==
                      -(-(L - g) // d), "natten_axis_len L=%d d=%d g=%d" %
                      (L, d, g))

    # NA, stride 1 / dilation 1, non-causal: window [clip(i-w//2, 0, L-w),
    # +w) when w <= L (shifted, not shrunk, at the borders).
    for L in range(1, 20):
        for w in range(1, L + 1):
            i, j = np.indices((L, L))
            start = np.clip(np.arange(L) - w // 2, 0, L - w)[:, None]
            brute = (start <= j) & (j < start + w)
            check(np.array_equal(na_axis(i, j, L, w), brute),
                  "na non-causal L=%d w=%d" % (L, w))
            check((na_axis(i, j, L, w).sum(-1) == w).all(),
                  "na count L=%d w=%d" % (L, w))
            # causal: [max(i-w+1, 0), i]
            brute_c = (j <= i) & (j > i - w)
            check(np.array_equal(na_axis(i, j, L, w, causal=True), brute_c),
                  "na causal L=%d w=%d" % (L, w))
    # w > L: everything visible (non-causal).
    i, j = np.indices((3, 3))
    check(na_axis(i, j, 3, 7).all(), "na w>L")
    # Dilation: NA on each residue class, as a sub-sequence.
    for L in range(1, 25):
        for d in range(1, 5):
            for w in (1, 2, 3, 5):
                i, j = np.indices((L, L))
                brute = np.zeros((L, L), bool)
                for g in range(d):
                    idx = np.arange(g, L, d)
                    Lg = len(idx)
                    for a, ia in enumerate(idx):
                        ww = min(w, Lg)
                        st = min(max(a - w // 2, 0), Lg - ww)
                        brute[ia, idx[st:st + ww]] = True
                check(np.array_equal(na_axis(i, j, L, w, 1, d), brute),
                      "na dilated L=%d d=%d w=%d" % (L, d, w))
    # Non-causal NA with any stride / dilation: |window| = min(w, Lg).
    for L in range(1, 22):
        for d in range(1, 4):
            for w in range(1, 8):
                for st in range(1, w + 1):
                    i, j = np.indices((L, L))
                    cnt = na_axis(i, j, L, w, st, d).sum(-1)
                    Lg = natten_axis_len(L, d, np.arange(L) % d)
                    check(np.array_equal(cnt, np.minimum(w, Lg)),
                          "na count L=%d w=%d s=%d d=%d" % (L, w, st, d))
                    # every query sees itself (non-causal and causal)
                    check(na_axis(i, j, L, w, st, d).diagonal().all(),
                          "na self L=%d w=%d s=%d d=%d" % (L, w, st, d))
                    cm = na_axis(i, j, L, w, st, d, causal=True)
                    check(cm.diagonal().all() and not (cm & (j > i)).any(),
                          "na causal L=%d w=%d s=%d d=%d" % (L, w, st, d))
    # Stride = window (GNA blocked attention) with L a multiple of w.
    for w in (2, 3, 4):
        L = 3 * w
        i, j = np.indices((L, L))
        check(np.array_equal(na_axis(i, j, L, w, s=w), (i // w) == (j // w)),
              "na blocked w=%d" % w)
    # 2-D: every query sees kernel x kernel keys; row-major split.
    for (H, W, k) in ((8, 8, 3), (5, 7, 3), (6, 9, 5), (3, 3, 3)):
        N = H * W
        c = grid(N, N)
        m = m_neighborhood(c, (H, W), k)
        check((m.sum(-1) == k * k).all(), "na2d count %dx%d k%d" % (H, W, k))
        check(m[W + 1, 0] and m[W + 1, 2 * W + 2], "na2d interior")
        # query (0,0) sees rows 0..k-1, cols 0..k-1
        vis = np.nonzero(m[0])[0]
        check(sorted(vis.tolist()) == sorted(r * W + cc for r in range(k)
                                             for cc in range(k)),
              "na2d corner %dx%d k%d" % (H, W, k))
        check(check_na_counts((H, W), k)(c, m) is None,
              "na2d invariant %dx%d" % (H, W))

    # DENSE vs an element-by-element loop with math.exp, incl. empty rows,
    # GQA and Dqk != Dv.
    rng = np.random.default_rng(0)
    B, Hq, Hkv, N, M, Dqk, Dv = 1, 4, 2, 5, 3, 3, 2
    Q = rng.standard_normal((B, Hq, N, Dqk))
    K = rng.standard_normal((B, Hkv, M, Dqk))
    V = rng.standard_normal((B, Hkv, M, Dv))
    O, LSE = dense(Q, K, V, m_causal)
    for h in range(Hq):
        hk = h // 2
        for i in range(N):
            vis = [j for j in range(M) if j <= i + M - N]
            if not vis:
                check((O[0, h, i] == 0).all() and LSE[0, h, i] == -np.inf,
                      "empty row")
                continue
            xs = {j: sum(Q[0, h, i, d] * K[0, hk, j, d] for d in range(Dqk))
                  / math.sqrt(Dqk) for j in vis}
            mx = max(xs.values())
            den = sum(math.exp(x - mx) for x in xs.values())
            for e in range(Dv):
                o = sum(math.exp(xs[j] - mx) / den * V[0, hk, j, e]
                        for j in vis)
                check(abs(o - O[0, h, i, e]) < 1e-13, "dense o")
            check(abs(mx + math.log(den) - LSE[0, h, i]) < 1e-13, "dense lse")
    check(not np.isnan(O).any() and not np.isnan(LSE).any(), "no NaN")
    # Sigmoid / relu / none by hand on a single visible entry pattern.
    Os, _ = dense(Q, K, V, m_causal, norm=("sigmoid", lambda c: -1.0))
    x = Q[0, 0, 4] @ K[0, 0].T / math.sqrt(Dqk)
    check(np.allclose(Os[0, 0, 4], (1 / (1 + np.exp(-(x - 1.0)))) @ V[0, 0],
                      rtol=1e-14, atol=1e-14), "sigmoid")
    Or, _ = dense(Q, K, V, m_causal, norm=("relu", 2, True))
    r = np.maximum(x, 0) ** 2
    want = (r / r.sum()) @ V[0, 0] if r.sum() > 0 else np.zeros(Dv)
    check(np.allclose(Or[0, 0, 4], want, rtol=1e-14, atol=1e-14), "relu2n")
    check((Or[0, :, 0] == 0).all(), "relu2n empty row")
    On, _ = dense(Q, K, V, m_causal, norm="none")
    check(np.allclose(On[0, 0, 4], x @ V[0, 0], rtol=1e-14, atol=1e-14),
          "none")
    # alibi slopes for Hq = 8: 2^-1 ... 2^-8.
    c = grid(1, 1)
    c.Hq = 8
    sl = []
    for h in range(8):
        c.h = h
        c.I = np.array([[1]])
        c.J = np.array([[0]])
        sl.append(-float(alibi_score(c, np.zeros((1, 1)))[0, 0]))
    check(sl == [2.0 ** -(h + 1) for h in range(8)], "alibi slopes %s" % sl)
    # compare() catches what it should.
    for bad in (np.array([1.0, np.nan]), np.array([1.0, 2.0 + 1e-8]),
                np.array([1.0, -np.inf])):
        try:
            compare("x", bad, np.array([1.0, 2.0]))
            check(False, "compare accepted %r" % bad)
        except Failure:
            pass
    compare("x", np.array([1.0, -np.inf]), np.array([1.0 + 1e-12, -np.inf]))

    for f in failures:
        print("self-test failure: " + f)
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
