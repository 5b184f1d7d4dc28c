#!/usr/bin/env bash
# Builds attnc (installing what it needs) and runs the whole test suite
# through ctest: lit suites (parser, dialect, attnc stages, numeric oracle
# tests) and the gtest unit tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/build.sh"
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)"
