#!/usr/bin/env python3
"""run_decode.py - attnc's decode schedule against the memory bandwidth and peers.

    python3 bench/peers/run_decode.py                   # attnc + bandwidth only
    build/peers-venv/bin/python bench/peers/run_decode.py   # + SDPA, FlexAttention
    ... run_decode.py --grid                            # issue 14's whole grid

Decode (a few new queries against a long KV cache) is bound by reading K and
V: the figure of merit is K+V bytes / time against the machine's read
bandwidth, measured in the same run by read_bw.c (all threads, a buffer far
larger than the caches). For each shape (the issue's: GQA 32/8, a long MHA
cache, 16 queries per step, MLA's Dqk=576/Dv=512, bf16) it times, on the same
inputs and alternating call by call:
  attnc decode    examples/causal.attn through attn_cpu_run, which takes the
                  decode schedule for N <= 16 (query heads of a GQA group in
                  the lanes, kv split across threads, LSE merge)
  attnc prefill   the same kernel forced onto the prefill schedule
                  (ATTN_CPU_SCHEDULE=prefill, read per call)
  SDPA, Flex      when torch imports: scaled_dot_product_attention (no mask
                  at N = 1, where bottom-right causal sees every key; else
                  the boolean bottom-right mask) and flex_attention under
                  torch.compile with a BlockMask; both enable_gqa.
  attnc paged     (--paged) the same K and V in a page pool of 16-row pages,
                  pages shuffled, through a block table (attn_cpu_run_batch,
                  the --paged-kv kernels), in both of FlashInfer's page
                  layouts: NHD [pages, 16, Hkv, D] (vLLM's, FlashInfer's
                  default) and HND [pages, Hkv, 16, D] (passed as a strided
                  [pages, 16, Hkv, D] view); Flex paged: FlexAttention over
                  torch's PagedAttention cache [1, Hkv, pages * 16, D] with
                  its converted BlockMask, when it imports.
  one-vector      where G * N > 16 (the wide decode kernel's rows): the same
                  call forced onto the one-vector decode kernel
                  (ATTN_DECODE_WIDE=0, read per call), alternated call by
                  call with the wide one (=1).
  baseline        (--baseline-attnc ATTNC) the decode call compiled by
                  another attnc (an older build), alternated call by call
                  with this build's on the same inputs.
Outputs are checked against attnc decode's (max abs err / max |o|).
Medians of --runs calls after a warm-up, each after a pause of DECODE_GAP_S
seconds (default 0.02; 0 runs the calls back to back, as a serving loop
would, but then torch's spinning OpenMP threads can slow the next library);
threads = all cores unless --threads.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attnc_ctypes  # noqa: E402
from timing import alternating_medians, median_time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

# (label, B, Hq, Hkv, N, M, Dqk, Dv, dtype)
SHAPES = [
    ("GQA 32/8 M=8k", 1, 32, 8, 1, 8192, 128, 128, "fp32"),
    ("GQA 32/8 B=8 M=4k", 8, 32, 8, 1, 4096, 128, 128, "fp32"),
    ("MHA 8/8 M=32k", 1, 8, 8, 1, 32768, 128, 128, "fp32"),
    ("GQA 32/8 N=16 M=8k", 1, 32, 8, 16, 8192, 128, 128, "fp32"),
    ("MLA 16/1 B=4 M=4k", 4, 16, 1, 1, 4096, 576, 512, "fp32"),
    ("GQA 32/8 M=8k bf16", 1, 32, 8, 1, 8192, 128, 128, "bf16"),
]



def issue_grid():
    """--grid: issue 14's table, B in {1, 8} x N in {1, 4, 16} x M in {4k,
    32k} x (GQA 32/8, MHA 8/8) x (fp32, bf16) at D = 128, plus MLA."""
    rows = []
    for dt in ("fp32", "bf16"):
        for hq, hkv, tag in ((32, 8, "GQA"), (8, 8, "MHA")):
            for B in (1, 8):
                for N in (1, 4, 16):
                    for M in (4096, 32768):
                        label = "%s B=%d N=%d M=%dk%s" % (
                            tag, B, N, M // 1024, " bf16" if dt == "bf16" else "")
                        rows.append((label, B, hq, hkv, N, M, 128, 128, dt))
    rows.append(SHAPES[4])
    return rows


def read_bandwidth(threads):
    exe = os.path.join(tempfile.mkdtemp(prefix="read-bw-"), "read_bw")
    subprocess.run(["cc", "-O2", "-march=native", "-pthread",
                    os.path.join(HERE, "read_bw.c"), "-o", exe], check=True)
    out = subprocess.run([exe, str(threads), "1024"], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[0]), out.strip()


def bf16_spec(outdir):
    src = open(os.path.join(ROOT, "examples", "causal.attn")).read()
    decl = ("input q : bf16[B, Hq, N, Dqk]\ninput k : bf16[B, Hkv, M, Dqk]\n"
            "input v : bf16[B, Hkv, M, Dv]\n")
    path = os.path.join(outdir, "causal_bf16.attn")
    i = src.index("{") + 1
    with open(path, "w") as f:
        f.write(src[:i] + "\n" + decl + src[i:])
    return path


GAP_S = float(os.environ.get("DECODE_GAP_S", "0.02"))


def timed(fn, runs):
    """Median of `runs` calls after a warm-up, each after DECODE_GAP_S."""
    return median_time(fn, runs, GAP_S)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--shapes", help="comma list of shape indices (default all)")
    ap.add_argument("--grid", action="store_true",
                    help="issue 14's full grid (49 rows) instead of the 6 shapes")
    ap.add_argument("--baseline-attnc", metavar="ATTNC",
                    help="also time the same decode calls compiled by another "
                         "attnc binary (e.g. the previous commit's build/bin/"
                         "attnc), alternating call by call with this build's")
    ap.add_argument("--paged", action="store_true",
                    help="also time K/V in a paged cache (page size 16)")
    a = ap.parse_args()
    try:
        if a.no_peers:
            raise ImportError
        import torch
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        torch.set_num_threads(a.threads)
        # One compile per shape: past dynamo's default limit (8) flex_attention
        # silently falls back to its unfused eager form (--grid has 49 shapes).
        for knob in ("recompile_limit", "cache_size_limit",
                     "accumulated_recompile_limit", "accumulated_cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 4096)
        flex = torch.compile(flex_attention, dynamic=False)
    except ImportError:
        torch = None
    bw, bw_line = read_bandwidth(a.threads)
    print("read bandwidth: " + bw_line)
    tmp = tempfile.mkdtemp(prefix="decode-")
    kern = {"fp32": attnc_ctypes.AttnKernel(os.path.join(ROOT, "examples", "causal.attn"),
                                            paged_kv=a.paged),
            "bf16": attnc_ctypes.AttnKernel(bf16_spec(tmp), paged_kv=a.paged)}
    base = None
    if a.baseline_attnc:
        # Kernels of the other compiler, in their own cache; they run on
        # this build's runtime (one libattn_runtime per process).
        ours, attnc_ctypes.ATTNC = attnc_ctypes.ATTNC, os.path.abspath(a.baseline_attnc)
        cache = attnc_ctypes.CACHE + "-baseline"
        base = {"fp32": attnc_ctypes.AttnKernel(
                    os.path.join(ROOT, "examples", "causal.attn"), cache_dir=cache),
                "bf16": attnc_ctypes.AttnKernel(bf16_spec(tmp), cache_dir=cache)}
        attnc_ctypes.ATTNC = ours
    rng = np.random.default_rng(0)
    hdr = ("%-22s %9s %9s %7s %9s %8s %9s %9s %8s %8s" %
           ("shape", "K+V MB", "decode", "GB/s", "% of bw", "prefill", "SDPA",
            "Flex", "dec/pre", "dec/Flex"))
    print(hdr)
    print("-" * len(hdr))
    shapes = issue_grid() if a.grid else SHAPES
    picks = range(len(shapes)) if not a.shapes else [int(x) for x in a.shapes.split(",")]
    for idx in picks:
        label, B, Hq, Hkv, N, M, Dqk, Dv, dt = shapes[idx]
        q = rng.standard_normal((B, Hq, N, Dqk), dtype=np.float32)
        k = rng.standard_normal((B, Hkv, M, Dqk), dtype=np.float32)
        v = rng.standard_normal((B, Hkv, M, Dv), dtype=np.float32)
        esize = 4
        ins = [q, k, v]
        if dt == "bf16":
            # bf16 by truncation: the top half of each float32.
            ins = [attnc_ctypes.BF16((x.view(np.uint32) >> 16).astype(np.uint16))
                   for x in (q, k, v)]
            esize = 2
        kvbytes = B * Hkv * M * (Dqk + Dv) * esize
        o = np.empty((B, Hq, N, Dv), np.float32)
        lse = np.empty((B, Hq, N), np.float32)
        call = kern[dt].prepare(ins, o, lse)
        os.environ.pop("ATTN_CPU_SCHEDULE", None)
        t_dec = timed(lambda: call(a.threads), a.runs)
        o_dec = o.copy()
        if base is not None:
            o_base = np.empty_like(o)
            call_base = base[dt].prepare(ins, o_base, np.empty_like(lse))
            t_ours, t_base = alternating_medians(
                [lambda: call(a.threads), lambda: call_base(a.threads)], a.runs, GAP_S)
            e = np.abs(o_base - o_dec).max() / np.abs(o_dec).max()
            print("  baseline %.2fms, this build %.2fms: %.2fx%s" % (
                t_base * 1e3, t_ours * 1e3, t_base / t_ours,
                "" if e < (3e-2 if dt == "bf16" else 1e-4) else
                "  MISMATCH %.2e" % e))
        if (Hq // Hkv) * N > 16:
            o_one = np.empty_like(o)
            call_one = kern[dt].prepare(ins, o_one, np.empty_like(lse))

            def forced(fn, wide):
                def run():
                    os.environ["ATTN_DECODE_WIDE"] = wide
                    fn(a.threads)
                return run
            t_wide, t_one = alternating_medians(
                [forced(call, "1"), forced(call_one, "0")], a.runs, GAP_S)
            os.environ.pop("ATTN_DECODE_WIDE", None)
            e = np.abs(o_one - o_dec).max() / np.abs(o_dec).max()
            print("  one-vector decode kernel %.2fms, wide %.2fms: %.2fx%s" % (
                t_one * 1e3, t_wide * 1e3, t_one / t_wide,
                "" if e < (3e-2 if dt == "bf16" else 1e-4) else
                "  MISMATCH %.2e" % e))
        os.environ["ATTN_CPU_SCHEDULE"] = "prefill"
        t_pre = timed(lambda: call(a.threads), max(3, a.runs // 4))
        os.environ.pop("ATTN_CPU_SCHEDULE", None)
        err_pre = np.abs(o - o_dec).max() / np.abs(o_dec).max()
        t_sdpa = t_flex = float("nan")
        if torch is not None:
            tdt = torch.bfloat16 if dt == "bf16" else torch.float32
            tq, tk, tv = (torch.from_numpy(x).to(tdt) for x in (q, k, v))
            mask = None
            if N > 1:
                mask = torch.from_numpy(
                    np.arange(M)[None, :] <= np.arange(N)[:, None] + (M - N))
            sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(
                tq, tk, tv, attn_mask=mask, enable_gqa=True)
            with torch.no_grad():
                t_sdpa = timed(sdpa, max(3, a.runs // 4))
                off = M - N
                bm = create_block_mask(lambda b, h, qi, ki: ki <= qi + off,
                                       None, None, N, M, device="cpu")
                fx = lambda: flex(tq, tk, tv, block_mask=bm, enable_gqa=True)
                try:
                    t_flex = timed(fx, max(3, a.runs // 4))
                    of = fx().float().numpy()
                    e = np.abs(of - o_dec).max() / np.abs(o_dec).max()
                    if e > (3e-2 if dt == "bf16" else 1e-3):
                        print("  Flex MISMATCH err %.2e" % e)
                except Exception as ex:  # noqa: BLE001
                    print("  Flex failed: %s" % str(ex).splitlines()[0])
        gbs = kvbytes / t_dec / 1e9
        print("%-22s %9.1f %7.2fms %7.1f %8.0f%% %7.2fms %7.2fms %7.2fms %7.2fx %7.2fx%s" % (
            label, kvbytes / 1e6, t_dec * 1e3, gbs, 100 * gbs / bw, t_pre * 1e3,
            t_sdpa * 1e3, t_flex * 1e3, t_pre / t_dec, t_flex / t_dec,
            "" if err_pre < (3e-2 if dt == "bf16" else 1e-4) else
            "  prefill/decode MISMATCH %.2e" % err_pre))
        sys.stdout.flush()
        if a.paged:
            paged_row(a, kern[dt], ins, o_dec, (B, Hq, Hkv, N, M, Dqk, Dv, dt),
                      kvbytes, bw, t_dec, torch, flex if torch else None, rng)


PAGE = 16


def paged_row(a, kern, ins, o_dec, shape, kvbytes, bw, t_dec, torch, flex, rng):
    """attnc (and Flex) with K and V in a shuffled page pool."""
    t_flex = float("nan")
    if torch is not None:
        t_flex = flex_paged(a, torch, flex,
                            [x.a if isinstance(x, attnc_ctypes.BF16) else x for x in ins],
                            shape, o_dec)
    for layout in ("NHD", "HND"):
        paged_layout_row(a, kern, ins, o_dec, shape, kvbytes, bw, t_dec, t_flex,
                         rng, layout)


def paged_layout_row(a, kern, ins, o_dec, shape, kvbytes, bw, t_dec, t_flex, rng,
                     layout):
    B, Hq, Hkv, N, M, Dqk, Dv, dt = shape
    npages = B * ((M + PAGE - 1) // PAGE)
    perm = rng.permutation(npages).astype(np.int32)
    table = perm.reshape(B, -1)
    lens = np.full((B,), M, np.int32)

    def pool(x):  # [B, Hkv, M, D] -> a [pages, PAGE, Hkv, D] view, table's order
        pad = table.shape[1] * PAGE - M
        D = x.shape[3]
        xp = np.pad(x, ((0, 0), (0, 0), (0, pad), (0, 0)))
        blocks = xp.reshape(B, Hkv, -1, PAGE, D)  # b, h, page, slot, d
        if layout == "NHD":
            out = np.empty((npages, PAGE, Hkv, D), x.dtype)
            out[table.reshape(-1)] = blocks.transpose(0, 2, 3, 1, 4).reshape(-1, PAGE, Hkv, D)
            return out
        out = np.empty((npages, Hkv, PAGE, D), x.dtype)
        out[table.reshape(-1)] = blocks.transpose(0, 2, 1, 3, 4).reshape(-1, Hkv, PAGE, D)
        return out.transpose(0, 2, 1, 3)

    raw = [x.a if isinstance(x, attnc_ctypes.BF16) else x for x in ins]
    kp, vp = pool(raw[1]), pool(raw[2])
    wrap = (lambda x: attnc_ctypes.BF16(x)) if dt == "bf16" else (lambda x: x)
    o = np.empty((B, Hq, N, Dv), np.float32)
    call = kern.prepare_batch([ins[0], wrap(kp), wrap(vp)],
                              (None, None, table, lens), o)
    t = timed(lambda: call(a.threads), a.runs)
    err = np.abs(o - o_dec).max() / np.abs(o_dec).max()
    gbs = kvbytes / t / 1e9
    print("%-22s %9s %7.2fms %7.1f %8.0f%% %9s %9s %7.2fms %8s %7.2fx  "
          "(page %d, %.2fx contiguous)%s" % (
              "  paged " + layout, "", t * 1e3, gbs, 100 * gbs / bw, "", "",
              t_flex * 1e3, "", t_flex / t, PAGE, t_dec / t,
              "" if err < 1e-5 else "  paged/contiguous MISMATCH %.2e" % err))
    sys.stdout.flush()


def flex_paged(a, torch, flex, raw, shape, o_dec):
    """FlexAttention over a page pool: torch's experimental PagedAttention
    (the K/V caches [1, Hkv, pages * PAGE, D], the logical BlockMask
    converted to physical pages). NaN when it is unavailable or fails."""
    B, Hq, Hkv, N, M, Dqk, Dv, dt = shape
    try:
        from torch.nn.attention.experimental._paged_attention import PagedAttention
        from torch.nn.attention.flex_attention import create_block_mask
        tdt = torch.bfloat16 if dt == "bf16" else torch.float32

        def tt(x):
            if dt == "bf16":
                return torch.from_numpy(np.ascontiguousarray(x).view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(x)
        q, k, v = (tt(x) for x in raw)
        n_pages = B * ((M + PAGE - 1) // PAGE)
        pa = PagedAttention(n_pages, PAGE, B, device="cpu")
        kc = torch.zeros(1, Hkv, n_pages * PAGE, Dqk, dtype=tdt)
        vc = torch.zeros(1, Hkv, n_pages * PAGE, Dv, dtype=tdt)
        for b in range(B):
            bi = torch.tensor([b])
            pa.reserve(bi, torch.tensor([M]))
            pa.assign(bi, torch.arange(M)[None], k[b:b + 1], v[b:b + 1], kc, vc)
        off = M - N
        bm = create_block_mask(lambda b, h, qi, ki: ki <= qi + off, B, None, N, M,
                               device="cpu", BLOCK_SIZE=PAGE)
        pbm = pa.convert_logical_block_mask(bm)
        mod = pa.get_mask_mod(None)

        def run():
            return flex(q, kc, vc, block_mask=pbm, enable_gqa=True)
        _ = mod
        with torch.no_grad():
            t = timed(run, max(3, a.runs // 4))
            of = run().float().numpy()
        e = np.abs(of - o_dec).max() / np.abs(o_dec).max()
        if e > (3e-2 if dt == "bf16" else 1e-3):
            print("  Flex paged MISMATCH err %.2e" % e)
        return t
    except Exception as ex:  # noqa: BLE001
        print("  Flex paged failed: %s" % str(ex).splitlines()[0])
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
