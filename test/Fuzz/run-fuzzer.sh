#!/usr/bin/env bash
# Runs one libFuzzer target for a fixed time, as the ctest fuzz-<target> does:
#   run-fuzzer.sh FUZZER SEED_DIR WORK_DIR [extra libFuzzer flags...]
# The seed corpus is copied to WORK_DIR/corpus first, so the inputs the
# fuzzer adds never land in the source tree; crash, leak, timeout and OOM
# inputs go to WORK_DIR/artifacts/. Exits non-zero on any finding.
#
# ATTN_FUZZ_SECONDS (default 60) sets the run time. Everything after the
# third argument goes to libFuzzer, e.g. -jobs=4 or -runs=N, or a crash file
# to reproduce it (then no time limit applies).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 FUZZER SEED_DIR WORK_DIR [libFuzzer flags or inputs...]" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 work=$3
shift 3
seconds=${ATTN_FUZZ_SECONDS:-60}

# ASan and UBSan:
# - allow_user_poisoning=0: the instrumented code and the uninstrumented
#   libMLIR share LLVM allocators (BumpPtrAllocator, inline in headers): the
#   instrumented copies poison memory that libMLIR's copies hand out again
#   without unpoisoning, which ASan would report as use-after-poison.
# - detect_leaks=1: every target frees what it makes per input (a fresh
#   MLIRContext each time); MLIR's and LLVM's process-wide state stays
#   reachable from globals, which LeakSanitizer does not report.
# - UBSan aborts on the first report (the targets are also compiled with
#   -fno-sanitize-recover=undefined), so any UB is a crash with its input.
export ASAN_OPTIONS="allow_user_poisoning=0:detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

case "$work" in
  "" | / | "$seeds") echo "$0: refusing to use '$work' as the work dir" >&2; exit 2 ;;
esac
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"

flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
       "-artifact_prefix=$work/artifacts/")
if [ $# -gt 0 ] && [ -f "${!#}" ]; then
  # Reproducing: the last argument is an input file.
  exec "$fuzzer" "${flags[@]}" "$@"
fi
cp -R "$seeds/." "$work/corpus/"
echo "fuzzing $(basename "$fuzzer") for ${seconds}s from $(ls "$seeds" | wc -l) seeds"
exec "$fuzzer" "${flags[@]}" "-max_total_time=$seconds" "$@" "$work/corpus"
