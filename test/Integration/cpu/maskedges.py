#!/usr/bin/env python3
# ===- maskedges.py - mask params at tile boundaries +-1 (CPU and gpusim) --===#
#
# Drives the mask-edges-*.test files: for a masked example and a list of
# schedules, picks the mask params that put the mask's edge exactly on, one
# before and one after a tile boundary, and checks each compiled kernel
# against the float64 reference:
#
#   sliding_window  window in {tkv-1, tkv, tkv+1, tq-1, tq, tq+1,
#                              tq+tkv-2, tq+tkv-1, tq+tkv}
#   prefix_lm       prefix in {tkv-1, tkv, tkv+1, 2tkv-1, 2tkv, 2tkv+1}
#   sinks_window    sinks in {tkv-1, tkv, tkv+1} with window tq + tkv - 1
#                   (and tkv - 1)
#   document        document ids that step up at tokens {tq-1, tq, tq+1}
#                   and at kv tile edges {2tkv-1, 2tkv, 2tkv+1}, and one
#                   document starting exactly at every tile edge
#
# (values < 1 are dropped). Why: the tile classifier evaluates the mask's
# comparisons on intervals; a `<` treated as `<=` (or the converse) in the
# interval rules misclassifies exactly the tiles whose corner sits on the
# mask's edge, a one-element error that only such params reach. Before this
# test only three CPU tests with odd tiles, and no CUDA test, put an edge
# there.
#
#   maskedges.py --backend cpu --attnc BIN --spec NAME --examples DIR
#                --tmp DIR --tiles TQxTKV[,TQxTKV...]
#   maskedges.py --backend gpusim --attnc BIN --attn-opt BIN --sim BIN
#                --gpusim gpusim.py --spec NAME --examples DIR --tmp DIR
#                --tiles TQxTKV[,...] [--dtype bf16|f16]
#
# CPU: `attnc run` with --tile-q/--tile-kv, o and lse within 1e-5 of the
# reference (attnc run prints both errors). gpusim: gpusim.py with o rel err
# <= 5e-3 (bf16 P; f16 too) and lse abs err <= 1e-3 (lse comes from fp32 dot
# products of the rounded inputs, ~1e-6 off): one visible key too many or
# too few moves lse by ~1/(visible keys), far above 1e-3, while the o check
# alone at gpusim's default 2e-2 could miss it in a wide window.
# Each case runs on M == N and, in turn, on M > N (queries late in the
# sequence) or M < N (bottom-right alignment leaves empty rows). Prints one line per case and
# "EDGES PASS <cases>" or "EDGES FAIL" last.
# ===----------------------------------------------------------------------===#

import argparse
import os
import re
import subprocess
import sys

ERR_RE = re.compile(r"max rel err \(to max\|o\|\) (\S+?),")
LSE_RE = re.compile(r"lse max err \(rel to max\(1,\|lse\|\)\) (\S+?),")


def cases(spec, tq, tkv):
    """(params, doc cuts or None) per case."""
    out = []
    if spec == "sliding_window":
        ws = [tkv - 1, tkv, tkv + 1, tq - 1, tq, tq + 1,
              tq + tkv - 2, tq + tkv - 1, tq + tkv]
        for w in sorted(set(x for x in ws if x >= 1)):
            out.append((["window=%d" % w], None))
    elif spec == "prefix_lm":
        ps = [tkv - 1, tkv, tkv + 1, 2 * tkv - 1, 2 * tkv, 2 * tkv + 1]
        for p in sorted(set(x for x in ps if x >= 1)):
            out.append((["prefix=%d" % p], None))
    elif spec == "sinks_window":
        for s in sorted(set(x for x in (tkv - 1, tkv, tkv + 1) if x >= 1)):
            for w in sorted(set(x for x in (tq + tkv - 1, tkv - 1) if x >= 1)):
                out.append((["sinks=%d" % s, "window=%d" % w], None))
    elif spec == "document":
        out.append(([], [tq - 1, tq, tq + 1]))
        out.append(([], [2 * tkv - 1, 2 * tkv, 2 * tkv + 1]))
        out.append(([], "edges"))
    else:
        raise SystemExit("unknown --spec " + spec)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["cpu", "gpusim"], required=True)
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--attn-opt")
    ap.add_argument("--sim")
    ap.add_argument("--gpusim")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--tiles", required=True)
    ap.add_argument("--dtype", default="bf16")
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    example = os.path.join(a.examples, a.spec + ".attn")
    gpu = a.backend == "gpusim"
    if a.spec == "document":
        shapes = ["N=130,M=130", "N=101,M=101"]
    else:
        shapes = ["N=130,M=130", "N=97,M=150", "N=130,M=97"]
    heads = "B=1,Hq=2,Hkv=1"
    dims = "Dqk=64,Dv=40" if gpu else "Dqk=16,Dv=24"

    ok = True
    n = 0
    for tile in a.tiles.split(","):
        tq, tkv = (int(x) for x in tile.split("x"))
        for params, cuts0 in cases(a.spec, tq, tkv):
            # Every case on M == N and on one of the others, in turn.
            case_shapes = [shapes[0], shapes[1 + n % (len(shapes) - 1)]]
            case_shapes = ["%s,%s,%s" % (heads, s, dims) for s in case_shapes]
            pargs = []
            for p in params:
                pargs += ["--param", p]
            tmp = os.path.join(a.tmp, "c%d" % n)
            n += 1
            runs = []  # (desc, cmd)
            if gpu:
                cuts = cuts0
                if cuts == "edges":  # both shapes: the shorter N
                    N = min(int(re.search(r"N=(\d+)", s).group(1))
                            for s in case_shapes)
                    cuts = sorted(set(list(range(tkv, N, tkv)) +
                                      list(range(tq, N, tq))))
                cmd = [a.python, a.gpusim, "--attnc", a.attnc, "--attn-opt",
                       a.attn_opt, "--sim", a.sim, "--tmp", tmp, "--example",
                       example, "--tile-q", str(tq), "--tile-kv", str(tkv),
                       "--dtype", a.dtype, "--seed", str(n),
                       "--o-rtol", "5e-3", "--lse-atol", "1e-3"] + pargs
                for s in case_shapes:
                    cmd += ["--shape", s]
                if cuts:
                    cmd += ["--doc", "cuts=" + ",".join(map(str, cuts))]
                runs.append((cuts, " | ".join(case_shapes), cmd))
            else:
                os.makedirs(tmp, exist_ok=True)
                for si, shape in enumerate(case_shapes):
                    N = int(re.search(r"N=(\d+)", shape).group(1))
                    cuts = cuts0
                    if cuts == "edges":
                        cuts = sorted(set(list(range(tkv, N, tkv)) +
                                          list(range(tq, N, tq))))
                    cmd = [a.attnc, "run", example, "--shape", shape,
                           "--tile-q", str(tq), "--tile-kv", str(tkv),
                           "--repeat", "1", "--threads", str(1 + (n + si) % 3),
                           "--seed", str(n)] + pargs
                    if cuts:
                        import numpy as np
                        t = np.arange(N)
                        doc = np.zeros((1, N), np.int32)
                        for c in cuts:
                            doc[0] += (t >= c).astype(np.int32)
                        path = os.path.join(tmp, "doc%d.npy" % si)
                        np.save(path, doc)
                        cmd += ["--input", "doc=" + path]
                    runs.append((cuts, shape, cmd))
            for cuts, shape_desc, cmd in runs:
                desc = "%s tiles=%dx%d %s%s %s" % (
                    a.spec, tq, tkv, " ".join(params),
                    (" doc cuts=" + ",".join(map(str, cuts))) if cuts else "",
                    shape_desc)
                p = subprocess.run(cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
                out = p.stdout
                problems = []
                if p.returncode != 0:
                    problems.append("exit %d" % p.returncode)
                if gpu:
                    if not re.search(r"^PASS$", out, re.M):
                        problems.append("gpusim.py did not pass")
                    errs = re.findall(r"o rel err (\S+?), lse abs err (\S+?),",
                                      out)
                    line = "%s: o, lse %s" % (desc, " ".join(
                        "%s,%s" % e for e in errs) or "?")
                else:
                    m, ml = ERR_RE.search(out), LSE_RE.search(out)
                    err = float(m.group(1)) if m else float("inf")
                    lerr = float(ml.group(1)) if ml else float("inf")
                    if "-> PASS" not in out:
                        problems.append("attnc run did not pass")
                    if not (err <= 1e-5 and lerr <= 1e-5):
                        problems.append("error above 1e-5")
                    line = "%s: o %.2e lse %.2e" % (desc, err, lerr)
                if problems:
                    ok = False
                    print(line + " -> FAIL: " + "; ".join(problems))
                    print("  command: " + " ".join(cmd))
                    for l in out.splitlines()[-8:]:
                        print("  | " + l)
                else:
                    print(line + " -> ok")
                sys.stdout.flush()
    print(("EDGES PASS %d" % n) if ok else "EDGES FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
