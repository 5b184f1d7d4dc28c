#!/usr/bin/env python3
# ===- sweep.py - every example x schedules x threads at 1e-5, on the CPU --===#
#
# The generated guardrail sweep (sweep-*.test): every examples/*.attn (found
# by glob, so a new example is swept without touching this file) is compiled
# with several schedules and run with several thread counts on awkward GQA
# shapes (N not a multiple of any tile, M != N where the spec allows it,
# Dqk != Dv, B = 2), and each run is checked against the float64 reference
# at 1e-5 instead of `attnc run`'s own 1e-4: the script parses the errors
# `attnc run` prints ("max rel err (to max|o|) X", "lse max err (rel to
# max(1,|lse|)) Y") and requires X <= 1e-5, Y <= 1e-5, no non-finite
# mismatch and PASS. (attnc run has no tolerance flag; fp32 kernels land
# around 1e-7, so 1e-5 leaves two orders of margin and still catches errors
# that 1e-4 lets through.)
#
#   sweep.py --attnc BIN --examples DIR --shard I/N [--tol 1e-5] [--list]
#
# Softmax-family specs: (tile_q, tile_kv) in (16, 1), (16, 7), (48, 33) and
# the default schedule, each with --threads 1, 2 and 8 (12 runs; the kernel
# is compiled once per schedule, the thread counts reuse the cache). The
# shapes alternate between M < N (bottom-right aligned masks leave empty
# rows) and M > N. Linear specs (N == M): --linear-chunk 1, 7, 33, the
# default (64) and 0 (the recurrence), each with threads 1, 2 and 8.
#
# Examples whose shapes are constrained (N == M, params tied to N) are
# listed in OVERRIDES; an unknown example gets the generic shapes, and if
# those do not fit it the sweep fails and names it: add an entry then.
#
# --decode sweeps the decode schedule instead (attn_kernel_desc_t::decode_fn,
# forced with ATTN_CPU_SCHEDULE=decode): softmax specs on decode shapes (N of
# 1 to 9 with G * N above and below the 16 lanes, so lane chunks span
# several heads, and G * N of 1 to 4 for the head-dim-in-lanes
# micro-kernel; M < N with empty rows) and their OVERRIDES shapes, tile_kv
# 7 and the default, ATTN_DECODE_SPLITS 1, 3 and 7 (splits past the last
# tile and splits a window hides are empty: lse = -inf parts), threads 1
# and 2, and the decode kernel as the runtime picks it, forced to the wide
# one (ATTN_DECODE_WIDE=1: a q tile of four vectors, most lanes padding at
# small G * N) and forced to the one-vector one (=0; G * N = 72 needs five
# of its chunks, two wide ones on AVX-512). `attnc run` must report
# schedule=decode with lanes of one vector (<= 16) or of the wide tile (>
# 16) as forced; other normalizers have no decode kernel and must report
# schedule=prefill (one run each).
#
# Shard I of N takes the sorted examples I, I + N, I + 2N, ... so lit runs
# the shards in parallel. Prints one line per run and a last line
# "SWEEP PASS <runs>" or "SWEEP FAIL".
# ===----------------------------------------------------------------------===#

import argparse
import glob
import os
import re
import subprocess
import sys

SOFTMAX_SCHEDULES = [(16, 1), (16, 7), (48, 33), None]
LINEAR_CHUNKS = [1, 7, 33, None, 0]
THREADS = [1, 2, 8]

GENERIC_SOFTMAX_SHAPES = ["B=2,Hq=4,Hkv=2,N=70,M=53,Dqk=24,Dv=40",
                          "B=2,Hq=4,Hkv=2,N=37,M=100,Dqk=40,Dv=24"]
# G * N of 1 to 4 takes the head-dim-in-lanes micro-kernel (up to 2 on
# AVX2), with head dims that are not multiples of the vector width.
DECODE_SHAPES = ["B=2,Hq=8,Hkv=2,N=1,M=300,Dqk=24,Dv=40",
                 "B=1,Hq=12,Hkv=2,N=3,M=150,Dqk=40,Dv=24",
                 "B=2,Hq=3,Hkv=3,N=1,M=201,Dqk=36,Dv=20",
                 "B=2,Hq=4,Hkv=4,N=5,M=77,Dqk=16,Dv=8",
                 "B=1,Hq=6,Hkv=2,N=1,M=97,Dqk=20,Dv=52",
                 "B=1,Hq=6,Hkv=3,N=9,M=5,Dqk=8,Dv=12",
                 "B=2,Hq=2,Hkv=1,N=2,M=130,Dqk=48,Dv=35",
                 "B=1,Hq=16,Hkv=2,N=9,M=90,Dqk=24,Dv=40"]
DECODE_SPLITS = [1, 3, 7]
# ATTN_DECODE_WIDE per run: the runtime's choice, the wide kernel, the
# one-vector kernel.
DECODE_WIDE = [None, "1", "0"]
DECODE_TILE_KV = [7, None]
DECODE_THREADS = [1, 2]
SCHEDULE_RE = re.compile(r"schedule=(\w+)")
LANES_RE = re.compile(r"schedule=decode\(lanes=(\d+)")

GENERIC_LINEAR_SHAPES = ["B=2,Hq=4,Hkv=2,N=100,M=100,Dqk=16,Dv=20",
                         "B=1,Hq=4,Hkv=1,N=71,M=71,Dqk=24,Dv=9"]

# name -> (shapes, params); shapes None = the generic ones.
OVERRIDES = {
    # doc : i32[B, N] is indexed by kv_idx: N == M.
    "document": (["B=2,Hq=4,Hkv=2,N=70,M=70,Dqk=24,Dv=40",
                  "B=2,Hq=4,Hkv=2,N=101,M=101,Dqk=40,Dv=24"], []),
    # N == M == height * width.
    "neighborhood_2d": (["B=2,Hq=4,Hkv=2,N=63,M=63,Dqk=24,Dv=40"],
                        ["height=9", "width=7", "kernel=5"]),
    # Windows that cut through the tiles at these sizes (the defaults are
    # wider than the sequences).
    "sliding_window": (None, ["window=20"]),
    "sinks_window": (None, ["window=20", "sinks=3"]),
    "prefix_lm": (None, ["prefix=11"]),
}

ERR_RE = re.compile(r"max rel err \(to max\|o\|\) (\S+?),")
LSE_RE = re.compile(r"lse max err \(rel to max\(1,\|lse\|\)\) (\S+?),")
NONFINITE_RE = re.compile(r"non-finite (\d+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--decode", action="store_true",
                    help="sweep the decode schedule (softmax specs)")
    ap.add_argument("--list", action="store_true",
                    help="print the examples of this shard and exit")
    a = ap.parse_args()
    idx, count = (int(x) for x in a.shard.split("/"))
    specs = sorted(glob.glob(os.path.join(a.examples, "*.attn")))
    if not specs:
        print("SWEEP FAIL: no examples in " + a.examples)
        return 1
    mine = specs[idx::count]
    if a.list:
        for s in mine:
            print(os.path.basename(s))
        return 0

    ok = True
    runs = 0
    for spec in mine:
        name = os.path.splitext(os.path.basename(spec))[0]
        linear = re.search(r"^\s*linear\s*\{", open(spec).read(), re.M)
        shapes, params = OVERRIDES.get(name, (None, []))
        if shapes is None:
            shapes = GENERIC_LINEAR_SHAPES if linear else GENERIC_SOFTMAX_SHAPES
        pargs = []
        for p in params:
            pargs += ["--param", p]
        env = None
        if a.decode:
            if linear:
                continue
            other_normalizer = re.search(r"normalizer\s*=\s*(sigmoid|relu|none)",
                                         open(spec).read())
            if shapes is GENERIC_SOFTMAX_SHAPES:
                shapes = DECODE_SHAPES
            combos = []
            i = 0
            for tkv in DECODE_TILE_KV:
                sched = [] if tkv is None else ["--tile-kv", str(tkv)]
                for sp in DECODE_SPLITS:
                    for t in DECODE_THREADS:
                        wide = DECODE_WIDE[i % len(DECODE_WIDE)]
                        label = "decode tile_kv=%s splits=%d wide=%s" % (
                            "default" if tkv is None else tkv, sp,
                            wide or "auto")
                        combos.append((sched, label, t, shapes[i % len(shapes)],
                                       (sp, wide)))
                        i += 1
            if other_normalizer:
                combos = combos[:1]
        elif linear:
            combos = []
            i = 0
            for c in LINEAR_CHUNKS:
                sched = [] if c is None else ["--linear-chunk", str(c)]
                label = "chunk=" + ("default" if c is None else str(c))
                for t in THREADS:
                    combos.append((sched, label, t, shapes[i % len(shapes)],
                                   None))
                    i += 1
        else:
            combos = []
            i = 0
            for sc in SOFTMAX_SCHEDULES:
                sched = [] if sc is None else ["--tile-q", str(sc[0]),
                                               "--tile-kv", str(sc[1])]
                label = "tiles=" + ("default" if sc is None else
                                    "%dx%d" % sc)
                for t in THREADS:
                    combos.append((sched, label, t, shapes[i % len(shapes)],
                                   None))
                    i += 1
        for seed, (sched, label, threads, shape, splits) in enumerate(combos):
            cmd = [a.attnc, "run", spec, "--shape", shape, "--repeat", "1",
                   "--threads", str(threads), "--seed", str(seed)] + sched + pargs
            env = dict(os.environ)
            wide = None
            if splits is not None:
                splits, wide = splits
                env.update(ATTN_CPU_SCHEDULE="decode",
                           ATTN_DECODE_SPLITS=str(splits))
                if wide:
                    env["ATTN_DECODE_WIDE"] = wide
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
            runs += 1
            out = p.stdout
            m = ERR_RE.search(out)
            ml = LSE_RE.search(out)
            mn = NONFINITE_RE.search(out)
            err = float(m.group(1)) if m else float("inf")
            lerr = float(ml.group(1)) if ml else 0.0
            problems = []
            if p.returncode != 0 or "-> PASS" not in out:
                problems.append("attnc run failed (exit %d)" % p.returncode)
            if not err <= a.tol:
                problems.append("o rel err %g > %g" % (err, a.tol))
            if not lerr <= a.tol:
                problems.append("lse err %g > %g" % (lerr, a.tol))
            if not mn or mn.group(1) != "0":
                problems.append("non-finite mismatch")
            if splits is not None:
                ms = SCHEDULE_RE.search(out)
                ran = ms.group(1) if ms else "?"
                want = "prefill" if other_normalizer else "decode"
                if ran != want:
                    problems.append("ran schedule=%s, expected %s" % (ran, want))
                ml = LANES_RE.search(out)
                lanes = int(ml.group(1)) if ml else 0
                if want == "decode" and wide and (lanes > 16) != (wide == "1"):
                    problems.append("ran lanes=%d with ATTN_DECODE_WIDE=%s" %
                                    (lanes, wide))
            line = "%s %s threads=%d %s: o %.2e lse %.2e" % (
                name, label, threads, shape, err, lerr)
            if problems:
                ok = False
                print(line + " -> FAIL: " + "; ".join(problems))
                print("  command: " + " ".join(cmd))
                for l in out.splitlines()[-6:]:
                    print("  | " + l)
            else:
                print(line + " -> ok")
            sys.stdout.flush()
    print(("SWEEP PASS %d" % runs) if ok else "SWEEP FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
