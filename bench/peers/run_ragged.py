#!/usr/bin/env python3
"""run_ragged.py - a batch of sequences of different lengths: ragged vs padded.

    python3 bench/peers/run_ragged.py                     # attnc only
    build/peers-venv/bin/python bench/peers/run_ragged.py # + FlexAttention, SDPA

A prefill batch whose prompts have different lengths, causal attention
(examples/causal.attn), fp32, GQA. Timed on the same inputs, alternating
call by call (medians after a warm-up, DECODE_GAP_S-style pause of --gap-ms
before each call):

  attnc ragged   q, k, v packed [total, H, D] with cu_seqlens
                 (attn_cpu_run_batch): no padding, each sequence its own
                 causal attention.
  attnc padded   the same sequences padded to the longest, [B, H, max, D],
                 through attn_cpu_run (what a caller without a ragged API
                 does; the padding rows are computed and thrown away).
  Flex packed    FlexAttention under torch.compile on the packed batch
                 [1, H, total, D] with a document-causal BlockMask (the usual
                 way to run a ragged batch through Flex).
  SDPA padded    scaled_dot_product_attention on the padded batch with a
                 boolean [B, 1, max, max] mask (causal within the length).

Outputs are compared with attnc ragged's on the valid rows. Ratios are
"peer time / attnc ragged time".
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attnc_ctypes  # noqa: E402
from timing import median_time as timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

# (label, lengths, Hq, Hkv, D)
BATCHES = [
    ("8 prompts 128..4096", [512, 1024, 3000, 256, 2048, 700, 4096, 128], 16, 4, 64),
    ("4 prompts 64..2048", [2048, 64, 1000, 300], 32, 8, 128),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gap-ms", type=float, default=50)
    ap.add_argument("--no-peers", action="store_true")
    a = ap.parse_args()
    gap = a.gap_ms / 1e3
    torch = None
    if not a.no_peers:
        try:
            import torch
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            torch.set_num_threads(a.threads)
            flex = torch.compile(flex_attention, dynamic=False)
        except ImportError:
            torch = None
    kern = attnc_ctypes.AttnKernel(os.path.join(ROOT, "examples", "causal.attn"))
    rng = np.random.default_rng(0)
    hdr = "%-22s %7s %10s %10s %10s %10s %9s %9s %9s" % (
        "batch", "tokens", "ragged", "padded", "Flex", "SDPA", "padded/r",
        "Flex/r", "SDPA/r")
    print(hdr)
    print("-" * len(hdr))
    for label, lens, Hq, Hkv, D in BATCHES:
        B, T, L = len(lens), sum(lens), max(lens)
        cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        q = rng.standard_normal((T, Hq, D), dtype=np.float32)
        k = rng.standard_normal((T, Hkv, D), dtype=np.float32)
        v = rng.standard_normal((T, Hkv, D), dtype=np.float32)
        o = np.zeros((T, Hq, D), np.float32)
        ragged = kern.prepare_batch([q, k, v], (cu, cu, None, None), o)
        t_rag = timed(lambda: ragged(a.threads), a.runs, gap)

        def pad(x):  # [T, H, D] -> [B, H, L, D]
            out = np.zeros((B, x.shape[1], L, D), np.float32)
            for b in range(B):
                out[b, :, :lens[b]] = x[cu[b]:cu[b + 1]].transpose(1, 0, 2)
            return out
        qp, kp, vp = pad(q), pad(k), pad(v)
        op = np.zeros((B, Hq, L, D), np.float32)
        padded = kern.prepare([qp, kp, vp], op)
        t_pad = timed(lambda: padded(a.threads), a.runs, gap)
        want = pad(o)
        valid = np.zeros((B, 1, L, 1), bool)
        for b in range(B):
            valid[b, :, :lens[b]] = True
        scale = np.abs(o).max()

        def err(x):
            return np.abs(np.where(valid, x - want, 0)).max() / scale
        notes = []
        if err(op) > 1e-5:
            notes.append("padded MISMATCH %.1e" % err(op))
        t_flex = t_sdpa = float("nan")
        if torch is not None:
            doc = torch.from_numpy(np.repeat(np.arange(B), lens))
            tq, tk, tv = (torch.from_numpy(x.transpose(1, 0, 2)[None].copy())
                          for x in (q, k, v))
            with torch.no_grad():
                bm = create_block_mask(
                    lambda b, h, qi, ki: (doc[qi] == doc[ki]) & (ki <= qi),
                    None, None, T, T, device="cpu")
                fx = lambda: flex(tq, tk, tv, block_mask=bm, enable_gqa=True)
                try:
                    t_flex = timed(fx, a.runs, gap)
                    of = fx()[0].numpy().transpose(1, 0, 2)
                    e = np.abs(of - o).max() / scale
                    if e > 1e-3:
                        notes.append("Flex MISMATCH %.1e" % e)
                except Exception as ex:  # noqa: BLE001
                    notes.append("Flex failed: %s" % str(ex).splitlines()[0])
                i = np.arange(L)
                m = np.zeros((B, 1, L, L), bool)
                for b in range(B):
                    m[b, 0] = (i[None, :] <= i[:, None]) & (i[None, :] < lens[b])
                # A padding query row sees key 0 (never fully masked: no NaN).
                m[:, :, :, 0] = True
                tm = torch.from_numpy(m)
                sq, sk, sv = (torch.from_numpy(x) for x in (qp, kp, vp))
                sd = lambda: torch.nn.functional.scaled_dot_product_attention(
                    sq, sk, sv, attn_mask=tm, enable_gqa=True)
                t_sdpa = timed(sd, a.runs, gap)
                e = err(sd().numpy())
                if e > 1e-3:
                    notes.append("SDPA MISMATCH %.1e" % e)
        print("%-22s %7d %8.1fms %8.1fms %8.1fms %8.1fms %8.2fx %8.2fx %8.2fx%s" % (
            label, T, t_rag * 1e3, t_pad * 1e3, t_flex * 1e3, t_sdpa * 1e3,
            t_pad / t_rag, t_flex / t_rag, t_sdpa / t_rag,
            ("  " + "; ".join(notes)) if notes else ""))
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
