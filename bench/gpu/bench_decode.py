#!/usr/bin/env python3
"""bench_decode.py - attnc's CUDA decode schedule vs SDPA and FlexAttention.

On the GPU machine (python3 with torch; the prebuilt bench/gpu/artifacts):

    python3 bench/gpu/bench_decode.py [--json rows.json] [--runs 15]
    python3 bench/gpu/bench_decode.py --dry-run      # no GPU: numpy only

Rows (issue 14's decode grid, bf16, D = 128, bottom-right causal, the
`causal` artifact): B in {1, 8}, N in {1, 4, 16}, M in {4096, 32768}, GQA
32/8 and MHA 8/8. Per row, on the same inputs (torch.randn):

  attnc          attn_cuda_run: N <= 16 takes the split-KV decode schedule
                 (decode kernel + merge, the split count from the driver's
                 occupancy), o in float32, no lse.
  attnc-prefill  the same call under ATTN_GPU_SCHEDULE=prefill (one CTA per
                 64 queries of one head): what the decode schedule gains.
  attnc-paged    attn_cuda_run_batch on the same K and V as a paged cache
                 (vLLM's NHD pools of 16 rows, pages shuffled, a block table
                 and kv_lens on the device): what the page indirection costs.
  SDPA           scaled_dot_product_attention(enable_gqa=True), N = 1
                 without a mask, N > 1 with causal_lower_right(N, M).
  Flex           torch.compile(flex_attention) with a BlockMask of the same
                 bottom-right causal mask, enable_gqa=True.

Timing as bench_gpu.py (alternating samples bracketed by CUDA events,
median per call). GB/s counts the bytes a decode must move: K and V
(B * Hkv * M * D * 2 * 2) plus q and o; "%peak" divides by a device-to-
device copy's bandwidth (read + write) measured in the same run. Checks: each
peer's o against attnc's (MISMATCH above 2e-2 relative to max|o|).

--dry-run (no GPU): builds attnc's argument lists for every row (the dense
call and the paged batch) over fake addresses and checks that attn_cuda_run
and attn_cuda_run_batch validate them (host tensors -> ATTN_ERROR_DEVICE;
claimed CUDA tensors without a driver -> ATTN_ERROR_DRIVER), and that the
artifact carries the decode schedule.
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import attnc_cuda as ac  # noqa: E402

D = 128
PAGE = 16
GRID = [(B, Hq, Hkv, N, M)
        for (Hq, Hkv) in ((32, 8), (8, 8))
        for B in (1, 8)
        for N in (1, 4, 16)
        for M in (4096, 32768)]


def row_bytes(B, Hq, Hkv, N, M):
    kv = 2 * B * Hkv * M * D * 2
    return kv + B * Hq * N * D * 2 + B * Hq * N * D * 4


def parse_rows(text):
    rows = []
    for part in text.split(";"):
        B, Hq, Hkv, N, M = (int(x) for x in part.split(","))
        rows.append((B, Hq, Hkv, N, M))
    return rows


def dry_main(args):
    arts = ac.Artifacts(args.artifacts)
    kern = arts.load(args.artifact)
    desc = kern.descriptor()
    fails = []
    if desc["decode_max_n"] <= 0 or not desc["decode_variants"] or not desc["merge_variant"]:
        fails.append("%s carries no decode schedule (decode_max_n %d)" % (
            args.artifact, desc["decode_max_n"]))
    print("artifact %s: decode_max_n %d, decode variants %s, merge %s" % (
        args.artifact, desc["decode_max_n"],
        ",".join(v["function"] for v in desc["decode_variants"]),
        desc["merge_variant"]["function"] if desc["merge_variant"] else None))
    avail, why = kern.cuda_available()
    def tensor(slot, shape, dtype, dev):
        # Fake, far-apart, aligned addresses: attn_cuda_run only validates
        # them (the CUDA claim stops at loading the driver, checked absent
        # below), so the grid's gigabytes are never allocated here.
        strides, n = [], 1
        for x in reversed(shape):
            strides.insert(0, n)
            n *= x
        return ac.make_dltensor((slot + 1) << 40, shape, strides, dtype, dev)

    for (B, Hq, Hkv, N, M) in args.rows:
        got = []
        for dev in (ac.kDLCPU, ac.kDLCUDA):
            if dev == ac.kDLCUDA and avail:
                continue
            ts = {"q": tensor(0, (B, Hq, N, D), "bf16", dev),
                  "k": tensor(1, (B, Hkv, M, D), "bf16", dev),
                  "v": tensor(2, (B, Hkv, M, D), "bf16", dev)}
            st = kern.run(ts, tensor(3, (B, Hq, N, D), "f32", dev), None)
            got.append(kern.status_name(st))
            if M % PAGE == 0:
                pages = B * M // PAGE
                ts["k"] = tensor(1, (pages, PAGE, Hkv, D), "bf16", dev)
                ts["v"] = tensor(2, (pages, PAGE, Hkv, D), "bf16", dev)
                tables = {"block_table": tensor(4, (B, M // PAGE), "i32", dev),
                          "kv_lens": tensor(5, (B,), "i32", dev)}
                st = kern.prepare_batch(ts, tables, N, M, tensor(3, (B, Hq, N, D), "f32", dev))()
                got.append("paged:" + kern.status_name(st))
        want = []
        for st in ["ATTN_ERROR_DEVICE"] + ([] if avail else ["ATTN_ERROR_DRIVER"]):
            want += [st] + (["paged:" + st] if M % PAGE == 0 else [])
        ok = got == want
        if not ok:
            fails.append("B=%d Hq=%d Hkv=%d N=%d M=%d: got %s, expected %s (%s)" % (
                B, Hq, Hkv, N, M, got, want, kern.error()))
        print("B=%d Hq=%d Hkv=%d N=%d M=%d: %s %s" % (B, Hq, Hkv, N, M, " ".join(got),
                                                    "ok" if ok else "FAIL"))
    for f in fails:
        print("FAIL: " + f)
    print("DRY RUN %s (%d rows)" % ("FAIL" if fails else "PASS", len(args.rows)))
    return 1 if fails else 0


def copy_bandwidth(torch):
    """GB/s of a device-to-device copy (bytes read + written)."""
    n = 1 << 28  # 512 MiB of bf16
    x = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        y.copy_(x)
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e))
    return 2 * n * 2 / (best * 1e-3) / 1e9


def gpu_main(args):
    import torch
    import torch.nn.functional as F
    from bench_gpu import time_impls, rel_err
    from torch.nn.attention.flex_attention import flex_attention, create_block_mask
    from torch.nn.attention.bias import causal_lower_right
    torch._dynamo.config.cache_size_limit = 256
    arts = ac.Artifacts(args.artifacts)
    kern = arts.load(args.artifact)
    peak = copy_bandwidth(torch)
    dev = torch.cuda.get_device_name()
    print("device %s, copy bandwidth %.0f GB/s (read + write), torch %s; artifacts from attnc %s" % (
        dev, peak, torch.__version__, arts.manifest["attnc_commit"]))
    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for (B, Hq, Hkv, N, M) in args.rows:
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, Hq, N, D, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(B, Hkv, M, D, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, Hkv, M, D, device="cuda", dtype=torch.bfloat16, generator=g)
        o = torch.empty(B, Hq, N, D, device="cuda", dtype=torch.float32)
        stream = torch.cuda.current_stream().cuda_stream
        call = kern.prepare({"q": ac.dl_from_torch(q), "k": ac.dl_from_torch(k),
                             "v": ac.dl_from_torch(v)}, ac.dl_from_torch(o), None)
        # The same K and V as a paged cache: [pages, PAGE, Hkv, D] pools,
        # sequence b's page j at a shuffled slot.
        per = M // PAGE
        perm = torch.randperm(B * per, device="cuda", generator=g)
        pools = {}
        for name, x in (("k", k), ("v", v)):
            pool = torch.empty(B * per, PAGE, Hkv, D, device="cuda", dtype=torch.bfloat16)
            pool[perm] = x.permute(0, 2, 1, 3).reshape(B * per, PAGE, Hkv, D)
            pools[name] = pool
        table = perm.view(B, per).to(torch.int32).contiguous()
        lens = torch.full((B,), M, device="cuda", dtype=torch.int32)
        o_paged = torch.empty_like(o)
        paged_call = kern.prepare_batch(
            {"q": ac.dl_from_torch(q), "k": ac.dl_from_torch(pools["k"]),
             "v": ac.dl_from_torch(pools["v"])},
            {"block_table": ac.dl_from_torch(table), "kv_lens": ac.dl_from_torch(lens)},
            N, M, ac.dl_from_torch(o_paged), None)

        def attnc_paged():
            st = paged_call(stream)
            if st != 0:
                raise SystemExit("attn_cuda_run_batch: %s: %s" % (kern.status_name(st), kern.error()))
            return o_paged

        def attnc(schedule=None):
            if schedule:
                os.environ["ATTN_GPU_SCHEDULE"] = schedule
            else:
                os.environ.pop("ATTN_GPU_SCHEDULE", None)
            st = call(stream)
            if st != 0:
                raise SystemExit("attn_cuda_run: %s: %s" % (kern.status_name(st), kern.error()))

        bias = None if N == 1 else causal_lower_right(N, M)
        off = M - N
        bm = create_block_mask(lambda b, h, qi, kv: kv <= qi + off, None, None, N, M,
                               device="cuda", _compile=True)

        impls = {
            "attnc": lambda: attnc(),
            "attnc-prefill": lambda: attnc("prefill"),
            "attnc-paged": attnc_paged,
            "SDPA": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                                           enable_gqa=Hq != Hkv),
            "Flex": lambda: flex(q, k, v, block_mask=bm, enable_gqa=Hq != Hkv),
        }
        attnc()
        torch.cuda.synchronize()
        ref = o.clone()
        errs = {}
        for name in ("attnc-prefill", "attnc-paged", "SDPA", "Flex"):
            out = impls[name]()
            torch.cuda.synchronize()
            errs[name] = rel_err(torch, (o if out is None else out).float(), ref)
        os.environ.pop("ATTN_GPU_SCHEDULE", None)
        med, _ = time_impls(torch, impls, args.runs, args.sample_ms)
        os.environ.pop("ATTN_GPU_SCHEDULE", None)
        nbytes = row_bytes(B, Hq, Hkv, N, M)
        r = {"B": B, "Hq": Hq, "Hkv": Hkv, "N": N, "M": M, "D": D, "ms": med,
             "gbs": {n: nbytes / (t * 1e-3) / 1e9 for n, t in med.items()},
             "errs": errs, "peak_gbs": peak, "device": dev}
        rows.append(r)
        print("B=%d %2d/%d N=%2d M=%5d | %s | attnc %.0f GB/s (%.0f%% of copy) | Flex/attnc %.2fx "
              "SDPA/attnc %.2fx prefill/decode %.2fx paged/dense %.2fx%s" % (
                  B, Hq, Hkv, N, M,
                  " ".join("%s %.3f ms" % (n, t) for n, t in med.items()),
                  r["gbs"]["attnc"], 100 * r["gbs"]["attnc"] / peak,
                  med["Flex"] / med["attnc"], med["SDPA"] / med["attnc"],
                  med["attnc-prefill"] / med["attnc"], med["attnc-paged"] / med["attnc"],
                  "".join(" MISMATCH(%s %.2g)" % (n, e) for n, e in errs.items() if e > 2e-2)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                          f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", default=os.environ.get("ATTN_GPU_ARTIFACTS", ac.DEFAULT_ARTIFACTS))
    ap.add_argument("--artifact", default="causal", help="the artifact id (a softmax spec)")
    ap.add_argument("--rows", type=parse_rows, default=GRID,
                    help="B,Hq,Hkv,N,M;... (default: issue 14's grid)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--sample-ms", type=float, default=20.0)
    ap.add_argument("--json", help="rewrite the rows to this file after each row")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: validation only")
    args = ap.parse_args()
    return dry_main(args) if args.dry_run else gpu_main(args)


if __name__ == "__main__":
    sys.exit(main())
