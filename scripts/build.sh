#!/usr/bin/env bash
# Configures (once) and builds attnc into build/. Runs setup.sh first.
#   scripts/build.sh             the release build in build/ ($ATTN_BUILD_DIR)
#   scripts/build.sh --sanitize  the ASan + UBSan build in build-asan/
#                                ($ATTN_ASAN_BUILD_DIR): ATTN_ENABLE_SANITIZERS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
EXTRA=()
case "${1:-}" in
  "") ;;
  --sanitize)
    BUILD="${ATTN_ASAN_BUILD_DIR:-$ROOT/build-asan}"
    EXTRA=(-DATTN_ENABLE_SANITIZERS=ON)
    # The build runs attnc (the AOT example); see scripts/test.sh for why.
    export ASAN_OPTIONS="allow_user_poisoning=0:${ASAN_OPTIONS:-}"
    ;;
  *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
esac
bash "$ROOT/scripts/setup.sh"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DLLVM_USE_LINKER=lld \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DATTN_TEST_PYTHON=/usr/bin/python3 \
    "${EXTRA[@]}"
fi
cmake --build "$BUILD" -- -j"$(nproc)"
