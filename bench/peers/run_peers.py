#!/usr/bin/env python3
"""run_peers.py - attnc vs PyTorch (SDPA, FlexAttention, eager) and onnxruntime on CPU.

Run inside the peers venv (bench/peers/setup_venv.sh):

    build/peers-venv/bin/python bench/peers/run_peers.py --quick
    build/peers-venv/bin/python bench/peers/run_peers.py --variants dense,causal --N 4096 --D 128
    build/peers-venv/bin/python bench/peers/run_peers.py --N 4096 --D 128 --dtype fp32,bf16

Every shape (N, D) runs in its own worker process; inside it, for each variant,
attnc (through its C ABI, bench/peers/attnc_ctypes.py) and each peer run on the
same inputs, alternating repetition by repetition, all with the same
thread count (default: all cores; torch.set_num_threads, ORT intra_op threads,
attnc num_threads). Before every call the worker sleeps --gap-ms (default
50 ms), so that threads a library leaves spinning after its call
(onnxruntime's intra-op pool, OpenMP workers) do not take the cores from the
next implementation: without the gap, at N=1024 attnc right after ORT ran
~1.4x slower and SDPA ~1.5x slower than alone. A peer whose warm-up call
takes over --slow-s (default 60 s) is timed by that one call. On a shared
machine each repetition first waits (up to --quiet-s, default 30 s) until no
other process has been runnable for 100 ms (/proc/loadavg's running count
minus this process's running threads); rows record the wait and the number
of repetitions that started without such a quiet moment ("noisy_reps"). Times are
medians after the warm-up call. Each peer's output is checked against attnc's: err = max|o_peer - o_attnc| / max|o_attnc|, and a
row is marked MISMATCH when err >= 1e-3 (fp32) or >= 3e-2 (bf16), so nobody
wins by computing something else. Every output (attnc's too) is also checked
against a float64 reference computed on the same (for bf16: bf16-rounded)
inputs for 10 sampled query rows, all heads (same metric; "ref" errors).

--dtype fp32,bf16 runs each variant in each dtype, in the same worker:
  fp32   float32 q/k/v everywhere (the default).
  bf16   the float32 inputs rounded to bfloat16. attnc compiles a copy of the
         spec with `input q : bf16[B, Hq, N, Dqk]` (and k, v) declared, as in
         bench/bf16/*.attn (AVX512-BF16 vdpbf16ps where the CPU has it); its
         output o stays float32. SDPA, eager and Flex get bfloat16 tensors
         (alibi's additive mask in bf16 too); their outputs are bfloat16. ORT
         is tried with a bfloat16 graph; onnxruntime's CPU provider has no
         bfloat16 MatMul, so that fails and is noted.

Peers per variant:
  SDPA   torch.nn.functional.scaled_dot_product_attention; masked variants get
         the materialized boolean mask [N, N] (causal also as is_causal=True,
         column "SDPA causal"); alibi an additive float mask [H, N, N]
         (bias, -inf where masked); GQA enable_gqa=True.
  eager  plain torch ops (scores, score mod, mask, softmax/sigmoid, @ v),
         query chunks of 1024 rows, where SDPA cannot express the variant
         (softcap, sigmoid).
  Flex   torch.nn.attention.flex_attention under torch.compile with a
         BlockMask from create_block_mask and score_mod where needed; if
         torch.compile fails, eager flex_attention, labelled "flex-eager".
         Not for sigmoid (Flex always normalizes with softmax).
  ORT    onnxruntime on a small ONNX graph (MatMul, Softmax, MatMul; causal
         with a constant additive mask) for dense and causal, N <= 4096.

Compile latency (per variant, first shape): attnc cold (attnc + cc -shared +
dlopen, fresh cache dir) and cached (dlopen of the cached library); Flex first
call under torch.compile (fresh TORCHINDUCTOR_CACHE_DIR per worker), and for
document, create_block_mask + call after changing the document ids.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EX = os.path.join(ROOT, "examples")

VARIANTS = ["dense", "causal", "sliding_window", "document", "softcap", "alibi",
            "sigmoid", "gqa"]
WINDOW, CAP, NDOCS = 256, 30.0, 4
DTYPES = ["fp32", "bf16"]
TOL = {"fp32": 1e-3, "bf16": 3e-2}
BF16_INPUTS = ("\n  input q : bf16[B, Hq, N, Dqk]\n  input k : bf16[B, Hkv, M, Dqk]"
               "\n  input v : bf16[B, Hkv, M, Dv]")


def others_running():
    """Runnable tasks on the machine that are not threads of this process
    (/proc/loadavg's running count minus this process's R threads)."""
    try:
        total = int(open("/proc/loadavg").read().split()[3].split("/")[0])
        mine = 0
        for t in os.listdir("/proc/self/task"):
            try:
                with open("/proc/self/task/%s/stat" % t) as f:
                    mine += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                pass
        return max(0, total - mine)
    except (OSError, ValueError, IndexError):
        return 0


def wait_quiet(limit_s, polls=5, period_s=0.02):
    """Waits (up to limit_s) until no other process has been runnable for
    `polls` consecutive polls. Returns (seconds waited, quiet?)."""
    t0 = time.perf_counter()
    ok = 0
    while True:
        ok = ok + 1 if others_running() == 0 else 0
        waited = time.perf_counter() - t0
        if ok >= polls:
            return waited, True
        if waited >= limit_s:
            return waited, False
        time.sleep(period_s)


def bf16_spec(spec_path, outdir):
    """A copy of spec_path with bf16 q, k, v declared (as bench/bf16/*.attn)."""
    import re
    with open(spec_path) as f:
        text = f.read()
    text, n = re.subn(r"(attention\s+\w+\s*\{)", lambda m: m.group(1) + BF16_INPUTS, text, count=1)
    assert n == 1, spec_path
    out = os.path.join(outdir, os.path.basename(spec_path))
    with open(out, "w") as f:
        f.write(text)
    return out


def reference_rows(var, q, k, v, rows, doc, slopes):
    """float64 o[:, :, rows] of variant var for float64 q, k, v [B, H, N, D]."""
    import numpy as np
    B, Hq, N, D = q.shape
    G = Hq // k.shape[1]
    k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)
    s = np.einsum("bhrd,bhjd->bhrj", q[:, :, rows], k) / math.sqrt(D)
    i, j = np.asarray(rows)[:, None], np.arange(N)[None, :]
    if var == "softcap":
        s = CAP * np.tanh(s / CAP)
    if var == "alibi":
        s = s - np.asarray(slopes, np.float64)[None, :, None, None] * (i - j)
    if var == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-(s - math.log(N))))
    else:
        m = np.ones((len(rows), N), bool)
        if var in ("causal", "softcap", "alibi", "sliding_window", "document"):
            m &= j <= i
        if var == "sliding_window":
            m &= i - j < WINDOW
        if var == "document":
            m &= doc[0][rows][:, None] == doc[0][None, :]
        s = np.where(m, s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
    return np.einsum("bhrj,bhjd->bhrd", p, v)


def worker(args):
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
    import numpy as np
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from attnc_ctypes import AttnKernel, BF16
    threads = args.threads
    torch.set_num_threads(threads)
    # One compiled flex graph per variant and dtype: past the recompile
    # limit (default 8) Dynamo would silently run flex_attention eagerly.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)
    spec_dir = tempfile.mkdtemp(prefix="peers-specs-")
    try:
        from torch.nn.attention.flex_attention import flex_attention, create_block_mask
    except Exception as e:  # pragma: no cover
        flex_attention = None
        flex_import_err = repr(e)
    try:
        import onnxruntime as ort
        import onnx
        from onnx import helper, TensorProto, numpy_helper
    except Exception:
        ort = None

    N, D, B, H = args.N, args.D, 1, 8
    runs, warm, gap = args.runs, 1, args.gap_ms / 1e3
    rng = np.random.default_rng(args.seed)
    flex_compiled = None
    flex_label = "flex"
    if flex_attention is not None:
        flex_compiled = torch.compile(flex_attention, dynamic=False)

    def emit(rec):
        print("ROW " + json.dumps(rec), flush=True)

    def run_variant(var, dtype, q, k, v):
        Hq, Hkv = q.shape[1], k.shape[1]
        tdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        tq, tk, tv = (torch.from_numpy(a).to(tdt) for a in (q, k, v))
        # float64 copies of the exact inputs, for the sampled reference
        q64, k64, v64 = (t.double().numpy() for t in (tq, tk, tv))
        if dtype == "bf16":  # attnc reads the bf16 bits of the same tensors
            q, k, v = (BF16(t.view(torch.int16).numpy()) for t in (tq, tk, tv))
        spec = {"gqa": "dense"}.get(var, var)
        spec_path = os.path.join(EX, spec + ".attn")
        if dtype == "bf16":
            spec_path = bf16_spec(spec_path, spec_dir)
        params = {"sliding_window": {"window": WINDOW}, "softcap": {"cap": CAP}}.get(var, {})
        rec = {"variant": var, "dtype": dtype, "N": N, "D": D, "Hq": Hq, "Hkv": Hkv,
               "threads": threads, "notes": []}

        # --- attnc: cold compile in a fresh cache dir, then the cached library.
        cold_dir = tempfile.mkdtemp(prefix="attnc-cold-")
        kc = AttnKernel(spec_path, params, cache_dir=cold_dir)
        rec["attnc_cold_ms"] = kc.seconds * 1e3
        AttnKernel(spec_path, params)  # fill the shared cache
        t0 = time.perf_counter()
        kern = AttnKernel(spec_path, params)
        rec["attnc_cached_ms"] = (time.perf_counter() - t0) * 1e3
        aux = []
        doc = None
        if var == "document":
            doc = (np.arange(N, dtype=np.int64) * NDOCS // N).astype(np.int32)[None, :]
            aux = [doc]
        o_attnc = np.empty((B, Hq, N, D), np.float32)
        call_attnc = kern.prepare([q, k, v] + aux, o_attnc, None)

        impls = {"attnc": lambda: call_attnc(threads)}

        # --- masks
        qi = torch.arange(N)[:, None]
        ki = torch.arange(N)[None, :]
        causal_m = ki <= qi
        bool_mask = {"causal": causal_m, "softcap": causal_m, "alibi": causal_m,
                     "sliding_window": causal_m & (qi - ki < WINDOW)}.get(var)
        if var == "document":
            td = torch.from_numpy(doc[0].astype(np.int64))
            bool_mask = causal_m & (td[:, None] == td[None, :])
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / Hq) for h in range(Hq)])
        scale = 1.0 / math.sqrt(D)

        # --- SDPA / eager
        if var in ("dense", "gqa"):
            gqa = var == "gqa"
            impls["sdpa"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, enable_gqa=gqa)
        elif var in ("causal", "sliding_window", "document"):
            m = bool_mask
            impls["sdpa"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, attn_mask=m)
            if var == "causal":
                impls["sdpa_causal"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        elif var == "alibi":
            # [1, H, N, N] in the input dtype, filled head by head (8.6 GB in
            # fp32 at N=16k: no temporaries of that size on top of it).
            dist = (qi - ki).float()
            bias = torch.empty((1, Hq, N, N), dtype=tdt)
            for h in range(Hq):
                bias[0, h].copy_(dist * -slopes[h]).masked_fill_(~causal_m, float("-inf"))
            del dist
            impls["sdpa"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, attn_mask=bias)
        elif var in ("softcap", "sigmoid"):
            sig_bias = -math.log(N)

            def eager():
                out = torch.empty_like(tq)
                for s0 in range(0, N, 1024):
                    s1 = min(N, s0 + 1024)
                    sc = (tq[:, :, s0:s1] @ tk.transpose(-1, -2)) * scale
                    if var == "softcap":
                        sc = CAP * torch.tanh(sc / CAP)
                        sc = sc.masked_fill(~causal_m[s0:s1], float("-inf"))
                        p = torch.softmax(sc, dim=-1)
                    else:
                        p = torch.sigmoid(sc + sig_bias)
                    out[:, :, s0:s1] = p @ tv
                return out
            impls["eager"] = eager

        # --- FlexAttention
        if flex_attention is not None and var != "sigmoid":
            score_mod, mask_mod = None, None
            if var in ("causal", "softcap", "alibi"):
                def mask_mod(b, h, q_idx, kv_idx):
                    return kv_idx <= q_idx
            elif var == "sliding_window":
                def mask_mod(b, h, q_idx, kv_idx):
                    return (kv_idx <= q_idx) & (q_idx - kv_idx < WINDOW)
            elif var == "document":
                doc_t = torch.from_numpy(doc[0].astype(np.int64)).clone()

                def mask_mod(b, h, q_idx, kv_idx):
                    return (doc_t[q_idx] == doc_t[kv_idx]) & (kv_idx <= q_idx)
            if var == "softcap":
                def score_mod(score, b, h, q_idx, kv_idx):
                    return CAP * torch.tanh(score / CAP)
            elif var == "alibi":
                def score_mod(score, b, h, q_idx, kv_idx):
                    return score - slopes[h] * (q_idx - kv_idx)
            bm = create_block_mask(mask_mod, None, None, N, N, device="cpu") if mask_mod else None
            gqa = var == "gqa"
            fn = flex_compiled if flex_compiled is not None and not args.flex_eager else flex_attention
            label = "flex" if fn is flex_compiled else "flex-eager"
            t0 = time.perf_counter()
            try:
                fn(tq, tk, tv, score_mod=score_mod, block_mask=bm, enable_gqa=gqa)
                rec["flex_first_ms"] = (time.perf_counter() - t0) * 1e3
            except Exception as e:
                rec["notes"].append("torch.compile(flex_attention) failed: %s; eager flex" %
                                    (str(e).splitlines()[0][:200]))
                fn, label = flex_attention, "flex-eager"
                t0 = time.perf_counter()
                fn(tq, tk, tv, score_mod=score_mod, block_mask=bm, enable_gqa=gqa)
                rec["flex_first_ms"] = (time.perf_counter() - t0) * 1e3
            rec["flex_label"] = label
            impls["flex"] = (lambda fn=fn, bm=bm, score_mod=score_mod, gqa=gqa:
                             fn(tq, tk, tv, score_mod=score_mod, block_mask=bm, enable_gqa=gqa))
            if var == "document":
                doc_t_new = torch.from_numpy(
                    np.sort(np.random.default_rng(1).integers(0, 7, N)).astype(np.int64))
                doc_t.copy_(doc_t_new)  # the mask_mod reads doc_t: new mask data
                t0 = time.perf_counter()
                bm2 = create_block_mask(mask_mod, None, None, N, N, device="cpu")
                t1 = time.perf_counter()
                fn(tq, tk, tv, block_mask=bm2)
                t2 = time.perf_counter()
                rec["flex_docchange_blockmask_ms"] = (t1 - t0) * 1e3
                rec["flex_docchange_call_ms"] = (t2 - t1) * 1e3
                doc_t.copy_(torch.from_numpy(doc[0].astype(np.int64)))
                # attnc: new doc ids are just another input (no recompile)
                doc2 = doc_t_new.numpy().astype(np.int32)[None, :]
                o2 = np.empty_like(o_attnc)
                t0 = time.perf_counter()
                kern.run([q, k, v, doc2], o2, None, threads)
                rec["attnc_docchange_call_ms"] = (time.perf_counter() - t0) * 1e3

        # --- onnxruntime
        if ort is not None and var in ("dense", "causal") and N <= args.ort_max_n:
            et = {"fp32": TensorProto.FLOAT, "bf16": TensorProto.BFLOAT16}[dtype]
            qv = helper.make_tensor_value_info("q", et, [B, Hq, N, D])
            kv_ = helper.make_tensor_value_info("k", et, [B, Hkv, N, D])
            vv = helper.make_tensor_value_info("v", et, [B, Hkv, N, D])
            ov = helper.make_tensor_value_info("o", et, [B, Hq, N, D])
            nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                     helper.make_node("MatMul", ["q", "kt"], ["s0"]),
                     helper.make_node("Mul", ["s0", "scale"], ["s1"])]
            ndt = np.float32
            if dtype == "bf16":
                import ml_dtypes
                ndt = ml_dtypes.bfloat16
            inits = [numpy_helper.from_array(np.array(scale, np.float32).astype(ndt), "scale")]
            last = "s1"
            if var == "causal":
                cm = np.where(np.tril(np.ones((N, N), bool)), 0.0, -np.inf).astype(ndt)
                inits.append(numpy_helper.from_array(cm, "cmask"))
                nodes.append(helper.make_node("Add", ["s1", "cmask"], ["s2"]))
                last = "s2"
            nodes += [helper.make_node("Softmax", [last], ["p"], axis=-1),
                      helper.make_node("MatMul", ["p", "v"], ["o"])]
            g = helper.make_graph(nodes, "attn", [qv, kv_, vv], [ov], inits)
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8  # readable by older onnxruntime releases too
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            try:
                sess = ort.InferenceSession(model.SerializeToString(), so,
                                            providers=["CPUExecutionProvider"])
                feeds = {"q": q, "k": k, "v": v}
                if dtype == "bf16":
                    feeds = {n: t.view(torch.int16).numpy().view(ndt)
                             for n, t in (("q", tq), ("k", tk), ("v", tv))}
                impls["ort"] = lambda: sess.run(None, feeds)[0]
            except Exception as e:
                rec["notes"].append("onnxruntime (%s) session failed: %s" %
                                    (dtype, str(e).splitlines()[0][:200]))

        # --- warm-up, check, alternating timed runs
        outs, warm_ms = {}, {}
        rec["loadavg_start"] = os.getloadavg()
        for name, f in impls.items():
            for _ in range(warm):
                time.sleep(gap)
                t0 = time.perf_counter()
                r = f()
                warm_ms[name] = (time.perf_counter() - t0) * 1e3
            outs[name] = o_attnc.copy() if name == "attnc" else (
                r.float().numpy() if torch.is_tensor(r) else np.asarray(r, np.float32))
        ref = outs["attnc"]
        denom = float(np.abs(ref).max())
        rec["err"] = {}
        for name, out in outs.items():
            if name == "attnc":
                continue
            err = float(np.abs(out.astype(np.float64) - ref).max()) / max(denom, 1e-30)
            rec["err"][name] = err
        # float64 reference on sampled query rows (all heads)
        rows = sorted(set([0, N - 1] + list(np.random.default_rng(123).integers(0, N, 8))))
        ref64 = reference_rows(var, q64, k64, v64, rows, doc, slopes.tolist())
        rden = max(float(np.abs(ref64).max()), 1e-30)
        rec["ref_err"] = {name: float(np.abs(out[:, :, rows].astype(np.float64) - ref64).max()) / rden
                          for name, out in outs.items()}
        rec["tol"] = TOL[dtype]
        del q64, k64, v64
        # A peer whose warm-up call took longer than --slow-s is not repeated:
        # its time is that one call (marked "1 call").
        slow = [n for n in impls if n != "attnc" and warm_ms[n] > args.slow_s * 1e3]
        times = {n: [] for n in impls if n not in slow}
        quiet_wait, noisy = 0.0, 0
        for _ in range(runs):
            if args.quiet_s > 0:
                w, ok = wait_quiet(args.quiet_s)
                quiet_wait += w
                noisy += not ok
            for name, f in impls.items():
                if name in slow:
                    continue
                time.sleep(gap)
                t0 = time.perf_counter()
                f()
                times[name].append((time.perf_counter() - t0) * 1e3)
        rec["ms"] = {n: statistics.median(t) for n, t in times.items()}
        rec["times_ms"] = times
        for n in slow:
            rec["ms"][n] = warm_ms[n]
            rec["notes"].append("1 call: a warm-up call took over %g s, not repeated" % args.slow_s)
        rec["single"] = slow
        rec["runs"] = runs
        rec["gap_ms"] = args.gap_ms
        rec["quiet_wait_s"], rec["noisy_reps"] = quiet_wait, noisy
        rec["loadavg_end"] = os.getloadavg()
        emit(rec)
        del impls, outs

    for var in args.variants:
        Hq, Hkv = (32, 8) if var == "gqa" else (H, H)
        q32 = rng.standard_normal((B, Hq, N, D), dtype=np.float32)
        k32 = rng.standard_normal((B, Hkv, N, D), dtype=np.float32)
        v32 = rng.standard_normal((B, Hkv, N, D), dtype=np.float32)
        for dtype in args.dtypes:
            run_variant(var, dtype, q32, k32, v32)


def fmt_ms(x):
    if x is None:
        return "—"
    return "%.1f" % x if x >= 10 else ("%.2f" % x if x >= 1 else "%.3f" % x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N=1024, D=64, 3 runs")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--N", default="1024,4096,16384")
    ap.add_argument("--D", default="64,128")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ort-max-n", type=int, default=4096)
    ap.add_argument("--dtype", default="fp32", help="comma list of fp32, bf16 (default fp32)")
    ap.add_argument("--gap-ms", type=float, default=50.0,
                    help="idle time before every call (lets other libraries' spinning threads settle)")
    ap.add_argument("--quiet-s", type=float, default=30.0,
                    help="before each repetition wait up to this long for no other process to be "
                         "runnable (shared machine); 0: do not wait")
    ap.add_argument("--slow-s", type=float, default=60.0,
                    help="a peer whose warm-up call takes longer is timed by that call only")
    ap.add_argument("--flex-eager", action="store_true", help="do not torch.compile flex_attention")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--render", nargs="+", metavar="ROWS.json",
                    help="print the tables of rows saved with --json (no runs)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        rows = []
        for path in args.render:
            with open(path) as f:
                rows += json.load(f)
        for r in rows:  # rows saved before --dtype existed are fp32
            r.setdefault("dtype", "fp32")
        rows.sort(key=lambda r: (DTYPES.index(r["dtype"]), r["D"], r["N"],
                                 VARIANTS.index(r["variant"])))
        print_tables(rows)
        return
    if args.quick:
        args.N, args.D, args.runs = "1024", "64", 3
    args.variants = [v for v in args.variants.split(",") if v]
    args.dtypes = [d for d in args.dtype.split(",") if d]
    for d in args.dtypes:
        if d not in DTYPES:
            ap.error("unknown dtype %s (known: %s)" % (d, ", ".join(DTYPES)))
    for v in args.variants:
        if v not in VARIANTS:
            ap.error("unknown variant %s (known: %s)" % (v, ", ".join(VARIANTS)))
    if args.worker:
        args.N, args.D = int(args.N), int(args.D)
        worker(args)
        return
    rows = []
    for N in [int(x) for x in args.N.split(",")]:
        for D in [int(x) for x in args.D.split(",")]:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--N", str(N), "--D", str(D),
                   "--runs", str(args.runs), "--threads", str(args.threads), "--seed", str(args.seed),
                   "--ort-max-n", str(args.ort_max_n), "--variants", ",".join(args.variants),
                   "--dtype", ",".join(args.dtypes), "--slow-s", str(args.slow_s),
                   "--gap-ms", str(args.gap_ms), "--quiet-s", str(args.quiet_s)]
            if args.flex_eager:
                cmd.append("--flex-eager")
            print("# worker N=%d D=%d" % (N, D), file=sys.stderr, flush=True)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            for line in p.stdout:
                if line.startswith("ROW "):
                    rec = json.loads(line[4:])
                    rows.append(rec)
                    print("#   %s %s N=%d D=%d: %s" % (rec["variant"], rec["dtype"], N, D,
                                                  json.dumps(rec["ms"])),
                          file=sys.stderr, flush=True)
            if p.wait() != 0:
                print("# worker N=%d D=%d failed (rc %d)" % (N, D, p.returncode), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print_tables(rows)


def print_tables(rows):
    def cell(rec, name):
        ms = rec["ms"].get(name)
        if ms is None:
            return "—", "—"
        err = rec["err"].get(name, 0.0)
        tol = rec.get("tol", TOL[rec.get("dtype", "fp32")])
        tag = "" if err < tol else " MISMATCH(%.1e)" % err
        if name in rec.get("single", ()):
            tag += " (1 call)"
        return fmt_ms(ms) + tag, "%.2f" % (ms / rec["ms"]["attnc"])

    for dtype in DTYPES:
        sel = [r for r in rows if r.get("dtype", "fp32") == dtype]
        if not sel:
            continue
        print("%s:\n" % dtype)
        print("| variant | Hq/Hkv | N | D | reps | attnc ms | SDPA ms (or eager) | SDPA/attnc | SDPA is_causal ms "
              "| /attnc | Flex ms | Flex/attnc | ORT ms | ORT/attnc | max rel err vs attnc "
              "| vs f64 ref (10 rows) |")
        print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in sel:
            sd = cell(r, "sdpa") if "sdpa" in r["ms"] else cell(r, "eager")
            if "eager" in r["ms"]:
                sd = (sd[0] + " (eager)", sd[1])
            sc = cell(r, "sdpa_causal")
            fl = cell(r, "flex")
            if r.get("flex_label") == "flex-eager" and fl[0] != "—":
                fl = (fl[0] + " (flex-eager)", fl[1])
            ox = cell(r, "ort")
            errs = ", ".join("%s %.1e" % (n, e) for n, e in r["err"].items())
            rerrs = ", ".join("%s %.1e" % (n, e) for n, e in r.get("ref_err", {}).items()) or "—"
            reps = str(r.get("runs", "?"))
            if r.get("noisy_reps"):
                reps += " (%d noisy)" % r["noisy_reps"]
            print("| %s | %d/%d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["variant"], r["Hq"], r["Hkv"], r["N"], r["D"], reps, fmt_ms(r["ms"]["attnc"]),
                sd[0], sd[1], sc[0], sc[1], fl[0], fl[1], ox[0], ox[1], errs, rerrs))
        print()
    print("| variant | dtype | N | D | attnc cold compile ms | attnc cached ms "
          "| Flex first call (torch.compile, cold) ms "
          "| Flex after doc change: create_block_mask + call ms | attnc after doc change: call ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        dc = "—"
        if "flex_docchange_call_ms" in r:
            dc = "%s + %s" % (fmt_ms(r["flex_docchange_blockmask_ms"]), fmt_ms(r["flex_docchange_call_ms"]))
        print("| %s | %s | %d | %d | %s | %s | %s | %s | %s |" % (
            r["variant"], r.get("dtype", "fp32"), r["N"], r["D"], fmt_ms(r["attnc_cold_ms"]),
            fmt_ms(r["attnc_cached_ms"]), fmt_ms(r.get("flex_first_ms")), dc,
            fmt_ms(r.get("attnc_docchange_call_ms"))))
    notes = sorted({n for r in rows for n in r["notes"]})
    for n in notes:
        print("\nnote: " + n)


if __name__ == "__main__":
    main()
