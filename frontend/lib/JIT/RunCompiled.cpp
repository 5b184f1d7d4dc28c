//===- RunCompiled.cpp - `attnc run` through a compiled kernel ------------===//
//
// JIT-compiles the spec (through the kernel cache), runs it through the
// runtime's C ABI on the same inputs as the reference, and reports the error
// against the float64 reference and the median time over repeats.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/RunCompiled.h"
#include "attn/JIT/Compiler.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Target/Backend.h"
#include "llvm/Support/Format.h"
#include <algorithm>
#include <chrono>
#include <cmath>

using namespace mlir;
using namespace mlir::attn;
using ::attn::HostArray;

namespace {
/// A host array as a DLTensor (compact, CPU).
struct TensorView {
  DLTensor t{};
  std::vector<int64_t> shape;
  TensorView(HostArray &a, DLDataType dtype) : shape(a.shape) {
    t.data = a.bytes.data();
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
  }
};
} // namespace

/// The kernel's element type for an input declared `t`.
static void kernelType(::attn::ElemType t, ::attn::DType &dt, DLDataType &dl) {
  switch (t) {
  case ::attn::ElemType::I32:
    dt = ::attn::DType::I32;
    dl = DLDataType{kDLInt, 32, 1};
    return;
  case ::attn::ElemType::BF16:
    dt = ::attn::DType::BF16;
    dl = DLDataType{kDLBfloat, 16, 1};
    return;
  case ::attn::ElemType::F16:
    dt = ::attn::DType::F16;
    dl = DLDataType{kDLFloat, 16, 1};
    return;
  case ::attn::ElemType::F32:
    dt = ::attn::DType::F32;
    dl = DLDataType{kDLFloat, 32, 1};
    return;
  }
}

/// Converts `a` to `to` in place (a no-op when it already is).
static std::string convertInPlace(HostArray &a, ::attn::DType to) {
  if (a.dtype == to)
    return "";
  HostArray r;
  if (std::string err = HostArray::allocate(to, a.shape, r); !err.empty())
    return err;
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    r.setDouble(i, a.getDouble(i));
  a = std::move(r);
  return "";
}

/// Whether the kernel's `x` agrees with the reference's `y` where either is
/// not finite: NaN in both, or the same infinity. (A NaN in an input reaches
/// both the same way; that is not a disagreement.)
static bool sameNonFinite(double x, double y) {
  return (std::isnan(x) && std::isnan(y)) || (std::isinf(x) && x == y);
}

std::string mlir::attn::runCompiledSpec(SpecOp spec, const RunOptions &opts,
                                        llvm::raw_ostream &os) {
  std::string targetError;
  std::unique_ptr<BackendTarget> target = parseTarget(opts.target, targetError);
  if (!target)
    return targetError;
  if (target->backend().deviceType() != kDLCPU)
    return "attnc run executes kernels on host tensors, and --target=" +
           opts.target + " compiles for " +
           attn_device_type_name(target->backend().deviceType()) +
           " devices: compile with `attnc SPEC --target=" + opts.target +
           " -o k.o --header k.h` (or attn::Compiler) and run on device "
           "tensors (bench/gpu/check_gpu.py does this on a GPU machine)";
  RunOutputs outputs;
  InputPlan plan;
  if (std::string err = prepareRun(spec, opts, outputs, plan); !err.empty())
    return err;
  ::attn::Signature sig = getSignature(spec);
  // Bind and validate shapes against the spec first (clear messages).
  ::attn::DimBinding dims;
  if (std::string err = ::attn::bindShapes(sig, plan.shapes, dims);
      !err.empty())
    return err;
  // The CPU kernels' head-dim limit, reported before anything is allocated
  // (attn_cpu_run checks it again for every caller).
  for (const char *d : {"Dqk", "Dv"})
    if (dims.count(d) && dims[d] > ATTN_MAX_HEAD_DIM)
      return std::string("head dim ") + d + " = " + std::to_string(dims[d]) +
             " exceeds the CPU kernels' limit of " +
             std::to_string(ATTN_MAX_HEAD_DIM) + " (ATTN_MAX_HEAD_DIM)";
  AttentionOp att = spec.getAttention();
  bool softmax = att && att.getNormalizer() == NormalizerKind::softmax;
  int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];

  // Memory: the inputs (and their copies in the kernel's element types,
  // made one at a time but counted in full), the kernel's o and lse, and
  // the reference's buffers for the check.
  MemoryNeed need;
  need.inputs = plan.bytes;
  for (const ::attn::InputSig &in : sig.inputs) {
    ::attn::DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    auto it = plan.inputs.find(in.name);
    ::attn::DType planned = it != plan.inputs.end() ? it->second.dtype
                            : in.type == ::attn::ElemType::I32
                                ? ::attn::DType::I32
                                : ::attn::DType::F32;
    if (planned != dt)
      need.inputs = ::attn::saturatingAdd(
          need.inputs,
          ::attn::arrayBytes(plan.shapes.at(in.name), ::attn::dtypeSize(dt)));
  }
  need.outputs = ::attn::arrayBytes({B, Hq, N, Dv}, 4);
  if (softmax)
    need.outputs =
        ::attn::saturatingAdd(need.outputs, ::attn::arrayBytes({B, Hq, N}, 4));
  if (opts.check)
    need.reference = referenceMemory(spec, plan.shapes).total();
  if (std::string err = checkMemory(need, opts.maxMemory); !err.empty())
    return err;
  if (std::string err = makeRandomInputs(spec, opts.seed, plan); !err.empty())
    return err;
  std::map<std::string, HostArray> &inputs = plan.inputs;
  const std::set<std::string> &fromFile = plan.fromFile;

  // Compile (or load from the cache).
  ::attn::CompileOptions co;
  for (const std::string &p : opts.params) {
    auto [k, v] = llvm::StringRef(p).split('=');
    co.params.push_back({k.trim().str(), v.trim().str()});
  }
  co.target = opts.target;
  co.tileQ = opts.tileQ;
  co.tileKV = opts.tileKV;
  co.linearChunk = opts.linearChunk;
  ::attn::Compiler compiler;
  std::string error;
  std::unique_ptr<::attn::Kernel> kernel =
      compiler.compile(opts.specPath, co, error);
  if (!kernel)
    return error;

  // Tensors in the kernel's dtypes, converted in place: the reference sees
  // exactly what the kernel sees (bf16-rounded inputs).
  std::vector<TensorView> views;
  views.reserve(sig.inputs.size());
  for (const ::attn::InputSig &in : sig.inputs) {
    ::attn::DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    HostArray &a = inputs.at(in.name);
    if (std::string err = convertInPlace(a, dt); !err.empty())
      return "input '" + in.name + "': " + err;
    views.emplace_back(a, dl);
  }
  HostArray o, lse;
  if (std::string err =
          HostArray::allocate(::attn::DType::F32, {B, Hq, N, Dv}, o);
      !err.empty())
    return "output o: " + err;
  if (softmax)
    if (std::string err =
            HostArray::allocate(::attn::DType::F32, {B, Hq, N}, lse);
        !err.empty())
      return "output lse: " + err;
  TensorView oView(o, DLDataType{kDLFloat, 32, 1});
  TensorView lseView(lse, DLDataType{kDLFloat, 32, 1});
  std::vector<const DLTensor *> ptrs;
  for (TensorView &v : views)
    ptrs.push_back(&v.t);
  attn_run_options_t runOpts{opts.threads};
  std::vector<double> times;
  for (int r = 0; r < std::max(1, opts.repeat); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    attn_status_t st = kernel->run(ptrs.data(), &oView.t,
                                   softmax ? &lseView.t : nullptr, &runOpts);
    auto t1 = std::chrono::steady_clock::now();
    if (st != ATTN_OK)
      return std::string(attn_status_string(st)) + ": " + attn_last_error();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];

  os << "spec: " << spec.getSymName() << " (" << opts.specPath << ")\ndims:";
  for (const char *d : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv", "G"})
    os << " " << d << "=" << dims.at(d);
  os << "\ninputs:";
  for (const ::attn::InputSig &in : sig.inputs)
    os << " " << in.name << inputs.at(in.name).shapeString()
       << (fromFile.count(in.name) ? "" : "(random)");
  if (fromFile.size() < sig.inputs.size())
    os << " seed=" << opts.seed;
  bool linear = !att;
  bool chunked = false;
  if (LinearAttentionOp lin = spec.getLinearAttention())
    chunked = opts.linearChunk > 0 && !lin.getNoncausal() &&
              !lin.getExclusive() && lin.getBeta().empty();
  os << "\nkernel: " << kernel->name();
  if (linear)
    os << " (linear, " << (chunked ? "chunked" : "recurrent")
       << (chunked ? ", chunk=" + std::to_string(opts.linearChunk)
                   : std::string())
       << ")";
  else
    os << " tile_q=" << kernel->tileQ();
  os << " target=" << opts.target << " ("
     << (kernel->cacheHit() ? "cache hit" : "compiled") << " in "
     << llvm::format("%.1f", kernel->compileSeconds() * 1e3) << " ms)\n";
  int64_t M = dims["M"], Dqk = dims["Dqk"];
  // Softmax family: the dense-equivalent 4*N*M*D; linear: the recurrence's
  // 4*N*Dqk*Dv (state update and readout).
  double flops =
      linear ? 4.0 * B * Hq * N * Dqk * Dv : 2.0 * B * Hq * N * M * (Dqk + Dv);
  os << "time: median " << llvm::format("%.3f", median) << " ms over "
     << times.size() << " runs, threads="
     << (opts.threads ? opts.threads : attn_cpu_num_threads()) << ", "
     << llvm::format("%.1f", flops / (median * 1e-3) / 1e9)
     << (linear ? " GFLOP/s (4*N*Dqk*Dv per head)\n"
                : " GFLOP/s (dense-equivalent 4*N*M*D)\n");

  if (opts.check) {
    ReferenceOutputs ref;
    // What the budget leaves after the inputs and the kernel's outputs.
    uint64_t held = ::attn::saturatingAdd(need.inputs, need.outputs),
             budget = memoryBudget(opts.maxMemory);
    if (std::string err = evaluateReference(spec, inputs, ref,
                                            budget > held ? budget - held : 1);
        !err.empty())
      return "reference: " + err;
    // Non-finite values agree only with the same value (NaN with NaN, an
    // infinity with the same infinity); any other non-finite value on
    // either side is a mismatch.
    double maxAbs = 0, maxRef = 0, maxLse = 0;
    int64_t bad = 0, sameNaNInf = 0;
    for (int64_t i = 0, n = o.numel(); i < n; ++i) {
      double x = o.data<float>()[i], y = ref.o.data<double>()[i];
      if (sameNonFinite(x, y)) {
        ++sameNaNInf;
        continue;
      }
      if (!std::isfinite(x) || !std::isfinite(y)) {
        ++bad;
        continue;
      }
      maxAbs = std::max(maxAbs, std::fabs(x - y));
      maxRef = std::max(maxRef, std::fabs(y));
    }
    // lse error relative to max(1, |lse|): fp32 cannot hold a large lse
    // to 1e-4 absolute. (An empty row's lse is -inf in both.)
    if (softmax)
      for (int64_t i = 0, n = lse.numel(); i < n; ++i) {
        double x = lse.data<float>()[i], y = ref.lse.data<double>()[i];
        if (sameNonFinite(x, y)) {
          if (std::isnan(x))
            ++sameNaNInf;
          continue;
        }
        if (!std::isfinite(x) || !std::isfinite(y)) {
          ++bad;
          continue;
        }
        maxLse =
            std::max(maxLse, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
      }
    double rel = maxRef > 0 ? maxAbs / maxRef : maxAbs;
    KernelInfo info;
    info.name = kernel->name();
    info.signature = kernel->signature();
    info.hasLse = kernel->hasLse();
    info.linear = linear;
    const Tolerance tol = target->tolerance(info);
    bool pass = rel <= tol.o && bad == 0 && maxLse <= tol.lse;
    os << "check vs float64 reference: max abs err "
       << llvm::format("%.3g", maxAbs) << ", max rel err (to max|o|) "
       << llvm::format("%.3g", rel);
    if (softmax)
      os << ", lse max err (rel to max(1,|lse|)) "
         << llvm::format("%.3g", maxLse);
    os << ", non-finite " << bad;
    if (sameNaNInf)
      os << " (" << sameNaNInf
         << " NaN/inf in the same places as the reference, which agrees)";
    os << " -> " << (pass ? "PASS" : "FAIL") << " (" << tol.note << ")\n";
    if (!pass) {
      // The outputs still help to see where it disagrees.
      (void)writeOutputs(outputs, {{"o", &o}, {"lse", &lse}}, "float32", os);
      return "compiled kernel disagrees with the reference";
    }
  }
  return writeOutputs(outputs, {{"o", &o}, {"lse", &lse}}, "float32", os);
}
