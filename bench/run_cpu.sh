#!/usr/bin/env bash
# Builds attnc (scripts/build.sh) and runs the standard CPU benchmark:
#   bench/run_cpu.sh            # the full table (~5-10 min on 2 idle cores)
#   bench/run_cpu.sh --quick    # a tiny version (N=256, one run), ~10 s
# Extra arguments go to attn-bench (e.g. --threads 1 --peak 115).
# Prints the machine, the date and the exact command, then the markdown
# tables on stdout (progress on stderr), ready to paste into
# docs/benchmarks.md. Run it on an otherwise idle machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/build.sh" >&2

cmd=("$BUILD/bin/attn-bench" --suite cpu "$@")
model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
echo "machine: ${model:-unknown CPU}, $(nproc) cores available" \
  "($(lscpu | sed -n 's/^CPU(s):[[:space:]]*//p' | head -n1) CPUs," \
  "$(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*//p' | head -n1) thread(s) per core)," \
  "$(uname -sr)"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
echo "command: ${cmd[*]}"
echo "ATTN_NUM_THREADS=${ATTN_NUM_THREADS:-unset}"
echo
"${cmd[@]}"
