//===- attn-gpu-sim.cpp - run generated CUDA attention kernels on the CPU -===//
//
// KERNEL.mlir holds the gpu.module that convert-attn-to-nvvm or
// convert-attn-to-rocdl produced (any later canonicalization is fine, NVVM
// or ROCDL lowering is not). The kernel is launched as the runtime launches
// it, with attn.shared_bytes of dynamic shared memory, a block of
// (attn.num_threads, 1, 1) and warps of attn.wave_size threads (32 unless
// the kernel says 64, as AMD's do):
//  - a forward kernel: grid (ceil(N / attn.block_q), B * Hq, 1), arguments
//    q, k, v, o, lse (null unless --output lse is given) and the aux inputs
//    in the order of their --input options. o and lse start as NaN, so an
//    element the kernel never writes shows up.
//  - a backward kernel (unit attribute attn.backward): grid
//    (ceil(M / attn.block_kv), B * Hkv, 1), arguments q, k, v, o, lse (null
//    unless given), the aux inputs, do, dlse (null unless given), dq, dk, dv
//    and one gradient per name in attn.gradient_inputs (shaped like that aux
//    input). dq and the aux gradients start at zero (the kernel adds into
//    them with atomics), dk and dv as NaN; then, for a kernel with
//    attn.scratch_state_floats, the global scratch the runtime would
//    allocate (attn_cuda_scratch_floats_per_cta per CTA), as NaN bytes.
//  - --schedule decode: the split-KV decode kernel (attn.role = "decode")
//    into partials o_part [B, Hkv, S, C * 16, Dv] and lse_part
//    [B, Hkv, S, C * 16] (C = ceil(G * N / 16), S = --splits), NaN at the
//    start, on grid (B * Hkv * C * S, 1, 1); then the merge kernel
//    (attn.role = "merge") from them into o and lse (null unless --output
//    lse is given), NaN at the start, on grid (ceil(N / attn.block_q),
//    B * Hq, 1): the two launches the runtime will make.
//    A ragged or paged batch (--input cu_seqlens_q / cu_seqlens_k /
//    block_table + kv_lens, runtime.h's attn_batch_layout_t) is one launch
//    of each: packed q, o (and ragged k, v) are bound as views [B, H, rows,
//    D] with a zero batch stride, lse [Hq, total_q] as [B, Hq, total_q],
//    paged k and v as their pools; N and M are the longest sequence's, and
//    the tables follow the aux inputs (null where absent).
//  - a batch without --schedule decode: the batch prefill kernel
//    (attn.role = "batch"), the forward kernel over the same tables, in one
//    launch on grid (ceil(longest N / attn.block_q), B * Hq, 1) into o and
//    lse (packed as the decode batch's merge writes them).
// Each CTA is interpreted by GpuSim (see GpuSim.h). Options: see kUsage.
//
//===----------------------------------------------------------------------===//

#include "GpuSim.h"

#include "attn/npy.h"
#include "attn/runtime.h"

#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <sys/stat.h>

using namespace mlir;
using namespace attn::gpusim;

static const char *kUsage = R"(usage: attn-gpu-sim KERNEL.mlir [--kernel NAME]
           --input q=Q.npy --input k=K.npy --input v=V.npy [--input AUX=FILE.npy]...
           [--output o=O.npy] [--output lse=LSE.npy] [--round-inputs-to DIR]
           [--async-copy=deferred|immediate] [--no-race-check] [--stride-pad P]
           [--schedule forward|decode] [--splits S]
       attn-gpu-sim KERNEL.mlir [--kernel NAME] (a backward kernel)
           --input q=.. --input k=.. --input v=.. --input o=O.npy
           [--input lse=LSE.npy] --input do=DO.npy [--input dlse=DLSE.npy]
           [--input AUX=FILE.npy]... [--output dq=F] [--output dk=F]
           [--output dv=F] [--output dAUX=F]... [options as above]

Runs a CUDA attention kernel made by convert-attn-to-nvvm (a gpu.func in
KERNEL.mlir) on the CPU, each CTA interpreted in lockstep with PTX semantics
for ldmatrix, mma.sync, cp.async, shuffles and atomics, and a bounds check on
every global and shared access. A kernel with the attn.backward attribute is
launched as a backward kernel: one CTA per attn.block_kv rows of k and v.

  --kernel NAME        the gpu.func to run (default: the one with the smallest
                       attn.max_head_dim >= max(Dqk, Dv), among the backward
                       kernels if --input do is given, else the forward ones,
                       where the file has both)
  --input NAME=FILE    q, k, v: float32/float64 [B,Hq,N,Dqk], [B,Hkv,M,Dqk],
                       [B,Hkv,M,Dv], rounded to the kernel's bf16/f16; any
                       other name is an aux input, bound to the arguments
                       after lse in the order given
  --output o=FILE      o as float32 [B,Hq,N,Dv]
  --output lse=FILE    lse as float32 [B,Hq,N]; without it lse is a null
                       pointer
  --round-inputs-to DIR  write the rounded q, k, v (and, backward, do) as
                       float32 DIR/{q,k,v,do}.npy
  --async-copy MODE    deferred (default): a cp.async lands when the wait that
                       retires its group runs; immediate: when it is issued
  --no-race-check      no shared-memory race / global double-write checks
  --stride-pad P       rank-4 tensors (q, k, v, o; backward also do, dq, dk,
                       dv; decode also lse_part) get rows P elements longer
                       than their last dim (NaN padding) and a base offset
                       of P elements
  --schedule decode    run the split-KV decode kernel (the one with
                       attn.role = "decode" and the smallest attn.max_head_dim
                       that fits, or --kernel) into per-split partials, then
                       the merge kernel (attn.role = "merge") into o and lse
  --splits S           decode: the kv splits per (b, kv head, row chunk)
                       (default 1; splits past the last kv tile are empty)

A batch of sequences of different lengths (runtime.h's attn_batch_layout_t),
run by the batch prefill kernel (attn.role = "batch"), or with --schedule
decode by the decode and merge kernels; the table values are not checked,
as on a GPU: the kernels clamp them, and every access is bounds-checked:
  --input cu_seqlens_q=FILE  int32 [B + 1]; q is packed [total_q, Hq, Dqk],
                       o [total_q, Hq, Dv], lse [Hq, total_q]
  --input cu_seqlens_k=FILE  int32 [B + 1]; k, v packed [total_k, Hkv, D]
  --input block_table=FILE --input kv_lens=FILE  int32 [B, max_pages] and
                       [B]; k, v page pools [pages, page_size, Hkv, D]

Backward kernels take, besides q, k, v and the aux inputs:
  --input o=FILE       the forward's o, float32/float64 [B,Hq,N,Dv] (required)
  --input lse=FILE     the forward's lse, [B,Hq,N]; without it lse is a null
                       pointer (kernels without softmax do not read it)
  --input do=FILE      the gradient of o, [B,Hq,N,Dv], rounded like q (required)
  --input dlse=FILE    the gradient of lse, [B,Hq,N]; else a null pointer
  --output dq=FILE, --output dk=FILE, --output dv=FILE
                       the gradients as float32, of the shapes of q, k, v
  --output dAUX=FILE   the gradient of aux input AUX (one of the kernel's
                       attn.gradient_inputs), float32 of AUX's shape
)";

namespace {

struct Options {
  std::string file, kernel, roundDir;
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
  AsyncMode async = AsyncMode::Deferred;
  bool raceCheck = true;
  int64_t stridePad = 0;
  bool decode = false;
  int64_t splits = 1;
};

bool splitNameFile(const std::string &s,
                   std::pair<std::string, std::string> &r) {
  size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
    return false;
  r = {s.substr(0, eq), s.substr(eq + 1)};
  return true;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  auto value = [&](int &i, const std::string &arg,
                   const std::string &flag) -> std::string {
    if (arg.size() > flag.size() && arg[flag.size()] == '=')
      return arg.substr(flag.size() + 1);
    if (i + 1 >= argc)
      fatal("missing value for " + flag);
    return argv[++i];
  };
  auto is = [](const std::string &arg, const std::string &flag) {
    return arg == flag ||
           (arg.size() > flag.size() &&
            arg.compare(0, flag.size(), flag) == 0 && arg[flag.size()] == '=');
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      llvm::outs() << kUsage;
      std::exit(0);
    } else if (is(a, "--kernel")) {
      o.kernel = value(i, a, "--kernel");
    } else if (is(a, "--input") || is(a, "--output")) {
      bool in = is(a, "--input");
      std::pair<std::string, std::string> p;
      std::string v = value(i, a, in ? "--input" : "--output");
      if (!splitNameFile(v, p))
        fatal("expected NAME=FILE.npy, got '" + v + "'");
      (in ? o.inputs : o.outputs).push_back(p);
    } else if (is(a, "--round-inputs-to")) {
      o.roundDir = value(i, a, "--round-inputs-to");
    } else if (is(a, "--async-copy")) {
      std::string v = value(i, a, "--async-copy");
      if (v == "deferred")
        o.async = AsyncMode::Deferred;
      else if (v == "immediate")
        o.async = AsyncMode::Immediate;
      else
        fatal("--async-copy must be deferred or immediate");
    } else if (is(a, "--stride-pad")) {
      std::string v = value(i, a, "--stride-pad");
      char *end = nullptr;
      o.stridePad = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || o.stridePad < 0)
        fatal("--stride-pad takes a non-negative element count");
    } else if (is(a, "--schedule")) {
      std::string v = value(i, a, "--schedule");
      if (v != "forward" && v != "decode")
        fatal("--schedule must be forward or decode");
      o.decode = v == "decode";
    } else if (is(a, "--splits")) {
      std::string v = value(i, a, "--splits");
      char *end = nullptr;
      o.splits = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || o.splits < 1 || o.splits > 1024)
        fatal("--splits takes a count from 1 to 1024");
    } else if (a == "--no-race-check") {
      o.raceCheck = false;
    } else if (!a.empty() && a[0] == '-') {
      fatal("unknown option '" + a + "'\n" + kUsage);
    } else if (o.file.empty()) {
      o.file = a;
    } else {
      fatal("more than one kernel file given");
    }
  }
  if (o.file.empty())
    fatal(std::string("no kernel file given\n") + kUsage);
  return o;
}

int64_t intAttr(gpu::GPUFuncOp fn, StringRef name) {
  auto a = fn->getAttrOfType<IntegerAttr>(name);
  if (!a)
    fatal("kernel '" + fn.getName().str() + "' has no " + name.str() +
          " attribute");
  return a.getInt();
}

/// A memref of `shape` over buffer `buf`: row-major, except that rank-4
/// tensors get `pad` extra elements per row and a base offset of `pad`
/// elements (--stride-pad).
MemDesc layout(int buf, EK ek, unsigned eltBytes,
               const std::vector<int64_t> &shape, int64_t pad) {
  MemDesc d;
  d.buf = buf;
  d.ek = ek;
  d.eltBytes = eltBytes;
  d.sizes.assign(shape.begin(), shape.end());
  d.strides.resize(shape.size());
  if (shape.size() != 4)
    pad = 0;
  d.offset = pad;
  int64_t st = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    d.strides[i] = st;
    st *= shape[i] + (i == 3 ? pad : 0);
  }
  return d;
}

/// Elements the buffer behind `d` needs.
int64_t extent(const MemDesc &d) {
  int64_t last = d.offset;
  for (size_t i = 0; i < d.sizes.size(); ++i) {
    if (d.sizes[i] == 0)
      return d.offset;
    last += (d.sizes[i] - 1) * d.strides[i];
  }
  return last + 1;
}

/// Element offset in the buffer of C-order element `flat` of `d`.
int64_t position(const MemDesc &d, int64_t flat) {
  int64_t pos = d.offset;
  for (int i = int(d.sizes.size()) - 1; i >= 0; --i) {
    pos += (flat % d.sizes[i]) * d.strides[i];
    flat /= d.sizes[i];
  }
  return pos;
}

bool isFloatKind(EK e) {
  return e == EK::F16 || e == EK::BF16 || e == EK::F32 || e == EK::F64;
}

/// A buffer laid out as `d`, padding bytes 0xff (NaN for bf16/f16/f32).
Buffer makeBuffer(const std::string &name, const MemDesc &d) {
  Buffer b;
  b.name = name;
  b.bytes.assign(size_t(extent(d)) * d.eltBytes, 0xff);
  return b;
}

/// Sets the elements of `b` (laid out as `d`) to zero; padding stays NaN.
void zeroElements(Buffer &b, const MemDesc &d) {
  int64_t n = 1;
  for (int64_t x : d.sizes)
    n *= x;
  for (int64_t i = 0; i < n; ++i)
    std::memset(b.bytes.data() + size_t(position(d, i)) * d.eltBytes, 0,
                d.eltBytes);
}

/// Converts a .npy array to a buffer laid out as `d` (of the kernel's
/// element kind), rounding floats to nearest even.
Buffer toBuffer(const std::string &name, const attn::HostArray &a,
                const MemDesc &d) {
  Buffer b = makeBuffer(name, d);
  bool intSrc = a.dtype == attn::DType::I32 || a.dtype == attn::DType::I64 ||
                a.dtype == attn::DType::Bool;
  if (isFloatKind(d.ek) == intSrc)
    fatal("input '" + name + "' is " + attn::dtypeName(a.dtype) +
          ", but the kernel takes " +
          (isFloatKind(d.ek) ? "floats" : "integers"));
  for (int64_t i = 0, n = a.numel(); i < n; ++i) {
    uint64_t raw;
    if (isFloatKind(d.ek)) {
      raw = roundDouble(a.getDouble(i), d.ek);
    } else {
      int64_t v = a.dtype == attn::DType::I64   ? a.data<int64_t>()[i]
                  : a.dtype == attn::DType::I32 ? int64_t(a.data<int32_t>()[i])
                                                : int64_t(a.getDouble(i) != 0);
      raw = uint64_t(v);
    }
    std::memcpy(b.bytes.data() + size_t(position(d, i)) * d.eltBytes, &raw,
                d.eltBytes);
  }
  return b;
}

/// The float32 values of a float buffer laid out as `d`.
attn::HostArray toF32Array(const Buffer &b, const MemDesc &d) {
  std::vector<int64_t> shape(d.sizes.begin(), d.sizes.end());
  attn::HostArray r = attn::HostArray::zeros(attn::DType::F32, shape);
  float *out = r.data<float>();
  for (int64_t i = 0; i < r.numel(); ++i) {
    uint64_t raw = 0;
    std::memcpy(&raw, b.bytes.data() + size_t(position(d, i)) * d.eltBytes,
                d.eltBytes);
    out[i] = float(rawToDouble(raw, d.ek));
  }
  return r;
}

/// The --input arrays and the problem sizes they give.
struct Problem {
  std::map<std::string, attn::HostArray> arrays;
  /// The input names in the order of their --input options.
  std::vector<std::string> order;
  /// The aux inputs, in the order of their --input options: every input
  /// but q, k and v, and for a backward kernel o, lse, do and dlse (set
  /// once the kernel is chosen).
  std::vector<std::string> auxNames;
  int64_t B = 0, Hq = 0, N = 0, Dqk = 0, Hkv = 0, M = 0, Dv = 0;
  /// A decode batch (--input cu_seqlens_q, ...): N and M are the longest
  /// sequence's; totalQ the packed q's rows.
  bool raggedQ = false, raggedK = false, paged = false;
  int64_t totalQ = 0;
  bool isBatch() const { return raggedQ || raggedK || paged; }
};

/// The batch tables, in the decode kernel's argument order (after the aux
/// inputs), with their ranks.
const std::pair<const char *, int64_t> kBatchTables[] = {{"cu_seqlens_q", 1},
                                                         {"cu_seqlens_k", 1},
                                                         {"block_table", 2},
                                                         {"kv_lens", 1}};

bool isBatchTable(const std::string &name) {
  for (auto &[n, rank] : kBatchTables)
    if (name == n)
      return true;
  return false;
}

/// Entry i of an int32/int64 table, as the kernels read it.
int64_t tableAt(const attn::HostArray &t, int64_t i) {
  return t.dtype == attn::DType::I64 ? t.data<int64_t>()[i]
                                     : int64_t(t.data<int32_t>()[i]);
}

/// The longest run [t[b], t[b + 1]) of an offsets table, clamped into
/// [0, rows] as the kernels clamp it (a negative entry reads as huge).
int64_t longestRun(const attn::HostArray &t, int64_t rows) {
  int64_t longest = 0;
  auto clamp = [&](int64_t x) { return x < 0 ? rows : std::min(x, rows); };
  for (int64_t b = 0; b + 1 < t.numel(); ++b) {
    int64_t end = clamp(tableAt(t, b + 1));
    longest = std::max(longest, end - std::min(clamp(tableAt(t, b)), end));
  }
  return longest;
}

/// The shapes of a decode batch's q, k, v and tables (see kUsage).
void readBatchShapes(Problem &p) {
  auto &arrays = p.arrays;
  p.raggedQ = arrays.count("cu_seqlens_q");
  p.raggedK = arrays.count("cu_seqlens_k");
  p.paged = arrays.count("block_table") || arrays.count("kv_lens");
  if (p.paged && !(arrays.count("block_table") && arrays.count("kv_lens")))
    fatal("block_table and kv_lens go together");
  if (p.paged && p.raggedK)
    fatal("cu_seqlens_k and block_table are exclusive");
  for (auto &[n, rank] : kBatchTables) {
    if (!arrays.count(n))
      continue;
    const attn::HostArray &t = arrays[n];
    if (int64_t(t.shape.size()) != rank ||
        (t.dtype != attn::DType::I32 && t.dtype != attn::DType::I64))
      fatal(std::string("input '") + n + "' must be an int32 table of rank " +
            std::to_string(rank) + ", got " + t.shapeString());
  }
  const attn::HostArray &q = arrays["q"], &k = arrays["k"], &v = arrays["v"];
  int64_t kvRank = p.raggedK ? 3 : 4;
  if (int64_t(q.shape.size()) != (p.raggedQ ? 3 : 4) ||
      int64_t(k.shape.size()) != kvRank || int64_t(v.shape.size()) != kvRank)
    fatal("batch shapes: q " + q.shapeString() + ", k " + k.shapeString() +
          ", v " + v.shapeString() +
          " (q packed [total_q, Hq, Dqk] with cu_seqlens_q, else [B, Hq, N, "
          "Dqk]; k, v packed [total_k, Hkv, D] with cu_seqlens_k, pools "
          "[pages, page_size, Hkv, D] with block_table, else [B, Hkv, M, D])");
  std::vector<std::pair<std::string, int64_t>> batch; // (source, B)
  if (p.raggedQ) {
    p.totalQ = q.shape[0], p.Hq = q.shape[1], p.Dqk = q.shape[2];
    p.N = longestRun(arrays["cu_seqlens_q"], p.totalQ);
    batch.push_back({"cu_seqlens_q", arrays["cu_seqlens_q"].shape[0] - 1});
  } else {
    p.Hq = q.shape[1], p.N = q.shape[2], p.Dqk = q.shape[3];
    batch.push_back({"q", q.shape[0]});
  }
  int64_t kRows;
  if (p.raggedK) {
    kRows = k.shape[0], p.Hkv = k.shape[1];
    p.M = longestRun(arrays["cu_seqlens_k"], kRows);
    batch.push_back({"cu_seqlens_k", arrays["cu_seqlens_k"].shape[0] - 1});
  } else if (p.paged) {
    const attn::HostArray &bt = arrays["block_table"],
                          &lens = arrays["kv_lens"];
    kRows = k.shape[0] * k.shape[1], p.Hkv = k.shape[2];
    int64_t cap = bt.shape[1] * k.shape[1];
    for (int64_t b = 0; b < lens.numel(); ++b) {
      int64_t m = tableAt(lens, b);
      p.M = std::max(p.M, m < 0 ? cap : std::min(m, cap));
    }
    // The kernels' contract (runtime.h): a table row of at least one page,
    // 32-bit page arithmetic.
    if (bt.shape[1] < 1 || k.shape[1] < 1 || k.shape[1] >= (int64_t(1) << 31))
      fatal("block_table " + bt.shapeString() + " and pools " +
            k.shapeString() +
            ": at least one page per table row, page size in [1, 2^31)");
    batch.push_back({"block_table", bt.shape[0]});
    batch.push_back({"kv_lens", lens.shape[0]});
  } else {
    kRows = k.shape[2], p.Hkv = k.shape[1], p.M = k.shape[2];
    batch.push_back({"k", k.shape[0]});
  }
  p.Dv = v.shape.back();
  p.B = batch.front().second;
  for (auto &[src, b] : batch)
    if (b != p.B)
      fatal("the batch size disagrees: " + batch.front().first + " gives " +
            std::to_string(p.B) + ", " + src + " " + std::to_string(b));
  if (p.B <= 0 || kRows <= 0 || (p.raggedQ && p.totalQ <= 0) || p.N <= 0)
    fatal("a batch needs at least one sequence, one key row and one "
          "query");
  if (v.shape.size() != k.shape.size() ||
      !std::equal(k.shape.begin(), k.shape.end() - 1, v.shape.begin()) ||
      k.shape.back() != p.Dqk)
    fatal("inconsistent shapes: q " + q.shapeString() + ", k " +
          k.shapeString() + ", v " + v.shapeString());
  if (p.Hkv <= 0 || p.Hq % p.Hkv)
    fatal("Hq = " + std::to_string(p.Hq) +
          " is not a multiple of Hkv = " + std::to_string(p.Hkv));
}

/// Reads the --input arrays and checks the shapes of q, k and v.
Problem readInputs(const Options &opt) {
  Problem p;
  auto &arrays = p.arrays;
  for (auto &[name, path] : opt.inputs) {
    if (arrays.count(name))
      fatal("input '" + name + "' given twice");
    attn::HostArray a;
    std::string e = attn::readNpy(path, a);
    if (!e.empty())
      fatal(e);
    arrays[name] = std::move(a);
    p.order.push_back(name);
  }
  for (const char *n : {"q", "k", "v"})
    if (!arrays.count(n))
      fatal(std::string("missing --input ") + n + "=FILE.npy");
  for (const std::string &n : p.order)
    if (isBatchTable(n)) {
      readBatchShapes(p);
      return p;
    }
  const attn::HostArray &q = arrays["q"], &k = arrays["k"], &v = arrays["v"];
  for (const char *n : {"q", "k", "v"})
    if (arrays[n].shape.size() != 4)
      fatal(std::string("input '") + n + "' must have rank 4, got " +
            arrays[n].shapeString());
  p.B = q.shape[0], p.Hq = q.shape[1], p.N = q.shape[2], p.Dqk = q.shape[3];
  p.Hkv = k.shape[1], p.M = k.shape[2], p.Dv = v.shape[3];
  if (k.shape[0] != p.B || v.shape[0] != p.B || v.shape[1] != p.Hkv ||
      v.shape[2] != p.M || k.shape[3] != p.Dqk)
    fatal("inconsistent shapes: q " + q.shapeString() + ", k " +
          k.shapeString() + ", v " + v.shapeString() +
          " (expected [B, Hq, N, Dqk], [B, Hkv, M, Dqk], [B, Hkv, M, Dv])");
  if (p.Hkv <= 0 || p.Hq % p.Hkv)
    fatal("Hq = " + std::to_string(p.Hq) +
          " is not a multiple of Hkv = " + std::to_string(p.Hkv));
  return p;
}

bool isBackward(gpu::GPUFuncOp fn) { return fn->hasAttr("attn.backward"); }

/// The kernel's attn.role ("decode", "merge"), empty for the forward and
/// backward kernels.
StringRef roleOf(gpu::GPUFuncOp fn) {
  auto a = fn->getAttrOfType<StringAttr>("attn.role");
  return a ? a.getValue() : StringRef();
}

/// A kernel that takes global scratch as its last argument declares it with
/// attn.scratch_state_floats and attn.scratch_fixed_floats (the runtime's
/// attn_cuda_kernel_variant_t fields).
bool takesScratch(gpu::GPUFuncOp fn) {
  return fn->hasAttr("attn.scratch_state_floats");
}

/// The scratch bytes of a launch of `ctas` CTAs, as the runtime sizes it.
int64_t scratchBytes(gpu::GPUFuncOp fn, int64_t N, int64_t ctas) {
  attn_cuda_kernel_variant_t v{};
  v.scratch_state_floats = intAttr(fn, "attn.scratch_state_floats");
  v.scratch_fixed_floats = intAttr(fn, "attn.scratch_fixed_floats");
  return int64_t(attn_cuda_scratch_floats_per_cta(&v, N)) * ctas * 4;
}

/// The inputs that are not the launch's fixed arguments, in --input order.
std::vector<std::string> auxInputs(const Problem &p, bool backward) {
  std::vector<std::string> aux;
  for (const std::string &n : p.order) {
    bool fixed =
        n == "q" || n == "k" || n == "v" || isBatchTable(n) ||
        (backward && (n == "o" || n == "lse" || n == "do" || n == "dlse"));
    if (!fixed)
      aux.push_back(n);
  }
  return aux;
}

/// A backward kernel's attn.gradient_inputs: the aux inputs it computes
/// gradients of, in argument order (none if the attribute is absent).
std::vector<std::string> gradientInputs(gpu::GPUFuncOp fn) {
  std::vector<std::string> names;
  Attribute a = fn->getAttr("attn.gradient_inputs");
  if (!a)
    return names;
  auto arr = dyn_cast<ArrayAttr>(a);
  if (!arr)
    fatal("attn.gradient_inputs of kernel '" + fn.getName().str() +
          "' is not an array");
  for (Attribute e : arr) {
    auto str = dyn_cast<StringAttr>(e);
    if (!str)
      fatal("attn.gradient_inputs of kernel '" + fn.getName().str() +
            "' holds a non-string");
    names.push_back(str.str());
  }
  return names;
}

/// The kernel named by --kernel, or else the one with the smallest
/// attn.max_head_dim >= needD, preferring backward kernels when `do` is
/// given and forward kernels otherwise (a module may hold both).
gpu::GPUFuncOp selectKernel(ModuleOp module, const Options &opt, int64_t needD,
                            bool wantBackward, StringRef role = "") {
  std::vector<gpu::GPUFuncOp> kernels;
  module->walk([&](gpu::GPUFuncOp fn) {
    if (fn.isKernel() && (!opt.kernel.empty() || roleOf(fn) == role))
      kernels.push_back(fn);
  });
  if (kernels.empty())
    fatal("no gpu.func kernel" +
          (role.empty() ? std::string()
                        : " with attn.role \"" + role.str() + "\"") +
          " in '" + opt.file + "'");
  gpu::GPUFuncOp fn;
  if (!opt.kernel.empty()) {
    for (auto f : kernels)
      if (f.getName() == opt.kernel)
        fn = f;
    if (!fn) {
      std::string names;
      for (auto f : kernels)
        names += " " + f.getName().str();
      fatal("no kernel '" + opt.kernel + "' (kernels:" + names + ")");
    }
    return fn;
  }
  auto fits = [&](gpu::GPUFuncOp f) {
    auto a = f->getAttrOfType<IntegerAttr>("attn.max_head_dim");
    return a && a.getInt() >= needD;
  };
  bool anyOfKind = llvm::any_of(kernels, [&](gpu::GPUFuncOp f) {
    return fits(f) && isBackward(f) == wantBackward;
  });
  for (auto f : kernels) {
    if (!fits(f) || (anyOfKind && isBackward(f) != wantBackward))
      continue;
    if (!fn ||
        intAttr(f, "attn.max_head_dim") < intAttr(fn, "attn.max_head_dim"))
      fn = f;
  }
  if (!fn)
    fatal("no kernel takes head dim " + std::to_string(needD));
  return fn;
}

/// The launch of `fn` as the runtime does it, from its attn.* attributes;
/// checks that the kernel fits the problem. A forward kernel runs one CTA
/// per attn.block_q query rows, a backward kernel one per attn.block_kv
/// key/value rows.
LaunchConfig launchConfig(gpu::GPUFuncOp fn, const Options &opt,
                          const Problem &p) {
  bool backward = isBackward(fn);
  int64_t blockRows = intAttr(fn, backward ? "attn.block_kv" : "attn.block_q");
  int64_t threads = intAttr(fn, "attn.num_threads");
  int64_t sharedBytes = intAttr(fn, "attn.shared_bytes");
  int64_t maxD = intAttr(fn, "attn.max_head_dim");
  if (std::max(p.Dqk, p.Dv) > maxD)
    fatal("head dims Dqk = " + std::to_string(p.Dqk) +
          ", Dv = " + std::to_string(p.Dv) + " exceed attn.max_head_dim = " +
          std::to_string(maxD) + " of kernel '" + fn.getName().str() + "'");
  if (blockRows <= 0)
    fatal("kernel '" + fn.getName().str() + "' has a non-positive " +
          (backward ? "attn.block_kv" : "attn.block_q"));
  // Forward: q, k, v, o, lse, aux. Backward: the same, then do, dlse, dq,
  // dk, dv and one gradient per attn.gradient_inputs.
  // A kernel with scratch takes it last.
  int64_t fixedArgs = backward ? 10 + int64_t(gradientInputs(fn).size()) : 5;
  fixedArgs += takesScratch(fn) ? 1 : 0;
  int64_t kernelAux = int64_t(fn.getArgumentTypes().size()) - fixedArgs;
  if (kernelAux < 0)
    fatal("kernel '" + fn.getName().str() + "' takes " +
          std::to_string(fn.getArgumentTypes().size()) + " arguments; a " +
          (backward ? "backward" : "forward") + " kernel takes at least " +
          std::to_string(fixedArgs));
  if (kernelAux != int64_t(p.auxNames.size()))
    fatal("kernel '" + fn.getName().str() + "' takes " +
          std::to_string(kernelAux) + " aux input(s), got " +
          std::to_string(p.auxNames.size()));
  LaunchConfig cfg;
  cfg.grid[0] = ((backward ? p.M : p.N) + blockRows - 1) / blockRows;
  cfg.grid[1] = p.B * (backward ? p.Hkv : p.Hq);
  cfg.block[0] = threads;
  cfg.sharedBytes = sharedBytes;
  if (auto wave = fn->getAttrOfType<IntegerAttr>("attn.wave_size"))
    cfg.waveSize = int(wave.getInt());
  if (cfg.waveSize != 32 && cfg.waveSize != 64)
    fatal("kernel '" + fn.getName().str() + "' has attn.wave_size " +
          std::to_string(cfg.waveSize) + " (32 or 64)");
  cfg.async = opt.async;
  cfg.raceCheck = opt.raceCheck;
  return cfg;
}

/// The view [B, H, rows, D] with a zero batch stride of a packed
/// [rows, H, D] tensor laid out as `d`, or [B, H, rows] of a packed
/// [H, rows] one (a ragged batch's q, k, v, o and lse).
MemDesc batchView(MemDesc d, int64_t B) {
  if (d.sizes.size() == 3) {
    d.sizes = {B, d.sizes[1], d.sizes[0], d.sizes[2]};
    d.strides = {0, d.strides[1], d.strides[0], d.strides[2]};
  } else {
    d.sizes = {B, d.sizes[0], d.sizes[1]};
    d.strides = {0, d.strides[0], d.strides[1]};
  }
  return d;
}

/// The kernel's buffers and arguments, in kernel argument order.
struct Bindings {
  std::vector<Buffer> buffers;
  std::vector<MemDesc> args;
  /// (argument, path) of each --output.
  std::vector<std::pair<unsigned, std::string>> outputs;
  /// (name, argument) of the inputs --round-inputs-to writes.
  std::vector<std::pair<std::string, unsigned>> rounded;

  /// Binds input array `a` to kernel argument `argNo` (of type `t`).
  void addInput(const std::string &name, const attn::HostArray &a, Type t,
                unsigned argNo, int64_t pad) {
    auto mt = dyn_cast<MemRefType>(t);
    if (!mt)
      fatal("kernel argument " + std::to_string(argNo) + " is not a memref");
    if (int64_t(a.shape.size()) != mt.getRank())
      fatal("input '" + name + "' has rank " + std::to_string(a.shape.size()) +
            ", kernel argument " + std::to_string(argNo) + " has rank " +
            std::to_string(mt.getRank()));
    for (int64_t d = 0; d < mt.getRank(); ++d)
      if (!mt.isDynamicDim(d) && mt.getDimSize(d) != a.shape[d])
        fatal("input '" + name + "' shape " + a.shapeString() +
              " does not match the kernel argument type");
    unsigned eb;
    EK ek = Simulator::elementKind(mt.getElementType(), &eb);
    MemDesc d = layout(int(buffers.size()), ek, eb, a.shape, pad);
    buffers.push_back(toBuffer(name, a, d));
    args.push_back(d);
  }

  /// Binds packed input `a` ([rows, H, D]) to kernel argument `argNo` as
  /// its batchView over B sequences.
  void addPackedInput(const std::string &name, const attn::HostArray &a, Type t,
                      unsigned argNo, int64_t B) {
    auto mt = dyn_cast<MemRefType>(t);
    if (!mt || mt.getRank() != 4)
      fatal("kernel argument " + std::to_string(argNo) +
            " is not a rank-4 memref");
    unsigned eb;
    EK ek = Simulator::elementKind(mt.getElementType(), &eb);
    MemDesc d = layout(int(buffers.size()), ek, eb, a.shape, 0);
    buffers.push_back(toBuffer(name, a, d));
    args.push_back(batchView(d, B));
  }

  /// Binds a float32 output of shape `s` (a null memref if not `present`):
  /// NaN everywhere, so that an element the kernel never writes stays NaN,
  /// or zero where the kernel accumulates into it (`zero`).
  void addOutput(const std::string &name, const std::vector<int64_t> &s,
                 bool present, int64_t pad, bool zero = false) {
    MemDesc d = layout(present ? int(buffers.size()) : -1, EK::F32, 4, s, pad);
    if (present) {
      buffers.push_back(makeBuffer(name, d));
      if (zero)
        zeroElements(buffers.back(), d);
    }
    args.push_back(d);
  }
};

/// Fatal unless input `name` has shape `want` (named `dims`).
void requireShape(const Problem &p, const std::string &name,
                  const std::vector<int64_t> &want, const char *dims) {
  const attn::HostArray &a = p.arrays.at(name);
  if (a.shape == want)
    return;
  std::string w;
  for (int64_t x : want)
    w += (w.empty() ? "" : ", ") + std::to_string(x);
  fatal("input '" + name + "' has shape " + a.shapeString() + ", expected " +
        dims + " = [" + w + "]");
}

/// Fatal unless kernel argument `argNo` (output `name`) is an f32 memref of
/// rank `rank`: outputs are bound as float32 buffers.
void requireF32Output(gpu::GPUFuncOp fn, unsigned argNo,
                      const std::string &name, int64_t rank) {
  auto mt = dyn_cast<MemRefType>(fn.getArgumentTypes()[argNo]);
  if (!mt || !mt.getElementType().isF32() || mt.getRank() != rank) {
    std::string s;
    llvm::raw_string_ostream os(s);
    os << fn.getArgumentTypes()[argNo];
    fatal("kernel argument " + std::to_string(argNo) + " (" + name +
          ") must be a rank-" + std::to_string(rank) + " f32 memref, got " + s);
  }
}

/// Binds q, k, v to arguments 0..2 of `fn` (`aux`: the aux inputs to the
/// arguments from 5 on, after the two outputs the caller binds).
void bindInputs(Bindings &b, gpu::GPUFuncOp fn, const Options &opt,
                const Problem &p, bool aux) {
  auto argTypes = fn.getArgumentTypes();
  auto input = [&](const std::string &name, unsigned argNo) {
    b.addInput(name, p.arrays.at(name), argTypes[argNo], argNo, opt.stridePad);
  };
  if (!aux) {
    input("q", 0);
    input("k", 1);
    input("v", 2);
    b.rounded = {{"q", 0}, {"k", 1}, {"v", 2}};
    return;
  }
  for (size_t i = 0; i < p.auxNames.size(); ++i)
    input(p.auxNames[i], unsigned(5 + i));
}

/// Forward: q, k, v, o, lse (null unless --output lse is given), then the
/// aux inputs.
Bindings bindForward(gpu::GPUFuncOp fn, const Options &opt, const Problem &p) {
  Bindings b;
  bindInputs(b, fn, opt, p, false);
  bool lse = false;
  for (auto &[name, path] : opt.outputs) {
    if (name == "o") {
      b.outputs.push_back({3, path});
    } else if (name == "lse") {
      b.outputs.push_back({4, path});
      lse = true;
    } else {
      fatal("unknown output '" + name + "' (o or lse)");
    }
  }
  requireF32Output(fn, 3, "o", 4);
  requireF32Output(fn, 4, "lse", 3);
  b.addOutput("o", {p.B, p.Hq, p.N, p.Dv}, true, opt.stridePad);
  b.addOutput("lse", {p.B, p.Hq, p.N}, lse, opt.stridePad);
  bindInputs(b, fn, opt, p, true);
  return b;
}

/// The argument numbers of the outputs a backward kernel writes, by
/// --output name: dq, dk, dv and d<aux> for each gradient input.
std::map<std::string, unsigned>
backwardOutputs(gpu::GPUFuncOp fn, const Problem &p,
                const std::vector<std::string> &grads) {
  unsigned first = unsigned(7 + p.auxNames.size());
  std::map<std::string, unsigned> r = {
      {"dq", first}, {"dk", first + 1}, {"dv", first + 2}};
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!llvm::is_contained(p.auxNames, grads[i]))
      fatal("kernel '" + fn.getName().str() + "' computes the gradient of '" +
            grads[i] + "' (attn.gradient_inputs), which is not an --input");
    r["d" + grads[i]] = first + 3 + unsigned(i);
  }
  return r;
}

/// Backward: q, k, v, o, lse (null unless given), the aux inputs, do, dlse
/// (null unless given), dq, dk, dv, then one gradient per
/// attn.gradient_inputs. dq and the aux gradients start at zero (the kernel
/// adds into them), dk and dv as NaN.
Bindings bindBackward(gpu::GPUFuncOp fn, const Options &opt, const Problem &p) {
  std::string kernel = "backward kernel '" + fn.getName().str() + "'";
  for (const char *n : {"o", "do"})
    if (!p.arrays.count(n))
      fatal(std::string("missing --input ") + n + "=FILE.npy (" + kernel +
            " takes it)");
  std::vector<int64_t> rows = {p.B, p.Hq, p.N}, rowsDv = {p.B, p.Hq, p.N, p.Dv};
  requireShape(p, "o", rowsDv, "[B, Hq, N, Dv]");
  requireShape(p, "do", rowsDv, "[B, Hq, N, Dv]");
  for (const char *n : {"lse", "dlse"})
    if (p.arrays.count(n))
      requireShape(p, n, rows, "[B, Hq, N]");
  std::vector<std::string> grads = gradientInputs(fn);
  std::map<std::string, unsigned> outArgs = backwardOutputs(fn, p, grads);

  Bindings b;
  for (auto &[name, path] : opt.outputs) {
    auto it = outArgs.find(name);
    if (it == outArgs.end()) {
      // In argument order: dq, dk, dv, then the aux gradients.
      std::vector<std::pair<unsigned, std::string>> known;
      for (auto &[n, arg] : outArgs)
        known.push_back({arg, n});
      llvm::sort(known);
      std::string names;
      for (auto &[arg, n] : known)
        names += (names.empty() ? "" : ", ") + n;
      fatal("unknown output '" + name + "' (" + kernel + " writes " + names +
            ")");
    }
    b.outputs.push_back({it->second, path});
  }
  auto argTypes = fn.getArgumentTypes();
  // Binds input `name` to argument `argNo`, or a null memref of `shape` if
  // it is optional and not given.
  auto input = [&](const std::string &name, unsigned argNo,
                   const std::vector<int64_t> &shape = {}) {
    if (p.arrays.count(name))
      b.addInput(name, p.arrays.at(name), argTypes[argNo], argNo,
                 opt.stridePad);
    else
      b.addOutput(name, shape, false, opt.stridePad);
  };
  unsigned na = unsigned(p.auxNames.size());
  input("q", 0);
  input("k", 1);
  input("v", 2);
  input("o", 3);
  input("lse", 4, rows);
  for (unsigned i = 0; i < na; ++i)
    input(p.auxNames[i], 5 + i);
  input("do", 5 + na);
  input("dlse", 6 + na, rows);
  std::vector<int64_t> dq = {p.B, p.Hq, p.N, p.Dqk},
                       dk = {p.B, p.Hkv, p.M, p.Dqk},
                       dv = {p.B, p.Hkv, p.M, p.Dv};
  for (auto [name, shape, zero] :
       {std::tuple{"dq", dq, true}, {"dk", dk, false}, {"dv", dv, false}}) {
    requireF32Output(fn, outArgs.at(name), name, 4);
    b.addOutput(name, shape, true, opt.stridePad, zero);
  }
  for (const std::string &g : grads) {
    const std::vector<int64_t> &shape = p.arrays.at(g).shape;
    requireF32Output(fn, outArgs.at("d" + g), "d" + g, int64_t(shape.size()));
    b.addOutput("d" + g, shape, true, opt.stridePad, /*zero=*/true);
  }
  if (takesScratch(fn)) {
    // NaN bytes: the kernel must write what it reads.
    MemDesc d = layout(int(b.buffers.size()), EK::I8, 1,
                       {scratchBytes(fn, p.N, p.B * p.Hkv)}, 0);
    b.buffers.push_back(makeBuffer("scratch", d));
    b.args.push_back(d);
  }
  b.rounded = {{"q", 0}, {"k", 1}, {"v", 2}, {"do", 5 + na}};
  return b;
}

/// Writes the rounded inputs (q, k, v, and do for a backward kernel) as
/// float32 DIR/NAME.npy.
void writeRoundedInputs(const std::string &dir, const Bindings &b) {
  ::mkdir(dir.c_str(), 0777);
  for (auto &[name, argNo] : b.rounded) {
    const MemDesc &d = b.args[argNo];
    attn::HostArray r = toF32Array(b.buffers[d.buf], d);
    std::string e = attn::writeNpy(dir + "/" + name + ".npy", r);
    if (!e.empty())
      fatal(e);
  }
}

/// Writes the outputs --output asked for.
void writeOutputs(const Bindings &b) {
  for (auto &[argNo, path] : b.outputs) {
    const MemDesc &d = b.args[argNo];
    std::string e = attn::writeNpy(path, toF32Array(b.buffers[d.buf], d));
    if (!e.empty())
      fatal(e);
  }
}

/// The launch of a decode or merge kernel: its block and shared memory from
/// its attributes, the grid given.
LaunchConfig roleLaunch(gpu::GPUFuncOp fn, const Options &opt, int64_t gridX,
                        int64_t gridY) {
  LaunchConfig cfg;
  cfg.grid[0] = gridX;
  cfg.grid[1] = gridY;
  cfg.block[0] = intAttr(fn, "attn.num_threads");
  cfg.sharedBytes = intAttr(fn, "attn.shared_bytes");
  cfg.async = opt.async;
  cfg.raceCheck = opt.raceCheck;
  return cfg;
}

/// A batch's q, k, v: packed ones as their batchView, the others (dense,
/// page pools) as they are.
void bindBatchQKV(Bindings &b, gpu::GPUFuncOp fn, const Options &opt,
                  const Problem &p) {
  if (!opt.roundDir.empty())
    fatal("--round-inputs-to: a batch's inputs are not rewritten (give them "
          "rounded)");
  auto argTypes = fn.getArgumentTypes();
  for (auto [name, argNo] : {std::pair{"q", 0u}, {"k", 1u}, {"v", 2u}}) {
    bool packed = argNo == 0 ? p.raggedQ : p.raggedK;
    if (packed)
      b.addPackedInput(name, p.arrays.at(name), argTypes[argNo], argNo, p.B);
    else
      b.addInput(name, p.arrays.at(name), argTypes[argNo], argNo,
                 opt.stridePad);
  }
}

/// The batch tables after the aux inputs, null where absent.
void bindBatchTables(Bindings &b, gpu::GPUFuncOp fn, const Problem &p) {
  unsigned tableArg = unsigned(5 + p.auxNames.size());
  for (auto &[name, rank] : kBatchTables) {
    if (p.arrays.count(name))
      b.addInput(name, p.arrays.at(name), fn.getArgumentTypes()[tableArg],
                 tableArg, 0);
    else
      b.addOutput(name, std::vector<int64_t>(rank, 0), false, 0);
    ++tableArg;
  }
}

/// A batch's o and lse (lse null unless --output lse): packed o
/// [total_q, Hq, Dv] and lse [Hq, total_q] with cu_seqlens_q, else dense.
/// Their buffers join `b`; the kernel's arguments (packed ones as their
/// batchView) are appended to `args`. Returns o and lse as the files hold
/// them; sets the output paths.
std::vector<MemDesc> addBatchOutputs(Bindings &b, std::vector<MemDesc> &args,
                                     const Options &opt, const Problem &p,
                                     std::string &oPath, std::string &lsePath) {
  bool withLse = false;
  for (auto &[name, path] : opt.outputs) {
    if (name == "o")
      oPath = path;
    else if (name == "lse")
      lsePath = path, withLse = true;
    else
      fatal("unknown output '" + name + "' (o or lse)");
  }
  Bindings m;
  if (p.raggedQ) {
    m.addOutput("o", {p.totalQ, p.Hq, p.Dv}, true, 0);
    m.addOutput("lse", {p.Hq, p.totalQ}, withLse, 0);
  } else {
    m.addOutput("o", {p.B, p.Hq, p.N, p.Dv}, true, opt.stridePad);
    m.addOutput("lse", {p.B, p.Hq, p.N}, withLse, opt.stridePad);
  }
  std::vector<MemDesc> stored;
  for (MemDesc d : m.args) {
    if (d.buf >= 0)
      d.buf += int(b.buffers.size());
    stored.push_back(d);
    if (p.raggedQ && d.buf >= 0)
      d = batchView(d, p.B);
    else if (p.raggedQ) // a null lse of the view's rank
      d.sizes = {p.B, p.Hq, p.totalQ}, d.strides = {0, 0, 0};
    args.push_back(d);
  }
  for (Buffer &buf : m.buffers)
    b.buffers.push_back(std::move(buf));
  return stored;
}

/// The kernel with attn.role `role` (or --kernel, which must have it) for
/// p's head dims, taking q, k, v, two outputs, p's aux inputs (set here)
/// and the four batch tables.
gpu::GPUFuncOp selectTableKernel(ModuleOp module, const Options &opt,
                                 Problem &p, StringRef role, StringRef what) {
  gpu::GPUFuncOp fn = selectKernel(module, opt, std::max(p.Dqk, p.Dv),
                                   /*wantBackward=*/false, role);
  if (roleOf(fn) != role)
    fatal("kernel '" + fn.getName().str() + "' is not a " + what.str() +
          " kernel (attn.role = \"" + role.str() + "\")");
  p.auxNames = auxInputs(p, false);
  int64_t maxD = intAttr(fn, "attn.max_head_dim");
  if (std::max(p.Dqk, p.Dv) > maxD)
    fatal("head dims exceed attn.max_head_dim = " + std::to_string(maxD) +
          " of kernel '" + fn.getName().str() + "'");
  int64_t kernelAux = int64_t(fn.getArgumentTypes().size()) - 9;
  if (kernelAux != int64_t(p.auxNames.size()))
    fatal("kernel '" + fn.getName().str() + "' takes " +
          std::to_string(kernelAux) + " aux input(s), got " +
          std::to_string(p.auxNames.size()));
  return fn;
}

/// Writes output `d` of `buffers` to `path` (nothing when empty).
void writeOutput(const std::string &path, const std::vector<Buffer> &buffers,
                 const MemDesc &d) {
  if (path.empty())
    return;
  std::string e = attn::writeNpy(path, toF32Array(buffers[d.buf], d));
  if (!e.empty())
    fatal(e);
}

/// A batch without --schedule decode: the batch prefill kernel, one launch
/// (see the file comment). Returns the summary.
std::string runBatchPrefill(ModuleOp module, const Options &opt, Problem &p) {
  // q, k, v, o, lse, the aux inputs, then the four batch tables.
  gpu::GPUFuncOp fn =
      selectTableKernel(module, opt, p, "batch", "batch prefill");
  int64_t rows = intAttr(fn, "attn.block_q");
  requireF32Output(fn, 3, "o", 4);
  requireF32Output(fn, 4, "lse", 3);
  Bindings b;
  bindBatchQKV(b, fn, opt, p);
  std::string oPath, lsePath;
  std::vector<MemDesc> stored =
      addBatchOutputs(b, b.args, opt, p, oPath, lsePath);
  bindInputs(b, fn, opt, p, true);
  bindBatchTables(b, fn, p);

  Simulator sim(fn);
  LaunchConfig cfg = roleLaunch(fn, opt, (p.N + rows - 1) / rows, p.B * p.Hq);
  sim.launch(cfg, b.buffers, b.args);
  writeOutput(oPath, b.buffers, stored[0]);
  writeOutput(lsePath, b.buffers, stored[1]);
  std::string r;
  llvm::raw_string_ostream os(r);
  os << "attn-gpu-sim: " << fn.getName() << ": ran " << sim.ctasRun()
     << " CTAs (grid " << cfg.grid[0] << "x" << cfg.grid[1] << ", "
     << cfg.block[0] << " threads, " << cfg.sharedBytes << " B shared), "
     << sim.opsExecuted() << " ops executed\n";
  return r;
}

/// --schedule decode: the decode kernel into NaN partials, then the merge
/// kernel into NaN o and lse (see the file comment). Returns the summary.
std::string runDecode(ModuleOp module, const Options &opt, Problem &p) {
  // q, k, v, o_part, lse_part, the aux inputs, then the four batch tables.
  gpu::GPUFuncOp dec = selectTableKernel(module, opt, p, "decode", "decode");
  Options mergeOpt = opt;
  mergeOpt.kernel.clear();
  gpu::GPUFuncOp merge =
      selectKernel(module, mergeOpt, std::max(p.Dqk, p.Dv), false, "merge");
  int64_t rows = intAttr(dec, "attn.block_q");
  int64_t G = p.Hq / p.Hkv, S = opt.splits;
  int64_t chunks = (G * p.N + rows - 1) / rows;

  Bindings b;
  if (p.isBatch())
    bindBatchQKV(b, dec, opt, p);
  else
    bindInputs(b, dec, opt, p, false);
  requireF32Output(dec, 3, "o_part", 5);
  requireF32Output(dec, 4, "lse_part", 4);
  b.addOutput("o_part", {p.B, p.Hkv, S, chunks * rows, p.Dv}, true,
              opt.stridePad);
  b.addOutput("lse_part", {p.B, p.Hkv, S, chunks * rows}, true, opt.stridePad);
  bindInputs(b, dec, opt, p, true);
  bindBatchTables(b, dec, p);
  MemDesc cuSeqlensQ = b.args[5 + p.auxNames.size()];
  if (!opt.roundDir.empty())
    writeRoundedInputs(opt.roundDir, b);

  // The merge's arguments: o_part, lse_part, o, lse (null unless asked).
  requireF32Output(merge, 2, "o", 4);
  requireF32Output(merge, 3, "lse", 3);
  std::string oPath, lsePath;
  std::vector<MemDesc> mergeArgs = {b.args[3], b.args[4]};
  std::vector<MemDesc> stored = // o and lse as the files hold them
      addBatchOutputs(b, mergeArgs, opt, p, oPath, lsePath);
  mergeArgs.push_back(cuSeqlensQ);

  Simulator decSim(dec), mergeSim(merge);
  LaunchConfig decCfg = roleLaunch(dec, opt, p.B * p.Hkv * chunks * S, 1);
  decSim.launch(decCfg, b.buffers, b.args);
  LaunchConfig mergeCfg =
      roleLaunch(merge, opt,
                 (p.N + intAttr(merge, "attn.block_q") - 1) /
                     intAttr(merge, "attn.block_q"),
                 p.B * p.Hq);
  mergeSim.launch(mergeCfg, b.buffers, mergeArgs);

  writeOutput(oPath, b.buffers, stored[0]);
  writeOutput(lsePath, b.buffers, stored[1]);
  std::string r;
  llvm::raw_string_ostream os(r);
  os << "attn-gpu-sim: " << dec.getName() << ": ran " << decSim.ctasRun()
     << " CTAs (grid " << decCfg.grid[0] << "x1, " << decCfg.block[0]
     << " threads, " << decCfg.sharedBytes << " B shared, " << S << " splits), "
     << decSim.opsExecuted() << " ops executed; " << merge.getName() << ": ran "
     << mergeSim.ctasRun() << " CTAs (grid " << mergeCfg.grid[0] << "x"
     << mergeCfg.grid[1] << ")\n";
  return r;
}

} // namespace

int main(int argc, char **argv) {
  Options opt = parseArgs(argc, argv);

  DialectRegistry registry;
  registry
      .insert<arith::ArithDialect, math::MathDialect, func::FuncDialect,
              scf::SCFDialect, memref::MemRefDialect, vector::VectorDialect,
              LLVM::LLVMDialect, gpu::GPUDialect, nvgpu::NVGPUDialect,
              NVVM::NVVMDialect, amdgpu::AMDGPUDialect, ROCDL::ROCDLDialect>();
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(opt.file, &ctx);
  if (!module)
    fatal("cannot parse '" + opt.file + "'");

  Problem prob = readInputs(opt);
  if (opt.decode) {
    llvm::outs() << runDecode(*module, opt, prob);
    return 0;
  }
  if (prob.isBatch()) {
    llvm::outs() << runBatchPrefill(*module, opt, prob);
    return 0;
  }
  gpu::GPUFuncOp fn = selectKernel(*module, opt, std::max(prob.Dqk, prob.Dv),
                                   prob.arrays.count("do"));
  bool backward = isBackward(fn);
  prob.auxNames = auxInputs(prob, backward);
  LaunchConfig cfg = launchConfig(fn, opt, prob);
  Simulator sim(fn);
  Bindings bind =
      backward ? bindBackward(fn, opt, prob) : bindForward(fn, opt, prob);
  if (!opt.roundDir.empty())
    writeRoundedInputs(opt.roundDir, bind);

  sim.launch(cfg, bind.buffers, bind.args);

  writeOutputs(bind);
  llvm::outs() << "attn-gpu-sim: " << fn.getName() << ": ran " << sim.ctasRun()
               << " CTAs (grid " << cfg.grid[0] << "x" << cfg.grid[1] << ", "
               << cfg.block[0] << " threads, " << cfg.sharedBytes
               << " B shared), " << sim.opsExecuted() << " ops executed\n";
  return 0;
}
