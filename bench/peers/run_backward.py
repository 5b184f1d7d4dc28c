#!/usr/bin/env python3
"""run_backward.py - attnc's backward pass vs PyTorch's on CPU, in one run.

Run inside the peers venv (bench/peers/setup_venv.sh), after scripts/build.sh:

    build/peers-venv/bin/python bench/peers/run_backward.py
    build/peers-venv/bin/python bench/peers/run_backward.py --N 1024,4096 --D 64,128 --variants causal,softcap

For each variant and shape (B=1, H=8; --dtype fp32 and/or bf16), on the same
inputs and the same output gradient `do`:
  attnc  `attnc run SPEC --backward --no-check` (the JIT's forward and
         backward kernels; the command prints the median forward and backward
         times of --repeat runs, which this script reads).
  SDPA   torch.nn.functional.scaled_dot_product_attention forward +
         out.backward(do) (is_causal=True for causal; a boolean [N, N] mask
         for the window; an additive float mask for alibi), autograd.
  eager  torch ops under autograd (scores, score mod, mask, softmax, @ v),
         for the variants SDPA cannot express (softcap).
  Flex   FlexAttention has no CPU backward (pytorch#148752): not timed.
The implementations alternate repetition by repetition (attnc, then each
peer, --reps times); the tables report medians. attnc's gradients are
checked against SDPA's (or eager's) at the first shape: max|dq - dq_torch| /
max|dq_torch| (and dk, dv).

Output: a markdown table per dtype with forward and backward times, the
backward/forward ratio, the FMA share of the machine's fp32 peak (the
backward's multiply-adds counted as 2.5x the forward's), and the speedup
of attnc's forward + backward over each peer's.
"""

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EX = os.path.join(ROOT, "examples")
ATTNC = os.path.join(ROOT, "build", "bin", "attnc")
WINDOW, CAP = 256, 30.0


BF16_INPUTS = ("\n  input q : bf16[B, Hq, N, Dqk]\n  input k : bf16[B, Hkv, M, Dqk]"
               "\n  input v : bf16[B, Hkv, M, Dv]\n")


def spec_path(var, dtype, tmp):
    """The example, or for bf16 a copy with bf16 q, k, v declared (its
    forward takes the AVX512-BF16 path; the backward reads bf16 and
    computes in fp32)."""
    path = os.path.join(EX, var + ".attn")
    if dtype == "fp32":
        return path
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"(attention\s+\w+\s*\{)",
                      lambda m: m.group(1) + BF16_INPUTS, text, count=1)
    assert n == 1, path
    out = os.path.join(tmp, var + "_bf16.attn")
    with open(out, "w") as f:
        f.write(text)
    return out


def attnc_times(var, B, H, N, D, repeat, inputs=None, outputs=None,
                spec=None):
    """(forward ms, backward ms) from one `attnc run --backward`."""
    spec = spec or os.path.join(EX, var + ".attn")
    cmd = [ATTNC, "run", spec, "--backward", "--repeat", str(repeat),
           "--shape", f"B={B},Hq={H},Hkv={H},N={N},M={N},Dqk={D},Dv={D}"]
    if var == "sliding_window":
        cmd += ["--param", f"window={WINDOW}"]
    if var == "softcap":
        cmd += ["--param", f"cap={CAP}"]
    if inputs is None:
        cmd.append("--no-check")
    for k, p in (inputs or {}).items():
        cmd += ["--input", f"{k}={p}"]
    for k, p in (outputs or {}).items():
        cmd += ["--output", f"{k}={p}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    m = re.search(r"forward ([0-9.]+) ms .*backward ([0-9.]+) ms", out.stdout)
    return float(m.group(1)), float(m.group(2)), out.stdout


def torch_impls(torch, var, N):
    F = torch.nn.functional
    mask = None
    if var == "sliding_window":
        i = torch.arange(N)[:, None]
        j = torch.arange(N)[None, :]
        mask = (j <= i) & (i - j < WINDOW)
    slopes = None
    if var == "alibi":
        pass

    def sdpa(q, k, v):
        if var == "dense":
            return F.scaled_dot_product_attention(q, k, v)
        if var == "causal":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if var == "sliding_window":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if var == "alibi":
            H = q.shape[1]
            sl = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)])
            i = torch.arange(N)[:, None]
            j = torch.arange(N)[None, :]
            bias = -sl[:, None, None] * (i - j).clamp(min=0).float()
            bias = bias.masked_fill(j > i, float("-inf"))
            return F.scaled_dot_product_attention(q, k, v,
                                                  attn_mask=bias.to(q.dtype))
        return None

    def eager(q, k, v):
        s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if var == "softcap":
            s = CAP * torch.tanh(s / CAP)
            i = torch.arange(N)[:, None]
            j = torch.arange(N)[None, :]
            s = s.masked_fill(j > i, float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    impls = {}
    if var != "softcap":
        impls["SDPA"] = sdpa
    else:
        impls["eager"] = eager
    return impls


def time_torch(torch, fn, q, k, v, do):
    qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    t0 = time.perf_counter()
    out = fn(qq, kk, vv)
    t1 = time.perf_counter()
    out.backward(do)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (qq.grad, kk.grad, vv.grad)


def fma_peak_gflops():
    """The machine's fp32 FMA limit, measured now by fma_peak.c."""
    exe = os.path.join(tempfile.mkdtemp(prefix="fma-peak-"), "fma_peak")
    cc = os.environ.get("CC", "clang-22")
    subprocess.run([cc, "-O2", "-march=native", "-pthread",
                    os.path.join(HERE, "fma_peak.c"), "-o", exe], check=True)
    out = subprocess.run([exe], capture_output=True, text=True).stdout
    return float(out.split()[0]), out.strip()


def visible_pairs(var, N):
    """The (query, key) pairs the variant's mask leaves visible."""
    if var == "dense":
        return N * N
    if var == "sliding_window":
        w = min(WINDOW, N)
        return N * w - w * (w - 1) // 2
    return N * (N + 1) // 2  # causal, softcap, alibi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="dense,causal,sliding_window,softcap,alibi")
    ap.add_argument("--N", default="1024,4096")
    ap.add_argument("--D", default="64,128")
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="fp32",
                    help="fp32, bf16 or both (fp32,bf16): torch gets tensors "
                         "of that type, attnc a spec declaring them")
    args = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(os.cpu_count())
    peak, peak_src = fma_peak_gflops()
    print(f"# attnc backward vs PyTorch {torch.__version__}, {args.dtype}, B=1, "
          f"H={args.H}, threads={os.cpu_count()}, {time.strftime('%Y-%m-%d')}")
    print(f"# fp32 FMA limit measured now: {peak_src}\n")
    print("| variant | dtype | N | D | attnc fwd ms | attnc bwd ms | bwd/fwd | "
          "bwd % of fp32 FMA limit | peer | peer fwd+bwd ms | attnc speedup | "
          "grad err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    tmp = tempfile.mkdtemp(prefix="attnc-bwd-")
    first = True
    for N in [int(x) for x in args.N.split(",")]:
        for D in [int(x) for x in args.D.split(",")]:
            B, H = 1, args.H
            g = torch.Generator().manual_seed(0)
            q, k, v, do = (torch.randn(B, H, N, D, generator=g) for _ in range(4))
            paths = {}
            for name, t in (("q", q), ("k", k), ("v", v), ("do", do)):
                paths[name] = os.path.join(tmp, name + ".npy")
                np.save(paths[name], t.numpy())
            for var, dtype in [(v, t) for t in args.dtype.split(",")
                               for v in args.variants.split(",")]:
                spec = spec_path(var, dtype, tmp)
                tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
                tq, tk, tv, tdo = (t.to(tdt) for t in (q, k, v, do))
                impls = torch_impls(torch, var, N)
                att_f, att_b, peer_t = [], [], {p: [] for p in impls}
                err = ""
                for rep in range(args.reps + 1):
                    f, b, _ = attnc_times(var, B, H, N, D, 1, spec=spec)
                    if rep:
                        att_f.append(f)
                        att_b.append(b)
                    for name, fn in impls.items():
                        tf, tb, grads = time_torch(torch, fn, tq, tk, tv, tdo)
                        if rep:
                            peer_t[name].append(tf + tb)
                        if rep == 0 and first and dtype == "fp32":
                            outs = {n: os.path.join(tmp, f"{n}.out.npy")
                                    for n in ("dq", "dk", "dv")}
                            attnc_times(var, B, H, N, D, 1,
                                        {n: paths[n] for n in ("q", "k", "v", "do")},
                                        outs)
                            errs = []
                            for n, gt in zip(("dq", "dk", "dv"), grads):
                                a = np.load(outs[n])
                                ref = gt.numpy()
                                errs.append(np.abs(a - ref).max() / np.abs(ref).max())
                            err = f"{max(errs):.1e}"
                f, b = statistics.median(att_f), statistics.median(att_b)
                # Useful multiply-adds: 5 products of D per visible (i, j)
                # pair (QK^T, dO V^T, P^T dO, dS^T Q, dS K), 2 flops each.
                pairs = visible_pairs(var, N)
                bwd_flops = 2.0 * B * H * pairs * 5 * D
                pct = 100 * bwd_flops / (b * 1e-3) / 1e9 / peak
                for name, ts in peer_t.items():
                    t = statistics.median(ts)
                    print(f"| {var} | {dtype} | {N} | {D} | {f:.1f} | {b:.1f} | {b / f:.2f} "
                          f"| {pct:.0f}% | {name} | {t:.1f} | "
                          f"{t / (f + b):.2f}x | {err} |", flush=True)
            first = False


if __name__ == "__main__":
    main()
