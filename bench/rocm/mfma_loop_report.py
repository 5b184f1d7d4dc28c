#!/usr/bin/env python3
"""The ROCm kernels on paper: what each kernel's main loop executes.

For every example (or the specs given) and every chip, compiles the kernels
with `attnc --target=rocm:CHIPS --emit=amdgcn --verbose`, then reads

  - from the code objects' metadata (attnc -o k.o --header k.h --verbose,
    which reads NT_AMDGPU_METADATA): VGPRs, AGPRs, spills, scratch, LDS;
  - from the assembly: the main loop (the backward branch whose body holds
    the most instructions, v_mfma first) and in it the instruction mix:
    v_mfma, other VALU, SALU, LDS reads and writes (bytes per lane from the
    opcode), buffer and global loads, waits and barriers.

It prints a table per kernel (--markdown for docs/benchmarks.md) and, with
--check, fails unless every kernel has zero scratch and no spills and every
softmax-family kernel has v_mfma in its main loop. No AMD GPU was used: the
estimate columns are a model (see docs/benchmarks.md, "ROCm on paper"), not
a measurement.

  bench/rocm/mfma_loop_report.py --attnc build/bin/attnc [--chips gfx90a,gfx942]
      [--markdown] [--check] [SPEC.attn ...]
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Issue cycles per wave on one SIMD (CDNA2/CDNA3 instruction guides): a
# wave64 VALU op occupies a 16-lane SIMD for 4 cycles; v_mfma 32x32x8
# bf16/f16 (16,384 flops) is 64 cycles on gfx90a (256 flops/clk/SIMD) and
# 32 on gfx942 (512 flops/clk/SIMD: 1,307 TFLOP/s over 304 CUs at 2.1 GHz).
MFMA_CYCLES = {"gfx90a": 64, "gfx942": 32}
VALU_CYCLES = 4
# LDS: 128 bytes per clock per CU, shared by the CU's 4 SIMDs.
LDS_BYTES_PER_CLK_PER_SIMD = 32

LDS_BYTES = {"b16": 2, "u16": 2, "i16": 2, "b32": 4, "b64": 8, "b96": 12,
             "b128": 16, "u8": 1, "i8": 1, "b8": 1}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: " + " ".join(cmd) + "\n" + p.stderr)
    return p.stdout, p.stderr


def parse_report(stderr):
    """attnc --verbose: 'chip kernel vgpr agpr sgpr vspill sspill lds scratch'."""
    rows = {}
    for line in stderr.splitlines():
        f = line.split()
        if len(f) == 9 and f[0].startswith("gfx") and f[2].isdigit():
            rows[(f[0], f[1])] = dict(zip(
                ["vgpr", "agpr", "sgpr", "vspill", "sspill", "lds", "scratch"],
                map(int, f[2:])))
    return rows


def split_kernels(asm):
    """{(chip, kernel): [instruction lines and labels]} from --emit=amdgcn."""
    out, chip, kernel = {}, None, None
    for line in asm.splitlines():
        m = re.match(r"; ---- (gfx\w+)", line)
        if m:
            chip, kernel = m.group(1), None
            continue
        m = re.match(r"^([A-Za-z_][\w.]*):\s*(;.*)?$", line)
        if m and not m.group(1).startswith(".") and chip:
            kernel = m.group(1)
            out[(chip, kernel)] = []
            continue
        if kernel is None:
            continue
        if line.startswith("\t.end_amdhsa_kernel") or re.match(r"^\s*\.Lfunc_end", line):
            kernel = None
            continue
        m = re.match(r"^(\.L\w+):", line)
        if m:
            out[(chip, kernel)].append(("label", m.group(1)))
            continue
        s = line.strip()
        if not s or s.startswith((";", ".")):
            continue
        out[(chip, kernel)].append(("insn", s.split(";")[0].strip()))
    return out


def blocks_of(items):
    """Basic blocks: (label, [instructions], [successor labels])."""
    blocks, cur, alias = [], None, {}

    def start(label):
        nonlocal cur
        cur = [label, [], []]
        blocks.append(cur)

    start("<entry>")
    for kind, text in items:
        if kind == "label":
            if cur[1] or cur[0] == "<entry>":
                prev = cur
                start(text)
                if not (prev[1] and re.match(r"s_(branch|endpgm|setpc)", prev[1][-1])):
                    prev[2].append(text)  # fall through
            else:
                alias[cur[0]] = text
                cur[0] = text
            continue
        cur[1].append(text)
        m = re.match(r"s_(cbranch_\w+|branch)\s+(\.L\w+)", text)
        if m:
            cur[2].append(m.group(2))
            if m.group(1) == "branch":
                start("<after %d>" % len(blocks))
            else:
                nxt = "<after %d>" % len(blocks)
                cur[2].append(nxt)
                start(nxt)
    for b in blocks:
        b[2] = [alias.get(x, x) for x in b[2]]
    return blocks


def main_loops(items):
    """The natural loops (an edge latch -> header where the header dominates
    the latch; body = the blocks that reach the latch without passing the
    header), as lists of instructions. Cold blocks placed after a loop branch
    back to it in the layout without being loops, hence the dominators."""
    blocks = blocks_of(items)
    n = len(blocks)
    index = {b[0]: i for i, b in enumerate(blocks)}
    succs = [[index[x] for x in b[2] if x in index] for b in blocks]
    preds = [[] for _ in range(n)]
    for i, ss in enumerate(succs):
        for j in ss:
            preds[j].append(i)
    everything = set(range(n))
    dom = [everything] * n
    dom[0] = {0}
    changed = True
    while changed:
        changed = False
        for i in range(1, n):
            ps = [dom[p] for p in preds[i]]
            new = (set.intersection(*ps) if ps else set()) | {i}
            if new != dom[i]:
                dom[i], changed = new, True
    loops = []
    for latch in range(n):
        for h in succs[latch]:
            if h not in dom[latch]:
                continue
            body, work = {h, latch}, [latch]
            while work:
                x = work.pop()
                for p in preds[x]:
                    if p not in body:
                        body.add(p)
                        work.append(p)
            loops.append([t for i in sorted(body) for t in blocks[i][1]])
    return loops


def main_loop(items):
    """The loop with the most v_mfma; of those, the shortest (the kernels
    keep a general version of the kv loop for head dims that are not
    multiples of 8 beside the common one)."""
    best = None
    for body in main_loops(items):
        key = (sum(t.startswith("v_mfma") for t in body), -len(body))
        if best is None or key > best[0]:
            best = (key, body)
    return best[1] if best else []


def mix(body):
    c = dict(insns=len(body), mfma=0, valu=0, salu=0, lds_read=0, lds_write=0,
             lds_bytes=0, vmem=0, wait=0, barrier=0)
    for t in body:
        op = t.split()[0]
        if op.startswith("v_mfma"):
            c["mfma"] += 1
        elif op.startswith("ds_"):
            m = re.search(r"_(b\d+|u\d+|i\d+)$", op)
            n = LDS_BYTES.get(m.group(1), 4) if m else 4
            if "read2" in op or "write2" in op:
                n *= 2
            c["lds_bytes"] += 64 * n
            c["lds_read" if "read" in op else "lds_write"] += 1
        elif op.startswith(("buffer_", "global_", "flat_")):
            c["vmem"] += 1
        elif op.startswith("s_waitcnt"):
            c["wait"] += 1
        elif op.startswith("s_barrier"):
            c["barrier"] += 1
        elif op.startswith("v_"):
            c["valu"] += 1
        elif op.startswith("s_"):
            c["salu"] += 1
    return c


def estimate(chip, c, waves):
    """Cycles per loop iteration per SIMD if the MFMAs, the other VALU work
    and the CU's LDS bandwidth did not overlap at all (pessimistic) and if
    they overlapped perfectly (optimistic); MFMA share of each."""
    mf = MFMA_CYCLES[chip] * c["mfma"]
    valu = VALU_CYCLES * (c["valu"] + c["lds_read"] + c["lds_write"] + c["vmem"])
    lds = c["lds_bytes"] / LDS_BYTES_PER_CLK_PER_SIMD
    if mf == 0:
        return None, None
    return mf / (mf + valu + lds), mf / max(mf, valu, lds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attnc", default=os.path.join(ROOT, "build/bin/attnc"))
    ap.add_argument("--chips", default="gfx90a,gfx942")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--tile-q", type=int, default=0)
    ap.add_argument("--tile-kv", type=int, default=0)
    ap.add_argument("specs", nargs="*")
    a = ap.parse_args()
    specs = a.specs or sorted(glob.glob(os.path.join(ROOT, "examples/*.attn")))
    failures = []
    rows = []
    tmp = tempfile.mkdtemp(prefix="mfma-loop-report-")
    for spec in specs:
        common = [a.attnc, spec, "--target=rocm:" + a.chips,
                  "--tile-q=%d" % a.tile_q, "--tile-kv=%d" % a.tile_kv]
        asm, _ = run(common + ["--emit=amdgcn"])
        # The AOT door, as users run it: object + header, and the report.
        _, err = run(common + ["--verbose",
                      "-o", os.path.join(tmp, "k.o"),
                      "--header", os.path.join(tmp, "k.h")])
        report = parse_report(err)
        kernels = split_kernels(asm)
        name = os.path.basename(spec)
        if not report:
            failures.append(f"{name}: no --verbose report")
        for (chip, kernel), r in sorted(report.items()):
            items = kernels.get((chip, kernel))
            if items is None:
                failures.append(f"{name} {chip} {kernel}: not in the assembly")
                continue
            c = mix(main_loop(items))
            softmax = "v_mfma" in " ".join(t for k, t in items if k == "insn")
            # SGPR spills go to VGPR lanes (v_writelane), not to memory;
            # they are listed, not failed.
            if r["scratch"] or r["vspill"]:
                failures.append(f"{name} {chip} {kernel}: scratch {r['scratch']}"
                                f" vspill {r['vspill']}")
            if softmax and c["mfma"] == 0:
                failures.append(f"{name} {chip} {kernel}: no v_mfma in the main loop")
            lo, hi = estimate(chip, c, 0)
            rows.append((name, chip, kernel, r, c, lo, hi))
    if a.markdown:
        print("| spec | chip | kernel | VGPR | AGPR | scratch | LDS B | loop insns | "
              "v_mfma | MFMA share | LDS B / MFMA | est. MFMA busy |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print("spec chip kernel vgpr agpr sspill scratch lds loop_insns mfma valu salu "
              "lds_rd lds_wr lds_bytes vmem waits barriers mfma_share "
              "lds_bytes_per_mfma est_busy")
    for name, chip, kernel, r, c, lo, hi in rows:
        share = c["mfma"] / c["insns"] if c["insns"] else 0
        per = c["lds_bytes"] / c["mfma"] if c["mfma"] else 0
        est = f"{lo:.0%}-{hi:.0%}" if lo is not None else "-"
        if a.markdown:
            if not c["mfma"]:
                continue
            print(f"| {name} | {chip} | {kernel} | {r['vgpr']} | {r['agpr']} | "
                  f"{r['scratch']} | {r['lds']} | {c['insns']} | {c['mfma']} | "
                  f"{share:.0%} | {per:.0f} | {est} |")
        else:
            print(f"{name} {chip} {kernel} {r['vgpr']} {r['agpr']} {r['sspill']} {r['scratch']} "
                  f"{r['lds']} {c['insns']} {c['mfma']} {c['valu']} {c['salu']} "
                  f"{c['lds_read']} {c['lds_write']} {c['lds_bytes']} {c['vmem']} "
                  f"{c['wait']} {c['barrier']} {share:.3f} {per:.0f} {est}")
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    if a.check:
        if failures:
            sys.exit(1)
        print(f"PASS: {len(rows)} kernels of {len(specs)} specs: no scratch, "
              "no VGPR spills, v_mfma in every softmax kernel's main loop")


if __name__ == "__main__":
    main()
