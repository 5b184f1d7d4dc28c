#!/usr/bin/env bash
# The main job: builds attnc (installing what it needs), compiles
# examples/causal.attn and runs it on random inputs, printing the result
# check and timing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/build.sh" >/dev/null
SPEC="${1:-$ROOT/examples/causal.attn}"
# JIT-compiles the spec (cached under $ATTN_CACHE_DIR or ~/.cache/attnc), runs
# it on all cores, and checks it against the float64 reference evaluator.
echo "\$ attnc run $SPEC --shape B=1,Hq=8,Hkv=2,N=1000,M=1000,Dqk=64,Dv=64"
"$BUILD/bin/attnc" run "$SPEC" --shape B=1,Hq=8,Hkv=2,N=1000,M=1000,Dqk=64,Dv=64
