# The results of Inputs/atomic_bwd.mlir, recomputed in float32 in the order
# the simulator applies the atomic adds (CTA (0, b) before CTA (1, b), lanes
# in thread order), so every comparison is exact.
#   atomic_bwd_check.py INPUTS_DIR ROUNDED_DIR OUTPUTS_DIR
import sys

import numpy as np

inp, rnd, out = sys.argv[1:4]
L = lambda d, n: np.load("%s/%s.npy" % (d, n))
k, v, do = L(rnd, "k"), L(rnd, "v"), L(rnd, "do")
o, lse, g = (L(inp, n).astype(np.float32) for n in ("o", "lse", "g"))
dq, dk, dv, dg = (L(out, n) for n in ("dq", "dk", "dv", "dg"))
B, Hq, M = do.shape[0], do.shape[1], k.shape[2]
f = np.float32

want_dq = np.zeros(dq.shape, f)
want_dk = np.zeros(dk.shape, f)
want_dv = np.zeros(dv.shape, f)
want_dg = np.zeros(dg.shape, f)
for b in range(B):
    counter = f(0)
    for j in range(M // 4):
        for t in range(16):
            r, c = t // 4, t % 4
            m = 4 * j + r
            want_dv[b, 0, m, c] = (v[b, 0, m, c] + do[b, 0, r, c] *
                                   o[b, 1, r, c]) + lse[b, 0, r]
        for h in range(Hq):
            for t in range(16):
                r, c = t // 4, t % 4
                want_dq[b, h, r, c] += k[b, 0, 4 * j + r, c] * f(h + 1)
        for t in range(16):
            r, c = t // 4, t % 4
            want_dk[b, 0, 4 * j + r, c] = counter
            counter += f(1)
        for t in range(16):
            r, c = t // 4, t % 4
            want_dg[b, 1, r] += g[b, 1, r] * k[b, 0, 4 * j + r, c]
        want_dg[b, 0, 1 + j] = 136
    want_dg[b, 0, 0] = counter

ok = True
for name, got, want in (("dq", dq, want_dq), ("dk", dk, want_dk),
                        ("dv", dv, want_dv), ("dg", dg, want_dg)):
    if got.shape != want.shape or not (got == want).all():
        print("%s differs:\n%s\nwant\n%s" % (name, got, want))
        ok = False
print("dg[0, 0] =", " ".join("%g" % x for x in dg[0, 0]))
print("dk[0, 0, :, 0] =", " ".join("%g" % x for x in dk[0, 0, :, 0]))
print("ATOMICS OK" if ok else "ATOMICS WRONG")
