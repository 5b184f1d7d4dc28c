#!/usr/bin/env python3
"""check_gpu_backward.py - the CUDA backward kernels on a GPU, against the CPU's.

On the GPU machine (python3 with torch and numpy; no build tree needed):

    python3 bench/gpu/check_gpu_backward.py [--artifacts bench/gpu/artifacts/backward]
        [--only ID,...] [--cases NAME,...] [--repeat R]

For every artifact of bench/gpu/build_backward_artifacts.sh (a spec with its
CUDA forward and backward kernels and its CPU forward and backward kernels,
linked in one library) and every case below, it draws random q, k, v, dout
(rounded to bf16) and aux inputs (i32: sorted document ids; f32: N(0, 0.25)),
then

  GPU: attn_cuda_run (o, lse), then attn_cuda_run_backward on them, with
       o, lse, dq, dk, dv and the aux gradients poisoned with NaN first (the
       runtime must zero dq and the aux gradients itself); torch CUDA
       tensors, the current stream, one synchronize;
  CPU: attn_cpu_run and attn_cpu_run_backward on the same rounded values
       (f32 kernels; the test suite checks them against the float64
       reference evaluator on these specs);

and compares: every gradient's max|gpu - cpu| / max|cpu| <= 3e-2 (and o's
<= 2e-2), no NaN anywhere, dq rows exactly 0 where the CPU's lse is -inf
(rows without a visible key). With --repeat R > 0 it also times R backward
launches (CUDA events) and prints the mean. One table row per (artifact,
case); exit 1 on any failure.

With --bench instead, it times the backward of dense and causal (also with
16 query rows per step: *_tq16; bf16, H = 16, D = 64 and 128, N = 1024, 4096,
16384 with B = 16384 / N) against
torch SDPA's FlashAttention-2 backward (autograd.grad of the same output,
the forward excluded from both): alternating samples, CUDA events, medians
of 15; TFLOP/s counts the backward's 2.5x the forward's multiply-adds over
the visible pairs (causal: N (N + 1) / 2 per head).

Without a GPU:

    python3 bench/gpu/check_gpu_backward.py --dry-run

runs the CPU forward and backward for real on every case, checks the
comparison on perturbed copies, and calls attn_cuda_run_backward with the
GPU run's argument lists over host memory: as kDLCPU tensors it must answer
ATTN_ERROR_DEVICE, and claimed as kDLCUDA (only when no driver is present,
so nothing is launched) it must validate every tensor and stop at
ATTN_ERROR_DRIVER. The dry run needs numpy only.
"""

import argparse
import ctypes
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import attnc_cuda as ac  # noqa: E402

GRAD_TOL = 3e-2
O_TOL = 2e-2
ATTN_OK, ATTN_ERROR_DEVICE, ATTN_ERROR_DRIVER = 0, 4, 8

# name, dims. M != N both ways (MQA with M < N leaves causal rows empty),
# Dqk != Dv, head dims padded into both variants, GQA 4:1 at N = 1030.
CASES = [
    ("gqa_300", dict(B=2, Hq=4, Hkv=2, N=300, M=300, Dqk=64, Dv=64)),
    ("d128_77x200", dict(B=1, Hq=2, Hkv=1, N=77, M=200, Dqk=128, Dv=96)),
    ("mqa_300x77", dict(B=1, Hq=4, Hkv=1, N=300, M=77, Dqk=64, Dv=40)),
    ("gqa_1030_d128", dict(B=1, Hq=8, Hkv=2, N=1030, M=1030, Dqk=128, Dv=128)),
]

P = ctypes.POINTER(ac.DLTensor)


class Library:
    """One artifact's libkernel.so: the four descriptors and the runtime's
    entry points (through the library's dependency on libattn_runtime)."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.desc = {}
        for k in ("cuda_fwd", "cuda_bwd", "cpu_fwd", "cpu_bwd"):
            f = getattr(self.lib, "attn_bwd_%s_desc" % k)
            f.restype = ctypes.c_void_p
            self.desc[k] = f()
        vp = ctypes.c_void_p
        self.cuda_run = self._fn("attn_cuda_run", [vp, vp, P, P, vp])
        self.cpu_run = self._fn("attn_cpu_run", [vp, vp, P, P, vp])
        self.cuda_bwd = self._fn("attn_cuda_run_backward",
                                 [vp, vp, P, P, P, P, P, P, P, vp, vp])
        self.cpu_bwd = self._fn("attn_cpu_run_backward",
                                [vp, vp, P, P, P, P, P, P, P, vp, vp])
        self.last_error = self._fn("attn_last_error", [], ctypes.c_char_p)
        self.available = self._fn("attn_cuda_available", [], ctypes.c_int32)


    def _fn(self, name, argtypes, restype=ctypes.c_int):
        f = getattr(self.lib, name)
        f.argtypes = argtypes
        f.restype = restype
        return f

    def error(self):
        return self.last_error().decode()


def ptr(t):
    return ctypes.pointer(t) if t is not None else None


def ptr_array(ts):
    """A C array of DLTensor pointers (kept alive by the caller)."""
    return (P * len(ts))(*[ctypes.pointer(t) for t in ts])


def make_case(np, art, dims, seed):
    """Host values: q, k, v, dout rounded to bf16 (float32 values and bf16
    bits), aux inputs by declared type."""
    rng = np.random.default_rng(seed)
    B, Hq, Hkv, N, M, Dqk, Dv = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))
    shapes = {"q": (B, Hq, N, Dqk), "k": (B, Hkv, M, Dqk), "v": (B, Hkv, M, Dv),
              "dout": (B, Hq, N, Dv)}
    vals, bits = {}, {}
    for name, shape in shapes.items():
        x = rng.standard_normal(shape).astype(np.float32) * (1.5 if name == "q" else 1.0)
        b = ac.bf16_bits(x).reshape(shape)
        bits[name] = b
        vals[name] = ac.bf16_to_f32(b).reshape(shape)
    aux = {}
    for inp in art["inputs"][3:]:
        shape = tuple(d if isinstance(d, int) else dims[d] for d in inp["dims"])
        if inp["type"] == "i32":
            aux[inp["name"]] = np.sort(rng.integers(0, 4, size=shape), axis=-1).astype(np.int32)
        else:
            aux[inp["name"]] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return vals, bits, aux


def cpu_reference(np, lib, art, dims, vals, aux):
    """The CPU kernels' o, lse and gradients (f32 inputs)."""
    B, Hq, Hkv, N, M, Dqk, Dv = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))
    host = {n: np.ascontiguousarray(vals[n]) for n in ("q", "k", "v", "dout")}
    ins = [ac.dl_from_numpy(host[n], "f32") for n in ("q", "k", "v")]
    ins += [ac.dl_from_numpy(aux[i["name"]], i["type"]) for i in art["inputs"][3:]]
    arr = ptr_array(ins)
    o = np.full((B, Hq, N, Dv), np.nan, np.float32)
    lse = np.full((B, Hq, N), np.nan, np.float32)
    to, tl = ac.dl_from_numpy(o, "f32"), ac.dl_from_numpy(lse, "f32")
    softmax = art["softmax"]
    st = lib.cpu_run(lib.desc["cpu_fwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                     ptr(tl) if softmax else None, None)
    if st != ATTN_OK:
        raise RuntimeError("attn_cpu_run: %d: %s" % (st, lib.error()))
    grads = {"dq": np.zeros((B, Hq, N, Dqk), np.float32),
             "dk": np.zeros((B, Hkv, M, Dqk), np.float32),
             "dv": np.zeros((B, Hkv, M, Dv), np.float32)}
    for g in art["grad_inputs"]:
        grads["d" + g] = np.zeros_like(aux[g])
    tg = {k: ac.dl_from_numpy(v, "f32") for k, v in grads.items()}
    daux = ptr_array([tg["d" + g] for g in art["grad_inputs"]]) if art["grad_inputs"] else None
    tdo = ac.dl_from_numpy(host["dout"], "f32")
    st = lib.cpu_bwd(lib.desc["cpu_bwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                     ptr(tl) if softmax else None, ptr(tdo), None, ptr(tg["dq"]),
                     ptr(tg["dk"]), ptr(tg["dv"]),
                     ctypes.cast(daux, ctypes.c_void_p) if daux else None, None)
    if st != ATTN_OK:
        raise RuntimeError("attn_cpu_run_backward: %d: %s" % (st, lib.error()))
    return o, (lse if softmax else None), grads


def gpu_run(np, lib, art, dims, bits, aux, repeat):
    """The CUDA kernels' o, lse and gradients, and the backward's mean time
    (ms) over `repeat` further launches (None when repeat is 0)."""
    import torch
    dev = torch.device("cuda")
    B, Hq, Hkv, N, M, Dqk, Dv = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))

    def bf16(b):
        return torch.from_numpy(b.view(np.int16).copy()).to(dev).view(torch.bfloat16)

    t = {n: bf16(bits[n]) for n in ("q", "k", "v", "dout")}
    ta = {n: torch.from_numpy(a.copy()).to(dev) for n, a in aux.items()}
    nan = float("nan")
    o = torch.full((B, Hq, N, Dv), nan, device=dev)
    lse = torch.full((B, Hq, N), nan, device=dev)
    grads = {"dq": torch.full((B, Hq, N, Dqk), nan, device=dev),
             "dk": torch.full((B, Hkv, M, Dqk), nan, device=dev),
             "dv": torch.full((B, Hkv, M, Dv), nan, device=dev)}
    for g in art["grad_inputs"]:
        grads["d" + g] = torch.full(tuple(ta[g].shape), nan, device=dev)
    ins = [ac.dl_from_torch(t[n]) for n in ("q", "k", "v")]
    ins += [ac.dl_from_torch(ta[i["name"]]) for i in art["inputs"][3:]]
    arr = ptr_array(ins)
    to, tl = ac.dl_from_torch(o), ac.dl_from_torch(lse)
    softmax = art["softmax"]
    stream = torch.cuda.current_stream().cuda_stream
    st = lib.cuda_run(lib.desc["cuda_fwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                      ptr(tl) if softmax else None, ctypes.c_void_p(stream))
    if st != ATTN_OK:
        raise RuntimeError("attn_cuda_run: %d: %s" % (st, lib.error()))
    tg = {k: ac.dl_from_torch(v) for k, v in grads.items()}
    daux = ptr_array([tg["d" + g] for g in art["grad_inputs"]]) if art["grad_inputs"] else None
    tdo = ac.dl_from_torch(t["dout"])

    def backward():
        return lib.cuda_bwd(lib.desc["cuda_bwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                            ptr(tl) if softmax else None, ptr(tdo), None, ptr(tg["dq"]),
                            ptr(tg["dk"]), ptr(tg["dv"]),
                            ctypes.cast(daux, ctypes.c_void_p) if daux else None,
                            ctypes.c_void_p(stream))
    st = backward()
    if st != ATTN_OK:
        raise RuntimeError("attn_cuda_run_backward: %d: %s" % (st, lib.error()))
    torch.cuda.synchronize()
    out = {k: v.cpu().numpy() for k, v in grads.items()}
    ms = None
    if repeat > 0:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            backward()
        stop.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(stop) / repeat
    return o.cpu().numpy(), (lse.cpu().numpy() if softmax else None), out, ms


def compare(np, got_o, got, ref_o, ref_lse, ref):
    """-> (ok, {name: rel err}, problems)."""
    errs, problems = {}, []
    pairs = [("o", got_o, ref_o, O_TOL)] + [(k, got[k], ref[k], GRAD_TOL) for k in ref]
    for name, g, r, tol in pairs:
        g = np.asarray(g, np.float64)
        r = np.asarray(r, np.float64)
        if np.isnan(g).any():
            problems.append("%s: %d NaN" % (name, int(np.isnan(g).sum())))
        denom = float(np.abs(r).max()) or 1.0
        with np.errstate(invalid="ignore"):
            e = float(np.nanmax(np.abs(g - r))) / denom if g.size else 0.0
        errs[name] = e
        if not e <= tol:
            problems.append("%s rel err %.3g > %g" % (name, e, tol))
    if ref_lse is not None:
        empty = np.isneginf(ref_lse)
        if empty.any() and not (np.asarray(got["dq"])[empty] == 0).all():
            problems.append("dq != 0 on rows without a visible key")
    return not problems, errs, problems


def dry_run_cuda_calls(np, lib, art, dims, bits, aux):
    """The GPU run's argument lists over host memory: kDLCPU must give
    ATTN_ERROR_DEVICE; claimed kDLCUDA (no driver here) ATTN_ERROR_DRIVER."""
    B, Hq, Hkv, N, M, Dqk, Dv = (dims[k] for k in ("B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"))
    have_driver = bool(lib.available())
    results = []
    for device in (ac.kDLCPU, ac.kDLCUDA):
        if device == ac.kDLCUDA and have_driver:
            results.append("claimed-cuda skipped (a driver is present)")
            continue

        def host(a, dtype):
            b = ac.aligned_empty(a.shape, a.dtype)
            b[...] = a
            return ac.dl_from_numpy(b, dtype, device)
        ins = [host(bits[n], "bf16") for n in ("q", "k", "v")]
        ins += [host(aux[i["name"]], i["type"]) for i in art["inputs"][3:]]
        arr = ptr_array(ins)
        o = host(np.zeros((B, Hq, N, Dv), np.float32), "f32")
        lse = host(np.zeros((B, Hq, N), np.float32), "f32")
        dout = host(bits["dout"], "bf16")
        g = [host(np.zeros(s, np.float32), "f32")
             for s in ((B, Hq, N, Dqk), (B, Hkv, M, Dqk), (B, Hkv, M, Dv))]
        da = [host(np.zeros(aux[n].shape, np.float32), "f32") for n in art["grad_inputs"]]
        daux = ptr_array(da) if da else None
        st = lib.cuda_bwd(lib.desc["cuda_bwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(o),
                          ptr(lse) if art["softmax"] else None, ptr(dout), None,
                          ptr(g[0]), ptr(g[1]), ptr(g[2]),
                          ctypes.cast(daux, ctypes.c_void_p) if daux else None, None)
        want = ATTN_ERROR_DEVICE if device == ac.kDLCPU else ATTN_ERROR_DRIVER
        if st != want:
            raise RuntimeError("attn_cuda_run_backward with %s tensors: status %d, expected "
                               "%d: %s" % ("host" if device == ac.kDLCPU else "claimed-CUDA",
                                           st, want, lib.error()))
        results.append("%s -> %s" % ("host" if device == ac.kDLCPU else "claimed-cuda",
                                     "DEVICE" if want == ATTN_ERROR_DEVICE else "DRIVER"))
    return results


# The artifacts --bench times (the _tq16 ones: 16 query rows per step).
BENCH_VARIANTS = ("dense", "causal", "dense_tq16", "causal_tq16")
BENCH_N = (1024, 4096, 16384)


def bench_flops(variant, B, H, N, D):
    """The backward's floating-point operations: 2.5 times the forward's
    4 D per visible pair (QKᵀ, dO Vᵀ, Pᵀ dO, dSᵀ Q, dS K)."""
    pairs = N * N if variant.startswith("dense") else N * (N + 1) // 2
    return 2.5 * 4 * D * pairs * B * H


def median_times(torch, fns, runs=15):
    """{name: median ms per call}, samples alternating between the calls."""
    for f in fns.values():
        f()
    torch.cuda.synchronize()
    samples = {n: [] for n in fns}
    names = list(fns)
    for r in range(runs):
        for n in names[r % len(names):] + names[:r % len(names)]:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fns[n]()
            e.record()
            e.synchronize()
            samples[n].append(s.elapsed_time(e))
    return {n: sorted(v)[len(v) // 2] for n, v in samples.items()}


def bench(a, manifest):
    """attnc's CUDA backward vs SDPA's flash backward; one row per shape."""
    import numpy as np
    arts = {x["id"]: x for x in manifest["artifacts"]}
    rows = []
    for variant in BENCH_VARIANTS:
        if variant not in arts:
            continue
        art = arts[variant]
        lib = Library(os.path.join(a.artifacts, art["library"]))
        for D in (64, 128):
            for N in BENCH_N:
                B, H = max(1, 16384 // N), 16
                flops = bench_flops(variant, B, H, N, D)
                if a.dry_run:
                    rows.append("%-7s D=%-3d N=%-5d B=%-2d %.1f GFLOP (dry run: not timed)"
                                % (variant, D, N, B, flops / 1e9))
                    continue
                rows.append(bench_one(np, lib, art, variant, B, H, N, D, flops))
                print(rows[-1])
    if a.dry_run:
        print("\n".join(rows))
    return 0


def bench_one(np, lib, art, variant, B, H, N, D, flops):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    dev = torch.device("cuda")
    dims = dict(B=B, Hq=H, Hkv=H, N=N, M=N, Dqk=D, Dv=D)
    q, k, v, dout = (torch.randn(B, H, N, D, device=dev, dtype=torch.bfloat16)
                     for _ in range(4))
    # attnc: its forward once (o, lse), then the timed backward.
    o = torch.empty(B, H, N, D, device=dev)
    lse = torch.empty(B, H, N, device=dev)
    grads = [torch.empty(B, H, N, D, device=dev) for _ in range(3)]
    ins = [ac.dl_from_torch(x) for x in (q, k, v)]
    arr = ptr_array(ins)
    to, tl, tdo = ac.dl_from_torch(o), ac.dl_from_torch(lse), ac.dl_from_torch(dout)
    tg = [ac.dl_from_torch(g) for g in grads]
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    st = lib.cuda_run(lib.desc["cuda_fwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                      ptr(tl), stream)
    if st != ATTN_OK:
        return "%-7s D=%-3d N=%-5d attnc forward failed: %s" % (variant, D, N, lib.error())

    def attnc_bwd():
        st = lib.cuda_bwd(lib.desc["cuda_bwd"], ctypes.cast(arr, ctypes.c_void_p), ptr(to),
                          ptr(tl), ptr(tdo), None, ptr(tg[0]), ptr(tg[1]), ptr(tg[2]),
                          None, stream)
        if st != ATTN_OK:
            raise RuntimeError(lib.error())
    # SDPA: the same inputs with grads, the flash backend forced.
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = F.scaled_dot_product_attention(qq, kk, vv,
                                             is_causal=variant.startswith("causal"))

    def sdpa_bwd():
        torch.autograd.grad(out, (qq, kk, vv), dout, retain_graph=True)
    t = median_times(torch, {"attnc": attnc_bwd, "sdpa": sdpa_bwd})
    # The gradients agree (dq after a fresh attnc call; SDPA's in bf16).
    attnc_bwd()
    dq_ref = torch.autograd.grad(out, (qq,), dout, retain_graph=True)[0].float()
    err = float((grads[0] - dq_ref).abs().max()) / (float(dq_ref.abs().max()) or 1.0)
    return ("%-7s D=%-3d N=%-5d B=%-2d attnc bwd %.3f ms (%.0f TFLOP/s), SDPA flash bwd "
            "%.3f ms (%.0f TFLOP/s), SDPA/attnc %.2fx, dq rel err vs SDPA %.1e%s" %
            (variant, D, N, B, t["attnc"], flops / t["attnc"] / 1e9, t["sdpa"],
             flops / t["sdpa"] / 1e9, t["sdpa"] / t["attnc"], err,
             "" if err <= 5e-2 else " MISMATCH"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifacts", default=os.path.join(HERE, "artifacts", "backward"))
    ap.add_argument("--only", default="")
    ap.add_argument("--cases", default="")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--bench", action="store_true",
                    help="time dense and causal against SDPA's flash backward")
    a = ap.parse_args()
    import numpy as np

    path = os.path.join(a.artifacts, "manifest.json")
    if not os.path.exists(path):
        raise SystemExit("no %s: run bench/gpu/build_backward_artifacts.sh (or "
                         "build_artifacts.sh) first" % path)
    manifest = json.load(open(path))
    print("backward artifacts from attnc %s (%s), %s" %
          (manifest["attnc_commit"], manifest["built"], manifest["arch"]))
    if a.bench:
        if not a.dry_run:
            import torch
            print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
        return bench(a, manifest)
    only = set(x for x in a.only.split(",") if x)
    cases = [c for c in CASES if not a.cases or c[0] in a.cases.split(",")]
    if not a.dry_run:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("torch sees no CUDA device (use --dry-run without a GPU)")
        print("device:", torch.cuda.get_device_name(0))
    failures = 0
    t0 = time.time()
    for art in manifest["artifacts"]:
        if only and art["id"] not in only:
            continue
        lib = Library(os.path.join(a.artifacts, art["library"]))
        # A causal linear attention's k and v have N rows (its keys are its
        # queries): the cases with M != N do not apply.
        keys_are_queries = art["inputs"][1]["dims"][2] == "N"
        for ci, (cname, dims) in enumerate(cases):
            if keys_are_queries and dims["M"] != dims["N"]:
                continue
            seed = 1000 * ci + sum(map(ord, art["id"]))
            vals, bits, aux = make_case(np, art, dims, seed)
            row = "%-20s %-14s" % (art["id"], cname)
            try:
                ref_o, ref_lse, ref = cpu_reference(np, lib, art, dims, vals, aux)
                if a.dry_run:
                    # The comparison must flag a perturbed gradient and a NaN.
                    bad = {k: v.copy() for k, v in ref.items()}
                    bad["dk"].flat[0] += 0.1 * (float(np.abs(ref["dk"]).max()) or 1.0)
                    ok1, _, _ = compare(np, ref_o, ref, ref_o, ref_lse, ref)
                    ok2, _, _ = compare(np, ref_o, bad, ref_o, ref_lse, ref)
                    bad["dk"].flat[0] = np.nan
                    ok3, _, _ = compare(np, ref_o, bad, ref_o, ref_lse, ref)
                    if not ok1 or ok2 or ok3:
                        raise RuntimeError("the comparison does not separate good from bad")
                    calls = dry_run_cuda_calls(np, lib, art, dims, bits, aux)
                    print(row, "DRY OK (cpu fwd+bwd ran; %s)" % ", ".join(calls))
                    continue
                o, lse, got, ms = gpu_run(np, lib, art, dims, bits, aux, a.repeat)
                ok, errs, problems = compare(np, o, got, ref_o, ref_lse, ref)
                line = row + " " + ", ".join("%s %.1e" % (k, v) for k, v in errs.items())
                if ms is not None:
                    line += ", bwd %.3f ms" % ms
                print(line + (" -> ok" if ok else " -> FAIL: " + "; ".join(problems)))
                failures += not ok
            except Exception as e:  # report and go on: one row per case
                print(row, "-> FAIL:", e)
                failures += 1
    print("%s (%d failure(s), %.0f s)" % (("DRY RUN PASS" if a.dry_run else "PASS")
                                        if not failures else "FAIL", failures, time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
