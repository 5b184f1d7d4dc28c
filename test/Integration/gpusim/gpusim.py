#!/usr/bin/env python3
# ===- gpusim.py - generated CUDA kernels vs the float64 reference, on CPU ---===#
#
# Checks the numerics of the CUDA kernels convert-attn-to-nvvm generates
# without a GPU: the kernel IR is executed by attn-gpu-sim (a CTA-level SIMT
# interpreter with PTX semantics for ldmatrix / mma.sync / cp.async /
# shuffle, and bounds checks on every access), and compared with
# `attnc run --reference` on exactly the inputs the kernel saw (q, k, v
# rounded to bf16/f16 by the simulator).
#
#   gpusim.py --attnc BIN --attn-opt BIN --sim BIN --tmp DIR --example SPEC
#             [--param NAME=VALUE]... [--dtype bf16|f16] [--seed S]
#             [--tile-q 64 --tile-kv 64] [--async-copy deferred|immediate]
#             [--stride-pad P]
#             [--expect-empty-rows] [--no-lse]
#             [--doc sorted|interleaved|cuts=T1,T2,...]
#             [--aux NAME=normal|loggate|loggate-extreme|unit]...
#             [--o-rtol 2e-2] [--lse-atol 2e-2]
#             --shape B=..,Hq=..,Hkv=..,N=..,M=..,Dqk=..,Dv=..[,D=64|128]
#             [--shape ...]...
#
# Aux inputs other than `doc` (linear attention's gates, beta, projections)
# are random f32 tensors of their declared shape (dims from --shape; extra
# dims such as R=.. may be given there too): standard normal by default,
# `loggate` = -exp(N(-2, 1.5^2)) (log gates <= 0, mostly mild, some strong),
# `loggate-extreme` the same with about 3% exact 0 (no decay) and 3% -inf
# (forget everything), `unit` = uniform in [0.05, 0.95] (delta-rule beta).
# Per shape: o max relative error max|o - ref| / max|ref| <= 2e-2 (--o-rtol),
# lse max abs error <= 2e-2 (--lse-atol) where the reference is finite, rows without a visible
# key give o == 0 exactly and lse == -inf, and no NaN anywhere. `D=` picks
# the kernel (attn_<name>_d64 / _d128); default: the smallest that fits.
# The last line is PASS when every shape passed, FAIL otherwise (exit 1).
# ===----------------------------------------------------------------------===#

import argparse
import os
import re
import subprocess
import sys

import numpy as np

O_RTOL = 2e-2
LSE_ATOL = 2e-2


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.stderr.write("command failed (%d): %s\n%s%s" %
                         (p.returncode, " ".join(cmd), p.stdout, p.stderr))
        print("FAIL")
        sys.exit(1)
    return p.stdout


def parse_shape(s):
    d = {}
    for kv in s.split(","):
        k, v = kv.split("=")
        d[k.strip()] = int(v)
    for k in ("B", "Hq", "N", "Dqk"):
        if k not in d:
            raise SystemExit("--shape needs " + k)
    d.setdefault("Hkv", d["Hq"])
    d.setdefault("M", d["N"])
    d.setdefault("Dv", d["Dqk"])
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--attn-opt", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--example", required=True)
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile-q", type=int, default=64)
    ap.add_argument("--tile-kv", type=int, default=64)
    ap.add_argument("--async-copy", default="deferred")
    ap.add_argument("--stride-pad", type=int, default=0,
                    help="longer rows and an offset for q, k, v, o")
    ap.add_argument("--expect-empty-rows", action="store_true")
    ap.add_argument("--no-lse", action="store_true",
                    help="run the kernel with a null lse pointer")
    ap.add_argument("--doc", default="sorted",
                    help="sorted | interleaved | cuts=T1,T2,...: document "
                         "ids that step up at tokens T1, T2, ...")
    ap.add_argument("--aux", action="append", default=[],
                    help="NAME=normal|loggate|loggate-extreme|unit")
    ap.add_argument("--shape", action="append", required=True)
    ap.add_argument("--o-rtol", type=float, default=O_RTOL,
                    help="tolerance on o's max error relative to max|ref|")
    ap.add_argument("--lse-atol", type=float, default=LSE_ATOL,
                    help="tolerance on lse's max absolute error")
    a = ap.parse_args()

    os.makedirs(a.tmp, exist_ok=True)
    params = []
    for p in a.param:
        params += ["--param", p]

    # Lower the spec once: attn dialect, then the CUDA kernels.
    spec_mlir = os.path.join(a.tmp, "spec.mlir")
    kernel_mlir = os.path.join(a.tmp, "kernel.mlir")
    with open(spec_mlir, "w") as f:
        f.write(run([a.attnc, a.example, "--emit=attn"] + params))
    spec_text = open(spec_mlir).read()
    name = re.search(r"attn\.spec @(\w+)", spec_text).group(1)
    softmax = "normalizer = <softmax>" in spec_text
    aux_decl = {m.group(1): (m.group(2), re.findall(r'"?(\w+)"?', m.group(3)))
                for m in re.finditer(
                    r'attn\.input @(\w+) : (\w+) \[([^\]]*)\]', spec_text)}
    aux = [x for x in re.findall(r'attn\.input @(\w+)', spec_text)
           if x not in ("q", "k", "v")]
    dists = dict(x.split("=", 1) for x in a.aux)
    pipeline = ("builtin.module(attn.spec(attn-set-element-type{type=%s}),"
                "attn.spec(attn-tile-attention{tile-q=%d tile-kv=%d}),"
                "convert-attn-to-nvvm,canonicalize,cse,"
                "loop-invariant-code-motion)" % (a.dtype, a.tile_q, a.tile_kv))
    with open(kernel_mlir, "w") as f:
        f.write(run([a.attn_opt, spec_mlir, "--pass-pipeline=" + pipeline]))

    rng = np.random.default_rng(a.seed)
    ok = True
    for si, s in enumerate(a.shape):
        d = parse_shape(s)
        B, Hq, Hkv, N, M, Dqk, Dv = (d[k] for k in
                                     ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))
        pre = os.path.join(a.tmp, "s%d_" % si)
        # Scores of order a few units: softmax neither flat nor one-hot.
        q = rng.standard_normal((B, Hq, N, Dqk)).astype(np.float32) * 1.5
        k = rng.standard_normal((B, Hkv, M, Dqk)).astype(np.float32)
        v = rng.standard_normal((B, Hkv, M, Dv)).astype(np.float32)
        inputs = {"q": q, "k": k, "v": v}
        for x in aux:
            if x != "doc":
                ty, dims = aux_decl[x]
                shape = tuple(int(t) if t.isdigit() else d[t] for t in dims)
                kind = dists.get(x, "normal")
                if kind == "normal":
                    arr = rng.standard_normal(shape)
                elif kind in ("loggate", "loggate-extreme"):
                    arr = -np.exp(rng.normal(-2.0, 1.5, size=shape))
                    if kind == "loggate-extreme":
                        u = rng.random(shape)
                        arr[u < 0.03] = 0.0
                        arr[u > 0.97] = -np.inf
                elif kind == "unit":
                    arr = rng.uniform(0.05, 0.95, size=shape)
                else:
                    raise SystemExit("unknown --aux kind " + kind)
                inputs[x] = arr.astype(np.float32 if ty == "f32" else np.int32)
                continue
            if a.doc == "sorted":
                doc = np.sort(rng.integers(0, 4, size=(B, N)), axis=1)
            elif a.doc == "interleaved":
                doc = np.arange(B * N).reshape(B, N) % 3
            elif a.doc.startswith("cuts="):
                cuts = [int(c) for c in a.doc[5:].split(",") if c]
                t = np.arange(N)
                doc = np.broadcast_to(
                    sum((t >= c).astype(np.int64) for c in cuts) +
                    np.zeros(N, np.int64), (B, N))
            else:
                raise SystemExit("unknown --doc " + a.doc)
            inputs["doc"] = doc.astype(np.int32)
        for n, arr in inputs.items():
            np.save(pre + n + ".npy", arr)
        rounded = pre + "rounded"
        cmd = [a.sim, kernel_mlir, "--async-copy=" + a.async_copy,
               "--stride-pad", str(a.stride_pad),
               "--round-inputs-to", rounded, "--output", "o=" + pre + "o.npy"]
        if "D" in d:
            cmd += ["--kernel", "attn_%s_d%d" % (name, d["D"])]
        for n in ["q", "k", "v"] + aux:
            cmd += ["--input", "%s=%s%s.npy" % (n, pre, n)]
        want_lse = softmax and not a.no_lse
        if want_lse:
            cmd += ["--output", "lse=" + pre + "lse.npy"]
        summary = run(cmd).strip()
        ref = [a.attnc, "run", a.example, "--reference",
               "--output", "o=" + pre + "ref_o.npy"] + params
        for n in ["q", "k", "v"]:
            ref += ["--input", "%s=%s/%s.npy" % (n, rounded, n)]
        for n in aux:
            ref += ["--input", "%s=%s%s.npy" % (n, pre, n)]
        if softmax:
            ref += ["--output", "lse=" + pre + "ref_lse.npy"]
        run(ref)

        o = np.load(pre + "o.npy").astype(np.float64)
        ro = np.load(pre + "ref_o.npy").astype(np.float64)
        problems = []
        if o.shape != ro.shape:
            problems.append("o shape %s != %s" % (o.shape, ro.shape))
            o = np.zeros_like(ro)
        if np.isnan(o).any():
            bad = np.argwhere(np.isnan(o))
            problems.append("%d NaN in o, first at %s" %
                            (len(bad), tuple(bad[0])))
        scale = max(np.abs(ro).max(), 1e-30)
        err = np.nan_to_num(np.abs(o - ro), nan=np.inf)
        rel = err.max() / scale if err.size else 0.0
        if rel > a.o_rtol:
            at = np.unravel_index(np.argmax(err), err.shape)
            problems.append("o rel err %.3g > %g at %s (got %g, want %g)" %
                            (rel, a.o_rtol, at, o[at], ro[at]))
        line = "%s: o rel err %.2e" % (s, rel)
        empty_rows = 0
        if softmax:
            rl = np.load(pre + "ref_lse.npy").astype(np.float64)
            empty = np.isneginf(rl)
            empty_rows = int(empty.sum())
            if empty_rows and not (o[empty] == 0).all():
                problems.append("o != 0 on rows without a visible key")
            if want_lse:
                l = np.load(pre + "lse.npy").astype(np.float64)
                if np.isnan(l).any():
                    problems.append("%d NaN in lse" % np.isnan(l).sum())
                if not np.isneginf(l[empty]).all():
                    problems.append("lse != -inf on rows without a visible key")
                fin = ~empty
                if (~np.isfinite(l[fin])).any():
                    problems.append("non-finite lse on rows with keys")
                lerr = np.abs(l[fin] - rl[fin]).max() if fin.any() else 0.0
                if not lerr <= a.lse_atol:
                    problems.append("lse abs err %.3g > %g" % (lerr, a.lse_atol))
                line += ", lse abs err %.2e" % lerr
            line += ", empty rows %d" % empty_rows
        if a.expect_empty_rows and not empty_rows:
            problems.append("expected rows without a visible key")
        m = re.search(r"(attn_\w+): ran (\d+) CTAs", summary)
        line += " [%s, %s CTAs]" % (m.group(1), m.group(2)) if m else ""
        print(line + (" -> " + "; ".join(problems) if problems else " -> ok"))
        ok = ok and not problems
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
