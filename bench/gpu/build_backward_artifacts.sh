#!/usr/bin/env bash
#===- bench/gpu/build_backward_artifacts.sh - the CUDA backward, prebuilt -===#
#
# Builds, on a machine without a GPU, what bench/gpu/check_gpu_backward.py
# runs on a GPU machine (no MLIR there): per artifact ID (a spec + params),
#
#   ID/fwd.o, fwd.h          attnc SPEC --target=cuda:ARCH            (forward)
#   ID/bwd.o, bwd.h          attnc SPEC --target=cuda:ARCH --backward --verbose
#   ID/cpu_fwd.o, cpu_bwd.o  the same for --target=cpu:x86-64-v3 (f32): the
#                            reference the GPU's gradients are compared with
#                            (the CPU backward is itself checked against the
#                            float64 reference evaluator by the test suite)
#   ID/shim.c -> ID/libkernel.so, exporting the four descriptors:
#     attn_bwd_cuda_fwd_desc(), attn_bwd_cuda_bwd_desc(),
#     attn_bwd_cpu_fwd_desc(), attn_bwd_cpu_bwd_desc()
#   (the runtime's attn_cuda_run, attn_cuda_run_backward, attn_cpu_run and
#   attn_cpu_run_backward take them; libattn_runtime.so sits in the parent
#   folder, found through RUNPATH $ORIGIN/..),
#
# and manifest.json (spec, params, inputs, gradient inputs, kernel variants
# with ptxas registers and spills, the attnc commit).
#
# Usage: bench/gpu/build_backward_artifacts.sh [--out DIR] [--build DIR]
#                                              [--arch sm_90] [--only ID,...]
# Defaults: --out bench/gpu/artifacts/backward (build_artifacts.sh calls
# this with its --out/backward), --build build. About 30 s.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/bench/gpu/artifacts/backward"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
ARCH="sm_90"
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --build) BUILD="$2"; shift 2 ;;
    --build=*) BUILD="${1#--build=}"; shift ;;
    --arch) ARCH="$2"; shift 2 ;;
    --arch=*) ARCH="${1#--arch=}"; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    -h|--help) sed -n '2,/^#===---*===#$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_backward_artifacts.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# id | spec (relative to the repository) | params (space-separated K=V) |
# extra attnc flags for the CUDA backward (the schedule)
# Masks with empty rows and partial tiles, a score derivative (softcap), a
# sigmoid, document ids (an i32 aux input) and a learnable table whose
# gradient every CTA adds to atomically (rpb); dense and causal are also
# check_gpu_backward.py --bench's variants. Then two linear specs.
ARTIFACTS=(
  "dense|examples/dense.attn|"
  "causal|examples/causal.attn|"
  "softcap|examples/softcap.attn|"
  "alibi|examples/alibi.attn|"
  "document|examples/document.attn|"
  "sliding_window_w64|examples/sliding_window.attn|window=64"
  "sigmoid|examples/sigmoid.attn|"
  "rpb|test/Integration/cpu/Inputs/rpb-table.attn|"
  # 16 query rows per step instead of 32: ptxas (sm_90) spills 12 bytes at
  # d128 instead of 380, for twice the q-loop steps; --bench decides.
  "dense_tq16|examples/dense.attn||--tile-q=16"
  "causal_tq16|examples/causal.attn||--tile-q=16"
  # The linear family (a CTA per (b, hk), global scratch the runtime
  # allocates): fixed decays, and the normalizer's column. Their k and v
  # have N rows, so check_gpu_backward.py skips the cases with M != N.
  "retnet|examples/retnet.attn|"
  "linear_elu|examples/linear_elu.attn|"
)

ATTNC="$BUILD/bin/attnc"
RUNTIME="$BUILD/lib/libattn_runtime.so"
for f in "$ATTNC" "$RUNTIME"; do
  [ -e "$f" ] || { echo "build_backward_artifacts.sh: $f is missing; build first" >&2; exit 1; }
done
if [ -z "${CC:-}" ]; then
  for c in clang-22 clang cc; do
    if command -v "$c" >/dev/null 2>&1; then CC="$c"; break; fi
  done
fi
mkdir -p "$OUT"
if [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/manifest.json" ] && [ ! -e "$OUT/.artifacts.txt" ]; then
  echo "build_backward_artifacts.sh: $OUT is not empty and holds no manifest.json; not touching it" >&2
  exit 1
fi
find "$OUT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
# The runtime beside the libraries' folders (RUNPATH $ORIGIN/..).
cp "$RUNTIME" "$OUT/libattn_runtime.so"
# Also under its soname (libattn_runtime.so.MAJOR.MINOR), the name the
# libraries linked against it look for; copies, not links, so that the
# folder travels to a device machine whole.
for f in "$RUNTIME".*; do
  if [ -e "$f" ]; then cp -L "$f" "$OUT/$(basename "$f")"; fi
done

: > "$OUT/.artifacts.txt"
start=$(date +%s)
for entry in "${ARTIFACTS[@]}"; do
  IFS='|' read -r id spec params flags <<<"$entry"
  if [ -n "$ONLY" ]; then
    case ",$ONLY," in *",$id,"*) ;; *) continue ;; esac
  fi
  d="$OUT/$id"
  mkdir -p "$d"
  pargs=()
  for p in $params; do pargs+=(--param "$p"); done
  build() { # out-stem, extra args...
    local stem="$1"; shift
    if ! "$ATTNC" "$ROOT/$spec" "${pargs[@]}" "$@" -o "$d/$stem.o" --header "$d/$stem.h" \
         > "$d/$stem.log" 2>&1; then
      echo "build_backward_artifacts.sh: attnc failed for $id ($stem):" >&2
      cat "$d/$stem.log" >&2
      exit 1
    fi
  }
  build fwd "--target=cuda:$ARCH"
  # shellcheck disable=SC2086 # flags are words
  build bwd "--target=cuda:$ARCH" --backward --verbose $flags
  build cpu_fwd --target=cpu:x86-64-v3
  build cpu_bwd --target=cpu:x86-64-v3 --backward
  name="$(sed -n 's/^static const attn_cuda_kernel_desc_t attn_\([A-Za-z0-9_]*\)_cuda_kernel = {$/\1/p' "$d/fwd.h")"
  [ -n "$name" ] || { echo "build_backward_artifacts.sh: no descriptor in $d/fwd.h" >&2; exit 1; }
  cat > "$d/shim.c" <<SHIM
/* Generated by bench/gpu/build_backward_artifacts.sh for '$id'. */
#include "bwd.h"
#include "cpu_bwd.h"
#include "cpu_fwd.h"
#include "fwd.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* The headers' descriptors are static: hand them out. */
SHIM_EXPORT const attn_cuda_kernel_desc_t *attn_bwd_cuda_fwd_desc(void) {
  return &attn_${name}_cuda_kernel;
}
SHIM_EXPORT const attn_cuda_backward_desc_t *attn_bwd_cuda_bwd_desc(void) {
  return &attn_${name}_backward_cuda_kernel;
}
SHIM_EXPORT const attn_kernel_desc_t *attn_bwd_cpu_fwd_desc(void) {
  return &attn_${name}_kernel;
}
SHIM_EXPORT const attn_backward_desc_t *attn_bwd_cpu_bwd_desc(void) {
  return &attn_${name}_backward_kernel;
}
SHIM
  "$CC" -O2 -fPIC -shared -std=c99 -Wall -Wextra -Werror \
    -I"$ROOT/runtime/include" -I"$d" "$d/shim.c" "$d/fwd.o" "$d/bwd.o" \
    "$d/cpu_fwd.o" "$d/cpu_bwd.o" -L"$OUT" -lattn_runtime '-Wl,-rpath,$ORIGIN/..' \
    -o "$d/libkernel.so"
  printf '%s|%s|%s|%s\n' "$id" "$spec" "$params" "$name" >> "$OUT/.artifacts.txt"
  echo "built backward $id ($spec${params:+, $params}) in $d"
done

count="$(wc -l < "$OUT/.artifacts.txt")"
[ "$count" -gt 0 ] || { echo "build_backward_artifacts.sh: --only '$ONLY' selects nothing" >&2; exit 1; }

COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -c1 | wc -c)"
python3 - "$ROOT" "$OUT" "$ARCH" "$COMMIT" "$DIRTY" <<'PYEOF'
import hashlib, json, os, re, sys, time
root, out, arch, commit, dirty = sys.argv[1:6]
arts = []
for line in open(os.path.join(out, ".artifacts.txt")):
    aid, spec, params, name = line.rstrip("\n").split("|")
    d = os.path.join(out, aid)
    h = open(os.path.join(d, "bwd.h")).read()
    inputs = []
    for m in re.finditer(r'^  \{"(\w+)", ATTN_(\w+), (\d+), \w+_dims_(\w+), ', h, re.M):
        dims = re.search(r'_dims_%s\[\] = \{([^}]*)\};' % m.group(4), h).group(1)
        sizes = re.search(r'_sizes_%s\[\] = \{([^}]*)\};' % m.group(4), h)
        fixed = [int(x) for x in sizes.group(1).split(",")] if sizes else None
        ds = [x.strip().strip('"') for x in dims.split(",")]
        inputs.append({"name": m.group(1), "type": m.group(2).lower(),
                       "dims": [fixed[i] if fixed and x == "0" else x
                                for i, x in enumerate(ds)]})
    grads = re.search(r'_grad_inputs\[\] = \{([^}]*)\};', h)
    grad_inputs = [inputs[int(i)]["name"] for i in grads.group(1).split(",")] if grads else []
    variants = [{"function": m.group(1), "max_head_dim": int(m.group(2)),
                 "block_kv": int(m.group(3)), "num_threads": int(m.group(4)),
                 "shared_mem_bytes": int(m.group(5))}
                for m in re.finditer(r'^  \{"(\w+)", (\d+), (\d+), (\d+), (\d+)\},$', h, re.M)]
    ptxas = {m.group(2): {"registers": int(m.group(3)), "spill_stores": int(m.group(4)),
                          "spill_loads": int(m.group(5))}
             for m in re.finditer(r'^ \*   (sm_\d+a?) (\w+): (\d+) registers, (\d+)/(\d+) bytes spilled', h, re.M)}
    for v in variants:
        v["ptxas"] = ptxas.get(v["function"], {})
    arts.append({"id": aid, "spec": spec, "name": name,
                 "spec_sha256": hashlib.sha256(open(os.path.join(root, spec), "rb").read()).hexdigest(),
                 "params": dict(p.split("=", 1) for p in params.split()),
                 "softmax": re.search(r'_backward_cuda_inputs, (\d), \d+, ', h).group(1) == "1",
                 "inputs": inputs, "grad_inputs": grad_inputs, "variants": variants,
                 "library": "%s/libkernel.so" % aid})
json.dump({"format": 1, "arch": arch,
           "attnc_commit": commit + ("+dirty" if dirty.strip() not in ("", "0") else ""),
           "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "artifacts": arts}, open(os.path.join(out, "manifest.json"), "w"), indent=1)
os.remove(os.path.join(out, ".artifacts.txt"))
PYEOF
echo "wrote $count backward artifacts + manifest.json to $OUT ($(du -sh "$OUT" | cut -f1), $(( $(date +%s) - start )) s)"
