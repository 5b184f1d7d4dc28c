#!/usr/bin/env python3
"""check_gpu.py - every prebuilt attnc CUDA kernel against the float64 oracle.

On the GPU machine (python3 with torch and numpy; no build tree needed):

    python3 bench/gpu/check_gpu.py [--artifacts bench/gpu/artifacts]
        [--only ID,...] [--cases NAME,...] [--sanitize [--sanitize-tools memcheck,racecheck]]

For every artifact in manifest.json (bench/gpu/build_artifacts.sh) and every
case below that the spec allows (square specs get N = M, neighborhood_2d the
N = height * width it was built for), it draws fresh random inputs (q scaled
as the oracle does, aux inputs from the oracle's generators), rounds q, k, v
to the kernel's element type (bf16 or f16), copies them to the GPU as torch
tensors, poisons o and lse with NaN, calls attn_cuda_run through the
artifact's library (ctypes; DLTensors over the torch tensors, kDLCUDA, the
current torch stream), synchronizes, and compares with the project's float64
numpy oracle (test/Integration/reference/oracle.py, on exactly the rounded
values the kernel saw):

    o:   max|o - ref| / max|ref|                 <= 2e-2 (bf16), 5e-3 (f16)
    lse: max|lse - ref| / max(1, max|ref|) over finite entries, same bounds,
         and -inf exactly where the reference is -inf
    rows with no visible key: o exactly 0 (and lse = -inf)
    no NaN anywhere (an unwritten element stays NaN)
    a second run on the same inputs gives bit-identical o and lse ("det")

Then, for the artifacts with decode (or batch prefill) variants and no aux
input (batch_cases.py), ragged and paged batches through attn_cuda_run_batch
(device tables; one decode and one merge launch, or one batch prefill launch
when a sequence has more than 16 queries), each sequence against its own
oracle, with the same bounds and determinism check.

It prints one table row per (artifact, case) and exits 1 on any failure.
--sanitize then reruns a few small cases under `compute-sanitizer --tool
memcheck` (and any further --sanitize-tools) with PyTorch's caching
allocator off, so out-of-bounds accesses hit unallocated memory; a tool
reporting errors fails the run. Without compute-sanitizer on PATH (or under
$CUDA_HOME/bin, /usr/local/cuda/bin) that step is reported as skipped.

Without a GPU:

    python3 bench/gpu/check_gpu.py --dry-run

exercises everything up to the CUDA calls: loads every library, checks its
compiled descriptor (read through ctypes) against the manifest, reports
attn_cuda_available() (0 here, with the runtime's reason), builds each case's
inputs and its oracle reference, checks the comparison on perturbed copies
of the reference, and calls attn_cuda_run with the very argument lists the
GPU run uses, over host numpy memory: as kDLCPU tensors it must answer
ATTN_ERROR_DEVICE; claimed as kDLCUDA (only when no driver is present, so
nothing is ever launched) it must validate every tensor (names, order,
dtypes, shapes, layouts, lse) and stop at ATTN_ERROR_DRIVER; and deliberately
wrong calls (a mislabelled dtype, k and v swapped, lse for a sigmoid kernel,
a float doc, a misaligned q) must be rejected with the expected code. When
torch is importable (CPU build is fine), DLTensors over torch CPU tensors go
through the same calls. The batch cases go through attn_cuda_run_batch the
same way (kDLCPU: DEVICE; kDLCUDA: DRIVER; host tables under kDLCUDA
tensors: DEVICE). The dry run needs numpy only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "reference"))

import attnc_cuda as ac  # noqa: E402
import batch_cases as bc  # noqa: E402

TOL = {"bf16": 2e-2, "f16": 5e-3}


class Case:
    def __init__(self, name, layout="bhsd", lse=True, sanitize=False, **dims):
        self.name = name
        self.layout = layout        # bhsd: compact [B,H,S,D]; bshd: a transposed view of [B,S,H,D]
        self.lse = lse              # pass an lse tensor (softmax kernels)
        self.sanitize = sanitize    # small enough for compute-sanitizer
        dims.setdefault("Hkv", dims["Hq"])
        dims.setdefault("M", dims["N"])
        dims.setdefault("Dv", dims["Dqk"])
        self.dims = dims


CASES = [
    # GQA 8/2, N = M = 1000 (not a multiple of any tile), D = 64
    Case("gqa-n1000-d64", B=2, Hq=8, Hkv=2, N=1000, Dqk=64),
    # D = 128, q/k/v as transposed views of [B, S, H, D] (strided layout)
    Case("gqa-n1000-d128-bshd", layout="bshd", B=1, Hq=8, Hkv=2, N=1000, Dqk=128),
    # D = 80 runs the d128 variant with padding; no lse
    Case("n1000-d80-nolse", lse=False, B=1, Hq=4, N=1000, Dqk=80),
    # M != N (decode-like: fewer queries than keys), GQA
    Case("n77-m300-d128", sanitize=True, B=2, Hq=8, Hkv=2, N=77, M=300, Dqk=128),
    # M < N (bottom-right masks leave the first rows empty), MQA, D = 80
    Case("n300-m77-d80-mqa", B=1, Hq=4, Hkv=1, N=300, M=77, Dqk=80),
    # Dqk != Dv
    Case("n130-dqk128-dv64", sanitize=True, B=1, Hq=2, Hkv=1, N=130, Dqk=128, Dv=64),
    # many KV tiles
    Case("n4133-d64", B=1, Hq=2, Hkv=1, N=4133, Dqk=64),
    # compute-sanitizer's smallest run
    Case("tiny", sanitize=True, B=1, Hq=2, Hkv=1, N=77, M=130, Dqk=64),
    # The split-KV decode schedule (N <= 16; softmax specs): GQA 4 at N = 1
    # over many kv tiles and splits, MHA at N = 3, and G * N = 128 rows in
    # eight 16-row chunks.
    Case("decode-n1-m4133-gqa4", B=2, Hq=8, Hkv=2, N=1, M=4133, Dqk=128),
    Case("decode-n3-m777-d64", sanitize=True, B=1, Hq=4, N=3, M=777, Dqk=64),
    Case("decode-n16-m1000-g8", B=1, Hq=16, Hkv=2, N=16, M=1000, Dqk=128),
]
SANITIZE_ARTIFACTS = ["causal", "document", "sigmoid", "neighborhood_2d_7x11_k3",
                      "sliding_window_w64", "causal_f16"]


def import_numpy_oracle():
    try:
        import numpy as np
        import oracle
    except ImportError as e:
        raise SystemExit("check_gpu.py needs numpy (and test/Integration/reference/oracle.py): %s" % e)
    return np, oracle


def case_dims(var, params, case):
    """The case's dims adapted to the spec: N = M for square specs, the
    built-in N for neighborhood specs. None when the case does not apply."""
    d = dict(case.dims)
    if var.extents is not None:
        n = 1
        for e in var.extents(params):
            n *= int(e)
        d["N"] = d["M"] = n
    elif var.square:
        d["M"] = d["N"]
    return d


def resolved_cases(np, oracle, entry, names=None):
    var = oracle.VARIANTS[entry["oracle_variant"]]
    out, seen = [], set()
    for c in CASES:
        if names and c.name not in names:
            continue
        # params may depend on dims (sigmoid's bias = -log(M)): resolve per case
        dims0 = dict(c.dims)
        params0 = oracle.resolve_params(var, dims0, entry["params"])
        dims = case_dims(var, params0, c)
        params = oracle.resolve_params(var, dims, entry["params"])
        key = tuple(sorted(dims.items())) + (c.layout, c.lse)
        if key in seen:
            continue
        seen.add(key)
        out.append((c, dims, params))
    return var, out


def round_to(np, x, dtype):
    """float32 array -> (values as float32 exactly representable in dtype,
    host array of dtype's bits)."""
    if dtype == "bf16":
        bits = ac.bf16_bits(x)
        return ac.bf16_to_f32(bits).reshape(x.shape), bits.reshape(x.shape)
    if dtype == "f16":
        h = x.astype(np.float16)
        return h.astype(np.float32), h
    raise ValueError(dtype)


def make_inputs(np, oracle, var, dims, params, dtype, seed, run_idx):
    """{name: (float32 values, host array to pass, dl dtype)}; aux as the
    oracle wants them."""
    rng = np.random.default_rng(seed)
    B, Hq, Hkv, N, M = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M"))
    q = (var.qscale * rng.standard_normal((B, Hq, N, dims["Dqk"]))).astype(np.float32)
    k = rng.standard_normal((B, Hkv, M, dims["Dqk"])).astype(np.float32)
    v = rng.standard_normal((B, Hkv, M, dims["Dv"])).astype(np.float32)
    ins = {}
    for name, x in (("q", q), ("k", k), ("v", v)):
        vals, host = round_to(np, x, dtype)
        ins[name] = (vals, host, dtype)
    aux = {}
    for name, gen in var.aux:
        arr = gen(rng, dims, params, run_idx)
        if arr.dtype.kind == "f":
            ins[name] = (arr.astype(np.float32), arr.astype(np.float32), "f32")
            aux[name] = arr.astype(np.float64)
        else:
            ins[name] = (arr.astype(np.int32), arr.astype(np.int32), "i32")
            aux[name] = arr.astype(np.int64)
    return ins, aux


def reference(np, oracle, var, dims, params, ins, aux):
    tau = var.scale(dims, params) if var.scale else None
    o, lse = oracle.dense(ins["q"][0], ins["k"][0], ins["v"][0], var.mask, var.score,
                          var.norm, tau, dims, params, aux)
    counts = oracle.visible_counts(var.mask, dims, params, aux)
    return o, lse, counts


def compare(np, o, lse, ref_o, ref_lse, counts, tol):
    """-> (ok, o_err, lse_err, message)."""
    msgs = []
    o = np.asarray(o, np.float64)
    nan = np.isnan(o)
    if nan.any():
        idx = tuple(int(x) for x in np.argwhere(nan)[0])
        msgs.append("o: %d NaN (first at %s)" % (int(nan.sum()), idx))
    denom = float(np.abs(ref_o).max()) or 1.0
    with np.errstate(invalid="ignore"):
        o_err = float(np.nanmax(np.abs(o - ref_o))) / denom if o.size else 0.0
    if not (o_err <= tol):
        worst = np.unravel_index(int(np.nanargmax(np.abs(o - ref_o))), o.shape)
        msgs.append("o: max rel err %.3e > %.0e (worst at %s: %r vs %r)" % (
            o_err, tol, tuple(int(x) for x in worst), float(o[worst]), float(ref_o[worst])))
    empty = counts == 0
    if empty.any() and not (o[empty] == 0).all():
        msgs.append("o: %d rows with no visible key are not exactly 0" %
                    int((o[empty] != 0).any(-1).sum()))
    lse_err = None
    if lse is not None and ref_lse is not None:
        lse = np.asarray(lse, np.float64)
        if np.isnan(lse).any():
            msgs.append("lse: %d NaN" % int(np.isnan(lse).sum()))
        inf_ref = np.isinf(ref_lse)
        bad_inf = (np.isinf(lse) != inf_ref) | (inf_ref & (np.sign(lse) != np.sign(ref_lse)))
        bad_inf &= ~np.isnan(lse)
        if bad_inf.any():
            idx = tuple(int(x) for x in np.argwhere(bad_inf)[0])
            msgs.append("lse: infinity mismatch at %d entries (first %s: %r vs %r)" % (
                int(bad_inf.sum()), idx, float(lse[idx]), float(ref_lse[idx])))
        fin = ~inf_ref & ~np.isinf(lse) & ~np.isnan(lse)
        if fin.any():
            scale = max(1.0, float(np.abs(ref_lse[fin]).max()))
            lse_err = float(np.abs(lse[fin] - ref_lse[fin]).max()) / scale
            if not (lse_err <= tol):
                msgs.append("lse: max rel err %.3e > %.0e" % (lse_err, tol))
        else:
            lse_err = 0.0
    return not msgs, o_err, lse_err, "; ".join(msgs)


# ---------------------------------------------------------------------------
# The GPU run
# ---------------------------------------------------------------------------

def torch_input(torch, np, host_vals, dtype, layout, is_qkv, device="cuda"):
    """A CUDA tensor holding host_vals (float32 values exact in dtype, or
    int32) in the requested layout."""
    tdt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32,
           "i32": torch.int32}[dtype]
    t = torch.from_numpy(np.ascontiguousarray(host_vals)).to(tdt)
    if is_qkv and layout == "bshd":
        # storage [B, S, H, D], viewed as [B, H, S, D]
        return t.permute(0, 2, 1, 3).contiguous().to(device).permute(0, 2, 1, 3)
    return t.contiguous().to(device)


def mock_prepare(np, oracle, torch, var, dims, params, aux, tens, o, lse, mode):
    """--mock MODE (no GPU): stands in for the kernel call, writing the
    oracle's result computed from the very tensors passed (MODE ok), or a
    planted fault: 'unwritten' leaves o[0,0,0,0], 'race' perturbs the second
    run, 'wrong' scales one row."""
    runs = [0]

    def call(stream=None):
        if mode == "sticky":
            raise RuntimeError("CUDA error: an illegal memory access was encountered (mock)")
        qv, kv, vv = (tens[n].to(torch.float64).numpy() for n in ("q", "k", "v"))
        tau = var.scale(dims, params) if var.scale else None
        ro, rl = oracle.dense(qv, kv, vv, var.mask, var.score, var.norm, tau, dims, params, aux)
        if mode == "unwritten":
            keep = float(o[0, 0, 0, 0])
            o.copy_(torch.from_numpy(ro))
            o[0, 0, 0, 0] = keep
        else:
            o.copy_(torch.from_numpy(ro))
        if mode == "race" and runs[0] == 1:
            o[0, 0, -1, 0] += 1e-3
        if mode == "wrong":
            o[0, -1, -1] *= 1.5
        if lse is not None:
            lse.copy_(torch.from_numpy(rl))
        runs[0] += 1
        return ac.ATTN_OK
    return call


def is_sticky_cuda_error(msg):
    m = msg.lower()
    return any(x in m for x in ("illegal memory access", "illegal address", "unspecified launch failure",
                                "misaligned address", "illegal instruction", "device-side assert",
                                "cudaerrorlaunchfailure", "an illegal"))


def add_row(rows, r):
    """Records one GPU run's row and prints its line."""
    rows.append(r)
    print("%-26s %-22s %-4s o %s lse %s det %s%s" % (
        r["artifact"], r["case"], r["status"], fmt_err(r["o_err"]), fmt_err(r["lse_err"]), r["det"],
        ("  " + r["msg"]) if r["msg"] else ""), flush=True)


def gpu_main(args, np, oracle, arts, ids, case_names):
    try:
        import torch
    except ImportError as e:
        raise SystemExit("check_gpu.py: the GPU run needs torch (%s); without a GPU use --dry-run" % e)
    mock = args.mock
    if mock:
        device = "cpu"
        print("MOCK RUN (%s): torch CPU tensors, the oracle stands in for the kernels" % mock)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("torch sees no CUDA device (use --dry-run on a machine without a GPU)")
        torch.cuda.init()
        device = "cuda"
        dev = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(dev)
        print("device: %s, sm_%d%d, %d SMs, %.0f GiB; torch %s (CUDA %s)" % (
            props.name, props.major, props.minor, props.multi_processor_count,
            props.total_memory / 2 ** 30, torch.__version__, torch.version.cuda), flush=True)
        if (props.major, props.minor) < (9, 0):
            print("warning: the artifacts are built for %s" % arts.manifest["arch"])
        k0 = arts.load(ids[0])
        avail, why = k0.cuda_available()
        print("attn_cuda_available() = %d%s" % (avail, (" (%s)" % why) if why else ""), flush=True)
        if not avail:
            print("FAIL: the attnc runtime cannot reach the CUDA driver")
            return 1
    print("artifacts from attnc %s (%s, built %s)" % (
        arts.manifest["attnc_commit"], arts.manifest["arch"], arts.manifest["built"]), flush=True)
    stale = arts.stale_specs()
    if stale:
        print("warning: examples/*.attn changed since these artifacts were built: %s" % ", ".join(stale))
    rows, sticky = [], None
    seed = args.seed
    for ai, aid in enumerate(ids):
        entry = arts.entries[aid]
        kern = arts.load(aid)
        var, cases = resolved_cases(np, oracle, entry, case_names)
        tol = TOL[entry["dtype"]]
        for ci, (case, dims, params) in enumerate(cases):
            seed += 1
            t0 = time.perf_counter()
            status, det, o_err, lse_err, msg, n_empty = "FAIL", "-", None, None, "", -1
            try:
                ins, aux = make_inputs(np, oracle, var, dims, params, entry["dtype"], seed, ci)
                ref_o, ref_lse, counts = reference(np, oracle, var, dims, params, ins, aux)
                n_empty = int((counts == 0).sum())
                tens = {n: torch_input(torch, np, vals, dt, case.layout, n in ("q", "k", "v"), device)
                        for n, (vals, _, dt) in ins.items()}
                B, Hq, N, Dv = dims["B"], dims["Hq"], dims["N"], dims["Dv"]
                want_lse = case.lse and entry["has_lse"]
                o = torch.empty((B, Hq, N, Dv), dtype=torch.float32, device=device)
                lse = torch.empty((B, Hq, N), dtype=torch.float32, device=device) if want_lse else None
                if mock:
                    call = mock_prepare(np, oracle, torch, var, dims, params, aux, tens, o, lse, mock)
                else:
                    call = kern.prepare({n: ac.dl_from_torch(t) for n, t in tens.items()},
                                        ac.dl_from_torch(o), ac.dl_from_torch(lse) if lse is not None else None)
                outs = []
                for rep in range(2):
                    o.fill_(float("nan"))
                    if lse is not None:
                        lse.fill_(float("nan"))
                    st = call(None if mock else torch.cuda.current_stream().cuda_stream)
                    if st != ac.ATTN_OK:
                        raise RuntimeError("attn_cuda_run: %s: %s" % (kern.status_name(st), kern.error()))
                    if not mock:
                        torch.cuda.synchronize()
                    outs.append((o.cpu().numpy().copy(),
                                 lse.cpu().numpy().copy() if lse is not None else None))
                (o1, l1), (o2, l2) = outs
                same = np.array_equal(o1, o2, equal_nan=True) and (
                    l1 is None or np.array_equal(l1, l2, equal_nan=True))
                det = "yes" if same else "NO"
                ok, o_err, lse_err, msg = compare(np, o1, l1, ref_o, ref_lse if want_lse else None,
                                                  counts, tol)
                if not same:
                    ok = False
                    msg = (msg + "; " if msg else "") + "second run differs (race?)"
                status = "ok" if ok else "FAIL"
            except Exception as e:  # a failed case must not hide the others
                text = str(e).strip()
                msg = "%s: %s" % (type(e).__name__, text.splitlines()[0] if text else "")
                if (not mock or mock == "sticky") and is_sticky_cuda_error(text):
                    sticky = msg
            add_row(rows, {"artifact": aid, "dtype": entry["dtype"], "case": case.name, "dims": dims,
                           "layout": case.layout, "lse": bool(case.lse and entry["has_lse"]),
                           "o_err": o_err, "lse_err": lse_err, "tol": tol, "empty_rows": n_empty,
                           "det": det, "status": status, "msg": msg,
                           "seconds": time.perf_counter() - t0})
            if sticky:
                break
        if not sticky and not mock:
            for case in bc.BATCH_CASES:
                if (case_names and case.name not in case_names) or \
                        not bc.eligible(entry, var, case):
                    continue
                seed += 1
                t0 = time.perf_counter()
                status, det, o_err, lse_err, msg = "FAIL", "-", None, None, ""
                try:
                    ok, o_err, lse_err, det, msg = bc.run_gpu(np, oracle, torch, kern, entry, var, case,
                                                              seed, round_to, compare, tol)
                    status = "ok" if ok else "FAIL"
                except Exception as e:
                    text = str(e).strip()
                    msg = "%s: %s" % (type(e).__name__, text.splitlines()[0] if text else "")
                    if is_sticky_cuda_error(text):
                        sticky = msg
                add_row(rows, {"artifact": aid, "dtype": entry["dtype"], "case": case.name,
                               "dims": {"B": len(case.qlens), "Hq": case.Hq, "Hkv": case.Hkv,
                                        "N": max(case.qlens), "M": max(case.klens),
                                        "Dqk": case.D, "Dv": case.D},
                               "layout": "q %s, kv %s" % (case.q, case.kv), "lse": True,
                               "o_err": o_err, "lse_err": lse_err, "tol": tol, "empty_rows": -1,
                               "det": det, "status": status, "msg": msg,
                               "seconds": time.perf_counter() - t0})
                if sticky:
                    break
        if sticky:
            # The CUDA context is dead: the rest runs in a fresh process.
            rest = ids[ai + 1:]
            print("sticky CUDA error in %s (%s): the context is unusable; the remaining %d "
                  "artifacts run in a new process" % (aid, sticky, len(rest)), flush=True)
            if rest:
                rows += run_child(args, rest, case_names)
            break
    if args.rows_json:
        import json
        with open(args.rows_json, "w") as f:
            json.dump(rows, f)
        return 0
    print_table(rows)
    failures = sum(r["status"] != "ok" for r in rows)
    san_fail = 0
    if args.sanitize:
        san_fail = sanitize(args, ids)
    print("\n%d of %d runs failed%s" % (failures, len(rows),
                                        "; compute-sanitizer: %d tool(s) reported errors" % san_fail
                                        if args.sanitize else ""))
    print("PASS" if failures == 0 and san_fail == 0 else "FAIL")
    return 0 if failures == 0 and san_fail == 0 else 1


def run_child(args, ids, case_names):
    import json
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".json", prefix="check_gpu_rows_")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--artifacts", args.artifacts,
           "--only", ",".join(ids), "--seed", str(args.seed + 1000), "--rows-json", path]
    if case_names:
        cmd += ["--cases", ",".join(sorted(case_names))]
    if args.mock:
        cmd += ["--mock", "ok"]
    p = subprocess.run(cmd)
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return [{"artifact": a, "dtype": "?", "case": "*", "dims": None, "layout": "-", "lse": False,
                 "o_err": None, "lse_err": None, "tol": 0, "empty_rows": -1, "det": "-",
                 "status": "FAIL", "msg": "child process failed (exit %d)" % p.returncode,
                 "seconds": 0} for a in ids]
    finally:
        os.remove(path)


def fmt_err(e):
    return "-" if e is None else "%.2e" % e


def print_table(rows):
    print()
    print("| artifact | dtype | case | B | Hq/Hkv | N | M | Dqk/Dv | layout | lse | max rel err o | "
          "max rel err lse | tol | empty rows | det | status |")
    print("|---|---|---|---:|---|---:|---:|---|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        d = r["dims"] or {k: 0 for k in ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv")}
        st = r["status"] if r["status"] == "ok" or not r["msg"] else r["status"] + ": " + r["msg"]
        print("| %s | %s | %s | %d | %d/%d | %d | %d | %d/%d | %s | %s | %s | %s | %.0e | %s | %s | %s |" % (
            r["artifact"], r["dtype"], r["case"], d["B"], d["Hq"], d["Hkv"], d["N"], d["M"], d["Dqk"],
            d["Dv"], r["layout"], "yes" if r["lse"] else "no", fmt_err(r["o_err"]), fmt_err(r["lse_err"]),
            r["tol"], r["empty_rows"] if r["empty_rows"] >= 0 else "-", r["det"], st))


def find_sanitizer():
    for c in [shutil.which("compute-sanitizer"),
              os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "compute-sanitizer"),
              "/usr/local/cuda/bin/compute-sanitizer"]:
        if c and os.access(c, os.X_OK):
            return c
    return None


def sanitize(args, ids):
    """Reruns the small cases of a few artifacts under each tool; returns the
    number of tools that reported errors (or failed)."""
    tool = find_sanitizer()
    print()
    if not tool:
        print("compute-sanitizer: not found on PATH, $CUDA_HOME/bin or /usr/local/cuda/bin: SKIPPED")
        return 0
    only = [a for a in SANITIZE_ARTIFACTS if a in ids] or ids[:1]
    bad = 0
    for t in [x for x in args.sanitize_tools.split(",") if x]:
        cases = ["tiny"] if t != "memcheck" else [c.name for c in CASES if c.sanitize]
        cmd = [tool, "--tool", t, "--error-exitcode", "86", "--print-limit", "20",
               sys.executable, os.path.abspath(__file__), "--artifacts", args.artifacts,
               "--only", ",".join(only), "--cases", ",".join(cases), "--seed", str(args.seed + 7)]
        env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
        print("compute-sanitizer --tool %s: %s x %s" % (t, ",".join(only), ",".join(cases)), flush=True)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = p.stdout.splitlines()
        summary = [l for l in lines if "ERROR SUMMARY" in l or "RACECHECK SUMMARY" in l]
        errs = [l for l in lines if l.startswith("=========") and ("Invalid" in l or "Error" in l
                                                                    or "hazard" in l.lower())]
        ok = p.returncode == 0
        verdict = ("clean" if ok else "ERRORS reported by the tool" if p.returncode == 86
                   else "the checks under the tool FAILED")
        print("compute-sanitizer --tool %s: %s (exit %d, %.0f s) %s" % (
            t, verdict, p.returncode, time.perf_counter() - t0, " | ".join(summary[-2:])), flush=True)
        if not ok:
            bad += 1
            for l in (errs[:20] or lines[-40:]):
                print("  " + l)
    return bad


# ---------------------------------------------------------------------------
# The dry run (no GPU, no torch needed)
# ---------------------------------------------------------------------------

def host_input(np, host, dtype, layout, is_qkv):
    """An aligned host copy in the requested layout (bf16 as uint16 bits)."""
    npdt = {"bf16": np.uint16, "f16": np.float16, "f32": np.float32, "i32": np.int32}[dtype]
    host = np.asarray(host, npdt)
    if is_qkv and layout == "bshd":
        st = ac.aligned_empty((host.shape[0], host.shape[2], host.shape[1], host.shape[3]), npdt)
        st[...] = host.transpose(0, 2, 1, 3)
        return st.transpose(0, 2, 1, 3)
    a = ac.aligned_empty(host.shape, npdt)
    a[...] = host
    return a


def call(kern, ts, to, tl):
    st = kern.run(ts, to, tl)
    return st, kern.error()


def expect(kern, res, want, what, fails, contains=None):
    """res: (status, attn_last_error() read right after the call)."""
    st, msg = res
    got = kern.status_name(st)
    okay = got == want and (contains is None or contains in msg)
    if not okay:
        fails.append("%s: %s: got %s (%s), expected %s%s" % (
            kern.id, what, got, msg, want, (" containing '%s'" % contains) if contains else ""))
    return okay, got, msg


def dry_main(args, np, oracle, arts, ids, case_names):
    fails = []
    print("dry run: no CUDA call launches anything; artifacts from attnc %s (%s, %s)" % (
        arts.manifest["attnc_commit"], arts.manifest["arch"], arts.manifest["built"]))
    stale = arts.stale_specs()
    if stale:
        print("warning: examples/*.attn changed since these artifacts were built: %s "
              "(rerun bench/gpu/build_artifacts.sh)" % ", ".join(stale))
    k0 = arts.load(ids[0])
    avail, why = k0.cuda_available()
    print("attn_cuda_available() = %d (%s)" % (avail, why or "no message"))
    if avail:
        print("a CUDA driver and device are present: the kDLCUDA-claiming calls are skipped "
              "(run without --dry-run to check the kernels)")
    elif not why:
        fails.append("attn_cuda_available() returned 0 without a message")
    try:
        import torch
    except Exception:
        torch = None
    print("torch: %s" % (torch.__version__ + " (CPU tensors through dl_from_torch)"
                         if torch is not None else "not importable (torch checks skipped)"))

    # The comparison itself, on a known reference.
    selftest_compare(np, fails)

    rows = []
    nneg = 0
    for aid in ids:
        entry = arts.entries[aid]
        kern = arts.load(aid)
        desc = kern.descriptor()
        # The compiled descriptor is what the manifest (from the header) says.
        for key in ("name", "has_lse"):
            if desc[key] != entry[key]:
                fails.append("%s: descriptor %s %r, manifest %r" % (aid, key, desc[key], entry[key]))
        if [(i["name"], i["type"], i["dims"]) for i in desc["inputs"]] != \
                [(i["name"], i["type"], i["dims"]) for i in entry["inputs"]]:
            fails.append("%s: descriptor inputs %s, manifest %s" % (aid, desc["inputs"], entry["inputs"]))
        def fields(v):
            return {k: v[k] for k in ("function", "max_head_dim", "block_q", "num_threads",
                                      "shared_mem_bytes")}
        if [fields(v) for v in entry["variants"]] != desc["variants"]:
            fails.append("%s: descriptor variants differ from the manifest" % aid)
        if [fields(v) for v in entry.get("decode_variants", [])] != desc["decode_variants"] or \
                (fields(entry["merge_variant"]) if entry.get("merge_variant") else None) != \
                desc["merge_variant"]:
            fails.append("%s: descriptor decode/merge variants differ from the manifest" % aid)
        # Manifests written before ABI 9 do not list the batch variants.
        if "batch_variants" in entry and \
                [fields(v) for v in entry["batch_variants"]] != desc["batch_variants"]:
            fails.append("%s: descriptor batch variants differ from the manifest" % aid)
        if desc["inputs"][0]["type"] != entry["dtype"]:
            fails.append("%s: q is %s, built as %s" % (aid, desc["inputs"][0]["type"], entry["dtype"]))
        magic = kern.image_bytes(4)
        if magic != b"\x50\xed\x55\xba":
            fails.append("%s: image does not start with the fatbin magic (got %r)" % (aid, magic))
        var, cases = resolved_cases(np, oracle, entry, case_names)
        for ci, (case, dims, params) in enumerate(cases):
            t0 = time.perf_counter()
            ins, aux = make_inputs(np, oracle, var, dims, params, entry["dtype"], args.seed + ci, ci)
            if args.no_reference or dims["N"] * dims["M"] * dims["B"] * dims["Hq"] > args.ref_max:
                ref_note = "skipped"
            else:
                ref_o, ref_lse, counts = reference(np, oracle, var, dims, params, ins, aux)
                ok, oe, le, msg = compare(np, ref_o.astype(np.float32),
                                          ref_lse.astype(np.float32) if ref_lse is not None else None,
                                          ref_o, ref_lse, counts, TOL[entry["dtype"]])
                if not ok:
                    fails.append("%s/%s: the reference does not match itself: %s" % (aid, case.name, msg))
                ref_note = "%d empty rows" % int((counts == 0).sum())
            host = {n: host_input(np, h, dt, case.layout, n in ("q", "k", "v"))
                    for n, (_, h, dt) in ins.items()}
            B, Hq, N, Dv = dims["B"], dims["Hq"], dims["N"], dims["Dv"]
            want_lse = case.lse and entry["has_lse"]
            o = ac.aligned_empty((B, Hq, N, Dv), np.float32)
            lse = ac.aligned_empty((B, Hq, N), np.float32) if want_lse else None
            dts = {n: dt for n, (_, _, dt) in ins.items()}

            def tensors(device, override=None):
                ts = {n: ac.dl_from_numpy(a, (override or {}).get(n, dts[n]), device)
                      for n, a in host.items()}
                return ts, ac.dl_from_numpy(o, "f32", device), (
                    ac.dl_from_numpy(lse, "f32", device) if lse is not None else None)

            # 1. host memory: the device check answers first
            ts, to, tl = tensors(ac.kDLCPU)
            r1 = expect(kern, call(kern, ts, to, tl), "ATTN_ERROR_DEVICE", case.name + " (kDLCPU)", fails,
                        "expected CUDA device memory")
            # 2. claimed CUDA memory, no driver: full validation, then the driver
            r2 = ("skipped",)
            if not avail:
                ts, to, tl = tensors(ac.kDLCUDA)
                r2 = expect(kern, call(kern, ts, to, tl), "ATTN_ERROR_DRIVER", case.name + " (kDLCUDA, no driver)", fails)
                nneg += negative_controls(np, kern, entry, tensors, host, o, fails)
            # 3. torch CPU tensors through dl_from_torch
            if torch is not None:
                tt = {n: torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
                      if dts[n] == "bf16" else torch.from_numpy(np.ascontiguousarray(a))
                      for n, a in host.items()}
                if dts["q"] == "bf16":
                    # torch's bf16 rounding = ours
                    f = ins["q"][0]
                    tq = torch.from_numpy(np.ascontiguousarray(f)).to(torch.bfloat16)
                    if not torch.equal(tq, tt["q"]):
                        fails.append("%s/%s: bf16 rounding differs from torch's" % (aid, case.name))
                to_t = torch.from_numpy(o)
                res = call(kern, {n: ac.dl_from_torch(t) for n, t in tt.items()}, ac.dl_from_torch(to_t),
                           ac.dl_from_torch(torch.from_numpy(lse)) if lse is not None else None)
                expect(kern, res, "ATTN_ERROR_DEVICE", case.name + " (torch CPU)", fails)
            rows.append((aid, case.name, dims, case.layout, want_lse, r1[1], r2[1] if len(r2) > 1 else r2[0],
                         ref_note, time.perf_counter() - t0))
            print("%-26s %-22s kDLCPU: %-18s kDLCUDA: %-18s ref: %s" % (
                aid, case.name, r1[1], rows[-1][6], ref_note), flush=True)
        for ci, case in enumerate(bc.BATCH_CASES):
            if (case_names and case.name not in case_names) or \
                    not bc.eligible(entry, var, case):
                continue
            t0 = time.perf_counter()
            s1, s2 = bc.run_dry(np, oracle, var, kern, entry, case, args.seed + ci, round_to,
                                compare, TOL[entry["dtype"]], avail, expect, fails)
            rows.append((aid, case.name, {}, "batch", True, s1, s2, "-", time.perf_counter() - t0))
            print("%-26s %-22s kDLCPU: %-18s kDLCUDA: %-18s (attn_cuda_run_batch)" % (
                aid, case.name, s1, s2), flush=True)
    print()
    print("%d artifacts, %d cases (each: kDLCPU, kDLCUDA%s), %d wrong calls rejected as expected"
          % (len(ids), len(rows), ", torch CPU" if torch is not None else "", nneg))
    for f in fails:
        print("FAIL: " + f)
    print("DRY RUN PASS" if not fails else "DRY RUN FAIL")
    return 0 if not fails else 1


def negative_controls(np, kern, entry, tensors, host, o, fails):
    """Wrong calls must be rejected: proves the OK path above is not vacuous.
    Returns how many were rejected as expected."""
    checks = []
    other = "f16" if entry["dtype"] == "bf16" else "bf16"
    ts, to, tl = tensors(ac.kDLCUDA, {"q": other})
    checks.append((call(kern, ts, to, tl), "ATTN_ERROR_DTYPE", "q mislabelled " + other, "q:"))
    if host["k"].shape[3] != host["v"].shape[3]:
        ts, to, tl = tensors(ac.kDLCUDA)
        ts["k"], ts["v"] = ts["v"], ts["k"]
        checks.append((call(kern, ts, to, tl), "ATTN_ERROR_SHAPE", "k and v swapped", None))
    if not entry["has_lse"]:
        ts, to, tl = tensors(ac.kDLCUDA)
        lse = ac.aligned_empty(o.shape[:3], np.float32)
        checks.append((call(kern, ts, to, ac.dl_from_numpy(lse, "f32", ac.kDLCUDA)),
                       "ATTN_ERROR_UNSUPPORTED", "lse for a kernel without lse", "lse"))
    if "doc" in host:
        ts, to, tl = tensors(ac.kDLCUDA, {"doc": "f32"})
        checks.append((call(kern, ts, to, tl), "ATTN_ERROR_DTYPE", "doc as f32", "doc"))
    ts, to, tl = tensors(ac.kDLCUDA)
    ts["q"].byte_offset = 2
    checks.append((call(kern, ts, to, tl), "ATTN_ERROR_LAYOUT", "q misaligned", "16-byte"))
    ts, to, tl = tensors(ac.kDLCUDA)
    ts["v"].device.device_id = 1
    checks.append((call(kern, ts, to, tl), "ATTN_ERROR_DEVICE", "v on another device", "v:"))
    return sum(1 for res, want, what, contains in checks
               if expect(kern, res, want, what, fails, contains)[0])


def selftest_compare(np, fails):
    rng = np.random.default_rng(5)
    ref_o = rng.standard_normal((1, 2, 5, 4))
    ref_lse = rng.standard_normal((1, 2, 5)) + 3
    counts = np.full((1, 2, 5), 3)
    ref_o[0, 0, 1] = 0
    ref_lse[0, 0, 1] = -np.inf
    counts[0, 0, 1] = 0
    good = ref_o * (1 + 1e-3), ref_lse + 1e-3
    checks = [("bf16-level noise", good, True)]
    o = good[0].copy(); o[0, 1, 2, 3] = np.nan
    checks.append(("a NaN in o", (o, good[1]), False))
    o = good[0].copy(); o[0, 1, 2] += 0.1
    checks.append(("a wrong row", (o, good[1]), False))
    o = good[0].copy(); o[0, 0, 1, 0] = 1e-30
    checks.append(("an empty row not 0", (o, good[1]), False))
    l = good[1].copy(); l[0, 0, 1] = 0.0
    checks.append(("lse finite where -inf", (good[0], l), False))
    l = good[1].copy(); l[0, 1, 4] = -np.inf
    checks.append(("lse -inf where finite", (good[0], l), False))
    for what, (o, l), want in checks:
        ok, _, _, msg = compare(np, o, l, ref_o, ref_lse, counts, 2e-2)
        if ok != want:
            fails.append("compare() self-test '%s': ok=%s (%s)" % (what, ok, msg))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", default=os.environ.get("ATTN_GPU_ARTIFACTS", ac.DEFAULT_ARTIFACTS))
    ap.add_argument("--only", help="comma-separated artifact ids (default: all)")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000,
                    help="base seed (default: from the clock: fresh inputs every run)")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: everything up to the CUDA calls")
    ap.add_argument("--no-reference", action="store_true", help="dry run: skip the oracle")
    ap.add_argument("--ref-max", type=int, default=64 * 10 ** 6,
                    help="dry run: skip the oracle above B*Hq*N*M (default 64e6)")
    ap.add_argument("--sanitize", action="store_true",
                    help="also rerun small cases under compute-sanitizer")
    ap.add_argument("--sanitize-tools", default="memcheck",
                    help="compute-sanitizer tools for --sanitize (default memcheck; e.g. memcheck,racecheck)")
    ap.add_argument("--list", action="store_true", help="print the artifacts and cases")
    ap.add_argument("--mock", choices=("ok", "unwritten", "race", "wrong", "sticky"),
                    help=argparse.SUPPRESS)  # self-test of the GPU path on CPU (torch needed)
    ap.add_argument("--rows-json", help=argparse.SUPPRESS)  # child process: rows to this file
    args = ap.parse_args()
    np, oracle = import_numpy_oracle()
    arts = ac.Artifacts(args.artifacts)
    args.artifacts = arts.dir
    ids = arts.ids()
    if args.only:
        want = [x for x in args.only.split(",") if x]
        unknown = [x for x in want if x not in arts.entries]
        if unknown:
            ap.error("unknown artifact(s) %s (have: %s)" % (", ".join(unknown), ", ".join(ids)))
        ids = [i for i in ids if i in want]
    case_names = None
    if args.cases:
        case_names = set(x for x in args.cases.split(",") if x)
        known = [c.name for c in CASES] + [c.name for c in bc.BATCH_CASES]
        unknown = case_names - set(known)
        if unknown:
            ap.error("unknown case(s) %s (have: %s)" % (", ".join(sorted(unknown)), ", ".join(known)))
    if args.list:
        for aid in ids:
            var, cases = resolved_cases(np, oracle, arts.entries[aid], case_names)
            for c, d, p in cases:
                print("%-26s %-22s %s %s" % (aid, c.name, ",".join("%s=%d" % kv for kv in d.items()), p))
        return 0
    print("seed %d" % args.seed)
    if args.dry_run:
        return dry_main(args, np, oracle, arts, ids, case_names)
    return gpu_main(args, np, oracle, arts, ids, case_names)


if __name__ == "__main__":
    sys.exit(main())
