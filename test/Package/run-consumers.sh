#!/bin/sh
# run-consumers.sh BUILD_DIR SOURCE_DIR WORK_DIR [C_COMPILER CXX_COMPILER]
#
# The package test (issue 17): installs BUILD_DIR into a fresh prefix with
# `cmake --install`, moves the prefix elsewhere (the package must be
# relocatable), then configures, builds and runs two out-of-tree projects
# against it:
#   runtime-consumer/  C, attnc_add_kernel + attnc::runtime; its executable
#                      and libattn_runtime must not link LLVM or MLIR (ldd),
#                      and the pkg-config file must build the same program;
#   jit-consumer/      C++, attnc::jit compiling a spec at run time.
# Prints PACKAGE CONSUMERS PASS at the end; any failure exits non-zero.
set -eu
build=$1 src=$2 work=$3
cc=${4:-cc} cxx=${5:-c++}
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/staged" >"$work/install.log"
mv "$work/staged" "$work/prefix"
prefix="$work/prefix"
echo "installed and moved to $prefix"

# The projects are copied out of the source tree first (the test touches
# their files).
cp -R "$src/test/Package/runtime-consumer" "$src/test/Package/jit-consumer" "$work/"
configure() { # NAME COMPILER-FLAG: out-of-tree project test/Package/NAME
  cmake -S "$work/$1" -B "$work/$1/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" "$2" >"$work/$1.configure.log" ||
    { cat "$work/$1.configure.log"; exit 1; }
  cmake --build "$work/$1/build" >"$work/$1.build.log" 2>&1 ||
    { cat "$work/$1.build.log"; exit 1; }
}

configure runtime-consumer -DCMAKE_C_COMPILER="$cc"
"$work/runtime-consumer/build/consumer"
# attnc_add_kernel reruns attnc when the spec changes, and only then.
cmake --build "$work/runtime-consumer/build" >"$work/rebuild-none.log" 2>&1
if grep -q "attnc: compiling" "$work/rebuild-none.log"; then
  echo "FAIL: attnc reran with nothing changed"; exit 1
fi
sleep 1
touch "$work/runtime-consumer/window.attn"
cmake --build "$work/runtime-consumer/build" >"$work/rebuild-spec.log" 2>&1
grep -q "attnc: compiling window.attn" "$work/rebuild-spec.log" ||
  { cat "$work/rebuild-spec.log"; echo "FAIL: a changed spec was not recompiled"; exit 1; }
echo "attnc_add_kernel: recompiles when the spec changes, not otherwise"
lib=$(ls "$prefix"/lib*/libattn_runtime.so "$prefix"/lib/*/libattn_runtime.so 2>/dev/null | head -n 1)
for bin in "$work/runtime-consumer/build/consumer" "$lib"; do
  out=$(ldd "$bin")
  if echo "$out" | grep -v libclang_rt | grep -Ei 'libMLIR|libLLVM'; then
    echo "FAIL: $bin links LLVM/MLIR"
    exit 1
  fi
done
echo "runtime consumer: no LLVM/MLIR linked"

# The same program through pkg-config, with the object attnc_add_kernel built.
pcdir=$(dirname "$(ls "$prefix"/lib*/pkgconfig/attn_runtime.pc "$prefix"/lib/*/pkgconfig/attn_runtime.pc 2>/dev/null | head -n 1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs attn_runtime)
kdir="$work/runtime-consumer/build/attnc_kernels/window_kernel"
# shellcheck disable=SC2086
"$cc" -std=c99 -I"$kdir" "$work/runtime-consumer/main.c" \
  "$kdir/window_kernel.o" $flags -lm -o "$work/pkgconfig-consumer"
"$work/pkgconfig-consumer" | tail -n 1

configure jit-consumer -DCMAKE_CXX_COMPILER="$cxx"
ATTN_CACHE_DIR="$work/cache" "$work/jit-consumer/build/jit_consumer" \
  --spec "$prefix/share/attnc/examples/sliding_window.attn"

# Where LLVM/MLIR 22 cannot be found (every library search re-rooted into an
# empty folder), asking for attnc::jit fails at configure time and says why.
if cmake -S "$work/jit-consumer" -B "$work/jit-no-llvm" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_FIND_ROOT_PATH="$work/empty" \
    -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY >"$work/jit-no-llvm.log" 2>&1; then
  echo "FAIL: attnc::jit configured without LLVM/MLIR"
  exit 1
fi
grep -q "attnc::jit needs LLVM/MLIR 22's shared libraries" "$work/jit-no-llvm.log" ||
  { cat "$work/jit-no-llvm.log"; echo "FAIL: no clear message"; exit 1; }
echo "jit without LLVM/MLIR: refused with a clear message"
echo "PACKAGE CONSUMERS PASS"
