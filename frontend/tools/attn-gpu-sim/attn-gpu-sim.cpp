//===- attn-gpu-sim.cpp - run generated CUDA attention kernels on the CPU -===//
//
// KERNEL.mlir holds the gpu.module that convert-attn-to-nvvm produced (any
// later canonicalization is fine, NVVM lowering is not). The kernel is
// launched as the runtime launches it: grid (ceil(N / attn.block_q),
// B * Hq, 1), block (attn.num_threads, 1, 1), attn.shared_bytes of dynamic
// shared memory, arguments q, k, v, o, lse (null unless --output lse is
// given) and the aux inputs in the order of their --input options. Each CTA
// is interpreted by GpuSim (see GpuSim.h). o and lse start as NaN, so an
// element the kernel never writes shows up. Options: see kUsage below.
//
//===----------------------------------------------------------------------===//

#include "GpuSim.h"

#include "attn/npy.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
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

Runs a CUDA attention kernel made by convert-attn-to-nvvm (a gpu.func in
KERNEL.mlir) on the CPU, each CTA interpreted in lockstep with PTX semantics
for ldmatrix, mma.sync, cp.async and shuffles, and a bounds check on every
global and shared access.

  --kernel NAME        the gpu.func to run (default: the one with the smallest
                       attn.max_head_dim >= max(Dqk, Dv))
  --input NAME=FILE    q, k, v: float32/float64 [B,Hq,N,Dqk], [B,Hkv,M,Dqk],
                       [B,Hkv,M,Dv], rounded to the kernel's bf16/f16; any
                       other name is an aux input, bound to the arguments
                       after lse in the order given
  --output o=FILE      o as float32 [B,Hq,N,Dv]
  --output lse=FILE    lse as float32 [B,Hq,N]; without it lse is a null
                       pointer
  --round-inputs-to DIR  write the rounded q, k, v as float32 DIR/{q,k,v}.npy
  --async-copy MODE    deferred (default): a cp.async lands when the wait that
                       retires its group runs; immediate: when it is issued
  --no-race-check      no shared-memory race / global double-write checks
  --stride-pad P       q, k, v, o rows P elements longer than D (NaN padding)
                       and a base offset of P elements
)";

namespace {

struct Options {
  std::string file, kernel, roundDir;
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
  AsyncMode async = AsyncMode::Deferred;
  bool raceCheck = true;
  int64_t stridePad = 0;
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

} // namespace

int main(int argc, char **argv) {
  Options opt = parseArgs(argc, argv);

  DialectRegistry registry;
  registry.insert<arith::ArithDialect, math::MathDialect, func::FuncDialect,
                  scf::SCFDialect, memref::MemRefDialect, vector::VectorDialect,
                  LLVM::LLVMDialect, gpu::GPUDialect, nvgpu::NVGPUDialect,
                  NVVM::NVVMDialect>();
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  llvm::SourceMgr sm;
  std::string err;
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(opt.file, &ctx);
  if (!module)
    fatal("cannot parse '" + opt.file + "'");

  // Inputs.
  std::map<std::string, attn::HostArray> arrays;
  std::vector<std::string> auxNames;
  for (auto &[name, path] : opt.inputs) {
    if (arrays.count(name))
      fatal("input '" + name + "' given twice");
    attn::HostArray a;
    std::string e = attn::readNpy(path, a);
    if (!e.empty())
      fatal(e);
    arrays[name] = std::move(a);
    if (name != "q" && name != "k" && name != "v")
      auxNames.push_back(name);
  }
  for (const char *n : {"q", "k", "v"})
    if (!arrays.count(n))
      fatal(std::string("missing --input ") + n + "=FILE.npy");
  const attn::HostArray &q = arrays["q"], &k = arrays["k"], &v = arrays["v"];
  for (const char *n : {"q", "k", "v"})
    if (arrays[n].shape.size() != 4)
      fatal(std::string("input '") + n + "' must have rank 4, got " +
            arrays[n].shapeString());
  int64_t B = q.shape[0], Hq = q.shape[1], N = q.shape[2], Dqk = q.shape[3];
  int64_t Hkv = k.shape[1], M = k.shape[2], Dv = v.shape[3];
  if (k.shape[0] != B || v.shape[0] != B || v.shape[1] != Hkv ||
      v.shape[2] != M || k.shape[3] != Dqk)
    fatal("inconsistent shapes: q " + q.shapeString() + ", k " +
          k.shapeString() + ", v " + v.shapeString() +
          " (expected [B, Hq, N, Dqk], [B, Hkv, M, Dqk], [B, Hkv, M, Dv])");
  if (Hkv <= 0 || Hq % Hkv)
    fatal("Hq = " + std::to_string(Hq) +
          " is not a multiple of Hkv = " + std::to_string(Hkv));

  // The kernel.
  std::vector<gpu::GPUFuncOp> kernels;
  module->walk([&](gpu::GPUFuncOp fn) {
    if (fn.isKernel())
      kernels.push_back(fn);
  });
  if (kernels.empty())
    fatal("no gpu.func kernel in '" + opt.file + "'");
  gpu::GPUFuncOp fn;
  int64_t needD = std::max(Dqk, Dv);
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
  } else {
    for (auto f : kernels) {
      auto a = f->getAttrOfType<IntegerAttr>("attn.max_head_dim");
      if (a && a.getInt() >= needD &&
          (!fn || a.getInt() < intAttr(fn, "attn.max_head_dim")))
        fn = f;
    }
    if (!fn)
      fatal("no kernel takes head dim " + std::to_string(needD));
  }
  int64_t blockQ = intAttr(fn, "attn.block_q");
  int64_t threads = intAttr(fn, "attn.num_threads");
  int64_t sharedBytes = intAttr(fn, "attn.shared_bytes");
  int64_t maxD = intAttr(fn, "attn.max_head_dim");
  if (needD > maxD)
    fatal("head dims Dqk = " + std::to_string(Dqk) +
          ", Dv = " + std::to_string(Dv) + " exceed attn.max_head_dim = " +
          std::to_string(maxD) + " of kernel '" + fn.getName().str() + "'");
  auto argTypes = fn.getArgumentTypes();
  if (argTypes.size() != 5 + auxNames.size())
    fatal("kernel '" + fn.getName().str() + "' takes " +
          std::to_string(argTypes.size() - 5) + " aux input(s), got " +
          std::to_string(auxNames.size()));

  Simulator sim(fn);

  // Buffers and arguments, in kernel argument order.
  std::vector<Buffer> buffers;
  std::vector<MemDesc> args;
  auto addInput = [&](const std::string &name, unsigned argNo) {
    auto mt = dyn_cast<MemRefType>(argTypes[argNo]);
    if (!mt)
      fatal("kernel argument " + std::to_string(argNo) + " is not a memref");
    const attn::HostArray &a = arrays[name];
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
    MemDesc d = layout(int(buffers.size()), ek, eb, a.shape, opt.stridePad);
    buffers.push_back(toBuffer(name, a, d));
    args.push_back(d);
  };
  addInput("q", 0);
  addInput("k", 1);
  addInput("v", 2);
  std::string oPath, lsePath;
  for (auto &[name, path] : opt.outputs) {
    if (name == "o")
      oPath = path;
    else if (name == "lse")
      lsePath = path;
    else
      fatal("unknown output '" + name + "' (o or lse)");
  }
  std::vector<int64_t> oShape = {B, Hq, N, Dv}, lseShape = {B, Hq, N};
  auto addOutput = [&](const std::string &name, const std::vector<int64_t> &s,
                       bool present) {
    MemDesc d = layout(present ? int(buffers.size()) : -1, EK::F32, 4, s,
                       opt.stridePad);
    // NaN everywhere: an element the kernel never writes stays NaN.
    if (present)
      buffers.push_back(makeBuffer(name, d));
    args.push_back(d);
  };
  addOutput("o", oShape, true);
  addOutput("lse", lseShape, !lsePath.empty());
  for (size_t i = 0; i < auxNames.size(); ++i)
    addInput(auxNames[i], unsigned(5 + i));

  if (!opt.roundDir.empty()) {
    ::mkdir(opt.roundDir.c_str(), 0777);
    for (int i = 0; i < 3; ++i) {
      const char *n = i == 0 ? "q" : i == 1 ? "k" : "v";
      attn::HostArray r = toF32Array(buffers[i], args[i]);
      std::string e = attn::writeNpy(opt.roundDir + "/" + n + ".npy", r);
      if (!e.empty())
        fatal(e);
    }
  }

  LaunchConfig cfg;
  cfg.grid[0] = (N + blockQ - 1) / blockQ;
  cfg.grid[1] = B * Hq;
  cfg.block[0] = threads;
  cfg.sharedBytes = sharedBytes;
  cfg.async = opt.async;
  cfg.raceCheck = opt.raceCheck;
  sim.launch(cfg, buffers, args);

  auto write = [&](unsigned argNo, const std::string &path) {
    const MemDesc &d = args[argNo];
    std::string e = attn::writeNpy(path, toF32Array(buffers[d.buf], d));
    if (!e.empty())
      fatal(e);
  };
  if (!oPath.empty())
    write(3, oPath);
  if (!lsePath.empty())
    write(4, lsePath);
  llvm::outs() << "attn-gpu-sim: " << fn.getName() << ": ran " << sim.ctasRun()
               << " CTAs (grid " << cfg.grid[0] << "x" << cfg.grid[1] << ", "
               << threads << " threads, " << sharedBytes << " B shared), "
               << sim.opsExecuted() << " ops executed\n";
  return 0;
}
