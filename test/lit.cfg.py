# -*- Python -*-
import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "ATTN"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".attn", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py",
                   "oracle.py", "Package"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attn_obj_root, "test")

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# Compiled kernels of the tests go to a cache inside the build tree.
config.environment["ATTN_CACHE_DIR"] = os.path.join(config.attn_obj_root, "kernel-cache")
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%attnc", os.path.join(config.attn_tools_dir, "attnc")))
config.substitutions.append(("%attn-opt", os.path.join(config.attn_tools_dir, "attn-opt")))
config.substitutions.append(("%attn-gpu-sim", os.path.join(config.attn_tools_dir,
                                                         "attn-gpu-sim")))
config.substitutions.append(("%examples", os.path.join(config.attn_src_root,
                                                       "examples")))
tool_dirs = [config.attn_tools_dir, config.llvm_tools_dir]
# llvm-objdump and llvm-nm inspect the objects attnc writes (attnc tests).
tools = ["attn-opt", "attnc", "attn-gpu-sim", "llvm-objdump", "llvm-nm"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# CUDA: `cuda-toolkit` where ptxas/fatbinary are installed (compile-only
# tests: PTX, cubin, ptxas reports, AOT objects); `cuda` only where a GPU and
# its driver are present (run tests). Elsewhere those tests are reported
# UNSUPPORTED, the visible skip.
cuda_toolkit = (os.environ.get("ATTN_CUDA_TOOLKIT") or
                os.environ.get("CUDA_HOME") or "/usr/local/cuda")
if all(os.access(os.path.join(cuda_toolkit, "bin", t), os.X_OK)
       for t in ("ptxas", "fatbinary")):
    config.available_features.add("cuda-toolkit")
    config.environment["ATTN_CUDA_TOOLKIT"] = cuda_toolkit
if os.path.exists("/dev/nvidiactl") and any(
        os.path.exists(os.path.join(d, "libcuda.so.1"))
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64")):
    config.available_features.add("cuda")
tools.append("llvm-readelf")
llvm_config.add_tool_substitutions(["llvm-readelf"], tool_dirs)

# `avx512bf16` where the host CPU has AVX512-BF16 (the bf16 dot-product
# kernels, test/Integration/cpu/bf16-dot.test); elsewhere those tests are
# reported UNSUPPORTED.
try:
    with open("/proc/cpuinfo") as f:
        if " avx512_bf16" in f.read():
            config.available_features.add("avx512bf16")
except OSError:
    pass

# `asan` in the sanitizer build (scripts/test.sh --sanitize, CMake option
# ATTN_ENABLE_SANITIZERS): tests that cannot run there say `UNSUPPORTED: asan`
# (a `ulimit -v` below what ASan's shadow memory reserves; the instrumented
# libattn_runtime.so loaded into an uninstrumented Python). A C program that
# a test links against libattn_runtime adds %sanitize_cflags (empty in the
# normal build) so that it loads the sanitizer runtime first.
sanitize_cflags = ""
try:
    with open(os.path.join(config.attn_obj_root, "CMakeCache.txt")) as f:
        if "ATTN_ENABLE_SANITIZERS:BOOL=ON" in f.read():
            import subprocess
            config.available_features.add("asan")
            runtime_dir = subprocess.run(["clang-22", "-print-runtime-dir"],
                                         capture_output=True, text=True).stdout.strip()
            sanitize_cflags = ("-fsanitize=address,undefined -shared-libsan "
                               "-Wl,-rpath," + runtime_dir)
except OSError:
    pass
config.substitutions.append(("%sanitize_cflags", sanitize_cflags))

# A C compiler for the tests that link programs against libattn_runtime
# (the AOT doors): $CC, else clang-22, clang, cc; and the source and build
# roots.
import shutil
host_cc = os.environ.get("CC") or next(
    (c for c in ("clang-22", "clang", "cc") if shutil.which(c)), "cc")
config.substitutions.append(("%host_cc", host_cc))
config.substitutions.append(("%attn_src", config.attn_src_root))
config.substitutions.append(("%attn_obj", config.attn_obj_root))

# One feature per backend the build has (CMake's ATTN_ENABLE_<NAME>),
# `<name>-backend`: a backend's tests say `REQUIRES: cuda-backend`, or sit in
# a folder whose lit.local.cfg marks them unsupported without it.
try:
    with open(os.path.join(config.attn_obj_root, "CMakeCache.txt")) as f:
        cache = f.read()
    for backend in ("cuda", "rocm"):
        if "ATTN_ENABLE_%s:BOOL=ON" % backend.upper() in cache:
            config.available_features.add(backend + "-backend")
except OSError:
    pass
