"""Inputs and checks for merge.test, in plain Python (no NumPy on the lit
PATH).

  merge_npy.py make DIR
      A random attention problem (B=1, H=2, N=4, M=9, D=3, Dv=4; query i
      sees keys j <= i + 5) with its keys split into parts [0, 2), [2, 6),
      [6, 9): each part's o and lse as DIR/o{p}.npy and DIR/lse{p}.npy
      (part 1 in float64, the others float32; part 2 is empty for the first
      query: lse -inf), the whole attention as DIR/want_o.npy and
      DIR/want_lse.npy (float64), and bad inputs: o_short.npy (Dv = 3),
      lse_short.npy (N = 3) and trunc.npy (cut off).
  merge_npy.py check GOT_O GOT_LSE WANT_O WANT_LSE
      Prints the largest differences and OK (within 1e-5, same infinities)
      or FAIL (exit status 1).
"""

import ast
import math
import random
import struct
import sys

B, H, N, M, D, DV = 1, 2, 4, 9, 3, 4
BOUNDS = [0, 2, 6, 9]


def write_npy(path, shape, values, descr="<f4"):
    dims = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1
                                                     else "") + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        descr, dims)
    # Magic (6) + version (2) + length (2) + header + newline: a multiple of 64.
    pad = 64 - (10 + len(header) + 1) % 64
    header += " " * (pad % 64) + "\n"
    fmt = "<%d%s" % (len(values), "f" if descr == "<f4" else "d")
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)))
        f.write(header.encode("latin1"))
        f.write(struct.pack(fmt, *values))


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    hlen = struct.unpack("<H", data[8:10])[0]
    header = ast.literal_eval(data[10:10 + hlen].decode("latin1"))
    count = 1
    for s in header["shape"]:
        count *= s
    code = {"<f4": "f", "<f8": "d"}[header["descr"]]
    values = struct.unpack("<%d%s" % (count, code), data[10 + hlen:])
    return list(header["shape"]), list(values)


def attend(q, k, v, b, h, i, lo, hi):
    """Softmax attention of query (b, h, i) over the visible keys in
    [lo, hi): (o, lse), o = 0 and lse = -inf when none is visible."""
    scores = []
    for j in range(lo, hi):
        if j > i + (M - N):
            continue
        s = sum(q[b][h][i][d] * k[b][h][j][d] for d in range(D)) / math.sqrt(D)
        scores.append((j, s))
    if not scores:
        return [0.0] * DV, -math.inf
    m = max(s for _, s in scores)
    total = sum(math.exp(s - m) for _, s in scores)
    o = [sum(math.exp(s - m) * v[b][h][j][d] for j, s in scores) / total
         for d in range(DV)]
    return o, m + math.log(total)


def make(out):
    rng = random.Random(14)

    def rand(*shape):
        if not shape:
            return rng.gauss(0, 1)
        return [rand(*shape[1:]) for _ in range(shape[0])]

    q, k, v = rand(B, H, N, D), rand(B, H, M, D), rand(B, H, M, DV)
    parts = [([], []) for _ in BOUNDS[1:]]
    want_o, want_lse = [], []
    for b in range(B):
        for h in range(H):
            for i in range(N):
                for p in range(len(parts)):
                    o, lse = attend(q, k, v, b, h, i, BOUNDS[p], BOUNDS[p + 1])
                    parts[p][0].extend(o)
                    parts[p][1].append(lse)
                o, lse = attend(q, k, v, b, h, i, 0, M)
                want_o.extend(o)
                want_lse.append(lse)
    assert parts[2][1][0] == -math.inf  # an empty part for the first query
    for p, (o, lse) in enumerate(parts):
        descr = "<f8" if p == 1 else "<f4"
        write_npy("%s/o%d.npy" % (out, p), [B, H, N, DV], o, descr)
        write_npy("%s/lse%d.npy" % (out, p), [B, H, N], lse, descr)
    write_npy(out + "/want_o.npy", [B, H, N, DV], want_o, "<f8")
    write_npy(out + "/want_lse.npy", [B, H, N], want_lse, "<f8")
    write_npy(out + "/o_short.npy", [B, H, N, DV - 1], [0.0] * (B * H * N * 3))
    write_npy(out + "/lse_short.npy", [B, H, N - 1], [0.0] * (B * H * 3))
    with open("%s/o0.npy" % out, "rb") as f:
        whole = f.read()
    with open(out + "/trunc.npy", "wb") as f:
        f.write(whole[:-10])


def check(got_o, got_lse, want_o, want_lse):
    ok = True
    for name, got, want in (("o", got_o, want_o), ("lse", got_lse, want_lse)):
        gshape, g = read_npy(got)
        wshape, w = read_npy(want)
        if gshape != wshape:
            print("%s: shape %s, expected %s" % (name, gshape, wshape))
            ok = False
            continue
        worst = 0.0
        for x, y in zip(g, w):
            if math.isnan(x) or (math.isinf(y) and x != y):
                worst = math.inf
            elif not math.isinf(y):
                worst = max(worst, abs(x - y) / max(1.0, abs(y)))
        print("%s %s: max rel err %.2e" % (name, gshape, worst))
        ok = ok and worst <= 1e-5
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(check(*sys.argv[2:6]))
