"""Compiles every spec in a directory for the given CUDA chips and checks the
ptxas report: each spec (softmax family and linear attention alike) yields
both head-dim kernels on every chip (the softmax family also both batch
prefill kernels, softmax specs both decode kernels and the merge kernel),
with no spills (stores, loads or stack).
Prints one line per spec."""
import glob
import os
import subprocess
import sys

attnc, examples, chips, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
failures = 0
for spec in sorted(glob.glob(os.path.join(examples, "*.attn"))):
    name = os.path.basename(spec)[:-5]
    proc = subprocess.run(
        [attnc, spec, "--target=cuda:" + chips, "--emit=fatbin", "-o", out,
         "--verbose"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name}: FAILED\n{proc.stderr}")
        failures += 1
        continue
    rows = [l.split() for l in proc.stderr.splitlines()[1:] if l.strip()]
    kernels = {(r[0], r[1]) for r in rows}
    want = {(c, f"attn_{name}_d{d}") for c in chips.split(",")
            for d in (64, 128)}
    # The softmax family also gets the batch prefill kernels, softmax specs
    # the split-KV decode kernels and the merge (the test's CHECK lines pin
    # how many kernels each spec has).
    if any("_batch_d" in k for _, k in kernels):
        want |= {(c, f"attn_{name}_batch_d{d}") for c in chips.split(",")
                 for d in (64, 128)}
    if any("_decode_d" in k for _, k in kernels):
        want |= {(c, f"attn_{name}_{k}") for c in chips.split(",")
                 for k in ("decode_d64", "decode_d128", "merge")}
    spills = [r for r in rows if r[3:6] != ["0", "0", "0"]]
    if kernels != want or spills or os.path.getsize(out) == 0:
        print(f"{name}: BAD kernels={sorted(kernels)} spills={spills}")
        failures += 1
        continue
    regs = max(int(r[2]) for r in rows)
    print(f"{name}: ok {len(rows)} kernels, no spills, <= {regs} registers")
print(f"{failures} failures")
sys.exit(1 if failures else 0)
