#!/usr/bin/env bash
# Alternating timing of the bf16 CPU kernel paths (docs/benchmarks.md,
# "bf16 (AVX512-BF16)"): for each spec, ROUNDS rounds of
#   f32                the same spec with f32 inputs (examples/*.attn)
#   ATTN_BF16_DOT=off  fp32 FMAs on widened bf16 (the path before AVX512-BF16)
#   ATTN_BF16_DOT=qk   vdpbf16ps for S = Q·Kᵀ, P·V in fp32
#   ATTN_BF16_DOT=all  vdpbf16ps for S = Q·Kᵀ and O += P·V (the default)
# one after the other (A B C D A B C D ...), each `attnc run --repeat 5
# --no-check`; prints every median, then per path the median of the medians
# and the median over rounds of time / f32 time of the same round (robust
# to load that changes between rounds on a shared machine).
#
#   bench/bf16/compare.sh [ROUNDS] [SHAPE] [THREADS]
#   (defaults: 5, B=1,Hq=8,N=4096,M=4096,Dqk=128,Dv=128, all cores; needs
#   build/bin/attnc)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ATTNC="${ATTN_BUILD_DIR:-$ROOT/build}/bin/attnc"
ROUNDS="${1:-5}"
SHAPE="${2:-B=1,Hq=8,N=4096,M=4096,Dqk=128,Dv=128}"
THREADS="${3:-0}"
MODES=(f32 off qk all)
export ATTN_CACHE_DIR="${ATTN_CACHE_DIR:-$(mktemp -d)}"

grep -q avx512_bf16 /proc/cpuinfo ||
  echo "note: this CPU has no avx512_bf16: all three paths are fp32" >&2
echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) cores"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# run MODE SPEC ARGS...: attnc run for one path.
run() {
  local m=$1 spec=$2
  shift 2
  if [ "$m" = f32 ]; then
    "$ATTNC" run "$ROOT/examples/${spec%_bf16}.attn" "$@"
  else
    ATTN_BF16_DOT=$m "$ATTNC" run "$ROOT/bench/bf16/$spec.attn" "$@"
  fi
}
for spec in dense_bf16 causal_bf16; do
  echo "command: ATTN_BF16_DOT=MODE $ATTNC run bench/bf16/$spec.attn --shape $SHAPE --repeat 5 --no-check --threads $THREADS (f32: examples/${spec%_bf16}.attn)"
  # Compile each path once outside the timed rounds.
  for m in "${MODES[@]}"; do
    run "$m" "$spec" --shape N=64 --repeat 1 --no-check >/dev/null
  done
  log=$(mktemp)
  for r in $(seq "$ROUNDS"); do
    for m in "${MODES[@]}"; do
      t=$(run "$m" "$spec" --shape "$SHAPE" --repeat 5 --no-check \
            --threads "$THREADS" |
            sed -n 's/^time: median \([0-9.]*\) ms.*/\1/p')
      echo "$r $m $t" >>"$log"
      echo "  $spec round $r $m: $t ms"
    done
  done
  python3 - "$spec" "$log" <<'PY'
import statistics, sys
spec, log = sys.argv[1], sys.argv[2]
t = {}
for line in open(log):
    r, m, ms = line.split()
    t.setdefault(m, {})[r] = float(ms)
for m in t:
    ratio = statistics.median(t[m][r] / t["f32"][r] for r in t[m])
    print("%s %s: median %.4g ms over %d rounds, median time / f32 %.3f (%s)"
          % (spec, m, statistics.median(t[m].values()), len(t[m]), ratio,
             " ".join("%.4g" % v for v in t[m].values())))
PY
  rm -f "$log"
done
