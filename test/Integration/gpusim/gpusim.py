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
#             [--backward [--bwd-tile-q T --bwd-tile-kv T] [--dlse]
#              [--grad-rtol 3e-2] [--grad-floor F]]
#             [--decode-splits S1,S2,...]
#             [--batch QLENS:KLENS [--batch-q ragged|dense]
#              [--batch-kv ragged|dense|paged:P] [--corrupt-tables]]
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
#
# --decode-splits checks the split-KV decode schedule instead of the forward
# kernel (softmax specs, CUDA): the spec is lowered with
# convert-attn-to-nvvm{decode-kernels=1}, and per shape and per split count
# S the simulator runs attn_<name>_decode_d<D> into NaN partials, then
# attn_<name>_merge into o and lse (attn-gpu-sim --schedule decode), checked
# against the reference as above.
#
# --batch runs the batch prefill kernel (attn_<name>_batch_d<D>, lowered
# with convert-attn-to-nvvm{batch-kernels=1}; CUDA), or with
# --decode-splits the decode and merge kernels, once over a batch of
# sequences of different lengths (runtime.h's attn_batch_layout_t): QLENS
# and KLENS
# are the sequences' query and key counts (e.g. 1,3,0,2:130,0,64,7), --shape
# gives Hq, Hkv, Dqk, Dv (and D). q is packed with cu_seqlens_q (ragged) or
# dense [B, Hq, N, Dqk] (all query counts equal); k and v packed with
# cu_seqlens_k, dense, or page pools of P rows with a block table (pages
# shuffled, -1 padding, unused slots NaN). Inputs are rounded to the dtype
# here. Each sequence is checked against the reference of that sequence
# alone (B = 1, aux sliced along B, N and M); a sequence without keys
# gives o = 0 and lse = -inf. --corrupt-tables writes out-of-range offsets,
# lengths and page ids instead and checks only that the kernels stay in
# bounds (the simulator checks every access; its double-write check is off,
# as overlapping sequences write rows twice).
#
# --backward checks the backward kernel instead. The spec is lowered twice:
# the forward kernels as above, and the backward kernels
# (attn_<name>_bwd_d64 / _d128) with attn-tile-attention-backward
# (--bwd-tile-q / --bwd-tile-kv, default --tile-q / --tile-kv). Per shape,
# besides q, k, v and the aux inputs, `do` is standard normal [B, Hq, N, Dv]
# (and with --dlse, `dlse` standard normal [B, Hq, N]; softmax only). The
# simulator runs the forward kernel (o, and lse for softmax), then the
# backward kernel (attn_<name>_bwd_d<D>: D= from --shape, else 64 if
# max(Dqk, Dv) <= 64, else 128) on the same float32 q, k, v, aux, the
# simulated o and lse, and do, writing dq, dk, dv and d<aux> for each name in
# the kernel's attn.gradient_inputs. The reference is `attnc run --reference
# --backward` on the rounded q, k, v and do. Per shape, each gradient's max
# error relative to max|ref| (at least --grad-floor times the largest
# max|ref| of dq, dk, dv; default 0: no floor) is <= 3e-2 (--grad-rtol), no
# gradient holds a NaN (dk and dv start as NaN, so an element the kernel
# never writes shows up), the kernel's gradient inputs are the reference's,
# and, for softmax, dq is exactly 0 on rows without a visible key
# (reference lse == -inf, from a forward reference run).
# ===----------------------------------------------------------------------===#

import argparse
import os
import re
import subprocess
import sys

import numpy as np

O_RTOL = 2e-2
LSE_ATOL = 2e-2
GRAD_RTOL = 3e-2


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


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--attn-opt", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--example", required=True)
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="cuda", choices=["cuda", "rocm"],
                    help="whose kernels: convert-attn-to-nvvm's or "
                    "convert-attn-to-rocdl's (the SIMT kernels they share, "
                    "sized for the target's shared memory)")
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
    ap.add_argument("--backward", action="store_true",
                    help="check the backward kernel's gradients instead")
    ap.add_argument("--bwd-tile-q", type=int,
                    help="the backward's q tile rows (default: --tile-q)")
    ap.add_argument("--bwd-tile-kv", type=int,
                    help="the backward's kv tile rows (default: --tile-kv)")
    ap.add_argument("--decode-splits",
                    help="S1,S2,...: check the split-KV decode and merge "
                         "kernels with each split count instead")
    ap.add_argument("--batch",
                    help="QLENS:KLENS: a decode batch of sequences with "
                         "these query and key counts")
    ap.add_argument("--batch-q", default="ragged",
                    choices=["ragged", "dense"])
    ap.add_argument("--batch-kv", default="ragged",
                    help="ragged | dense | paged:P")
    ap.add_argument("--corrupt-tables", action="store_true",
                    help="--batch: out-of-range table values; check only "
                         "that every access stays in bounds")
    ap.add_argument("--dlse", action="store_true",
                    help="backward: a random dlse as well (softmax only)")
    ap.add_argument("--grad-rtol", type=float, default=GRAD_RTOL,
                    help="tolerance on each gradient's max error relative "
                         "to max|ref|")
    ap.add_argument("--grad-floor", type=float, default=0.0,
                    help="the scale of each gradient's error is at least "
                         "this times the largest max|ref| of dq, dk, dv")
    a = ap.parse_args()
    if a.backward and a.no_lse:
        ap.error("--no-lse: the backward kernel takes the forward's lse")
    if a.dlse and not a.backward:
        ap.error("--dlse needs --backward")
    if a.decode_splits:
        if a.backward or a.backend != "cuda":
            ap.error("--decode-splits: CUDA forward kernels only")
        a.decode_splits = [int(x) for x in a.decode_splits.split(",")]
    if a.batch:
        if a.backward or a.backend != "cuda":
            ap.error("--batch: CUDA forward kernels only")
        ql, kl = a.batch.split(":")
        a.qlens = [int(x) for x in ql.split(",")]
        a.klens = [int(x) for x in kl.split(",")]
        if len(a.qlens) != len(a.klens):
            ap.error("--batch: as many query counts as key counts")
        if a.batch_q == "dense" and len(set(a.qlens)) != 1:
            ap.error("--batch-q dense: every sequence has the same queries")
        if a.batch_kv == "dense" and len(set(a.klens)) != 1:
            ap.error("--batch-kv dense: every sequence has the same keys")
        if not (a.batch_kv in ("ragged", "dense") or
                re.fullmatch(r"paged:\d+", a.batch_kv)):
            ap.error("--batch-kv: ragged, dense or paged:P")
    return a


def lower(a, spec_mlir, out, pass_name, tile_q, tile_kv):
    """Lowers the attn dialect in spec_mlir to GPU kernels (file `out`)."""
    conversion = {"cuda": "convert-attn-to-nvvm",
                  "rocm": "convert-attn-to-rocdl"}[a.backend]
    if a.decode_splits:
        conversion += "{decode-kernels=1}"
    elif a.batch:
        conversion += "{batch-kernels=1}"
    pipeline = ("builtin.module(attn.spec(attn-set-element-type{type=%s}),"
                "attn.spec(%s{tile-q=%d tile-kv=%d}),"
                "%s,canonicalize,cse,"
                "loop-invariant-code-motion)" %
                (a.dtype, pass_name, tile_q, tile_kv, conversion))
    with open(out, "w") as f:
        f.write(run([a.attn_opt, spec_mlir, "--pass-pipeline=" + pipeline]))


def gradient_inputs(kernel_text, kernel):
    """The names in the attn.gradient_inputs of gpu.func `kernel`."""
    m = re.search(r"gpu\.func @%s\(" % re.escape(kernel), kernel_text)
    if not m:
        raise SystemExit("no gpu.func @%s in the backward kernels" % kernel)
    rest = kernel_text[m.end():]
    nxt = rest.find("gpu.func @")
    attrs = re.search(r"attn\.gradient_inputs = \[([^\]]*)\]",
                      rest if nxt < 0 else rest[:nxt])
    return re.findall(r'"([^"]*)"', attrs.group(1)) if attrs else []


def make_inputs(a, rng, d, aux, aux_decl, dists):
    """q, k, v and the aux inputs of one shape."""
    B, Hq, Hkv, N, M, Dqk, Dv = (d[k] for k in
                                 ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))
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
    return inputs


def input_args(names, files):
    r = []
    for n in names:
        r += ["--input", "%s=%s" % (n, files[n])]
    return r


def ctas(summary):
    runs = re.findall(r"(attn_\w+): ran (\d+) CTAs", summary)
    return "".join(" [%s, %s CTAs]" % r for r in runs)


def forward_sim(a, ctx, d, pre, aux, files, with_lse, splits=None):
    """Runs the forward kernel (or, with `splits`, the decode and merge
    kernels): o (and lse) under `pre`, the rounded q, k, v under
    pre + "rounded"; returns the simulator's summary line."""
    cmd = [a.sim, ctx["kernel_mlir"], "--async-copy=" + a.async_copy,
           "--stride-pad", str(a.stride_pad),
           "--round-inputs-to", pre + "rounded", "--output",
           "o=" + pre + "o.npy"]
    kind = "_d"
    if splits is not None:
        cmd += ["--schedule", "decode", "--splits", str(splits)]
        kind = "_decode_d"
    if "D" in d:
        cmd += ["--kernel", "attn_%s%s%d" % (ctx["name"], kind, d["D"])]
    cmd += input_args(["q", "k", "v"] + aux, files)
    if with_lse:
        cmd += ["--output", "lse=" + pre + "lse.npy"]
    return run(cmd).strip()


def check_forward(a, ctx, s, d, pre, aux, splits=None):
    """Runs the forward kernel (with `splits`: the decode and merge
    kernels) and the reference on one shape; returns the line to print and
    the problems found."""
    softmax, params = ctx["softmax"], ctx["params"]
    files = {n: pre + n + ".npy" for n in ["q", "k", "v"] + aux}
    rounded = pre + "rounded"
    want_lse = softmax and not a.no_lse
    summary = forward_sim(a, ctx, d, pre, aux, files, want_lse, splits)
    ref = [a.attnc, "run", a.example, "--reference",
           "--output", "o=" + pre + "ref_o.npy"] + params
    for n in ["q", "k", "v"]:
        ref += ["--input", "%s=%s/%s.npy" % (n, rounded, n)]
    ref += input_args(aux, files)
    if softmax:
        ref += ["--output", "lse=" + pre + "ref_lse.npy"]
    run(ref)

    o = np.load(pre + "o.npy").astype(np.float64)
    ro = np.load(pre + "ref_o.npy").astype(np.float64)
    l = rl = None
    if softmax:
        rl = np.load(pre + "ref_lse.npy").astype(np.float64)
        if want_lse:
            l = np.load(pre + "lse.npy").astype(np.float64)
    line, problems = compare_forward(a, s, o, ro, l, rl, softmax)
    return line + ctas(summary), problems


def compare_forward(a, s, o, ro, l, rl, softmax):
    """o (and lse, None if not computed) against the reference's; rl, the
    reference lse, marks the rows without a visible key (softmax). Returns
    the line to print and the problems found."""
    problems = []
    if o.shape != ro.shape:
        problems.append("o shape %s != %s" % (o.shape, ro.shape))
        o = np.zeros_like(ro)
    if np.isnan(o).any():
        bad = np.argwhere(np.isnan(o))
        problems.append("%d NaN in o, first at %s" %
                        (len(bad), tuple(bad[0])))
    scale = max(np.abs(ro).max() if ro.size else 0.0, 1e-30)
    err = np.nan_to_num(np.abs(o - ro), nan=np.inf)
    rel = err.max() / scale if err.size else 0.0
    if rel > a.o_rtol:
        at = np.unravel_index(np.argmax(err), err.shape)
        problems.append("o rel err %.3g > %g at %s (got %g, want %g)" %
                        (rel, a.o_rtol, at, o[at], ro[at]))
    line = "%s: o rel err %.2e" % (s, rel)
    empty_rows = 0
    if softmax:
        empty = np.isneginf(rl)
        empty_rows = int(empty.sum())
        if empty_rows and not (o[empty] == 0).all():
            problems.append("o != 0 on rows without a visible key")
        if l is not None:
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
    return line, problems


def round_to(x, dtype):
    """x (float32) rounded to bf16 or f16, nearest even, as float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def make_batch(a, rng, d, aux, aux_decl, dists):
    """The decode batch of --batch: per-sequence q, k, v (rounded), the
    packed or paged tensors and tables the kernels take, and the aux inputs
    padded to the longest sequence."""
    B = len(a.qlens)
    Hq, Hkv, Dqk, Dv = (d[k] for k in ("Hq", "Hkv", "Dqk", "Dv"))
    seqs = []
    for n, m in zip(a.qlens, a.klens):
        seqs.append({
            "q": round_to(rng.standard_normal((n, Hq, Dqk)) * 1.5, a.dtype),
            "k": round_to(rng.standard_normal((m, Hkv, Dqk)), a.dtype),
            "v": round_to(rng.standard_normal((m, Hkv, Dv)), a.dtype)})
    maxn, maxm = max(a.qlens), max(a.klens)
    inputs = {}
    if a.batch_q == "ragged":
        inputs["q"] = np.concatenate([x["q"] for x in seqs])
        inputs["cu_seqlens_q"] = np.concatenate(
            [[0], np.cumsum(a.qlens)]).astype(np.int32)
    else:
        inputs["q"] = np.stack([x["q"].transpose(1, 0, 2) for x in seqs])
    if a.batch_kv == "ragged":
        for n in ("k", "v"):
            inputs[n] = np.concatenate([x[n] for x in seqs])
        inputs["cu_seqlens_k"] = np.concatenate(
            [[0], np.cumsum(a.klens)]).astype(np.int32)
    elif a.batch_kv == "dense":
        for n in ("k", "v"):
            inputs[n] = np.stack([x[n].transpose(1, 0, 2) for x in seqs])
    else:
        P = int(a.batch_kv.split(":")[1])
        used = [-(-m // P) for m in a.klens]
        pages = sum(used) + 2  # two spare pages nobody uses
        order = rng.permutation(pages)
        table = np.full((B, max(used) + 1), -1, np.int32)
        pool = {"k": np.full((pages, P, Hkv, Dqk), np.nan, np.float32),
                "v": np.full((pages, P, Hkv, Dv), np.nan, np.float32)}
        nxt = 0
        for b, x in enumerate(seqs):
            for j in range(used[b]):
                page = order[nxt]
                nxt += 1
                table[b, j] = page
                rows = slice(j * P, min((j + 1) * P, a.klens[b]))
                cnt = rows.stop - rows.start
                for n in ("k", "v"):
                    pool[n][page, :cnt] = x[n][rows]
        inputs.update(pool)
        inputs["block_table"] = table
        inputs["kv_lens"] = np.array(a.klens, np.int32)
    shaped = dict(d, B=B, N=maxn, M=maxm)
    extra = make_inputs(a, rng, shaped, aux, aux_decl, dists)
    for x in aux:
        inputs[x] = extra[x]
    return seqs, inputs


def corrupt(inputs, rng):
    """Out-of-range table values: offsets past the packed rows and
    negative, lengths past the table, page ids past the pool."""
    bad = {}
    for n, t in inputs.items():
        if n in ("cu_seqlens_q", "cu_seqlens_k"):
            t = t.copy()
            t[1] = -5
            t[-1] = t[-1] + 1000
        elif n == "kv_lens":
            t = t.copy()
            t[0] = 1 << 30
            t[-1] = -3
        elif n == "block_table":
            t = t.copy()
            t[0, 0] = 1 << 30
            t[-1, :] = -7
        bad[n] = t
    return bad


def check_batch(a, ctx, s, d, pre, aux, splits, seqs, inputs):
    """Runs the decode and merge kernels (`splits` kv splits) or, when
    `splits` is None, the batch prefill kernel over the batch, and each
    sequence's reference; returns the line to print and the problems
    found."""
    softmax, params = ctx["softmax"], ctx["params"]
    want_lse = softmax and not a.no_lse
    tables = [n for n in ("cu_seqlens_q", "cu_seqlens_k", "block_table",
                          "kv_lens") if n in inputs]
    files = {n: pre + n + ".npy" for n in inputs}
    cmd = [a.sim, ctx["kernel_mlir"], "--async-copy=" + a.async_copy,
           "--output", "o=" + pre + "o.npy"]
    if splits is not None:
        cmd += ["--schedule", "decode", "--splits", str(splits)]
    if a.batch_q == "dense" and a.batch_kv != "ragged":
        cmd += ["--stride-pad", str(a.stride_pad)]
    if "D" in d:
        cmd += ["--kernel", "attn_%s_%s_d%d" % (
            ctx["name"], "batch" if splits is None else "decode", d["D"])]
    cmd += input_args(["q", "k", "v"] + aux + tables, files)
    if want_lse:
        cmd += ["--output", "lse=" + pre + "lse.npy"]
    if a.corrupt_tables:  # overlapping sequences write rows twice
        cmd += ["--no-race-check"]
    summary = run(cmd).strip()
    if a.corrupt_tables:
        return "%s: in bounds with corrupt tables" % s + ctas(summary), []

    o = np.load(pre + "o.npy").astype(np.float64)
    l = np.load(pre + "lse.npy").astype(np.float64) if want_lse else None
    got_o, ref_o, got_l, ref_l = [], [], [], []
    start = 0
    for b, x in enumerate(seqs):
        n, m = a.qlens[b], a.klens[b]
        if a.batch_q == "ragged":
            ob = o[start:start + n].transpose(1, 0, 2)
            lb = l[:, start:start + n] if l is not None else None
            start += n
        else:
            ob = o[b]
            lb = l[b] if l is not None else None
        if n == 0:
            continue
        Hq, Dv = d["Hq"], d["Dv"]
        if m == 0:
            ro = np.zeros((Hq, n, Dv))
            rl = np.full((Hq, n), -np.inf)
        else:
            sp = "%sseq%d_" % (pre, b)
            one = {"q": x["q"].transpose(1, 0, 2)[None],
                   "k": x["k"].transpose(1, 0, 2)[None],
                   "v": x["v"].transpose(1, 0, 2)[None]}
            for name in aux:
                _, dims = ctx["aux_decl"][name]
                sl = tuple(slice(b, b + 1) if t == "B" else
                           slice(0, n) if t == "N" else
                           slice(0, m) if t == "M" else slice(None)
                           for t in dims)
                one[name] = inputs[name][sl]
            for name, arr in one.items():
                np.save(sp + name + ".npy", arr)
            ref = [a.attnc, "run", a.example, "--reference",
                   "--output", "o=" + sp + "ref_o.npy"] + params
            ref += input_args(["q", "k", "v"] + aux,
                              {k: sp + k + ".npy" for k in one})
            if softmax:
                ref += ["--output", "lse=" + sp + "ref_lse.npy"]
            run(ref)
            ro = np.load(sp + "ref_o.npy").astype(np.float64)[0]
            rl = (np.load(sp + "ref_lse.npy").astype(np.float64)[0]
                  if softmax else None)
        got_o.append(ob.reshape(-1, Dv))
        ref_o.append(ro.reshape(-1, Dv))
        if softmax:
            ref_l.append(rl.reshape(-1))
            if lb is not None:
                got_l.append(lb.reshape(-1))
    cat = lambda xs: np.concatenate(xs) if xs else None
    line, problems = compare_forward(
        a, s, cat(got_o), cat(ref_o), cat(got_l) if want_lse else None,
        cat(ref_l), softmax)
    return line + ctas(summary), problems


def compare_gradient(a, gname, got, want, floor):
    """The error of gradient `gname` relative to max|want| (at least
    `floor`), and the problems found."""
    problems = []
    if got.shape != want.shape:
        return np.inf, ["%s shape %s != %s" % (gname, got.shape, want.shape)]
    if np.isnan(got).any():
        bad = np.argwhere(np.isnan(got))
        problems.append("%d NaN in %s, first at %s" %
                        (len(bad), gname, tuple(bad[0])))
    scale = max(np.abs(want).max() if want.size else 0.0, floor, 1e-30)
    err = np.nan_to_num(np.abs(got - want), nan=np.inf)
    rel = err.max() / scale if err.size else 0.0
    if rel > a.grad_rtol:
        at = np.unravel_index(np.argmax(err), err.shape)
        problems.append("%s rel err %.3g > %g at %s (got %g, want %g)" %
                        (gname, rel, a.grad_rtol, at, got[at], want[at]))
    return rel, problems


def check_backward(a, ctx, s, d, pre, aux, rng):
    """Runs the forward then the backward kernel, and the reference
    gradients, on one shape; returns the line to print and the problems."""
    name, softmax, bwd_mlir, params = (
        ctx[k] for k in ("name", "softmax", "bwd_mlir", "params"))
    B, Hq, N, Dqk, Dv = (d[k] for k in ("B", "Hq", "N", "Dqk", "Dv"))
    do = rng.standard_normal((B, Hq, N, Dv)).astype(np.float32)
    np.save(pre + "do.npy", do)
    extra = ["do"]
    if a.dlse:
        np.save(pre + "dlse.npy",
                rng.standard_normal((B, Hq, N)).astype(np.float32))
        extra.append("dlse")
    files = {n: pre + n + ".npy" for n in ["q", "k", "v"] + aux + extra}
    rounded = pre + "rounded"

    # The forward kernel: o (and lse) for the backward.
    forward_sim(a, ctx, d, pre, aux, files, softmax)
    files["o"] = pre + "o.npy"
    if softmax:
        files["lse"] = pre + "lse.npy"

    # The backward kernel on the same inputs (rounded the same way).
    D = d.get("D", 64 if max(Dqk, Dv) <= 64 else 128)
    kernel = "attn_%s_bwd_d%d" % (name, D)
    grads = gradient_inputs(ctx["bwd_text"], kernel)
    cmd = [a.sim, bwd_mlir, "--kernel", kernel,
           "--async-copy=" + a.async_copy, "--stride-pad", str(a.stride_pad),
           "--round-inputs-to", pre + "rounded_bwd"]
    fixed = ["q", "k", "v", "o"] + (["lse"] if softmax else [])
    cmd += input_args(fixed + aux + extra, files)
    outs = ["dq", "dk", "dv"] + ["d" + g for g in grads]
    for n in outs:
        cmd += ["--output", "%s=%s%s.npy" % (n, pre, n)]
    summary = run(cmd).strip()

    # The reference gradients on the rounded q, k, v and do, and for
    # softmax the reference lse (rows without a visible key).
    ref = [a.attnc, "run", a.example, "--reference", "--backward"] + params
    for n in ["q", "k", "v"]:
        ref += ["--input", "%s=%s/%s.npy" % (n, rounded, n)]
    ref += ["--input", "do=%srounded_bwd/do.npy" % pre]
    ref += input_args(aux + extra[1:], files)
    for n in outs:
        ref += ["--output", "%s=%sref_%s.npy" % (n, pre, n)]
    ref_out = run(ref)
    problems = []
    m = re.search(r"gradients of: ([^(\n]*)", ref_out)
    if m:
        want = [x.strip() for x in m.group(1).split(",")]
        if want != ["q", "k", "v"] + grads:
            problems.append("the kernel's gradients (%s) are not the "
                            "reference's (%s)" %
                            (", ".join(["q", "k", "v"] + grads),
                             ", ".join(want)))

    got = {n: np.load("%s%s.npy" % (pre, n)).astype(np.float64)
           for n in outs}
    want = {n: np.load("%sref_%s.npy" % (pre, n)).astype(np.float64)
            for n in outs}
    floor = a.grad_floor * max(np.abs(want[n]).max() if want[n].size else 0.0
                               for n in ("dq", "dk", "dv"))
    parts = []
    for n in outs:
        rel, p = compare_gradient(a, n, got[n], want[n], floor)
        parts.append("%s rel err %.2e" % (n, rel))
        problems += p
    line = "%s: %s" % (s, ", ".join(parts))
    empty_rows = 0
    if softmax:
        ref = [a.attnc, "run", a.example, "--reference",
               "--output", "lse=" + pre + "ref_lse.npy"] + params
        for n in ["q", "k", "v"]:
            ref += ["--input", "%s=%s/%s.npy" % (n, rounded, n)]
        run(ref + input_args(aux, files))
        empty = np.isneginf(np.load(pre + "ref_lse.npy"))
        empty_rows = int(empty.sum())
        dq = got["dq"]
        if empty_rows and dq.shape[:3] == empty.shape and \
                not (dq[empty] == 0).all():
            problems.append("dq != 0 on rows without a visible key")
        line += ", empty rows %d" % empty_rows
    if a.expect_empty_rows and not empty_rows:
        problems.append("expected rows without a visible key")
    return line + ctas(summary), problems


def main():
    a = parse_args()
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
    if a.dlse and not softmax:
        raise SystemExit("--dlse: only softmax specs have an lse")
    aux_decl = {m.group(1): (m.group(2), re.findall(r'"?(\w+)"?', m.group(3)))
                for m in re.finditer(
                    r'attn\.input @(\w+) : (\w+) \[([^\]]*)\]', spec_text)}
    aux = [x for x in re.findall(r'attn\.input @(\w+)', spec_text)
           if x not in ("q", "k", "v")]
    dists = dict(x.split("=", 1) for x in a.aux)
    lower(a, spec_mlir, kernel_mlir, "attn-tile-attention", a.tile_q,
          a.tile_kv)
    ctx = {"name": name, "softmax": softmax, "kernel_mlir": kernel_mlir,
           "params": params, "aux_decl": aux_decl}
    if a.backward:
        bwd_mlir = os.path.join(a.tmp, "kernel_bwd.mlir")
        lower(a, spec_mlir, bwd_mlir, "attn-tile-attention-backward",
              a.bwd_tile_q if a.bwd_tile_q is not None else a.tile_q,
              a.bwd_tile_kv if a.bwd_tile_kv is not None else a.tile_kv)
        ctx["bwd_mlir"] = bwd_mlir
        ctx["bwd_text"] = open(bwd_mlir).read()

    rng = np.random.default_rng(a.seed)
    ok = True
    for si, s in enumerate(a.shape):
        pre = os.path.join(a.tmp, "s%d_" % si)
        if a.batch:
            d = parse_shape("B=%d,N=%d,M=%d,%s" % (
                len(a.qlens), max(a.qlens), max(a.klens), s))
            seqs, inputs = make_batch(a, rng, d, aux, aux_decl, dists)
            if a.corrupt_tables:
                inputs = corrupt(inputs, rng)
            for n, arr in inputs.items():
                np.save(pre + n + ".npy", arr)
            for n in a.decode_splits or [None]:
                line, problems = check_batch(a, ctx, s, d, pre, aux, n, seqs,
                                             inputs)
                print(("" if n is None else "splits=%d " % n) + line +
                      (" -> " + "; ".join(problems) if problems else " -> ok"))
                ok = ok and not problems
            continue
        d = parse_shape(s)
        inputs = make_inputs(a, rng, d, aux, aux_decl, dists)
        for n, arr in inputs.items():
            np.save(pre + n + ".npy", arr)
        if a.backward:
            results = [check_backward(a, ctx, s, d, pre, aux, rng)]
        elif a.decode_splits:
            results = []
            for n in a.decode_splits:
                line, problems = check_forward(a, ctx, s, d, pre, aux, n)
                results.append(("splits=%d %s" % (n, line), problems))
        else:
            results = [check_forward(a, ctx, s, d, pre, aux)]
        for line, problems in results:
            print(line + (" -> " + "; ".join(problems) if problems
                          else " -> ok"))
            ok = ok and not problems
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
