#!/usr/bin/env bash
#===- bench/gpu/build_artifacts.sh - prebuilt CUDA kernels for a GPU machine -===#
#
# Builds, on a machine WITHOUT a GPU (and without one being needed), every
# CUDA kernel that bench/gpu/check_gpu.py and bench/gpu/bench_gpu.py run, so
# that the GPU machine needs neither MLIR nor a build tree:
#
#   for each artifact ID (spec + params + element type):
#     attnc SPEC --target=cuda:sm_90 [--dtype=f16] [--param K=V]...
#           -o ID/kernel.o --header ID/kernel.h --verbose
#     ID/shim.c   exports  attn_gpu_run(inputs, o, lse, stream)   (calls the
#                          header's attn_cuda_run_<name>(q, k, v, aux..., o,
#                          lse, stream)) and attn_gpu_desc() (the header's
#                          static attn_cuda_kernel_desc_t)
#     $CC -shared -fPIC shim.c kernel.o -lattn_runtime -Wl,-rpath,$ORIGIN/..
#                       -> ID/libkernel.so
#   libattn_runtime.so (no MLIR; loads libcuda.so.1 with dlopen) copied
#   beside them, and manifest.json: per artifact the spec, its sha256, params,
#   element type, inputs (name, type, dims), kernel variants (function, max
#   head dim, block_q, threads, dynamic shared memory, ptxas registers and
#   spills) and the library path; plus the attnc commit the kernels come
#   from.
#
# Usage:
#   bench/gpu/build_artifacts.sh [--out DIR] [--build DIR] [--only ID,ID...]
#                                [--arch sm_90] [--list]
# Defaults: --out bench/gpu/artifacts (git-ignored; name it in the device
# `run` tool's `carry`), --build build (for bin/attnc and
# lib/libattn_runtime.so; $ATTN_BUILD_DIR also works), all artifacts. $CC
# picks the C compiler (default: clang-22, clang or cc, the first found).
# About 30 s for all artifacts; a few MB. Without --only it then runs
# build_backward_artifacts.sh into OUT/backward (about 80 s more). The linear-attention examples are
# not built yet (the CUDA target compiles them since 2026-11-22, but
# check_gpu.py's references and bench_gpu.py's peers cover the softmax
# family only).
#
#===----------------------------------------------------------------------===#
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/bench/gpu/artifacts"
BUILD="${ATTN_BUILD_DIR:-$ROOT/build}"
ONLY=""
ARCH="sm_90"
LIST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --build) BUILD="$2"; shift 2 ;;
    --build=*) BUILD="${1#--build=}"; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    --arch) ARCH="$2"; shift 2 ;;
    --arch=*) ARCH="${1#--arch=}"; shift ;;
    --list) LIST=1; shift ;;
    -h|--help) sed -n '2,/^#===---*===#$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_artifacts.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# id | spec (examples/) | q/k/v element type | params (space-separated K=V)
#   [| attnc flags]
#
# causal and sliding_window_w64 are built with --paged-kv: their batch
# prefill kernels run check_gpu.py's prefill batch cases (batch_cases.py).
# The oracle variant (test/Integration/reference/oracle.py) of each artifact
# is its spec's name. neighborhood_2d needs N = height * width, so it is
# built once per tested size. The extra windows make the window mask bite at
# the tested sizes (N <= 4133); the bench uses the spec defaults.
ARTIFACTS=(
  "dense|dense|bf16|"
  "causal|causal|bf16||--paged-kv"
  "sliding_window|sliding_window|bf16|"
  "sliding_window_w64|sliding_window|bf16|window=64|--paged-kv"
  "softcap|softcap|bf16|"
  "alibi|alibi|bf16|"
  "document|document|bf16|"
  "prefix_lm|prefix_lm|bf16|"
  "sigmoid|sigmoid|bf16|"
  "sinks_window|sinks_window|bf16|"
  "sinks_window_w64_s8|sinks_window|bf16|window=64 sinks=8"
  "neighborhood_2d_25x40_k7|neighborhood_2d|bf16|height=25 width=40 kernel=7"
  "neighborhood_2d_7x11_k3|neighborhood_2d|bf16|height=7 width=11 kernel=3"
  "dense_f16|dense|f16|"
  "causal_f16|causal|f16|"
)

if [ "$LIST" = 1 ]; then
  printf '%s\n' "${ARTIFACTS[@]}" | cut -d'|' -f1
  exit 0
fi

ATTNC="$BUILD/bin/attnc"
RUNTIME="$BUILD/lib/libattn_runtime.so"
for f in "$ATTNC" "$RUNTIME"; do
  if [ ! -e "$f" ]; then
    echo "build_artifacts.sh: $f is missing; build it first (ninja -C $BUILD attnc attn_runtime)" >&2
    exit 1
  fi
done
if [ -z "${CC:-}" ]; then
  for c in clang-22 clang cc; do
    if command -v "$c" >/dev/null 2>&1; then CC="$c"; break; fi
  done
fi
PY="$(command -v python3 || true)"
[ -n "$PY" ] || { echo "build_artifacts.sh: python3 is needed for the manifest" >&2; exit 1; }

mkdir -p "$OUT"
# A fresh set: a stale artifact of an earlier run never survives next to the
# manifest that does not list it. Only a folder this script wrote (or an
# empty one) is emptied.
if [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/manifest.json" ] && [ ! -e "$OUT/.artifacts.txt" ]; then
  echo "build_artifacts.sh: $OUT is not empty and holds no manifest.json; not touching it" >&2
  exit 1
fi
find "$OUT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
cp "$RUNTIME" "$OUT/libattn_runtime.so"
# Also under its soname (libattn_runtime.so.MAJOR.MINOR), the name the
# libraries linked against it look for; copies, not links, so that the
# folder travels to a device machine whole.
for f in "$RUNTIME".*; do
  if [ -e "$f" ]; then cp -L "$f" "$OUT/$(basename "$f")"; fi
done

selected() {
  [ -z "$ONLY" ] && return 0
  case ",$ONLY," in *",$1,"*) return 0 ;; esac
  return 1
}

LISTFILE="$OUT/.artifacts.txt"
: > "$LISTFILE"
n=0
start=$(date +%s)
for entry in "${ARTIFACTS[@]}"; do
  IFS='|' read -r id spec dtype params flags <<<"$entry"
  selected "$id" || continue
  d="$OUT/$id"
  mkdir -p "$d"
  cmd=("$ATTNC" "$ROOT/examples/$spec.attn" "--target=cuda:$ARCH" "--dtype=$dtype"
       -o "$d/kernel.o" --header "$d/kernel.h" --verbose)
  for p in $params; do cmd+=(--param "$p"); done
  for f in $flags; do cmd+=("$f"); done
  if ! "${cmd[@]}" > "$d/attnc.log" 2>&1; then
    echo "build_artifacts.sh: attnc failed for $id:" >&2
    cat "$d/attnc.log" >&2
    exit 1
  fi
  name="$(sed -n 's/^static const attn_cuda_kernel_desc_t attn_\([A-Za-z0-9_]*\)_cuda_kernel = {$/\1/p' "$d/kernel.h")"
  if [ -z "$name" ]; then
    echo "build_artifacts.sh: no attn_cuda_kernel_desc_t in $d/kernel.h" >&2
    exit 1
  fi
  # The header's entry point takes q, k, v, the aux inputs (in order), o,
  # lse, stream: one inputs[i] per declared input.
  nin="$(awk "/^static const attn_input_desc_t attn_${name}_cuda_inputs\\[\\] = {\$/{f=1;next} f&&/^};/{exit} f{n++} END{print n}" "$d/kernel.h")"
  [ "${nin:-0}" -ge 3 ] || { echo "build_artifacts.sh: cannot read the inputs of $d/kernel.h" >&2; exit 1; }
  args=""
  for ((i = 0; i < nin; i++)); do args="$args in[$i],"; done
  cat > "$d/shim.c" <<EOF
/* Generated by bench/gpu/build_artifacts.sh for artifact '$id'. */
#include "kernel.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* The descriptor in kernel.h is static: hand it out for inspection. */
SHIM_EXPORT const attn_cuda_kernel_desc_t *attn_gpu_desc(void) {
  return &attn_${name}_cuda_kernel;
}

/* inputs: the $nin tensors in the descriptor's order (q, k, v, aux). */
SHIM_EXPORT int attn_gpu_run(const DLTensor *const *in, DLTensor *o,
                             DLTensor *lse, void *stream) {
  return (int)attn_cuda_run_${name}(${args} o, lse, stream);
}
EOF
  "$CC" -O2 -fPIC -shared -std=c99 -Wall -Wextra -Werror \
    -I"$ROOT/runtime/include" -I"$d" "$d/shim.c" "$d/kernel.o" \
    -L"$OUT" -lattn_runtime '-Wl,-rpath,$ORIGIN/..' -o "$d/libkernel.so"
  printf '%s|%s|%s|%s|%s\n' "$id" "$spec" "$dtype" "$params" "$name" >> "$LISTFILE"
  n=$((n + 1))
  echo "built $id ($spec, $dtype${params:+, $params}) in $d"
done
[ "$n" -gt 0 ] || { echo "build_artifacts.sh: --only '$ONLY' selects nothing (--list)" >&2; exit 1; }

COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | head -c1 | wc -c)"
"$PY" - "$ROOT" "$OUT" "$ARCH" "$COMMIT" "$DIRTY" "$CC" <<'PYEOF'
import hashlib, json, os, re, sys, time
root, out, arch, commit, dirty, cc = sys.argv[1:7]
arts = []
with open(os.path.join(out, ".artifacts.txt")) as f:
    for line in f:
        aid, spec, dtype, params, name = line.rstrip("\n").split("|")
        d = os.path.join(out, aid)
        h = open(os.path.join(d, "kernel.h")).read()
        inputs = []
        for m in re.finditer(r'^  \{"(\w+)", ATTN_(\w+), (\d+), attn_\w+_cuda_dims_(\w+), ', h, re.M):
            dims = re.search(r'_cuda_dims_%s\[\] = \{([^}]*)\};' % m.group(4), h).group(1)
            inputs.append({"name": m.group(1), "type": m.group(2).lower(),
                           "rank": int(m.group(3)),
                           "dims": [x.strip().strip('"') for x in dims.split(",")]})
        def variant_array(suffix):
            # attn_cuda_kernel_variant_t rows of the array <prefix>_cuda<suffix>[]
            # (ABI 3+: function, max_head_dim, block_q, threads, smem, and the
            # two scratch sizes).
            block = re.search(r'_cuda%s\[\] = \{\n(.*?)\n\};' % suffix, h, re.S)
            rows = []
            for m in re.finditer(r'^  \{"(\w+)", (\d+), (\d+), (\d+), (\d+), \d+, \d+\},$',
                                 block.group(1) if block else "", re.M):
                rows.append({"function": m.group(1), "max_head_dim": int(m.group(2)),
                             "block_q": int(m.group(3)), "num_threads": int(m.group(4)),
                             "shared_mem_bytes": int(m.group(5))})
            return rows
        variants = variant_array("_variants")
        decode_variants = variant_array("_decode_variants")
        merge = variant_array("_merge_variant")
        batch_variants = variant_array("_batch_variants")
        ptxas = {}
        for m in re.finditer(r'^ \*   (sm_\d+a?) (\w+): (\d+) registers, (\d+)/(\d+) bytes spilled', h, re.M):
            ptxas.setdefault(m.group(2), {})[m.group(1)] = {
                "registers": int(m.group(3)), "spill_stores": int(m.group(4)),
                "spill_loads": int(m.group(5))}
        for v in variants + decode_variants + merge + batch_variants:
            v["ptxas"] = ptxas.get(v["function"], {})
        has_lse = re.search(r'_cuda_inputs, (\d),', h)
        spec_path = os.path.join(root, "examples", spec + ".attn")
        arts.append({
            "id": aid, "spec": "examples/%s.attn" % spec, "name": name,
            "oracle_variant": spec,
            "spec_sha256": hashlib.sha256(open(spec_path, "rb").read()).hexdigest(),
            "dtype": dtype,
            "params": dict(p.split("=", 1) for p in params.split()),
            "inputs": inputs, "variants": variants,
            "decode_variants": decode_variants,
            "merge_variant": merge[0] if merge else None,
            "batch_variants": batch_variants,
            "has_lse": bool(int(has_lse.group(1))) if has_lse else None,
            "library": "%s/libkernel.so" % aid, "header": "%s/kernel.h" % aid,
        })
manifest = {
    "format": 1,
    "arch": arch,
    "attnc_commit": commit + ("+dirty" if dirty.strip() not in ("", "0") else ""),
    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "cc": cc,
    "runtime": "libattn_runtime.so",
    "artifacts": arts,
}
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
os.remove(os.path.join(out, ".artifacts.txt"))
PYEOF
size="$(du -sh "$OUT" | cut -f1)"
echo "wrote $n artifacts + manifest.json to $OUT ($size, $(( $(date +%s) - start )) s)"
# The backward kernels (check_gpu_backward.py), unless --only picked some
# forward artifacts.
if [ -z "$ONLY" ]; then
  "$ROOT/bench/gpu/build_backward_artifacts.sh" --out "$OUT/backward" --build "$BUILD" --arch "$ARCH"
fi
