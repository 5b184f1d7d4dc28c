#!/usr/bin/env bash
# The main job: builds attnc (installing what it needs), compiles
# examples/causal.attn and runs it on random inputs, printing the result
# check and timing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/build.sh" >/dev/null
SPEC="${1:-$ROOT/examples/causal.attn}"
echo "\$ attnc run $SPEC --shape B=1,Hq=8,Hkv=2,N=333,M=333,Dqk=64,Dv=64 --reference"
"$BUILD/bin/attnc" run "$SPEC" --shape B=1,Hq=8,Hkv=2,N=333,M=333,Dqk=64,Dv=64 --reference
