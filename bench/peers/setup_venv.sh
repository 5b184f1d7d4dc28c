#!/usr/bin/env bash
#===- bench/peers/setup_venv.sh - peers (torch, onnxruntime) for run_peers.py -===#
#
# Creates build/peers-venv (or $PEERS_VENV) and pip-installs the peer
# libraries from PyPI: torch (the default PyPI wheel; large), numpy,
# onnxruntime and onnx. Idempotent: an existing venv whose packages import is
# left alone. Not part of CI or of scripts/demo.sh / scripts/test.sh.
#
#   bench/peers/setup_venv.sh
#   build/peers-venv/bin/python bench/peers/run_peers.py --quick
#
#===----------------------------------------------------------------------===#
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/build/peers-venv}"
PKGS=(numpy torch onnxruntime onnx)

pick_python() {
  for py in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$py" ] && [ -x "$py" ] || continue
    tmp="$(mktemp -d)"
    if "$py" -m venv "$tmp/v" >/dev/null 2>&1; then rm -rf "$tmp"; echo "$py"; return 0; fi
    rm -rf "$tmp"
  done
  return 1
}

if [ -x "$VENV/bin/python" ] &&
   "$VENV/bin/python" -c 'import numpy, torch, onnxruntime, onnx' >/dev/null 2>&1; then
  echo "peers venv ready: $VENV"
  "$VENV/bin/python" -c 'import numpy, torch, onnxruntime; print("numpy", numpy.__version__, "torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'
  exit 0
fi

if ! PY="$(pick_python)"; then
  echo "no python3 with a working venv module; installing python3-venv" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update && $SUDO apt-get install -y python3-venv
  PY="$(pick_python)"
fi
echo "creating $VENV with $PY ($("$PY" --version))"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "${PKGS[@]}"
"$VENV/bin/python" -c 'import numpy, torch, onnxruntime; print("numpy", numpy.__version__, "torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'
echo "peers venv ready: $VENV"
