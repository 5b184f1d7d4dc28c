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

/// The --input arrays and the problem sizes they give.
struct Problem {
  std::map<std::string, attn::HostArray> arrays;
  /// The aux inputs (not q, k or v), in the order of their --input options.
  std::vector<std::string> auxNames;
  int64_t B = 0, Hq = 0, N = 0, Dqk = 0, Hkv = 0, M = 0, Dv = 0;
};

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
    if (name != "q" && name != "k" && name != "v")
      p.auxNames.push_back(name);
  }
  for (const char *n : {"q", "k", "v"})
    if (!arrays.count(n))
      fatal(std::string("missing --input ") + n + "=FILE.npy");
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

/// The kernel named by --kernel, or else the one with the smallest
/// attn.max_head_dim >= needD.
gpu::GPUFuncOp selectKernel(ModuleOp module, const Options &opt,
                            int64_t needD) {
  std::vector<gpu::GPUFuncOp> kernels;
  module->walk([&](gpu::GPUFuncOp fn) {
    if (fn.isKernel())
      kernels.push_back(fn);
  });
  if (kernels.empty())
    fatal("no gpu.func kernel in '" + opt.file + "'");
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
  for (auto f : kernels) {
    auto a = f->getAttrOfType<IntegerAttr>("attn.max_head_dim");
    if (a && a.getInt() >= needD &&
        (!fn || a.getInt() < intAttr(fn, "attn.max_head_dim")))
      fn = f;
  }
  if (!fn)
    fatal("no kernel takes head dim " + std::to_string(needD));
  return fn;
}

/// The launch of `fn` as the runtime does it, from its attn.* attributes;
/// checks that the kernel fits the problem.
LaunchConfig launchConfig(gpu::GPUFuncOp fn, const Options &opt,
                          const Problem &p) {
  int64_t blockQ = intAttr(fn, "attn.block_q");
  int64_t threads = intAttr(fn, "attn.num_threads");
  int64_t sharedBytes = intAttr(fn, "attn.shared_bytes");
  int64_t maxD = intAttr(fn, "attn.max_head_dim");
  if (std::max(p.Dqk, p.Dv) > maxD)
    fatal("head dims Dqk = " + std::to_string(p.Dqk) +
          ", Dv = " + std::to_string(p.Dv) + " exceed attn.max_head_dim = " +
          std::to_string(maxD) + " of kernel '" + fn.getName().str() + "'");
  auto argTypes = fn.getArgumentTypes();
  if (argTypes.size() != 5 + p.auxNames.size())
    fatal("kernel '" + fn.getName().str() + "' takes " +
          std::to_string(argTypes.size() - 5) + " aux input(s), got " +
          std::to_string(p.auxNames.size()));
  LaunchConfig cfg;
  cfg.grid[0] = (p.N + blockQ - 1) / blockQ;
  cfg.grid[1] = p.B * p.Hq;
  cfg.block[0] = threads;
  cfg.sharedBytes = sharedBytes;
  cfg.async = opt.async;
  cfg.raceCheck = opt.raceCheck;
  return cfg;
}

/// The kernel's buffers and arguments, in kernel argument order: q, k, v, o,
/// lse, then the aux inputs.
struct Bindings {
  std::vector<Buffer> buffers;
  std::vector<MemDesc> args;
  std::string oPath, lsePath;

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

  /// Binds a float32 output of shape `s` (a null memref if not `present`).
  void addOutput(const std::string &name, const std::vector<int64_t> &s,
                 bool present, int64_t pad) {
    MemDesc d = layout(present ? int(buffers.size()) : -1, EK::F32, 4, s, pad);
    // NaN everywhere: an element the kernel never writes stays NaN.
    if (present)
      buffers.push_back(makeBuffer(name, d));
    args.push_back(d);
  }
};

Bindings bindArguments(gpu::GPUFuncOp fn, const Options &opt,
                       const Problem &p) {
  Bindings b;
  auto argTypes = fn.getArgumentTypes();
  auto input = [&](const std::string &name, unsigned argNo) {
    b.addInput(name, p.arrays.at(name), argTypes[argNo], argNo, opt.stridePad);
  };
  input("q", 0);
  input("k", 1);
  input("v", 2);
  for (auto &[name, path] : opt.outputs) {
    if (name == "o")
      b.oPath = path;
    else if (name == "lse")
      b.lsePath = path;
    else
      fatal("unknown output '" + name + "' (o or lse)");
  }
  b.addOutput("o", {p.B, p.Hq, p.N, p.Dv}, true, opt.stridePad);
  b.addOutput("lse", {p.B, p.Hq, p.N}, !b.lsePath.empty(), opt.stridePad);
  for (size_t i = 0; i < p.auxNames.size(); ++i)
    input(p.auxNames[i], unsigned(5 + i));
  return b;
}

/// Writes the rounded q, k and v as float32 DIR/{q,k,v}.npy.
void writeRoundedInputs(const std::string &dir, const Bindings &b) {
  ::mkdir(dir.c_str(), 0777);
  for (int i = 0; i < 3; ++i) {
    const char *n = i == 0 ? "q" : i == 1 ? "k" : "v";
    attn::HostArray r = toF32Array(b.buffers[i], b.args[i]);
    std::string e = attn::writeNpy(dir + "/" + n + ".npy", r);
    if (!e.empty())
      fatal(e);
  }
}

/// Writes o and lse where --output asked for them.
void writeOutputs(const Bindings &b) {
  auto write = [&](unsigned argNo, const std::string &path) {
    const MemDesc &d = b.args[argNo];
    std::string e = attn::writeNpy(path, toF32Array(b.buffers[d.buf], d));
    if (!e.empty())
      fatal(e);
  };
  if (!b.oPath.empty())
    write(3, b.oPath);
  if (!b.lsePath.empty())
    write(4, b.lsePath);
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
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(opt.file, &ctx);
  if (!module)
    fatal("cannot parse '" + opt.file + "'");

  Problem prob = readInputs(opt);
  gpu::GPUFuncOp fn = selectKernel(*module, opt, std::max(prob.Dqk, prob.Dv));
  LaunchConfig cfg = launchConfig(fn, opt, prob);
  Simulator sim(fn);
  Bindings bind = bindArguments(fn, opt, prob);
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
