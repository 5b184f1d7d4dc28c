"""attnc_ctypes.py - call attnc's ahead-of-time kernels from Python (numpy).

    k = AttnKernel("examples/document.attn", params={"window": "256"})
    k.run([q, k_, v, doc], o, lse=None, threads=2)

For a spec + params this runs
    build/bin/attnc SPEC --target=cpu [--param N=V]... -o K.o --header K.h
into a cache directory (build/peers-cache/<hash>, keyed by the spec text, the
params and the attnc binary's mtime), writes a tiny C shim that includes the
header and exports
    int attn_peers_run(const DLTensor **inputs, DLTensor *o, DLTensor *lse,
                       int threads)
(calling attn_cpu_run(&attn_<name>_kernel, ...): the descriptor in the header
is `static const`, so it is not visible from outside the object), links shim +
object with `cc -shared` against build/lib/libattn_runtime.so, and loads the
result with ctypes. Inputs are numpy arrays (q/k/v/f32 aux: float32, i32 aux:
int32, bf16 q/k/v: ml_dtypes.bfloat16 arrays or any 2-byte array wrapped in
`BF16(a)`), passed as DLTensors over their memory (strides honoured, so any
C-contiguous or strided view works); o/lse must be C-contiguous float32.
The C ABI is the one in runtime/include/attn/runtime.h: no MLIR/LLVM at run
time.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ATTN_BUILD_DIR", os.path.join(ROOT, "build"))
ATTNC = os.path.join(BUILD, "bin", "attnc")
LIBDIR = os.path.join(BUILD, "lib")
INCDIR = os.path.join(ROOT, "runtime", "include")
CACHE = os.environ.get("ATTN_PEERS_CACHE", os.path.join(BUILD, "peers-cache"))
CC = os.environ.get("CC", "cc")


# ---- dlpack.h (v0.6+) structs ---------------------------------------------
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice),
                ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


kDLCPU, kDLInt, kDLFloat, kDLBfloat = 1, 0, 2, 4
_DTYPES = {np.dtype(np.float32): (kDLFloat, 32), np.dtype(np.int32): (kDLInt, 32),
           np.dtype(np.float16): (kDLFloat, 16)}
try:  # numpy has no bfloat16; ml_dtypes (an onnx dependency) adds one
    import ml_dtypes
    _DTYPES[np.dtype(ml_dtypes.bfloat16)] = (kDLBfloat, 16)
except ImportError:  # pragma: no cover
    ml_dtypes = None


class BF16:
    """Marks a 2-byte numpy array (e.g. uint16/int16 bits of a torch bfloat16
    tensor) as bfloat16 for as_dltensor."""

    def __init__(self, a):
        assert a.itemsize == 2, a.dtype
        self.a = a


def as_dltensor(a):
    """A DLTensor over numpy array `a` (keeps shape/strides alive on it)."""
    if isinstance(a, BF16):
        a, (code, bits) = a.a, (kDLBfloat, 16)
    else:
        code, bits = _DTYPES[a.dtype]
    shape = (ctypes.c_int64 * a.ndim)(*a.shape)
    strides = (ctypes.c_int64 * a.ndim)(*[s // a.itemsize for s in a.strides])
    t = DLTensor(ctypes.c_void_p(a.ctypes.data), DLDevice(kDLCPU, 0), a.ndim,
                 DLDataType(code, bits, 1), shape, strides, 0)
    t._keep = (a, shape, strides)
    return t


_SHIM = r"""
#include "kernel.h"
__attribute__((visibility("default")))
int attn_peers_run(const DLTensor *const *inputs, DLTensor *o, DLTensor *lse,
                   int threads) {
  attn_run_options_t opts;
  opts.num_threads = threads;
  return (int)attn_cpu_run(&attn_%(name)s_kernel, inputs, o, lse, &opts);
}
__attribute__((visibility("default")))
int attn_peers_run_batch(const DLTensor *const *inputs,
                         const DLTensor *const *tables, DLTensor *o,
                         DLTensor *lse, int threads) {
  attn_run_options_t opts;
  opts.num_threads = threads;
  attn_batch_layout_t layout = {tables[0], tables[1], tables[2], tables[3]};
  return (int)attn_cpu_run_batch(&attn_%(name)s_kernel, inputs, &layout, o,
                                 lse, &opts);
}
"""


def _build(spec_path, params, outdir, target="cpu", paged_kv=False):
    """attnc -> kernel.o + kernel.h, shim, cc -shared -> kernel.so. Returns name."""
    os.makedirs(outdir, exist_ok=True)
    cmd = [ATTNC, spec_path, "--target=" + target, "-o", os.path.join(outdir, "kernel.o"),
           "--header", os.path.join(outdir, "kernel.h")]
    if paged_kv:
        cmd.append("--paged-kv")
    for k, v in sorted(params.items()):
        cmd += ["--param", "%s=%s" % (k, v)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(os.path.join(outdir, "kernel.h")) as f:
        m = re.search(r"static const attn_kernel_desc_t attn_(\w+)_kernel", f.read())
    name = m.group(1)
    with open(os.path.join(outdir, "shim.c"), "w") as f:
        f.write(_SHIM % {"name": name})
    so_tmp = os.path.join(outdir, "kernel.so.tmp")
    subprocess.run([CC, "-O2", "-fPIC", "-shared", "-std=c99", "-I" + INCDIR, "-I" + outdir,
                    os.path.join(outdir, "shim.c"), os.path.join(outdir, "kernel.o"),
                    "-L" + LIBDIR, "-lattn_runtime", "-Wl,-rpath," + LIBDIR, "-lm",
                    "-o", so_tmp], check=True, capture_output=True, text=True)
    os.replace(so_tmp, os.path.join(outdir, "kernel.so"))
    with open(os.path.join(outdir, "name"), "w") as f:
        f.write(name)
    return name


class AttnKernel:
    """A compiled attnc kernel. Attributes: name, so_path, cold (True when
    this constructor compiled), seconds (spec -> loaded library)."""

    def __init__(self, spec_path, params=None, target="cpu", cache_dir=CACHE,
                 paged_kv=False):
        t0 = time.perf_counter()
        params = {k: str(v) for k, v in (params or {}).items()}
        with open(spec_path, "rb") as f:
            spec = f.read()
        h = hashlib.sha256()
        h.update(spec)
        h.update(repr(sorted(params.items())).encode())
        h.update(target.encode())
        h.update(b"paged" if paged_kv else b"")
        h.update(str(os.stat(ATTNC).st_mtime_ns).encode())
        d = os.path.join(cache_dir, h.hexdigest()[:24])
        so = os.path.join(d, "kernel.so")
        self.cold = not os.path.exists(so)
        if self.cold:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix="build-", dir=cache_dir)
            try:
                _build(spec_path, params, tmp, target, paged_kv)
                try:
                    os.rename(tmp, d)
                except OSError:  # another process won the race
                    shutil.rmtree(tmp, ignore_errors=True)
            except Exception:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        with open(os.path.join(d, "name")) as f:
            self.name = f.read().strip()
        self.so_path = so
        self._lib = ctypes.CDLL(so)
        self._fn = self._lib.attn_peers_run
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(DLTensor),
                             ctypes.POINTER(DLTensor), ctypes.c_int]
        self._batch = self._lib.attn_peers_run_batch
        self._batch.restype = ctypes.c_int
        self._batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.POINTER(DLTensor),
                                ctypes.POINTER(DLTensor), ctypes.c_int]
        self._err = self._lib.attn_last_error
        self._err.restype = ctypes.c_char_p
        self.seconds = time.perf_counter() - t0

    def prepare(self, inputs, o, lse=None):
        """Build the DLTensors once; returns a callable running the kernel."""
        ts = [as_dltensor(a if isinstance(a, BF16) else np.asarray(a)) for a in inputs]
        arr = (ctypes.POINTER(DLTensor) * len(ts))(*[ctypes.pointer(t) for t in ts])
        to = as_dltensor(o)
        tl = as_dltensor(lse) if lse is not None else None
        po = ctypes.pointer(to)
        pl = ctypes.pointer(tl) if tl is not None else None
        fn, err = self._fn, self._err
        keep = (ts, arr, to, tl)

        def call(threads=0):
            _ = keep
            st = fn(ctypes.cast(arr, ctypes.c_void_p), po, pl, threads)
            if st != 0:
                raise RuntimeError("attn_cpu_run: status %d: %s" % (st, err().decode()))
        return call

    def prepare_batch(self, inputs, tables, o, lse=None):
        """attn_cpu_run_batch: `tables` is (cu_seqlens_q, cu_seqlens_k,
        block_table, kv_lens), int32 arrays or None (attn_batch_layout_t)."""
        ts = [as_dltensor(a if isinstance(a, BF16) else np.asarray(a)) for a in inputs]
        arr = (ctypes.POINTER(DLTensor) * len(ts))(*[ctypes.pointer(t) for t in ts])
        tt = [as_dltensor(np.asarray(t)) if t is not None else None for t in tables]
        tarr = (ctypes.POINTER(DLTensor) * 4)(
            *[ctypes.pointer(t) if t is not None else None for t in tt])
        to = as_dltensor(o)
        tl = as_dltensor(lse) if lse is not None else None
        po = ctypes.pointer(to)
        pl = ctypes.pointer(tl) if tl is not None else None
        fn, err = self._batch, self._err
        keep = (ts, arr, tt, tarr, to, tl)

        def call(threads=0):
            _ = keep
            st = fn(ctypes.cast(arr, ctypes.c_void_p), ctypes.cast(tarr, ctypes.c_void_p),
                    po, pl, threads)
            if st != 0:
                raise RuntimeError("attn_cpu_run_batch: status %d: %s" % (st, err().decode()))
        return call

    def run(self, inputs, o, lse=None, threads=0):
        self.prepare(inputs, o, lse)(threads)
        return o


if __name__ == "__main__":  # smoke test: dense vs numpy
    rng = np.random.default_rng(0)
    B, H, N, D = 1, 2, 100, 32
    q, k, v = (rng.standard_normal((B, H, N, D), dtype=np.float32) for _ in range(3))
    kern = AttnKernel(os.path.join(ROOT, "examples", "causal.attn"))
    o = np.empty((B, H, N, D), np.float32)
    lse = np.empty((B, H, N), np.float32)
    kern.run([q, k, v], o, lse, threads=2)
    s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) / np.sqrt(D)
    s = np.where(np.tril(np.ones((N, N), bool)), s, -np.inf)
    ref_lse = np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1)) + s.max(-1)
    ref = np.einsum("bhij,bhjd->bhid", np.exp(s - ref_lse[..., None]), v)
    print("cold" if kern.cold else "cached", "%.1f ms" % (kern.seconds * 1e3),
          "max|o-ref| %.2e max|lse-ref| %.2e" % (np.abs(o - ref).max(), np.abs(lse - ref_lse).max()))
