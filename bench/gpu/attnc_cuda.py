"""attnc_cuda.py - call prebuilt attnc CUDA kernels (bench/gpu/artifacts) from Python.

    arts = Artifacts("bench/gpu/artifacts")          # reads manifest.json
    k = arts.load("causal")                          # ctypes over causal/libkernel.so
    st = k.run([dl_q, dl_k, dl_v], dl_o, dl_lse, stream)   # attn_cuda_run's status

Each artifact's libkernel.so (bench/gpu/build_artifacts.sh) exports
    int attn_gpu_run(const DLTensor *const *inputs, DLTensor *o, DLTensor *lse,
                     void *stream)      -> the header's attn_cuda_run_<name>(...)
    const attn_cuda_kernel_desc_t *attn_gpu_desc(void)
and reaches the runtime (libattn_runtime.so, beside the artifacts, found by
the library's RUNPATH $ORIGIN/..) for attn_last_error, attn_status_string
and attn_cuda_available. Nothing here needs numpy or torch at import time:
DLTensors are built from numpy arrays (host memory, for dry runs) or torch
tensors (CUDA memory) by the helpers below, which import what they need.
"""

import ctypes
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_ARTIFACTS = os.path.join(HERE, "artifacts")

# ---- dlpack.h ---------------------------------------------------------------
kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged = 1, 2, 3, 13
kDLInt, kDLUInt, kDLFloat, kDLBfloat = 0, 1, 2, 4

ATTN_STATUS = ["ATTN_OK", "ATTN_ERROR_INVALID_ARGUMENT", "ATTN_ERROR_SHAPE",
               "ATTN_ERROR_DTYPE", "ATTN_ERROR_DEVICE", "ATTN_ERROR_LAYOUT",
               "ATTN_ERROR_UNSUPPORTED", "ATTN_ERROR_INTERNAL", "ATTN_ERROR_DRIVER"]
ATTN_OK, ATTN_ERROR_SHAPE, ATTN_ERROR_DTYPE, ATTN_ERROR_DEVICE = 0, 2, 3, 4
ATTN_ERROR_LAYOUT, ATTN_ERROR_UNSUPPORTED, ATTN_ERROR_DRIVER = 5, 6, 8
ELEM_TYPES = ["f32", "bf16", "f16", "i32"]  # attn_elem_type_t

# (code, bits) of each element type name used in the manifest.
DL_OF = {"f32": (kDLFloat, 32), "bf16": (kDLBfloat, 16), "f16": (kDLFloat, 16),
         "i32": (kDLInt, 32)}


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


def make_dltensor(ptr, shape, strides, dtype, device_type, device_id=0, keep=None):
    """A DLTensor over `ptr` (an int address). dtype: a DL_OF key; strides in
    elements. `keep` is held by the tensor (the memory's owner)."""
    code, bits = DL_OF[dtype]
    shp = (ctypes.c_int64 * len(shape))(*[int(x) for x in shape])
    std = (ctypes.c_int64 * len(strides))(*[int(x) for x in strides])
    t = DLTensor(ctypes.c_void_p(ptr), DLDevice(device_type, device_id), len(shape),
                 DLDataType(code, bits, 1), shp, std, 0)
    t._keep = (keep, shp, std)
    return t


def dl_from_numpy(a, dtype, device_type=kDLCPU, device_id=0):
    """A DLTensor over numpy array `a` (host memory). dtype names the element
    type the bytes hold (bf16 arrays are uint16 bit patterns). device_type may
    claim CUDA memory: only for dry runs where no driver can be reached (the
    runtime then validates everything and stops at loading the driver)."""
    return make_dltensor(a.ctypes.data, a.shape, [s // a.itemsize for s in a.strides],
                         dtype, device_type, device_id, keep=a)


def dl_from_torch(t):
    """A DLTensor over torch tensor `t` (any device; strides honoured)."""
    import torch
    names = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32",
             torch.int32: "i32"}
    if t.is_cuda:
        dev, idx = kDLCUDA, t.device.index if t.device.index is not None else 0
    elif t.device.type == "cpu":
        dev, idx = kDLCPU, 0
    else:
        raise ValueError("tensor on %s" % t.device)
    return make_dltensor(t.data_ptr(), tuple(t.shape), tuple(t.stride()),
                         names[t.dtype], dev, idx, keep=t)


def aligned_empty(shape, dtype, align=256):
    """An uninitialised C-contiguous numpy array whose data is `align`-byte
    aligned (the CUDA kernels need 16-byte aligned q, k, v)."""
    import numpy as np
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(n + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + n].view(dtype).reshape(shape)


# ---- attn/runtime.h descriptors ------------------------------------------------
class InputDesc(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int32),
                ("rank", ctypes.c_int32),
                ("dims", ctypes.POINTER(ctypes.c_char_p)),
                ("fixed_sizes", ctypes.POINTER(ctypes.c_int64))]


class CudaVariant(ctypes.Structure):
    _fields_ = [("function", ctypes.c_char_p), ("max_head_dim", ctypes.c_int32),
                ("block_q", ctypes.c_int32), ("num_threads", ctypes.c_int32),
                ("shared_mem_bytes", ctypes.c_int32),
                # ABI 3 (attn_cuda_kernel_variant_t): without these the
                # struct was 24 bytes instead of 40 and variants[1] garbage.
                ("scratch_state_floats", ctypes.c_int64),
                ("scratch_fixed_floats", ctypes.c_int64)]


class CudaKernelDesc(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_uint32), ("name", ctypes.c_char_p),
                ("image", ctypes.c_void_p), ("image_size", ctypes.c_uint64),
                ("num_variants", ctypes.c_int32),
                ("variants", ctypes.POINTER(CudaVariant)),
                ("num_inputs", ctypes.c_int32),
                ("inputs", ctypes.POINTER(InputDesc)),
                ("has_lse", ctypes.c_int32),
                # ABI 6: the split-KV decode schedule.
                ("decode_max_n", ctypes.c_int32),
                ("num_decode_variants", ctypes.c_int32),
                ("decode_variants", ctypes.POINTER(CudaVariant)),
                ("merge_variant", ctypes.POINTER(CudaVariant)),
                # ABI 9: the batch prefill variants (attn_cuda_run_batch
                # past decode_max_n queries).
                ("num_batch_variants", ctypes.c_int32),
                ("batch_variants", ctypes.POINTER(CudaVariant))]


class BatchLayout(ctypes.Structure):
    """attn_batch_layout_t: the tables, NULL where absent."""
    _fields_ = [("cu_seqlens_q", ctypes.POINTER(DLTensor)),
                ("cu_seqlens_k", ctypes.POINTER(DLTensor)),
                ("block_table", ctypes.POINTER(DLTensor)),
                ("kv_lens", ctypes.POINTER(DLTensor))]


class GpuBatchLayout(ctypes.Structure):
    """attn_gpu_batch_layout_t (ABI 7): device tables and the longest runs."""
    _fields_ = [("tables", BatchLayout), ("max_seqlen_q", ctypes.c_int64),
                ("max_seqlen_k", ctypes.c_int64)]


class Kernel:
    """One artifact's library. run() returns attn_cuda_run's status (int);
    error() the runtime's last error message."""

    def __init__(self, art_dir, entry):
        self.entry = entry
        self.id = entry["id"]
        self.path = os.path.join(art_dir, entry["library"])
        self.lib = ctypes.CDLL(self.path)
        self._run = self.lib.attn_gpu_run
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, ctypes.POINTER(DLTensor),
                              ctypes.POINTER(DLTensor), ctypes.c_void_p]
        self._desc = self.lib.attn_gpu_desc
        self._desc.restype = ctypes.POINTER(CudaKernelDesc)
        self._err = self.lib.attn_last_error
        self._err.restype = ctypes.c_char_p
        self._status = self.lib.attn_status_string
        self._status.restype = ctypes.c_char_p
        self._status.argtypes = [ctypes.c_int]
        self._avail = self.lib.attn_cuda_available
        self._avail.restype = ctypes.c_int32

    def descriptor(self):
        """The compiled descriptor, as a dict (read through ctypes)."""
        d = self._desc().contents
        ins = []
        for i in range(d.num_inputs):
            x = d.inputs[i]
            ins.append({"name": x.name.decode(), "type": ELEM_TYPES[x.type],
                        "rank": x.rank,
                        "dims": [(x.dims[j].decode() if x.dims[j] else None)
                                 for j in range(x.rank)]})
        def variant(v):
            return {"function": v.function.decode(), "max_head_dim": v.max_head_dim,
                    "block_q": v.block_q, "num_threads": v.num_threads,
                    "shared_mem_bytes": v.shared_mem_bytes}
        vs = [variant(d.variants[i]) for i in range(d.num_variants)]
        dec = [variant(d.decode_variants[i])
               for i in range(d.num_decode_variants)]
        merge = variant(d.merge_variant.contents) if d.merge_variant else None
        batch = [variant(d.batch_variants[i])
                 for i in range(d.num_batch_variants)]
        return {"abi_version": d.abi_version, "name": d.name.decode(),
                "image": d.image, "image_size": d.image_size,
                "has_lse": bool(d.has_lse), "inputs": ins, "variants": vs,
                "decode_max_n": d.decode_max_n, "decode_variants": dec,
                "merge_variant": merge, "batch_variants": batch}

    def image_bytes(self, n=16):
        d = self._desc().contents
        return ctypes.string_at(d.image, min(n, d.image_size))

    def input_names(self):
        d = self._desc().contents
        return [d.inputs[i].name.decode() for i in range(d.num_inputs)]

    def prepare(self, tensors, o, lse=None):
        """tensors: {name: DLTensor} for every declared input. Returns a
        callable(stream=None) -> status, with the argument array built once."""
        names = self.input_names()
        missing = [n for n in names if n not in tensors]
        if missing:
            raise KeyError("%s: no tensor for input(s) %s" % (self.id, ", ".join(missing)))
        ts = [tensors[n] for n in names]
        arr = (ctypes.POINTER(DLTensor) * len(ts))(*[ctypes.pointer(t) for t in ts])
        po = ctypes.pointer(o)
        pl = ctypes.pointer(lse) if lse is not None else None
        fn = self._run
        keep = (ts, arr, o, lse)

        def call(stream=None):
            _ = keep
            return fn(ctypes.cast(arr, ctypes.c_void_p), po, pl,
                      ctypes.c_void_p(stream) if stream else None)
        return call

    def prepare_batch(self, tensors, tables, max_q, max_k, o, lse=None):
        """attn_cuda_run_batch over this artifact's descriptor: tensors as
        prepare(); tables {name: DLTensor} of cu_seqlens_q, cu_seqlens_k,
        block_table, kv_lens (absent: NULL). Returns callable(stream=None)."""
        names = self.input_names()
        ts = [tensors[n] for n in names]
        arr = (ctypes.POINTER(DLTensor) * len(ts))(*[ctypes.pointer(t) for t in ts])
        layout = GpuBatchLayout()
        for name, _ in BatchLayout._fields_:
            if name in tables:
                setattr(layout.tables, name, ctypes.pointer(tables[name]))
        layout.max_seqlen_q, layout.max_seqlen_k = max_q, max_k
        fn = self.lib.attn_cuda_run_batch
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.POINTER(CudaKernelDesc), ctypes.c_void_p,
                       ctypes.POINTER(GpuBatchLayout), ctypes.POINTER(DLTensor),
                       ctypes.POINTER(DLTensor), ctypes.c_void_p]
        desc = self._desc()
        po = ctypes.pointer(o)
        pl = ctypes.pointer(lse) if lse is not None else None
        keep = (ts, arr, tables, layout, o, lse)

        def call(stream=None):
            _ = keep
            return fn(desc, ctypes.cast(arr, ctypes.c_void_p), ctypes.byref(layout), po, pl,
                      ctypes.c_void_p(stream) if stream else None)
        return call

    def run(self, tensors, o, lse=None, stream=None):
        return self.prepare(tensors, o, lse)(stream)

    def error(self):
        return self._err().decode()

    def status_name(self, st):
        return self._status(st).decode()

    def cuda_available(self):
        """(available, message)."""
        a = int(self._avail())
        return a, self.error()


class Artifacts:
    def __init__(self, art_dir=None):
        self.dir = os.path.abspath(art_dir or os.environ.get("ATTN_GPU_ARTIFACTS")
                                   or DEFAULT_ARTIFACTS)
        path = os.path.join(self.dir, "manifest.json")
        if not os.path.exists(path):
            raise SystemExit("no %s: run bench/gpu/build_artifacts.sh first (on a machine "
                             "with the attnc build), and carry bench/gpu/artifacts" % path)
        with open(path) as f:
            self.manifest = json.load(f)
        self.entries = {a["id"]: a for a in self.manifest["artifacts"]}
        self._loaded = {}

    def ids(self):
        return [a["id"] for a in self.manifest["artifacts"]]

    def load(self, aid):
        if aid not in self._loaded:
            self._loaded[aid] = Kernel(self.dir, self.entries[aid])
        return self._loaded[aid]

    def stale_specs(self):
        """Artifacts whose spec file here differs from the one they were built from."""
        import hashlib
        out = []
        for a in self.manifest["artifacts"]:
            p = os.path.join(ROOT, a["spec"])
            if os.path.exists(p):
                with open(p, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != a["spec_sha256"]:
                        out.append(a["id"])
        return out


def bf16_bits(x):
    """Round float array x to bfloat16 (nearest even); returns the uint16 bit
    patterns (numpy)."""
    import numpy as np
    f = np.ascontiguousarray(x, np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def bf16_to_f32(bits):
    import numpy as np
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)
