#!/usr/bin/env bash
# mutation-probe.sh - plants known bugs one at a time and counts the tests
# that catch each (how strong the numeric guardrail is).
#
# Usage:
#   scripts/mutation-probe.sh [options] [MUTANT...]
#
#   MUTANT...              names from the mutants file (default: all)
#   --list                 list the mutants and exit
#   --mutants FILE         the mutants (default: scripts/mutation-probe.mutants;
#                          its header describes the format)
#   --scratch DIR          scratch copy, build and report
#                          (default: /tmp/attnc-mutation-probe)
#   --fresh                recreate the scratch copy (else reused: only the
#                          files that changed are rebuilt)
#   --tests-from-worktree  also copy every modified or untracked file under
#                          test/ from the working tree into the scratch copy
#                          (to probe tests that are not committed yet; only
#                          when they do not depend on uncommitted product code)
#   --copy PATH            copy PATH (relative to the repository root) from
#                          the working tree into the scratch copy; repeatable
#   --no-baseline          skip the unmutated run (the failures of the last
#                          baseline in DIR, if any, are still subtracted)
#   --full                 run the whole suite for every mutant, ignoring the
#                          mutants' `scope:` lines
#   -j N                   parallel jobs for the build, lit and ctest (default 2)
#
# What it does:
#   1. The scratch copy is `git archive HEAD` of this repository in
#      DIR/src (the product code of the last commit, so work in progress in
#      the working tree never leaks in), plus the files named by
#      --tests-from-worktree / --copy; DIR/build is configured like
#      scripts/build.sh (Release, clang-22, ccache with CCACHE_BASEDIR=DIR so
#      later probes reuse the objects). Builds take /tmp/attnc-build.lock.
#   2. Baseline: builds and runs the suite unmutated; tests that fail there
#      are reported and not counted against any mutant.
#   3. Per mutant, one at a time: applies the edit (exact text, must match
#      once), rebuilds, runs every lit test (lit -v on DIR/build/test, one
#      result per .test file) and every ctest test except the lit suites and
#      the fuzzers (-LE fuzz: one result per gtest case, plus the example
#      and bench smoke tests), then restores the file. Not run: fuzzers, the
#      ASan build. A mutant with a `scope:` line in the mutants file runs
#      only the lit paths and ctest tests named there (the suites that can
#      see that code: a CUDA lowering mutant cannot fail a CPU test), unless
#      --full. A mutant that does not compile counts as killed at build.
#      The file is restored on exit, ^C included.
#   4. Report (DIR/report.txt, also printed): per mutant the number of
#      failing tests and their names; "SURVIVED" when none failed, "WEAK"
#      when only one did. Per-mutant logs in DIR/logs/.
#
# Time: a cold scratch build is ~12 min on 2 cores (less with a warm
# ccache); each mutant then costs an incremental rebuild (1-3 min: the
# changed file and the links) and a suite run (~10 min on 2 cores).
#
# Exit status: 0 when every mutant was killed by at least one test, 1 when
# one survived, 2 on a usage or setup error.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUTANTS="$ROOT/scripts/mutation-probe.mutants"
SCRATCH=/tmp/attnc-mutation-probe
FRESH=0
FULL=0
FROM_WORKTREE=0
BASELINE=1
JOBS=2
LIST=0
COPY=()
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) LIST=1 ;;
    --mutants) MUTANTS="$2"; shift ;;
    --scratch) SCRATCH="$2"; shift ;;
    --fresh) FRESH=1 ;;
    --tests-from-worktree) FROM_WORKTREE=1 ;;
    --copy) COPY+=("$2"); shift ;;
    --no-baseline) BASELINE=0 ;;
    --full) FULL=1 ;;
    -j) JOBS="$2"; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) ONLY+=("$1") ;;
  esac
  shift
done
[ -f "$MUTANTS" ] || { echo "no mutants file $MUTANTS" >&2; exit 2; }

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# The mutants file as NAME<TAB>FILE lines.
mutant_list() {
  "$PY" - "$MUTANTS" <<'EOF'
import sys
name = None
for line in open(sys.argv[1]):
    if line.startswith("@@ "):
        name = line[3:].strip()
    elif line.startswith("file: ") and name:
        print(name + "\t" + line[6:].strip())
        name = None
EOF
}

# mutant_scope NAME: "LIT_PATHS<TAB>CTEST_REGEX<TAB>LIT_SKIP" from its
# scope: line ("-": none), or "".
mutant_scope() {
  "$PY" - "$MUTANTS" "$1" <<'EOF'
import sys
name = None
for line in open(sys.argv[1]):
    if line.startswith("@@ "):
        name = line[3:].strip()
    elif line.startswith("scope: ") and name == sys.argv[2]:
        f = [x.strip() for x in line[7:].rstrip("\n").split(" | ")] + ["", ""]
        print("\t".join([f[0], f[1] or ".", f[2] or "-"]))
EOF
}

if [ "$LIST" = 1 ]; then
  mutant_list | awk -F'\t' '{printf "%-40s %s\n", $1, $2}'
  exit 0
fi

# apply_mutant NAME SRC_ROOT: edits the file in place (exit 3 if the text
# is not found exactly once).
apply_mutant() {
  "$PY" - "$MUTANTS" "$1" "$2" <<'EOF'
import os, sys
path, want, root = sys.argv[1:]
blocks, cur = {}, None
for line in open(path):
    line = line.rstrip("\n")
    if line.startswith("@@ "):
        cur = blocks.setdefault(line[3:].strip(), {})
    elif cur is not None and line.startswith("file: "):
        cur["file"] = line[6:].strip()
    elif cur is not None and line.startswith("- "):
        cur["old"] = line[2:].replace("\\n", "\n")
    elif cur is not None and line.startswith("+ "):
        cur["new"] = line[2:].replace("\\n", "\n")
m = blocks.get(want)
if not m or not all(k in m for k in ("file", "old", "new")):
    print("mutant %s: not found or incomplete in %s" % (want, path))
    sys.exit(2)
f = os.path.join(root, m["file"])
text = open(f).read()
n = text.count(m["old"])
if n != 1:
    print("mutant %s: the text occurs %d times in %s" % (want, n, m["file"]))
    sys.exit(3)
open(f, "w").write(text.replace(m["old"], m["new"]))
EOF
}

SRC="$SCRATCH/src"
BUILD="$SCRATCH/build"
LOGS="$SCRATCH/logs"
ORIG="$SCRATCH/orig"
REPORT="$SCRATCH/report.txt"
export CCACHE_BASEDIR="$SCRATCH"
# Unit tests put their kernel caches under the temp directory: keep them in
# the scratch directory (cleared per run).
export TMPDIR="$SCRATCH/tmp"

# --- 1. scratch copy and build directory -----------------------------------
if [ "$FRESH" = 1 ]; then rm -rf "$SRC" "$BUILD"; fi
mkdir -p "$SCRATCH" "$LOGS" "$ORIG" "$TMPDIR"
if [ ! -d "$SRC" ]; then
  mkdir -p "$SRC"
  git -C "$ROOT" archive HEAD | tar -x -C "$SRC" || { echo "git archive failed" >&2; exit 2; }
  echo "scratch copy of $(git -C "$ROOT" rev-parse --short HEAD) in $SRC"
fi
copy_in() {
  mkdir -p "$SRC/$(dirname "$1")"
  if ! cmp -s "$ROOT/$1" "$SRC/$1"; then cp "$ROOT/$1" "$SRC/$1"; fi
}
if [ "$FROM_WORKTREE" = 1 ]; then
  while IFS= read -r f; do
    [ -f "$ROOT/$f" ] && copy_in "$f"
  done < <(cd "$ROOT" && { git diff --name-only HEAD -- test/; git ls-files --others --exclude-standard test/; })
fi
for f in "${COPY[@]+"${COPY[@]}"}"; do
  [ -f "$ROOT/$f" ] || { echo "--copy $f: no such file" >&2; exit 2; }
  copy_in "$f"
done
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$SRC" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DLLVM_USE_LINKER=lld \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DATTN_TEST_PYTHON=/usr/bin/python3 > "$LOGS/configure.log" 2>&1 ||
    { echo "configure failed: $LOGS/configure.log" >&2; exit 2; }
fi
LIT=/usr/lib/llvm-22/bin/lit
[ -x "$LIT" ] || LIT="$(command -v lit || command -v llvm-lit)"

build() { # build LOG
  flock /tmp/attnc-build.lock cmake --build "$BUILD" -- -j"$JOBS" > "$1" 2>&1 < /dev/null
}

# run_suite TAG [LIT_PATHS [CTEST_REGEX [LIT_SKIP_REGEX]]]: runs lit (on
# LIT_PATHS, relative to build/test; default: all; tests whose path matches
# LIT_SKIP_REGEX left out) and ctest (tests matching CTEST_REGEX; default:
# all but the lit suites and fuzzers); writes the failing tests, one a
# line, to $LOGS/TAG.failed.
run_suite() {
  local tag="$1" paths=() p
  for p in ${2:-.}; do paths+=("$BUILD/test/$p"); done
  local regex="${3:-.}" skip="${4:-}"
  rm -rf "$BUILD/kernel-cache" "$TMPDIR" && mkdir -p "$TMPDIR"
  if [ -n "$skip" ]; then export LIT_FILTER_OUT="$skip"; else unset LIT_FILTER_OUT; fi
  timeout 3600 "$LIT" -v -j "$JOBS" "${paths[@]}" > "$LOGS/$tag.lit.log" 2>&1 < /dev/null
  unset LIT_FILTER_OUT
  (cd "$BUILD" && timeout 3600 ctest -j"$JOBS" -LE fuzz -E '^lit-' -R "$regex" \
     --timeout 900 > "$LOGS/$tag.ctest.log" 2>&1 < /dev/null)
  {
    grep -E '^(FAIL|XPASS|UNRESOLVED|TIMEOUT): ' "$LOGS/$tag.lit.log" |
      sed -E 's/^[A-Z]+: [A-Za-z]+ :: (.*) \([0-9]+ of [0-9]+\)$/lit:\1/'
    sed -n '/The following tests FAILED:/,$p' "$LOGS/$tag.ctest.log" |
      grep -E '^\s+[0-9]+ - ' | sed -E 's/^\s+[0-9]+ - (.*) \(.*\)$/unit:\1/; s/  # GetParam\(\).*//'
    # A lit run that died before reporting counts as one failure.
    grep -q '^Total Discovered Tests' "$LOGS/$tag.lit.log" || echo "lit:<lit did not finish>"
  } | sort -u > "$LOGS/$tag.failed"
}

# Restores every mutated file from its saved copy.
restore_all() {
  local f
  for f in $(cd "$ORIG" && find . -type f 2>/dev/null); do
    cp "$ORIG/$f" "$SRC/$f" && rm -f "$ORIG/$f"
  done
}
trap 'restore_all; echo "interrupted: sources restored" >&2; exit 130' INT TERM
restore_all  # a previous run that was killed hard

# --- 2. baseline -------------------------------------------------------------
: > "$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
say "mutation probe of $(git -C "$ROOT" rev-parse --short HEAD) ($(date -u +%Y-%m-%dT%H:%MZ)), scratch $SCRATCH"
if ! build "$LOGS/baseline.build.log"; then
  say "baseline build FAILED: $LOGS/baseline.build.log"; exit 2
fi
if [ "$BASELINE" = 1 ] || [ ! -f "$LOGS/baseline.failed" ]; then
  : > "$LOGS/baseline.failed"
fi
if [ "$BASELINE" = 1 ]; then
  t0=$(date +%s)
  run_suite baseline
  say "baseline: $(wc -l < "$LOGS/baseline.failed") failing tests ($(( $(date +%s) - t0 )) s)"
  sed 's/^/    /' "$LOGS/baseline.failed" | tee -a "$REPORT"
fi

# --- 3. mutants --------------------------------------------------------------
survived=0
while IFS=$'\t' read -r name file; do
  if [ ${#ONLY[@]} -gt 0 ] && ! printf '%s\n' "${ONLY[@]}" | grep -qx "$name"; then
    continue
  fi
  t0=$(date +%s)
  mkdir -p "$ORIG/$(dirname "$file")"
  cp "$SRC/$file" "$ORIG/$file"
  if ! msg=$(apply_mutant "$name" "$SRC"); then
    restore_all
    say "$(printf '%-40s SKIPPED: %s' "$name" "$msg")"
    continue
  fi
  if ! build "$LOGS/$name.build.log"; then
    restore_all
    say "$(printf '%-40s killed at build (%s)' "$name" "$LOGS/$name.build.log")"
    continue
  fi
  scope=$(mutant_scope "$name")
  if [ "$FULL" = 1 ] || [ -z "$scope" ]; then
    run_suite "$name"
    scoped=""
  else
    IFS=$'\t' read -r s_lit s_unit s_skip <<< "$scope"
    [ "$s_skip" = "-" ] && s_skip=""
    run_suite "$name" "$s_lit" "$s_unit" "$s_skip"
    scoped=", scoped: lit $s_lit${s_skip:+ without /$s_skip/}, ctest /$s_unit/"
  fi
  restore_all
  comm -23 "$LOGS/$name.failed" <(sort -u "$LOGS/baseline.failed") > "$LOGS/$name.killers"
  n=$(wc -l < "$LOGS/$name.killers")
  verdict="killed by $n tests"
  [ "$n" -eq 0 ] && { verdict="SURVIVED"; survived=$((survived + 1)); }
  [ "$n" -eq 1 ] && verdict="WEAK: killed by 1 test"
  say "$(printf '%-40s %s (%d s%s)' "$name" "$verdict" $(( $(date +%s) - t0 )) "$scoped")"
  sed 's/^/    /' "$LOGS/$name.killers" | tee -a "$REPORT"
done < <(mutant_list)

# Leave the scratch build unmutated (the restored files rebuild).
build "$LOGS/final.build.log" || say "warning: the final rebuild failed"
say "report: $REPORT"
[ "$survived" -eq 0 ]
