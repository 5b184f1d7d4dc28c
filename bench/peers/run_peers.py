#!/usr/bin/env python3
"""run_peers.py - attnc vs PyTorch (SDPA, FlexAttention, eager) and onnxruntime on CPU.

Run inside the peers venv (bench/peers/setup_venv.sh):

    build/peers-venv/bin/python bench/peers/run_peers.py --quick
    build/peers-venv/bin/python bench/peers/run_peers.py --variants dense,causal --N 4096 --D 128

Every shape (N, D) runs in its own worker process; inside it, for each variant,
attnc (through its C ABI, bench/peers/attnc_ctypes.py) and each peer run on the
same float32 inputs, alternating repetition by repetition, all with the same
thread count (default: all cores; torch.set_num_threads, ORT intra_op threads,
attnc num_threads). Times are medians after warm-up. Each peer's output is
checked against attnc's: err = max|o_peer - o_attnc| / max|o_attnc|, and a
row is marked MISMATCH when err >= 1e-3 (so nobody wins by computing
something else).

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


def worker(args):
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
    import numpy as np
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from attnc_ctypes import AttnKernel
    threads = args.threads
    torch.set_num_threads(threads)
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
    runs, warm = args.runs, 1
    rng = np.random.default_rng(args.seed)
    flex_compiled = None
    flex_label = "flex"
    if flex_attention is not None:
        flex_compiled = torch.compile(flex_attention, dynamic=False)

    def emit(rec):
        print("ROW " + json.dumps(rec), flush=True)

    for var in args.variants:
        Hq, Hkv = (32, 8) if var == "gqa" else (H, H)
        q = rng.standard_normal((B, Hq, N, D), dtype=np.float32)
        k = rng.standard_normal((B, Hkv, N, D), dtype=np.float32)
        v = rng.standard_normal((B, Hkv, N, D), dtype=np.float32)
        tq, tk, tv = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v)
        spec = {"gqa": "dense"}.get(var, var)
        params = {"sliding_window": {"window": WINDOW}, "softcap": {"cap": CAP}}.get(var, {})
        rec = {"variant": var, "N": N, "D": D, "Hq": Hq, "Hkv": Hkv, "threads": threads,
               "notes": []}

        # --- attnc: cold compile in a fresh cache dir, then the cached library.
        cold_dir = tempfile.mkdtemp(prefix="attnc-cold-")
        kc = AttnKernel(os.path.join(EX, spec + ".attn"), params, cache_dir=cold_dir)
        rec["attnc_cold_ms"] = kc.seconds * 1e3
        AttnKernel(os.path.join(EX, spec + ".attn"), params)  # fill the shared cache
        t0 = time.perf_counter()
        kern = AttnKernel(os.path.join(EX, spec + ".attn"), params)
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
            dist = (qi - ki).float()
            bias = (-slopes[:, None, None] * dist).masked_fill(~causal_m, float("-inf"))[None]
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
            qv = helper.make_tensor_value_info("q", TensorProto.FLOAT, [B, Hq, N, D])
            kv_ = helper.make_tensor_value_info("k", TensorProto.FLOAT, [B, Hkv, N, D])
            vv = helper.make_tensor_value_info("v", TensorProto.FLOAT, [B, Hkv, N, D])
            ov = helper.make_tensor_value_info("o", TensorProto.FLOAT, [B, Hq, N, D])
            nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                     helper.make_node("MatMul", ["q", "kt"], ["s0"]),
                     helper.make_node("Mul", ["s0", "scale"], ["s1"])]
            inits = [numpy_helper.from_array(np.array(scale, np.float32), "scale")]
            last = "s1"
            if var == "causal":
                cm = np.where(np.tril(np.ones((N, N), bool)), 0.0, -np.inf).astype(np.float32)
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
                impls["ort"] = lambda: sess.run(None, feeds)[0]
            except Exception as e:
                rec["notes"].append("onnxruntime session failed: %s" % str(e).splitlines()[0][:200])

        # --- warm-up, check, alternating timed runs
        outs = {}
        for name, f in impls.items():
            for _ in range(warm):
                r = f()
            outs[name] = o_attnc.copy() if name == "attnc" else (
                r.numpy() if torch.is_tensor(r) else np.asarray(r))
        ref = outs["attnc"]
        denom = float(np.abs(ref).max())
        rec["err"] = {}
        for name, out in outs.items():
            if name == "attnc":
                continue
            err = float(np.abs(out.astype(np.float64) - ref).max()) / max(denom, 1e-30)
            rec["err"][name] = err
        times = {n: [] for n in impls}
        for _ in range(runs):
            for name, f in impls.items():
                t0 = time.perf_counter()
                f()
                times[name].append((time.perf_counter() - t0) * 1e3)
        rec["ms"] = {n: statistics.median(t) for n, t in times.items()}
        rec["runs"] = runs
        emit(rec)
        del impls, outs


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
        rows.sort(key=lambda r: (r["D"], r["N"], VARIANTS.index(r["variant"])))
        print_tables(rows)
        return
    if args.quick:
        args.N, args.D, args.runs = "1024", "64", 3
    args.variants = [v for v in args.variants.split(",") if v]
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
                   "--ort-max-n", str(args.ort_max_n), "--variants", ",".join(args.variants)]
            if args.flex_eager:
                cmd.append("--flex-eager")
            print("# worker N=%d D=%d" % (N, D), file=sys.stderr, flush=True)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            for line in p.stdout:
                if line.startswith("ROW "):
                    rec = json.loads(line[4:])
                    rows.append(rec)
                    print("#   %s N=%d D=%d: %s" % (rec["variant"], N, D, json.dumps(rec["ms"])),
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
        tag = "" if err < 1e-3 else " MISMATCH(%.1e)" % err
        return fmt_ms(ms) + tag, "%.2f" % (ms / rec["ms"]["attnc"])

    print("| variant | Hq/Hkv | N | D | attnc ms | SDPA ms (or eager) | SDPA/attnc | SDPA is_causal ms | /attnc "
          "| Flex ms | Flex/attnc | ORT ms | ORT/attnc | max rel err vs attnc |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        sd = cell(r, "sdpa") if "sdpa" in r["ms"] else cell(r, "eager")
        if "eager" in r["ms"]:
            sd = (sd[0] + " (eager)", sd[1])
        sc = cell(r, "sdpa_causal")
        fl = cell(r, "flex")
        if r.get("flex_label") == "flex-eager" and fl[0] != "—":
            fl = (fl[0] + " (flex-eager)", fl[1])
        ox = cell(r, "ort")
        errs = ", ".join("%s %.1e" % (n, e) for n, e in r["err"].items())
        print("| %s | %d/%d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["variant"], r["Hq"], r["Hkv"], r["N"], r["D"], fmt_ms(r["ms"]["attnc"]),
            sd[0], sd[1], sc[0], sc[1], fl[0], fl[1], ox[0], ox[1], errs))
    print()
    print("| variant | N | D | attnc cold compile ms | attnc cached ms | Flex first call (torch.compile, cold) ms "
          "| Flex after doc change: create_block_mask + call ms | attnc after doc change: call ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        dc = "—"
        if "flex_docchange_call_ms" in r:
            dc = "%s + %s" % (fmt_ms(r["flex_docchange_blockmask_ms"]), fmt_ms(r["flex_docchange_call_ms"]))
        print("| %s | %d | %d | %s | %s | %s | %s | %s |" % (
            r["variant"], r["N"], r["D"], fmt_ms(r["attnc_cold_ms"]), fmt_ms(r["attnc_cached_ms"]),
            fmt_ms(r.get("flex_first_ms")), dc, fmt_ms(r.get("attnc_docchange_call_ms"))))
    notes = sorted({n for r in rows for n in r["notes"]})
    for n in notes:
        print("\nnote: " + n)


if __name__ == "__main__":
    main()
