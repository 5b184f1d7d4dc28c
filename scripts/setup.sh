#!/usr/bin/env bash
# Installs every Debian package attnc's build and tests need. Idempotent: when
# everything is already present it only checks and exits (no apt-get update).
set -euo pipefail

PKGS=(
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22
  libclang-rt-22-dev  # libFuzzer, ASan, UBSan: test/Fuzz, test.sh --sanitize
  ninja-build cmake ccache libgtest-dev libgmock-dev
  rocm-device-libs libdlpack-dev
  libamdhip64-5  # the HIP runtime: test/Unit/runtime/RocmAvailableTest.cpp
  python3 python3-numpy
  pkgconf  # the package test builds a consumer through attn_runtime.pc
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
