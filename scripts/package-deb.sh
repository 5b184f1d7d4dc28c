#!/usr/bin/env bash
#===- scripts/package-deb.sh - .deb packages of attnc, checked ------------===#
#
# Builds the Debian packages of a built tree with CPack (one per component,
# cmake/Packaging.cmake) and checks them with dpkg-deb --info/--contents:
#   libattn-runtime  libattn_runtime.so, its C headers, pkg-config and the
#                    CMake package (attnc::runtime, attnc_add_kernel)
#   attnc            attnc, attn-opt, docs and examples (needs libmlir-22,
#                    libllvm22, lld-22)
#   libattn-jit      libattn_jit.so and attn/JIT/Compiler.h (attnc::jit)
#
#   scripts/package-deb.sh [BUILD_DIR [OUT_DIR]]     (default build, build/packages)
#   sudo apt install ./build/packages/*.deb
#
# Prints PACKAGES OK at the end.
#===----------------------------------------------------------------------===#
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
OUT="${2:-$BUILD/packages}"
rm -rf "$OUT"
mkdir -p "$OUT"
cpack --config "$BUILD/CPackConfig.cmake" -B "$OUT" >"$OUT/cpack.log" 2>&1 ||
  { cat "$OUT/cpack.log"; exit 1; }

version=$(sed -n 's/^#define ATTN_VERSION_STRING "\(.*\)"/\1/p' \
  "$ROOT/runtime/include/attn/version.h")
abi=${version%.*} # the soname carries major.minor

# expect PACKAGE FILE...: the package exists, names its dependencies and holds
# each FILE (a path under /usr).
expect() {
  local name=$1
  shift
  local deb
  deb=$(ls "$OUT"/"${name}"_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { echo "FAIL: no ${name}_*.deb in $OUT"; exit 1; }
  echo "== $(basename "$deb")"
  dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'
  local contents
  contents=$(dpkg-deb --contents "$deb")
  for f in "$@"; do
    if ! echo "$contents" | grep -Eq " \./usr/$f( -> .*)?\$"; then
      echo "FAIL: $(basename "$deb") lacks /usr/$f"
      echo "$contents"
      exit 1
    fi
    echo "  /usr/$f"
  done
}

expect libattn-runtime "lib/libattn_runtime.so.$version" \
  "lib/libattn_runtime.so.$abi" lib/libattn_runtime.so \
  include/attn/runtime.h include/attn/version.h \
  lib/pkgconfig/attn_runtime.pc lib/cmake/attnc/attncConfig.cmake \
  lib/cmake/attnc/attncConfigVersion.cmake \
  lib/cmake/attnc/attncAddKernel.cmake lib/cmake/attnc/attncRuntimeTargets.cmake
expect attnc bin/attnc bin/attn-opt lib/cmake/attnc/attncCompilerTargets.cmake \
  share/attnc/docs/language.md share/attnc/examples/causal.attn \
  share/attnc/examples/aot/main.c share/attnc/examples/jit/jit_main.cpp
expect libattn-jit "lib/libattn_jit.so.$version" include/attn/JIT/Compiler.h \
  lib/cmake/attnc/attncJitTargets.cmake
# The runtime package must not pull in LLVM or MLIR.
if dpkg-deb --info "$OUT"/libattn-runtime_*.deb | grep -Ei '^ Depends:.*(llvm|mlir)'; then
  echo "FAIL: libattn-runtime depends on LLVM/MLIR"
  exit 1
fi
echo "PACKAGES OK"
