#!/usr/bin/env python3
# ===- tile-visits.py - show-mask's tiles are the CPU kernel's tiles -------===#
#
# For every softmax-family example in examples/*.attn (found by glob; linear
# specs have no tiles) at several shapes (GQA, N != M, N not a multiple of
# the tile) and schedules (tile_kv 1, odd tiles, the default 64), this runs
#   * the compiled CPU kernel built with ATTN_DEBUG_TILE_STATS=1, which
#     writes one line "attn-tile B H QT KT PARTIAL" to stderr per (q tile,
#     kv tile) it visits (skipped tiles print nothing), and
#   * `attnc show-mask` with the same shape, params, seed and tiles, for
#     (b, h) = (0, 0) and (B - 1, Hq - 1) (the last query head of the last
#     KV group),
# and requires that the tiles show-mask draws as full ('#') / partial ('+')
# are exactly those the kernel visited without / with the per-element mask,
# and that the '.' tiles are exactly those it skipped.
#
#   tile-visits.py --attnc BIN --examples DIR --cache DIR
#
# Prints one line per comparison and "TILE-VISITS PASS <comparisons>
# <tiles> <visited> <partial>" or "TILE-VISITS FAIL".
# ===----------------------------------------------------------------------===#

import argparse
import glob
import os
import re
import subprocess
import sys

SCHEDULES = [(16, 1), (16, 7), (48, 33), (32, 13), (64, 64)]
GENERIC_SHAPES = [(2, 4, 2, 70, 53), (1, 6, 2, 37, 100)]  # B, Hq, Hkv, N, M
OVERRIDES = {
    # doc : i32[B, N] is indexed by kv_idx: N == M.
    "document": ([(2, 4, 2, 70, 70), (1, 4, 1, 101, 101)], []),
    # N == M == height * width.
    "neighborhood_2d": ([(2, 4, 2, 63, 63)],
                        ["height=9", "width=7", "kernel=5"]),
    "sliding_window": (None, ["window=20"]),
    "sinks_window": (None, ["window=20", "sinks=3"]),
    "prefix_lm": (None, ["prefix=11"]),
}
SEED = 5
TILE_RE = re.compile(r"^attn-tile (\d+) (\d+) (\d+) (\d+) (\d+)$")


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--cache", required=True)
    a = ap.parse_args()
    env = dict(os.environ)
    env["ATTN_DEBUG_TILE_STATS"] = "1"
    # The statistic changes the code but not the cache key: a private cache.
    env["ATTN_CACHE_DIR"] = a.cache
    ok = True
    comparisons = tiles = visited = partial = 0
    for path in sorted(glob.glob(os.path.join(a.examples, "*.attn"))):
        name = os.path.splitext(os.path.basename(path))[0]
        ir = run([a.attnc, path, "--emit=attn"])
        if "attn.linear_attention" in ir.stdout:
            continue
        shapes, params = OVERRIDES.get(name, (None, []))
        shapes = shapes or GENERIC_SHAPES
        pargs = [x for p in params for x in ("--param", p)]
        for (B, Hq, Hkv, N, M) in shapes:
            shape = "B=%d,Hq=%d,Hkv=%d,N=%d,M=%d,Dqk=8,Dv=8" % (B, Hq, Hkv,
                                                               N, M)
            for tq, tk in SCHEDULES:
                r = run([a.attnc, "run", path, "--shape", shape, "--seed",
                         str(SEED), "--tile-q", str(tq), "--tile-kv",
                         str(tk), "--threads", "2"] + pargs, env)
                if r.returncode != 0:
                    print("FAIL run %s %s %dx%d: %s" %
                          (name, shape, tq, tk, (r.stdout + r.stderr)[-400:]))
                    ok = False
                    continue
                kernel = {}
                for line in r.stderr.splitlines():
                    m = TILE_RE.match(line)
                    if m:
                        b, h, qt, kt, p = map(int, m.groups())
                        kernel[(b, h, qt, kt)] = "+" if p else "#"
                for (b, h) in [(0, 0), (B - 1, Hq - 1)]:
                    s = run([a.attnc, "show-mask", path, "--shape", shape,
                             "--seed", str(SEED), "--tile-q", str(tq),
                             "--tile-kv", str(tk), "--b", str(b), "--h",
                             str(h)] + pargs)
                    if s.returncode != 0:
                        print("FAIL show-mask %s %s: %s" %
                              (name, shape, s.stderr[-400:]))
                        ok = False
                        continue
                    lines = s.stdout.splitlines()
                    start = next(i for i, l in enumerate(lines)
                                 if l.startswith("legend:")) + 1
                    grid = []
                    for l in lines[start:]:
                        if not re.fullmatch(r"  [#+.]+", l):
                            break
                        grid.append(l[2:])
                    nq, nk = -(-N // tq), -(-M // tk)
                    what = "%s %s tiles %dx%d b=%d h=%d" % (name, shape, tq,
                                                            tk, b, h)
                    if len(grid) != nq or any(len(g) != nk for g in grid):
                        print("FAIL %s: grid is %dx%s, expected %dx%d" %
                              (what, len(grid),
                               len(grid[0]) if grid else 0, nq, nk))
                        ok = False
                        continue
                    diffs = []
                    for qt in range(nq):
                        for kt in range(nk):
                            want = kernel.get((b, h, qt, kt), ".")
                            got = grid[qt][kt]
                            tiles += 1
                            visited += want != "."
                            partial += want == "+"
                            if want != got:
                                diffs.append("(%d,%d) show-mask %r kernel %r"
                                             % (qt, kt, got, want))
                    comparisons += 1
                    if diffs:
                        ok = False
                        print("FAIL %s: %d tiles differ, e.g. %s" %
                              (what, len(diffs), "; ".join(diffs[:4])))
                    else:
                        print("ok %s" % what)
    if ok and comparisons:
        print("TILE-VISITS PASS %d comparisons, %d tiles, %d visited, %d "
              "partial" % (comparisons, tiles, visited, partial))
        return 0
    print("TILE-VISITS FAIL")
    return 1


if __name__ == "__main__":
    sys.exit(main())
