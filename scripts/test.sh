#!/usr/bin/env bash
# Builds attnc (installing what it needs) and runs everything CI needs
# (.ci/run calls it with no arguments):
#  1. build/ (scripts/build.sh): the whole suite through ctest: lit suites
#     (parser, dialect, attnc stages, numeric oracle tests), the gtest unit
#     tests and the libFuzzer targets (ctest label `fuzz`, ATTN_FUZZ_SECONDS
#     each, default 60; see test/Fuzz/README.md);
#  2. build-asan/ (scripts/build.sh --sanitize): the same sources built with
#     ASan + UBSan, running the unit and integration suites through ctest.
#
#   scripts/test.sh                 1 then 2
#   scripts/test.sh --sanitize      2 only
#   scripts/test.sh --no-sanitize   1 only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD="${ATTN_ASAN_BUILD_DIR:-$ROOT/build-asan}"

normal=1 sanitize=1
case "${1:-}" in
  "") ;;
  --sanitize) normal=0 ;;
  --no-sanitize) sanitize=0 ;;
  *) echo "usage: $0 [--sanitize | --no-sanitize]" >&2; exit 2 ;;
esac

if [ "$normal" = 1 ]; then
  bash "$ROOT/scripts/build.sh"
  (cd "$BUILD" && ctest --output-on-failure -j"$(nproc)")
fi

if [ "$sanitize" = 1 ]; then
  echo "== sanitizer build (ASan + UBSan) in $ASAN_BUILD"
  # allow_user_poisoning=0: attnc's instrumented code and the uninstrumented
  # libMLIR/libLLVM share LLVM's inline allocators (BumpPtrAllocator), whose
  # ASan poisoning the uninstrumented copies never undo. abort_on_error=1:
  # a report kills the process with SIGABRT, so `not attnc ...` in a lit
  # test cannot mistake it for an expected error exit.
  export ASAN_OPTIONS="allow_user_poisoning=0:detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:${UBSAN_OPTIONS:-}"
  ATTN_ASAN_BUILD_DIR="$ASAN_BUILD" bash "$ROOT/scripts/build.sh" --sanitize
  (cd "$ASAN_BUILD" && ctest --output-on-failure -j"$(nproc)" -LE fuzz)
fi
