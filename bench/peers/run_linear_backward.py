#!/usr/bin/env python3
"""run_linear_backward.py - attnc's linear-attention backward vs PyTorch's
chunked form under autograd, on CPU, in one run.

Run inside the peers venv (bench/peers/setup_venv.sh), after scripts/build.sh:

    build/peers-venv/bin/python bench/peers/run_linear_backward.py
    build/peers-venv/bin/python bench/peers/run_linear_backward.py --N 1024 --D 64 --variants gla,mamba2
    build/peers-venv/bin/python bench/peers/run_linear_backward.py --check-only

(to keep a table: `... | tee bench/peers/results/$(date +%F)/linear-backward.md`).

Variants (examples/*.attn, docs/language.md section 10): gla (vector log
gate g[b,h,t,d]), mamba2 (scalar log gate a[b,h,t], scale 1), retnet (fixed
per-head log decay log(1 - 2^(-5-h)), no inputs), linear_elu (phi = elu + 1,
normalize: o = phi(q)^T S / (phi(q) . z)) and gated_deltanet (l2norm
feature maps, scalar log gate alpha[b,h,t], delta rule with beta[b,h,t]).

For each variant and shape (B=1, H=8, Dqk = Dv = D, fp32), on the same
inputs and the same output gradient `do` (written as .npy files):
  attnc  `attnc run SPEC --backward --no-check --input q=.. k=.. v=..
         <gate inputs> do=..` (the JIT's forward and backward kernels; the
         command prints the median forward and backward times of --repeat
         runs, which this script reads). attnc differentiates q, k, v and
         every float input of the gate/delta expressions (g, a, alpha, beta).
         While the compiled linear backward is not there, attnc refuses;
         the table then says "n/a (attnc: <its message>)".
  torch  the chunked form (chunk 64) in plain torch ops under autograd, in
         the style of flash-linear-attention's PyTorch references
         (fla/ops/*/naive.py): chunk_gla for the vector gate, chunk_simple_gla
         for scalar gates (and none), and for the delta rule the chunked
         WY/UT form (the UT transform's inverse by a unit-lower-triangular
         solve instead of fla's row-by-row loop). Intra-chunk blocks and the
         chunks' key-value products are batched over all chunks; only the
         state recurrence across chunks is a Python loop. Differentiated with
         loss = (o * do).sum(); .backward(), with requires_grad on q, k, v
         and the same gate/delta inputs attnc differentiates.
The implementations alternate repetition by repetition (attnc, then torch,
1 + --reps times, the first one discarded as warm-up); the table reports
medians. torch runs with as many threads as attnc (ATTN_NUM_THREADS, else
every CPU; --threads sets both). On a 2-core machine anything else running
skews both sides badly (torch's threads wait on each other, 10-50x slower):
check `uptime` first.

Checks. At startup (unless --skip-self-check), for every variant on a tiny
shape in float64 (B=1, H=2, N=150: two full chunks and a padded one, Dqk=16,
Dv=12): the chunked torch peer against a naive step-by-step torch recurrence
that follows docs/language.md's semantics literally (o and every gradient;
asserted close), and both against attnc's float64 reference evaluator
(`attnc run --reference` for o, `attnc run --backward --reference` for the
gradients; asserted close when attnc can run). So the peer computes the same
function as attnc. At the first shape, when attnc's compiled backward runs,
its o and gradients are compared with the torch peer's in float64 (on the
same fp32 inputs): "grad err" is the largest max|x - x_torch| / max|x_torch|
over o, dq, dk, dv and the gate/delta gradients, with the worst one named.

Output: a markdown table: attnc forward and backward medians, attnc's
backward/forward ratio, torch's forward, backward and forward + backward
medians, and attnc's speedup = torch (fwd + bwd) / attnc (fwd + bwd)
(above 1: attnc is faster).
"""

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_backward import ATTNC, EX  # noqa: E402

CHUNK = 64

# name -> (feature map, gate kind, aux inputs, scale, normalize, delta)
#   gate kind: None, "scalar", "vector" or "retnet" (a fixed per-head gate)
#   scale: None for the default Dqk^-1/2
VARIANTS = {
    "gla": ("identity", "vector", ("g",), None, False, False),
    "mamba2": ("identity", "scalar", ("a",), 1.0, False, False),
    "retnet": ("identity", "retnet", (), None, False, False),
    "linear_elu": ("elu_plus_one", None, (), None, True, False),
    "gated_deltanet": ("l2norm", "scalar", ("alpha", "beta"), None, False, True),
}


_TMP = []  # temporary folders (the .npy inputs and outputs), removed at exit


class AttncUnavailable(Exception):
    pass


# --- inputs ------------------------------------------------------------------

def make_inputs(torch, var, B, H, N, Dk, Dv, gen, dtype):
    """q, k, v, do and the variant's aux inputs (gates in log space, so the
    decay is in (0, 1); beta in (0, 1))."""
    F = torch.nn.functional

    def rn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    t = {"q": rn(B, H, N, Dk), "k": rn(B, H, N, Dk), "v": rn(B, H, N, Dv),
         "do": rn(B, H, N, Dv)}
    if var == "gla":
        t["g"] = F.logsigmoid(rn(B, H, N, Dk)) / 16
    if var == "mamba2":
        t["a"] = -F.softplus(rn(B, H, N)) * 0.1
    if var == "gated_deltanet":
        t["alpha"] = -F.softplus(rn(B, H, N)) * 0.1
        t["beta"] = torch.sigmoid(rn(B, H, N))
    # Round through fp32 so torch and attnc (which reads fp32 .npy) see the
    # same values whatever precision torch then computes in.
    return {n: x.float().to(dtype) for n, x in t.items()}


def feature_map(torch, kind, x):
    F = torch.nn.functional
    if kind == "elu_plus_one":
        return F.elu(x) + 1  # x + 1 for x > 0, exp(x) otherwise
    if kind == "l2norm":
        return F.normalize(x, dim=-1)  # x / |x|, 0 for a zero vector
    return x


def gate_of(torch, var, kind, aux, q):
    """The log gate: [B, H, N] (scalar) or [B, H, N, Dk] (vector), or None."""
    if kind == "retnet":
        B, H, N, _ = q.shape
        lg = torch.tensor([math.log(1.0 - 2.0 ** (-5.0 - h)) for h in range(H)],
                          dtype=q.dtype)
        return lg[None, :, None].expand(B, H, N)
    if kind is None:
        return None
    return aux["g" if var == "gla" else "a" if var == "mamba2" else "alpha"]


# --- torch: chunked form (the peer) -----------------------------------------

def pad_time(torch, x, P):
    """x with P zero steps appended along dim 2 (causal: they do not affect
    the real steps' outputs)."""
    if x is None or P == 0:
        return x
    shape = list(x.shape)
    shape[2] = P
    return torch.cat([x, x.new_zeros(shape)], dim=2)


def chunks(x, C):
    """[B, H, N, ...] -> [B, H, N / C, C, ...]."""
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] // C, C, *x.shape[3:])


def chunk_linear(torch, q, k, v, gate, C):
    """Unscaled o_t = q_t^T S_t, S_t = diag(exp(gate_t)) S_{t-1} + k_t v_t^T,
    in chunks of C (q, k already feature-mapped). gate: None, [B, H, N]
    (chunk_simple_gla) or [B, H, N, Dk] (chunk_gla)."""
    B, H, N, Dk = q.shape
    Dv = v.shape[-1]
    P = (-N) % C
    q, k, v, gate = (pad_time(torch, x, P) for x in (q, k, v, gate))
    qc, kc, vc = chunks(q, C), chunks(k, C), chunks(v, C)
    NC = qc.shape[2]
    causal = torch.ones(C, C, dtype=torch.bool).tril()
    if gate is None:
        A = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0)
        kv = kc.transpose(-1, -2) @ vc
        S = torch.cumsum(kv, dim=2) - kv  # the state before each chunk
        o = qc @ S + A @ vc
        return o.reshape(B, H, NC * C, Dv)[:, :, :N]
    if gate.dim() == 3:  # scalar gate
        gc = chunks(gate, C).cumsum(-1)  # [B, H, NC, C]
        diff = gc[..., :, None] - gc[..., None, :]
        A = (qc @ kc.transpose(-1, -2)) * diff.masked_fill(~causal, -math.inf).exp()
        last = gc[..., -1:]
        kv = (kc * (last - gc).exp()[..., None]).transpose(-1, -2) @ vc
        decay = last[..., None].exp()  # [B, H, NC, 1, 1]
        qg = qc * gc.exp()[..., None]
    else:  # vector gate, fla's naive chunk_gla: q e^{c_i}, k e^{-c_j}
        gc = chunks(gate, C).cumsum(-2)  # [B, H, NC, C, Dk]
        A = ((qc * gc.exp()) @ (kc * (-gc).exp()).transpose(-1, -2)
             ).masked_fill(~causal, 0)
        last = gc[..., -1:, :]
        kv = (kc * (last - gc).exp()).transpose(-1, -2) @ vc
        decay = last.transpose(-1, -2).exp()  # [B, H, NC, Dk, 1]
        qg = qc * gc.exp()
    S = q.new_zeros(B, H, Dk, Dv)
    states = []
    for n in range(NC):
        states.append(S)
        S = decay[:, :, n] * S + kv[:, :, n]
    o = qg @ torch.stack(states, 2) + A @ vc
    return o.reshape(B, H, NC * C, Dv)[:, :, :N]


def chunk_delta(torch, q, k, v, gate, beta, C):
    """Unscaled o_t = q_t^T S_t with S_t = (I - b_t k_t k_t^T) e^{gate_t}
    S_{t-1} + b_t k_t v_t^T (scalar gate), in chunks of C: per chunk, with
    G_i = e^{c_i} (c the in-chunk cumulative gate) and
    T = (I + tril_{-1}(diag(b) K K^T * G_i / G_j))^-1 (the UT transform),
    the new values are U = T diag(b) V - T diag(b G) K S0, the outputs
    O = diag(G) Q S0 + (Q K^T * G_i / G_j)_{j<=i} U and the next state
    G_C S0 + (diag(G_C / G) K)^T U."""
    B, H, N, Dk = q.shape
    Dv = v.shape[-1]
    P = (-N) % C
    q, k, v, gate, beta = (pad_time(torch, x, P) for x in (q, k, v, gate, beta))
    qc, kc, vc = chunks(q, C), chunks(k, C), chunks(v, C)
    gc, bc = chunks(gate, C).cumsum(-1), chunks(beta, C)
    NC = qc.shape[2]
    causal = torch.ones(C, C, dtype=torch.bool).tril()
    L = (gc[..., :, None] - gc[..., None, :]).masked_fill(~causal, -math.inf).exp()
    A = (bc[..., None] * (kc @ kc.transpose(-1, -2)) * L).tril(-1)
    eye = torch.eye(C, dtype=q.dtype)
    rhs = torch.cat([kc * (bc * gc.exp())[..., None], vc * bc[..., None]], -1)
    sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False,
                                        unitriangular=True)
    W, U0 = sol[..., :Dk], sol[..., Dk:]
    Aqk = (qc @ kc.transpose(-1, -2)) * L
    last = gc[..., -1:]
    kd = (kc * (last - gc).exp()[..., None]).transpose(-1, -2)
    decay = last[..., None].exp()
    S = q.new_zeros(B, H, Dk, Dv)
    states, us = [], []
    for n in range(NC):
        u = U0[:, :, n] - W[:, :, n] @ S
        states.append(S)
        us.append(u)
        S = decay[:, :, n] * S + kd[:, :, n] @ u
    o = (qc * gc.exp()[..., None]) @ torch.stack(states, 2) + Aqk @ torch.stack(us, 2)
    return o.reshape(B, H, NC * C, Dv)[:, :, :N]


# --- torch: the recurrence (the check) --------------------------------------

def recurrent(torch, q, k, v, gate, beta, scale, normalize):
    """docs/language.md section 10 step by step (inclusive readout): S =
    diag(g) S, z = g z; S += b k (v - S^T k)^T or S += k v^T; z += k;
    o = scale q^T S, or q^T S / (q . z)."""
    B, H, N, Dk = q.shape
    S = q.new_zeros(B, H, Dk, v.shape[-1])
    z = q.new_zeros(B, H, Dk)
    out = []
    for t in range(N):
        qt, kt, vt = q[:, :, t], k[:, :, t], v[:, :, t]
        if gate is not None:
            g = gate[:, :, t].exp()
            g = g[..., None] if gate.dim() == 3 else g  # [B, H, 1] or [B, H, Dk]
            S = g[..., None] * S
            z = g * z
        if beta is not None:
            pred = (S * kt[..., :, None]).sum(-2)  # S^T k
            corr = beta[:, :, t, None] * (vt - pred)
        else:
            corr = vt
        S = S + kt[..., :, None] * corr[..., None, :]
        z = z + kt
        num = (qt[..., :, None] * S).sum(-2)
        if normalize:
            den = (qt * z).sum(-1, keepdim=True)
            out.append(torch.where(den != 0, num / den, torch.zeros_like(num)))
        else:
            out.append(scale * num)
    return torch.stack(out, 2)


def forward(torch, var, impl, x, C=CHUNK):
    """o for variant `var` from the leaves x (q, k, v and aux) with impl
    "chunked" (the peer) or "recurrent" (the check)."""
    fmap, kind, _, scale, normalize, delta = VARIANTS[var]
    q = feature_map(torch, fmap, x["q"])
    k = feature_map(torch, fmap, x["k"])
    v = x["v"]
    if scale is None:
        scale = 1.0 / math.sqrt(x["q"].shape[-1])
    gate = gate_of(torch, var, kind, x, q)
    beta = x.get("beta") if delta else None
    if impl == "recurrent":
        return recurrent(torch, q, k, v, gate, beta, scale, normalize)
    if delta:
        return scale * chunk_delta(torch, q, k, v, gate, beta, C)
    if normalize:
        # phi(q)^T [S | z]: the normalizer as one more value column.
        ones = v.new_ones(*v.shape[:-1], 1)
        nd = chunk_linear(torch, q, k, torch.cat([v, ones], -1), gate, C)
        num, den = nd[..., :-1], nd[..., -1:]
        return torch.where(den != 0, num / den, torch.zeros_like(num))
    return scale * chunk_linear(torch, q, k, v, gate, C)


def grad_names(var):
    return ("q", "k", "v") + VARIANTS[var][2]


def run_torch(torch, var, impl, inputs, C=CHUNK):
    """(forward ms, backward ms, o, {name: gradient}) of one forward +
    (o * do).sum().backward()."""
    x = {n: t.detach().clone().requires_grad_(True)
         for n, t in inputs.items() if n in grad_names(var)}
    do = inputs["do"]
    t0 = time.perf_counter()
    o = forward(torch, var, impl, x, C)
    t1 = time.perf_counter()
    (o * do).sum().backward()
    t2 = time.perf_counter()
    return ((t1 - t0) * 1e3, (t2 - t1) * 1e3, o.detach(),
            {"d" + n: t.grad for n, t in x.items()})


def rel_err(a, ref):
    import numpy as np
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return math.inf
    m = np.abs(ref).max()
    d = np.abs(a - ref).max()
    return d / m if m > 0 else d


def worst(errs):
    name = max(errs, key=errs.get)
    return errs[name], name


# --- attnc -------------------------------------------------------------------

def attnc_run(spec, paths, repeat, threads=0, outputs=None, reference=False,
              backward=True):
    """(forward ms, backward ms, threads) from one `attnc run --backward
    --no-check` (or, with reference=True, the float64 reference's outputs
    only). Raises AttncUnavailable with attnc's message when it fails."""
    if not os.path.exists(ATTNC):
        raise AttncUnavailable(f"{ATTNC} not found (scripts/build.sh)")
    cmd = [ATTNC, "run", spec]
    if backward:
        cmd.append("--backward")
    cmd += ["--reference"] if reference else ["--no-check", "--repeat", str(repeat)]
    if threads:
        cmd += ["--threads", str(threads)]
    for k, p in paths.items():
        cmd += ["--input", f"{k}={p}"]
    for k, p in (outputs or {}).items():
        cmd += ["--output", f"{k}={p}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = (out.stderr.strip() or out.stdout.strip() or
                 f"exit status {out.returncode}").splitlines()
        msg = lines[-1]
        msg = msg[len("attnc: error: "):] if msg.startswith("attnc: error: ") else msg
        raise AttncUnavailable(msg)
    if reference:
        return None
    m = re.search(r"forward ([0-9.]+) ms .*backward ([0-9.]+) ms.*threads=(\d+)",
                  out.stdout)
    if not m:
        raise AttncUnavailable("no timing line in: " + out.stdout.strip()[-200:])
    return float(m.group(1)), float(m.group(2)), int(m.group(3))


def save_inputs(np, inputs, names, tmp, tag):
    paths = {}
    for n in names:
        paths[n] = os.path.join(tmp, f"{tag}.{n}.npy")
        np.save(paths[n], inputs[n].detach().float().numpy())
    return paths


# --- the startup check -------------------------------------------------------

def self_check(torch, np, variants, tmp, threads):
    """Chunked vs recurrent torch in float64 on a tiny shape (asserted), and
    both vs attnc's float64 reference (asserted when attnc runs). Returns
    the report lines."""
    lines = []
    B, H, N, Dk, Dv = 1, 2, 150, 16, 12
    for var in variants:
        gen = torch.Generator().manual_seed(1)
        x = make_inputs(torch, var, B, H, N, Dk, Dv, gen, torch.float64)
        _, _, oc, gc = run_torch(torch, var, "chunked", x)
        _, _, orr, gr = run_torch(torch, var, "recurrent", x)
        errs = {"o": rel_err(oc.numpy(), orr.numpy())}
        errs.update({n: rel_err(gc[n].numpy(), gr[n].numpy()) for n in gc})
        e, name = worst(errs)
        assert e < 1e-10, f"{var}: chunked vs recurrent torch: {name} {e:.2e}"
        line = (f"# self-check {var} (float64, B={B} H={H} N={N} Dqk={Dk} "
                f"Dv={Dv}, chunk {CHUNK}): chunked vs recurrent torch "
                f"{e:.1e} ({name})")
        spec = os.path.join(EX, var + ".attn")
        names = ("q", "k", "v") + VARIANTS[var][2]
        paths = save_inputs(np, x, names + ("do",), tmp, "check")
        outs = {"d" + n: os.path.join(tmp, f"check.ref.d{n}.npy") for n in names}
        opath = os.path.join(tmp, "check.ref.o.npy")
        try:
            fwd_in = {n: p for n, p in paths.items() if n != "do"}
            attnc_run(spec, fwd_in, 1, threads, {"o": opath}, reference=True,
                      backward=False)
            attnc_run(spec, paths, 1, threads, outs, reference=True)
            errs = {"o": rel_err(np.load(opath), oc.numpy())}
            errs.update({n: rel_err(np.load(p), gc[n].numpy())
                         for n, p in outs.items()})
            e, name = worst(errs)
            assert e < 1e-8, f"{var}: chunked torch vs attnc --reference: {name} {e:.2e}"
            line += f"; vs attnc's float64 reference {e:.1e} ({name})"
        except AttncUnavailable as ex:
            line += f"; attnc's reference not run ({ex})"
        lines.append(line)
        print(line, flush=True)
    return lines


# --- main --------------------------------------------------------------------

def cell(msg):
    return msg.replace("|", "\\|")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--N", default="1024,4096")
    ap.add_argument("--D", default="64,128", help="Dqk = Dv")
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="fp32", help="fp32 (the only one)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for attnc (--threads) and torch "
                         "(default: $ATTN_NUM_THREADS, else every CPU)")
    ap.add_argument("--attnc-repeat", type=int, default=1,
                    help="attnc's --repeat per repetition (its median is used)")
    ap.add_argument("--skip-attnc", action="store_true",
                    help="time torch only")
    ap.add_argument("--skip-self-check", action="store_true")
    ap.add_argument("--check-only", action="store_true",
                    help="run the startup check and stop")
    args = ap.parse_args()
    if args.dtype != "fp32":
        ap.error("--dtype: only fp32 is implemented")
    variants = args.variants.split(",")
    for var in variants:
        if var not in VARIANTS:
            ap.error(f"--variants: unknown '{var}' (known: {', '.join(VARIANTS)})")
    import numpy as np
    import torch
    threads = args.threads or int(os.environ.get("ATTN_NUM_THREADS") or 0) \
        or os.cpu_count()
    torch.set_num_threads(threads)
    tmp = tempfile.mkdtemp(prefix="attnc-linbwd-")
    _TMP.append(tmp)
    attnc_threads = args.threads  # 0: attnc's own default

    if not args.skip_self_check or args.check_only:
        self_check(torch, np, variants, tmp, attnc_threads)
        print()
        if args.check_only:
            return

    print(f"# attnc linear-attention backward vs PyTorch {torch.__version__} "
          f"chunked form (chunk {CHUNK}, autograd), fp32, B=1, H={args.H}, "
          f"threads={threads}, {time.strftime('%Y-%m-%d')}\n")
    print("| variant | N | D | attnc fwd ms | attnc bwd ms | attnc bwd/fwd | "
          "torch fwd ms | torch bwd ms | torch fwd+bwd ms | attnc speedup | "
          "grad err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = {}
    seen_threads = set()
    first = True
    for N in [int(x) for x in args.N.split(",")]:
        for D in [int(x) for x in args.D.split(",")]:
            B, H = 1, args.H
            for var in variants:
                gen = torch.Generator().manual_seed(0)
                x = make_inputs(torch, var, B, H, N, D, D, gen, torch.float32)
                names = grad_names(var)
                paths = save_inputs(np, x, names + ("do",), tmp, "bench")
                spec = os.path.join(EX, var + ".attn")
                att_f, att_b, tor_f, tor_b = [], [], [], []
                failure = "--skip-attnc" if args.skip_attnc else None
                err = ""
                for rep in range(args.reps + 1):
                    if failure is None:
                        try:
                            f, b, th = attnc_run(spec, paths, args.attnc_repeat,
                                                 attnc_threads)
                            seen_threads.add(th)
                            if rep:
                                att_f.append(f)
                                att_b.append(b)
                        except AttncUnavailable as ex:
                            failure = str(ex)
                    tf, tb, _, _ = run_torch(torch, var, "chunked", x)
                    if rep:
                        tor_f.append(tf)
                        tor_b.append(tb)
                if first and failure is None:
                    # attnc's o and gradients vs the peer's, in float64.
                    outs = {n: os.path.join(tmp, f"bench.out.{n}.npy")
                            for n in ("o",) + tuple("d" + n for n in names)}
                    try:
                        attnc_run(spec, paths, 1, attnc_threads, outs)
                        x64 = {n: t.double() for n, t in x.items()}
                        _, _, o64, g64 = run_torch(torch, var, "chunked", x64)
                        g64["o"] = o64
                        e, name = worst({n: rel_err(np.load(p), g64[n].numpy())
                                         for n, p in outs.items()})
                        err = f"{e:.1e} ({name})"
                    except AttncUnavailable as ex:
                        err = f"n/a ({cell(str(ex))})"
                tf, tb = statistics.median(tor_f), statistics.median(tor_b)
                if failure is None:
                    f, b = statistics.median(att_f), statistics.median(att_b)
                    att = (f"{f:.1f} | {b:.1f} | {b / f:.2f}")
                    speed = f"{(tf + tb) / (f + b):.2f}x"
                else:
                    short = failure.split(";")[0]
                    if short != failure:
                        notes[short] = failure
                    att = f"n/a (attnc: {cell(short)}) | n/a | n/a"
                    speed = "n/a"
                print(f"| {var} | {N} | {D} | {att} | {tf:.1f} | {tb:.1f} | "
                      f"{tf + tb:.1f} | {speed} | {err} |", flush=True)
            first = False
    for short, full in notes.items():
        print(f"\nattnc: {full}")
    if seen_threads and seen_threads != {threads}:
        print(f"\nnote: attnc reported threads={sorted(seen_threads)}, "
              f"torch used {threads}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for d in _TMP:
            shutil.rmtree(d, ignore_errors=True)
