//===- RunBackward.cpp - `attnc run --backward` ---------------------------===//
//
// Forward and backward of a spec on the same inputs: the compiled kernels
// (the forward's o and lse feed the backward, as in training), each timed,
// every gradient checked against evaluateReferenceBackward; or, with
// --reference, the reference's gradients alone. `do` (and `dlse`) come from
// --input do=FILE.npy or are random. Output paths and the memory the run
// needs are checked before anything is compiled or allocated, as for the
// forward run.
//
//===----------------------------------------------------------------------===//

#include "RunHelpers.h"
#include "attn/Frontend/RunCompiled.h"
#include "attn/JIT/Compiler.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Target/Backend.h"
#include "llvm/Support/Format.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::run;
using ::attn::DType;
using ::attn::HostArray;

namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t0)
      .count();
}

double maxAbsOf(const HostArray &a) {
  double m = 0;
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    m = std::max(m, std::fabs(a.getDouble(i)));
  return m;
}

/// Largest |got - want| relative to max(largest |want|, floor); NaN or
/// infinity in `got` counts as a failure (returns infinity). The floor
/// keeps a gradient that is zero in exact arithmetic (a normalized linear
/// attention's dq with one key: o = v whatever q is) from being judged by
/// its float64 rounding noise.
double relError(const HostArray &got, const HostArray &want, double floor) {
  double maxAbs = 0;
  for (int64_t i = 0, n = want.numel(); i < n; ++i) {
    double x = got.getDouble(i), y = want.getDouble(i);
    if (!std::isfinite(x))
      return std::numeric_limits<double>::infinity();
    maxAbs = std::max(maxAbs, std::fabs(x - y));
  }
  double scale = std::max(maxAbsOf(want), floor);
  return scale > 0 ? maxAbs / scale : maxAbs;
}

class BackwardRun {
public:
  BackwardRun(SpecOp spec, const RunOptions &opts)
      : spec(spec), opts(opts), sig(getSignature(spec)) {
    AttentionOp att = spec.getAttention();
    softmax = att && att.getNormalizer() == NormalizerKind::softmax;
    gradNames = differentiableInputs(spec);
  }
  std::string run(llvm::raw_ostream &os);

private:
  std::string plan();
  std::string makeGradientInputs();
  std::string compile();
  std::string runKernels();
  std::string runReference(llvm::raw_ostream &os);
  std::string check(llvm::raw_ostream &os);

  SpecOp spec;
  RunOptions opts;
  ::attn::Signature sig;
  bool softmax = false;
  std::vector<std::string> gradNames;
  std::unique_ptr<BackendTarget> target;
  RunOutputs outputs;
  InputPlan inputPlan;
  ::attn::DimBinding dims;
  std::vector<std::string> gradientFiles; // "do=...", "dlse=..."
  HostArray dout, dlse;
  bool haveDlse = false;
  std::unique_ptr<::attn::Kernel> fwd, bwd;
  HostArray o, lse, dq, dk, dv;
  std::map<std::string, HostArray> daux;
  ReferenceGradients ref;
  double fwdMs = 0, bwdMs = 0;
};

} // namespace

/// Splits do/dlse off the --input list, plans the spec's inputs and checks
/// the memory: inputs, do, the forward's outputs, the gradients and the
/// reference's buffers.
std::string BackwardRun::plan() {
  std::vector<std::string> specInputs;
  for (const std::string &kv : opts.inputs) {
    llvm::StringRef name = llvm::StringRef(kv).split('=').first.trim();
    if (name == "do" || name == "dlse")
      gradientFiles.push_back(kv);
    else
      specInputs.push_back(kv);
  }
  opts.inputs = specInputs;
  if (std::string err = prepareRun(spec, opts, outputs, inputPlan);
      !err.empty())
    return err;
  if (std::string err = ::attn::bindShapes(sig, inputPlan.shapes, dims);
      !err.empty())
    return err;
  int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];
  MemoryNeed need;
  need.inputs = ::attn::saturatingAdd(inputPlan.bytes,
                                      ::attn::arrayBytes({B, Hq, N, Dv}, 8));
  // o, lse, dq, dk, dv and the aux gradients in f32 (the reference's own
  // are counted in its memory).
  uint64_t grads = ::attn::arrayBytes({B, Hq, N, Dv + 1}, 4);
  for (const auto &[name, shape] : inputPlan.shapes)
    if (name == "q" || name == "k" || name == "v" ||
        llvm::is_contained(gradNames, name))
      grads = ::attn::saturatingAdd(grads, ::attn::arrayBytes(shape, 4));
  need.outputs = opts.reference ? 0 : grads;
  std::map<std::string, std::vector<int64_t>> shapes = inputPlan.shapes;
  shapes["do"] = {B, Hq, N, Dv};
  if (opts.check || opts.reference)
    need.reference = referenceBackwardMemory(spec, shapes).total();
  if (std::string err = checkMemory(need, opts.maxMemory); !err.empty())
    return err;
  if (std::string err = makeRandomInputs(spec, opts.seed, inputPlan);
      !err.empty())
    return err;
  return makeGradientInputs();
}

/// Reads do and dlse, or makes random ones (normal, seeded after the
/// inputs).
std::string BackwardRun::makeGradientInputs() {
  int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];
  uint64_t budget = memoryBudget(opts.maxMemory);
  bool haveDo = false;
  for (const std::string &kv : gradientFiles) {
    auto [name, path] = llvm::StringRef(kv).split('=');
    HostArray a;
    if (std::string err =
            ::attn::readNpy(path.trim().str(), a, budget,
                            "--max-memory=" + ::attn::formatBytes(budget));
        !err.empty())
      return "--input " + name.trim().str() + ": " + err;
    if (name.trim() == "do") {
      dout = std::move(a);
      haveDo = true;
    } else {
      if (!softmax)
        return "--input dlse: only softmax specs have an lse (and a dlse)";
      dlse = std::move(a);
      haveDlse = true;
    }
  }
  if (!haveDo) {
    if (std::string err = HostArray::allocate(DType::F32, {B, Hq, N, Dv}, dout);
        !err.empty())
      return "do: " + err;
    std::mt19937_64 rng(opts.seed + 0x9e3779b97f4a7c15ull);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int64_t i = 0, n = dout.numel(); i < n; ++i)
      dout.data<float>()[i] = dist(rng);
  }
  return "";
}

std::string BackwardRun::compile() {
  std::string error;
  target = parseTarget(opts.target, error);
  if (!target)
    return error;
  if (target->backend().deviceType() != kDLCPU)
    return "attnc run --backward executes on host tensors (the CPU target); "
           "CUDA's backward kernels run on device tensors through the JIT "
           "(Kernel::backward) and in attn-gpu-sim";
  ::attn::CompileOptions co = compileOptionsFor(opts);
  ::attn::Compiler compiler;
  if (!(fwd = compiler.compile(opts.specPath, co, error)))
    return error;
  // The backward's tiles follow its own heuristics (keys in lanes).
  co.tileQ = co.tileKV = 0;
  co.backward = true;
  if (!(bwd = compiler.compile(opts.specPath, co, error)))
    return error;
  return "";
}

/// The forward (o, lse) then the backward, opts.repeat times each; the
/// medians are kept.
std::string BackwardRun::runKernels() {
  std::vector<TensorView> views;
  views.reserve(sig.inputs.size());
  std::vector<const DLTensor *> ptrs;
  for (const ::attn::InputSig &in : sig.inputs) {
    DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    HostArray &a = inputPlan.inputs.at(in.name);
    if (std::string err = convertInPlace(a, dt); !err.empty())
      return "input '" + in.name + "': " + err;
    views.emplace_back(a, dl);
    ptrs.push_back(&views.back().t);
  }
  if (std::string err = convertInPlace(dout, DType::F32); !err.empty())
    return "do: " + err;
  if (haveDlse)
    if (std::string err = convertInPlace(dlse, DType::F32); !err.empty())
      return "dlse: " + err;
  int64_t B = dims["B"], Hq = dims["Hq"], Hkv = dims["Hkv"], N = dims["N"],
          M = dims["M"], Dqk = dims["Dqk"], Dv = dims["Dv"];
  for (auto [a, shape] :
       {std::pair<HostArray *, std::vector<int64_t>>{&o, {B, Hq, N, Dv}},
        {&lse, {B, Hq, N}},
        {&dq, {B, Hq, N, Dqk}},
        {&dk, {B, Hkv, M, Dqk}},
        {&dv, {B, Hkv, M, Dv}}})
    if (std::string err = HostArray::allocate(DType::F32, shape, *a);
        !err.empty())
      return "outputs: " + err;
  std::vector<TensorView> gradViews;
  gradViews.reserve(bwd->gradientInputs().size());
  std::vector<DLTensor *> dauxPtrs;
  for (const std::string &name : bwd->gradientInputs()) {
    HostArray &g = daux[name];
    if (std::string err =
            HostArray::allocate(DType::F32, inputPlan.inputs.at(name).shape, g);
        !err.empty())
      return "d" + name + ": " + err;
    gradViews.emplace_back(g, DLDataType{kDLFloat, 32, 1});
    dauxPtrs.push_back(&gradViews.back().t);
  }
  DLDataType f32 = {kDLFloat, 32, 1};
  TensorView oV(o, f32), lseV(lse, f32), doV(dout, f32), dqV(dq, f32),
      dkV(dk, f32), dvV(dv, f32);
  std::optional<TensorView> dlseV;
  if (haveDlse)
    dlseV.emplace(dlse, f32);
  attn_run_options_t runOpts{opts.threads};
  std::vector<double> f, g;
  for (int r = 0; r < std::max(1, opts.repeat); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    attn_status_t st =
        fwd->run(ptrs.data(), &oV.t, softmax ? &lseV.t : nullptr, &runOpts);
    f.push_back(msSince(t0));
    if (st != ATTN_OK)
      return std::string("forward: ") + attn_status_string(st) + ": " +
             attn_last_error();
    t0 = std::chrono::steady_clock::now();
    st = bwd->backward(ptrs.data(), &oV.t, softmax ? &lseV.t : nullptr, &doV.t,
                       dlseV ? &dlseV->t : nullptr, &dqV.t, &dkV.t, &dvV.t,
                       dauxPtrs.data(), &runOpts);
    g.push_back(msSince(t0));
    if (st != ATTN_OK)
      return std::string("backward: ") + attn_status_string(st) + ": " +
             attn_last_error();
  }
  std::sort(f.begin(), f.end());
  std::sort(g.begin(), g.end());
  fwdMs = f[f.size() / 2];
  bwdMs = g[g.size() / 2];
  return "";
}

std::string BackwardRun::runReference(llvm::raw_ostream &os) {
  auto t0 = std::chrono::steady_clock::now();
  if (std::string err = evaluateReferenceBackward(
          spec, inputPlan.inputs, dout, haveDlse ? &dlse : nullptr, ref,
          memoryBudget(opts.maxMemory));
      !err.empty())
    return "reference: " + err;
  os << "reference gradients (float64): " << llvm::format("%.3f", msSince(t0))
     << " ms\n";
  return "";
}

std::string BackwardRun::check(llvm::raw_ostream &os) {
  KernelInfo info;
  info.name = bwd->name();
  info.signature = bwd->signature();
  info.hasLse = softmax;
  // The linear family widens bf16 to fp32 (no bf16 dot products): its
  // tolerance is the fp32 one on every CPU.
  info.linear = !spec.getAttention();
  const Tolerance tol = target->tolerance(info);
  bool pass = true;
  // 10% of the largest of dq, dk, dv: the scale of a gradient that is zero
  // in exact arithmetic and computed by cancellation in fp32.
  double floor =
      0.1 * std::max({maxAbsOf(ref.dq), maxAbsOf(ref.dk), maxAbsOf(ref.dv)});
  auto one = [&](const std::string &name, const HostArray &got,
                 const HostArray &want) {
    double e = relError(got, want, floor);
    pass &= e <= tol.o;
    os << " " << name << " " << llvm::format("%.3g", e);
  };
  os << "check vs float64 reference gradients (max err rel to max|ref|, "
        "at least 10% of the largest of dq, dk, dv):";
  one("dq", dq, ref.dq);
  one("dk", dk, ref.dk);
  one("dv", dv, ref.dv);
  for (const auto &[name, g] : daux)
    one("d" + name, g, ref.daux.at(name));
  os << " -> " << (pass ? "PASS" : "FAIL") << " (" << tol.note << ")\n";
  return pass ? "" : "compiled gradients disagree with the reference";
}

std::string BackwardRun::run(llvm::raw_ostream &os) {
  if (std::string err = plan(); !err.empty())
    return err;
  os << "spec: " << spec.getSymName() << " (" << opts.specPath << ")\ndims:";
  for (const char *d : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv", "G"})
    os << " " << d << "=" << dims.at(d);
  os << "\ngradients of: q, k, v";
  for (const std::string &n : gradNames)
    os << ", " << n;
  os << " (do " << (gradientFiles.empty() ? "random" : "given") << ")\n";
  if (opts.reference) {
    if (std::string err = runReference(os); !err.empty())
      return err;
    std::map<std::string, const HostArray *> arrays = {
        {"dq", &ref.dq}, {"dk", &ref.dk}, {"dv", &ref.dv}};
    for (const auto &[name, g] : ref.daux)
      arrays["d" + name] = &g;
    for (const std::string &name : outputs.names)
      if (!arrays.count(name))
        return "--output " + name +
               ": --backward --reference writes the gradients only";
    return writeOutputs(outputs, arrays, "float64", os);
  }
  for (auto step : {&BackwardRun::compile, &BackwardRun::runKernels})
    if (std::string err = (this->*step)(); !err.empty())
      return err;
  double B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
         M = dims.at("M"), Dqk = dims.at("Dqk"), Dv = dims.at("Dv");
  // Dense-equivalent: the forward's 2 N M (Dqk + Dv) products, the
  // backward's 2.5 times as many (QKᵀ, dO Vᵀ, Pᵀ dO, dSᵀ Q, dS K).
  double fwdFlops = 2.0 * B * Hq * N * M * (Dqk + Dv);
  double bwdFlops = 2.0 * B * Hq * N * M * (3 * Dqk + 2 * Dv);
  os << "time: forward " << llvm::format("%.3f", fwdMs) << " ms ("
     << llvm::format("%.1f", fwdFlops / (fwdMs * 1e-3) / 1e9)
     << " GFLOP/s), backward " << llvm::format("%.3f", bwdMs) << " ms ("
     << llvm::format("%.1f", bwdFlops / (bwdMs * 1e-3) / 1e9)
     << " GFLOP/s), backward/forward " << llvm::format("%.2f", bwdMs / fwdMs)
     << ", median of " << std::max(1, opts.repeat)
     << ", threads=" << (opts.threads ? opts.threads : attn_cpu_num_threads())
     << "\n";
  if (opts.check) {
    // The reference sees exactly the kernel's (possibly rounded) inputs.
    if (std::string err = runReference(os); !err.empty())
      return err;
    if (std::string err = check(os); !err.empty())
      return err;
  }
  std::map<std::string, const HostArray *> arrays = {
      {"o", &o}, {"lse", &lse}, {"dq", &dq}, {"dk", &dk}, {"dv", &dv}};
  for (const auto &[name, g] : daux)
    arrays["d" + name] = &g;
  return writeOutputs(outputs, arrays, "float32", os);
}

std::string mlir::attn::runBackwardSpec(SpecOp spec, const RunOptions &opts,
                                        llvm::raw_ostream &os) {
  return BackwardRun(spec, opts).run(os);
}
