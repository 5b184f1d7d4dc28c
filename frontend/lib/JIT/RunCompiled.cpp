//===- RunCompiled.cpp - `attnc run` through a compiled kernel ------------===//
//
// JIT-compiles the spec (through the kernel cache), runs it through the
// runtime's C ABI on the same inputs as the reference, and reports the error
// against the float64 reference and the median time over repeats.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/RunCompiled.h"
#include "RunHelpers.h"
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
using namespace mlir::attn::run;

namespace {

/// How far the kernel's outputs are from the reference's.
struct Comparison {
  double maxAbs = 0, maxRef = 0, maxLse = 0;
  int64_t bad = 0, sameNaNInf = 0;
  double rel() const { return maxRef > 0 ? maxAbs / maxRef : maxAbs; }
};

/// One `attnc run` through a compiled kernel, step by step: each step
/// returns "" or the one-line error that ends the run.
class CompiledRun {
public:
  CompiledRun(SpecOp spec, const RunOptions &opts)
      : spec(spec), opts(opts), sig(getSignature(spec)) {
    AttentionOp att = spec.getAttention();
    softmax = att && att.getNormalizer() == NormalizerKind::softmax;
    linear = !att;
  }
  std::string run(llvm::raw_ostream &os);

private:
  std::string checkTarget();
  std::string planShapesAndMemory();
  std::string compile();
  std::string prepareTensors();
  std::string timeRuns();
  void printSummary(llvm::raw_ostream &os);
  std::string cpuScheduleNote() const;
  std::string checkAgainstReference(llvm::raw_ostream &os);
  Comparison compare(const ReferenceOutputs &ref) const;

  SpecOp spec;
  const RunOptions &opts;
  ::attn::Signature sig;
  bool softmax = false, linear = false;
  std::unique_ptr<BackendTarget> target;
  RunOutputs outputs;
  InputPlan plan;
  ::attn::DimBinding dims;
  MemoryNeed need;
  std::unique_ptr<::attn::Kernel> kernel;
  std::vector<TensorView> views;
  HostArray o, lse;
  std::vector<double> times;
};

} // namespace

std::string CompiledRun::checkTarget() {
  std::string error;
  target = parseTarget(opts.target, error);
  if (!target)
    return error;
  if (target->backend().deviceType() != kDLCPU)
    return "attnc run executes kernels on host tensors, and --target=" +
           opts.target + " compiles for " +
           attn_device_type_name(target->backend().deviceType()) +
           " devices: compile with `attnc SPEC --target=" + opts.target +
           " -o k.o --header k.h` (or attn::Compiler) and run on device "
           "tensors (bench/gpu/check_gpu.py does this on a GPU machine)";
  return "";
}

/// Binds the shapes (clear messages before anything is allocated) and
/// checks what the run needs against the memory budget: the inputs (and
/// their copies in the kernel's element types, made one at a time but
/// counted in full), the kernel's o and lse, and the reference's buffers.
std::string CompiledRun::planShapesAndMemory() {
  if (std::string err = prepareRun(spec, opts, outputs, plan); !err.empty())
    return err;
  if (std::string err = ::attn::bindShapes(sig, plan.shapes, dims);
      !err.empty())
    return err;
  if (std::string err = checkCpuHeadDims(dims); !err.empty())
    return err;
  int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];
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
  return makeRandomInputs(spec, opts.seed, plan);
}

/// Compiles the spec, or loads it from the cache.
std::string CompiledRun::compile() {
  std::string error;
  kernel =
      ::attn::Compiler().compile(opts.specPath, compileOptionsFor(opts), error);
  return kernel ? "" : error;
}

/// The inputs in the kernel's element types, converted in place (the
/// reference then sees exactly what the kernel sees: bf16-rounded inputs),
/// and the outputs.
std::string CompiledRun::prepareTensors() {
  views.reserve(sig.inputs.size());
  for (const ::attn::InputSig &in : sig.inputs) {
    ::attn::DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    HostArray &a = plan.inputs.at(in.name);
    if (std::string err = convertInPlace(a, dt); !err.empty())
      return "input '" + in.name + "': " + err;
    views.emplace_back(a, dl);
  }
  int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];
  if (std::string err =
          HostArray::allocate(::attn::DType::F32, {B, Hq, N, Dv}, o);
      !err.empty())
    return "output o: " + err;
  if (softmax)
    if (std::string err =
            HostArray::allocate(::attn::DType::F32, {B, Hq, N}, lse);
        !err.empty())
      return "output lse: " + err;
  return "";
}

/// Runs the kernel opts.repeat times (at least once), keeping the times.
std::string CompiledRun::timeRuns() {
  TensorView oView(o, DLDataType{kDLFloat, 32, 1});
  TensorView lseView(lse, DLDataType{kDLFloat, 32, 1});
  std::vector<const DLTensor *> ptrs;
  for (TensorView &v : views)
    ptrs.push_back(&v.t);
  attn_run_options_t runOpts{opts.threads};
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
  return "";
}

/// " schedule=decode(lanes=L, splits=S)" when attn_cpu_run takes the decode
/// schedule for this call's dims, " schedule=prefill" when it takes the
/// prefill one, "" off the CPU.
std::string CompiledRun::cpuScheduleNote() const {
  const attn_kernel_desc_t *desc = cpuDescOf(*kernel);
  if (!desc)
    return "";
  int64_t splits =
      attn_cpu_decode_splits(desc, dims.at("B"), dims.at("Hq"), dims.at("Hkv"),
                             dims.at("N"), dims.at("M"), opts.threads);
  if (!splits)
    return " schedule=prefill";
  int32_t lanes =
      attn_cpu_decode_lanes(desc, dims.at("Hq"), dims.at("Hkv"), dims.at("N"));
  return " schedule=decode(lanes=" + std::to_string(lanes) +
         ", splits=" + std::to_string(splits) + ")";
}

void CompiledRun::printSummary(llvm::raw_ostream &os) {
  os << "spec: " << spec.getSymName() << " (" << opts.specPath << ")\ndims:";
  for (const char *d : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv", "G"})
    os << " " << d << "=" << dims.at(d);
  os << "\ninputs:";
  for (const ::attn::InputSig &in : sig.inputs)
    os << " " << in.name << plan.inputs.at(in.name).shapeString()
       << (plan.fromFile.count(in.name) ? "" : "(random)");
  if (plan.fromFile.size() < sig.inputs.size())
    os << " seed=" << opts.seed;
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
    os << " tile_q=" << kernel->tileQ() << cpuScheduleNote();
  os << " target=" << opts.target << " ("
     << (kernel->cacheHit() ? "cache hit" : "compiled") << " in "
     << llvm::format("%.1f", kernel->compileSeconds() * 1e3) << " ms)\n";
  double B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
         M = dims.at("M"), Dqk = dims.at("Dqk"), Dv = dims.at("Dv");
  // Softmax family: the dense-equivalent 4*N*M*D; linear: the recurrence's
  // 4*N*Dqk*Dv (state update and readout).
  double flops =
      linear ? 4.0 * B * Hq * N * Dqk * Dv : 2.0 * B * Hq * N * M * (Dqk + Dv);
  double median = times[times.size() / 2];
  os << "time: median " << llvm::format("%.3f", median) << " ms over "
     << times.size() << " runs, threads="
     << (opts.threads ? opts.threads : attn_cpu_num_threads()) << ", "
     << llvm::format("%.1f", flops / (median * 1e-3) / 1e9)
     << (linear ? " GFLOP/s (4*N*Dqk*Dv per head)\n"
                : " GFLOP/s (dense-equivalent 4*N*M*D)\n");
}

/// Non-finite values agree only with the same value (NaN with NaN, an
/// infinity with the same infinity); any other non-finite value on either
/// side is a mismatch. lse errors are relative to max(1, |lse|): fp32
/// cannot hold a large lse to 1e-4 absolute (an empty row's lse is -inf in
/// both).
Comparison CompiledRun::compare(const ReferenceOutputs &ref) const {
  Comparison c;
  for (int64_t i = 0, n = o.numel(); i < n; ++i) {
    double x = o.data<float>()[i], y = ref.o.data<double>()[i];
    if (sameNonFinite(x, y)) {
      ++c.sameNaNInf;
      continue;
    }
    if (!std::isfinite(x) || !std::isfinite(y)) {
      ++c.bad;
      continue;
    }
    c.maxAbs = std::max(c.maxAbs, std::fabs(x - y));
    c.maxRef = std::max(c.maxRef, std::fabs(y));
  }
  if (!softmax)
    return c;
  for (int64_t i = 0, n = lse.numel(); i < n; ++i) {
    double x = lse.data<float>()[i], y = ref.lse.data<double>()[i];
    if (sameNonFinite(x, y)) {
      if (std::isnan(x))
        ++c.sameNaNInf;
      continue;
    }
    if (!std::isfinite(x) || !std::isfinite(y)) {
      ++c.bad;
      continue;
    }
    c.maxLse =
        std::max(c.maxLse, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
  }
  return c;
}

std::string CompiledRun::checkAgainstReference(llvm::raw_ostream &os) {
  ReferenceOutputs ref;
  // What the budget leaves after the inputs and the kernel's outputs.
  uint64_t held = ::attn::saturatingAdd(need.inputs, need.outputs),
           budget = memoryBudget(opts.maxMemory);
  if (std::string err = evaluateReference(spec, plan.inputs, ref,
                                          budget > held ? budget - held : 1);
      !err.empty())
    return "reference: " + err;
  Comparison c = compare(ref);
  KernelInfo info;
  info.name = kernel->name();
  info.signature = kernel->signature();
  info.hasLse = kernel->hasLse();
  info.linear = linear;
  const Tolerance tol = target->tolerance(info);
  bool pass = c.rel() <= tol.o && c.bad == 0 && c.maxLse <= tol.lse;
  os << "check vs float64 reference: max abs err "
     << llvm::format("%.3g", c.maxAbs) << ", max rel err (to max|o|) "
     << llvm::format("%.3g", c.rel());
  if (softmax)
    os << ", lse max err (rel to max(1,|lse|)) "
       << llvm::format("%.3g", c.maxLse);
  os << ", non-finite " << c.bad;
  if (c.sameNaNInf)
    os << " (" << c.sameNaNInf
       << " NaN/inf in the same places as the reference, which agrees)";
  os << " -> " << (pass ? "PASS" : "FAIL") << " (" << tol.note << ")\n";
  if (pass)
    return "";
  // The outputs still help to see where it disagrees.
  (void)writeOutputs(outputs, {{"o", &o}, {"lse", &lse}}, "float32", os);
  return "compiled kernel disagrees with the reference";
}

std::string CompiledRun::run(llvm::raw_ostream &os) {
  for (auto step : {&CompiledRun::checkTarget,
                    &CompiledRun::planShapesAndMemory, &CompiledRun::compile,
                    &CompiledRun::prepareTensors, &CompiledRun::timeRuns})
    if (std::string err = (this->*step)(); !err.empty())
      return err;
  printSummary(os);
  if (opts.check)
    if (std::string err = checkAgainstReference(os); !err.empty())
      return err;
  return writeOutputs(outputs, {{"o", &o}, {"lse", &lse}}, "float32", os);
}

std::string mlir::attn::runCompiledSpec(SpecOp spec, const RunOptions &opts,
                                        llvm::raw_ostream &os) {
  return CompiledRun(spec, opts).run(os);
}
