//===- RunSpec.cpp - `attnc run` ------------------------------------------===//
//
// Gathers inputs (from .npy files, or random with sizes from --shape and
// defaults), runs the spec and writes the requested outputs. Inputs are
// validated against the spec's signature, and the output paths checked,
// before anything is computed; what the run will allocate is computed from
// the shapes (saturating, so an overflow reads as too large) and checked
// against --max-memory before the random inputs, the outputs or the
// reference's buffers exist. Outputs are written to temporary files and
// renamed into place together.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/RunSpec.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Signature.h"
#include "attn/npy.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Signals.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::attn;
using ::attn::formatBytes;
using ::attn::HostArray;
using ::attn::saturatingAdd;

/// Defaults for dims not fixed by a given input or --shape.
static int64_t defaultDim(llvm::StringRef name, const ::attn::DimBinding &d) {
  if (name == "B")
    return 1;
  if (name == "Hq")
    return 4;
  if (name == "Hkv")
    return d.count("Hq") ? d.at("Hq") : 4;
  if (name == "N")
    return 128;
  if (name == "M")
    return d.count("N") ? d.at("N") : 128;
  if (name == "Dqk")
    return 64;
  if (name == "Dv")
    return d.count("Dqk") ? d.at("Dqk") : 64;
  return 0;
}

static std::string splitKV(const std::string &kv, const char *flag,
                           std::string &name, std::string &value) {
  auto [n, v] = llvm::StringRef(kv).split('=');
  if (!llvm::StringRef(kv).contains('=') || n.trim().empty() ||
      v.trim().empty())
    return std::string(flag) + " '" + kv + "' must be NAME=VALUE";
  name = n.trim().str();
  value = v.trim().str();
  return "";
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

uint64_t mlir::attn::MemoryNeed::total() const {
  return saturatingAdd(saturatingAdd(inputs, outputs),
                       saturatingAdd(reference, other));
}

uint64_t mlir::attn::memoryBudget(uint64_t maxMemory) {
  return maxMemory ? maxMemory : ::attn::defaultMemoryBudget();
}

/// "96.0 GiB", or "over 16 EiB" for a size that overflowed.
static std::string sizeText(uint64_t bytes) {
  return bytes == ::attn::kSaturatedBytes ? "over 16 EiB" : formatBytes(bytes);
}

std::string mlir::attn::checkMemory(const MemoryNeed &need,
                                    uint64_t maxMemory) {
  uint64_t budget = memoryBudget(maxMemory), total = need.total();
  if (total <= budget)
    return "";
  // "inputs, outputs and the reference need 96.0 GiB (inputs 32.0 GiB, ...)"
  std::vector<std::pair<std::string, uint64_t>> parts = {
      {"inputs", need.inputs}};
  if (need.outputs)
    parts.push_back({"outputs", need.outputs});
  if (need.reference)
    parts.push_back({"the reference", need.reference});
  if (need.other)
    parts.push_back({need.otherName ? need.otherName : "the rest", need.other});
  std::string names, sizes;
  for (size_t i = 0; i < parts.size(); ++i) {
    names += (i == 0                  ? ""
              : i + 1 == parts.size() ? " and "
                                      : ", ") +
             parts[i].first;
    llvm::StringRef name = llvm::StringRef(parts[i].first);
    name.consume_front("the ");
    sizes += (i ? ", " : "") + name.str() + " " + sizeText(parts[i].second);
  }
  std::string detail;
  if (total == ::attn::kSaturatedBytes)
    detail = "the sizes overflow 64 bits";
  if (parts.size() > 1)
    detail += (detail.empty() ? "" : ": ") + sizes;
  return names + " need " + sizeText(total) +
         (detail.empty() ? std::string() : " (" + detail + ")") +
         ", more than --max-memory=" + formatBytes(budget);
}

std::string mlir::attn::parseMaxMemory(const std::string &text,
                                       uint64_t &bytes) {
  if (!::attn::parseByteSize(text, bytes))
    return "--max-memory=" + text +
           ": expected a positive size in bytes with an optional K, M, G or "
           "T suffix (powers of 1024), e.g. 8G or 512M";
  return "";
}

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

/// Reads the --input files into `plan`, each within what the budget leaves
/// after the ones before it.
static std::string readGivenInputs(SpecOp spec, const ::attn::Signature &sig,
                                   const std::vector<std::string> &given,
                                   uint64_t maxMemory, InputPlan &plan) {
  uint64_t budget = memoryBudget(maxMemory);
  for (const std::string &kv : given) {
    std::string name, path;
    if (std::string err = splitKV(kv, "--input", name, path); !err.empty())
      return err;
    const ::attn::InputSig *in = sig.find(name);
    if (!in) {
      std::string known;
      for (const auto &i : sig.inputs)
        known += (known.empty() ? "" : ", ") + i.name;
      return "--input " + name + ": spec '" + spec.getSymName().str() +
             "' has no input named '" + name + "' (inputs: " + known + ")";
    }
    if (plan.inputs.count(name))
      return "--input " + name + " given twice";
    uint64_t left = budget > plan.bytes ? budget - plan.bytes : 0;
    std::string budgetText =
        plan.bytes == 0 ? "--max-memory=" + formatBytes(budget)
                        : "the " + formatBytes(left) +
                              " that --max-memory=" + formatBytes(budget) +
                              " leaves after the inputs before it";
    if (left == 0)
      return "--input " + name +
             ": the inputs before it already use all of "
             "--max-memory=" +
             formatBytes(budget);
    HostArray a;
    if (std::string err = ::attn::readNpy(path, a, left, budgetText);
        !err.empty())
      return "--input " + name + ": " + err;
    if (std::string err = ::attn::checkDType(*in, a); !err.empty())
      return "--input " + name + "=" + path + ": " + err;
    plan.bytes = saturatingAdd(plan.bytes, a.bytes.size());
    plan.inputs[name] = std::move(a);
    plan.fromFile.insert(name);
  }
  return "";
}

std::string mlir::attn::planInputs(SpecOp spec,
                                   const std::vector<std::string> &given,
                                   const std::string &shape, uint64_t maxMemory,
                                   InputPlan &plan) {
  ::attn::Signature sig = getSignature(spec);
  plan = InputPlan();
  if (std::string err = readGivenInputs(spec, sig, given, maxMemory, plan);
      !err.empty())
    return err;

  // Dims: from given inputs first (consistency is checked by bindShapes
  // later), then --shape, then defaults.
  ::attn::DimBinding dims;
  for (const auto &[name, a] : plan.inputs) {
    const ::attn::InputSig *in = sig.find(name);
    if (a.shape.size() != in->dims.size())
      return "input '" + name + "' must have rank " +
             std::to_string(in->dims.size()) + " " + ::attn::dimsString(*in) +
             ", got shape " + a.shapeString();
    for (size_t d = 0; d < a.shape.size(); ++d)
      if (!in->dims[d].symbol.empty())
        dims.emplace(in->dims[d].symbol, a.shape[d]);
  }
  std::set<std::string> known;
  for (const auto &in : sig.inputs)
    for (const auto &d : in.dims)
      if (!d.symbol.empty())
        known.insert(d.symbol);
  std::optional<int64_t> aliasM;
  if (!shape.empty()) {
    llvm::SmallVector<llvm::StringRef> items;
    llvm::StringRef(shape).split(items, ',', -1, false);
    for (llvm::StringRef item : items) {
      std::string name, value;
      if (std::string err = splitKV(item.str(), "--shape", name, value);
          !err.empty())
        return err;
      int64_t size;
      if (llvm::StringRef(value).getAsInteger(10, size) || size <= 0)
        return "--shape " + name + "=" + value +
               ": size must be a positive integer";
      // A causal linear attention binds no M (k and v have N rows): M
      // names N there, and must agree with it (checked below).
      if (name == "M" && !known.count("M") && known.count("N")) {
        aliasM = size;
        continue;
      }
      if (!known.count(name)) {
        std::string list;
        for (const std::string &k : known)
          list += (list.empty() ? "" : ", ") + k;
        return "--shape: unknown dim '" + name +
               "' (this spec's dims: " + list + ")";
      }
      auto [it, inserted] = dims.emplace(name, size);
      if (!inserted && it->second != size)
        return "--shape " + name + "=" + std::to_string(size) +
               " contradicts the given inputs (" + name + "=" +
               std::to_string(it->second) + ")";
    }
  }
  if (aliasM) {
    auto [it, inserted] = dims.emplace("N", *aliasM);
    if (!inserted && it->second != *aliasM)
      return "--shape M=" + std::to_string(*aliasM) +
             " differs from N=" + std::to_string(it->second) +
             ": a causal linear attention's keys are its queries (k and v "
             "have N rows)";
  }
  for (const std::string &name : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"})
    if (!dims.count(name))
      dims[name] = defaultDim(name, dims);

  // The shapes of the inputs still to be made (f32 or i32: 4 bytes each).
  for (const ::attn::InputSig &in : sig.inputs) {
    if (plan.inputs.count(in.name)) {
      plan.shapes[in.name] = plan.inputs.at(in.name).shape;
      continue;
    }
    std::vector<int64_t> dimsOf;
    for (const ::attn::DimRef &d : in.dims) {
      if (d.symbol.empty()) {
        dimsOf.push_back(d.size);
        continue;
      }
      auto it = dims.find(d.symbol);
      if (it == dims.end())
        return "input '" + in.name + "' " + ::attn::dimsString(in) +
               " needs a size for dim '" + d.symbol + "': pass --input " +
               in.name + "=FILE.npy or --shape " + d.symbol + "=SIZE";
      dimsOf.push_back(it->second);
    }
    plan.bytes = saturatingAdd(plan.bytes, ::attn::arrayBytes(dimsOf, 4));
    plan.shapes[in.name] = std::move(dimsOf);
  }
  return "";
}

std::string mlir::attn::makeRandomInputs(SpecOp spec, uint64_t seed,
                                         InputPlan &plan) {
  std::mt19937_64 rng(seed);
  for (const ::attn::InputSig &in : getSignature(spec).inputs) {
    if (plan.inputs.count(in.name))
      continue;
    const std::vector<int64_t> &dimsOf = plan.shapes.at(in.name);
    bool isInt = in.type == ::attn::ElemType::I32;
    HostArray a;
    if (std::string err = HostArray::allocate(
            isInt ? ::attn::DType::I32 : ::attn::DType::F32, dimsOf, a);
        !err.empty())
      return "random input '" + in.name + "': " + err;
    if (isInt) {
      // Small sorted ids along the last axis: contiguous segments, which is
      // what document/segment ids look like.
      std::uniform_int_distribution<int32_t> dist(0, 3);
      int64_t last = dimsOf.empty() ? 1 : dimsOf.back(), n = a.numel();
      for (int64_t i = 0; i < n; ++i)
        a.data<int32_t>()[i] = dist(rng);
      for (int64_t r = 0; last > 0 && r < n; r += last)
        std::sort(a.data<int32_t>() + r, a.data<int32_t>() + r + last);
    } else {
      // Linear attention: tensors read by the gate are log gates, drawn as
      // logsigmoid(N(0,1)) (<= 0); those read by the delta rule's beta are
      // sigmoid(N(0,1)) in (0, 1). Everything else is N(0, 1).
      enum class Role { Plain, LogGate, Beta } role = Role::Plain;
      if (LinearAttentionOp lin = spec.getLinearAttention()) {
        lin.getGate().walk([&](LoadOp l) {
          if (l.getInput() == in.name)
            role = Role::LogGate;
        });
        lin.getBeta().walk([&](LoadOp l) {
          if (l.getInput() == in.name)
            role = Role::Beta;
        });
      }
      std::normal_distribution<float> dist(0.f, 1.f);
      for (int64_t i = 0, n = a.numel(); i < n; ++i) {
        float x = dist(rng);
        if (role == Role::LogGate)
          x = -std::log1p(std::exp(-x));
        else if (role == Role::Beta)
          x = 1.f / (1.f + std::exp(-x));
        a.data<float>()[i] = x;
      }
    }
    plan.inputs[in.name] = std::move(a);
  }
  return "";
}

//===----------------------------------------------------------------------===//
// Outputs
//===----------------------------------------------------------------------===//

std::string mlir::attn::prepareOutputs(SpecOp spec,
                                       const std::vector<std::string> &given,
                                       RunOutputs &outputs, bool backward) {
  AttentionOp att = spec.getAttention();
  bool isSoftmax = att && att.getNormalizer() == NormalizerKind::softmax;
  std::vector<std::string> known = {"o", "lse"};
  if (backward) {
    for (const char *g : {"dq", "dk", "dv"})
      known.push_back(g);
    for (const std::string &name : differentiableInputs(spec))
      known.push_back("d" + name);
  }
  for (const std::string &kv : given) {
    std::string name, path;
    if (std::string err = splitKV(kv, "--output", name, path); !err.empty())
      return err;
    if (!llvm::is_contained(known, name))
      return "--output " + name +
             ": unknown output (outputs: " + llvm::join(known, ", ") + ")";
    if (name == "lse" && !isSoftmax)
      return "--output lse: only softmax specs have an lse output (this one "
             "uses " +
             (att ? stringifyNormalizerKind(att.getNormalizer()).str()
                  : std::string("linear attention")) +
             ")";
    if (llvm::is_contained(outputs.names, name))
      return "--output " + name + " given twice";
    if (std::string err = outputs.files.add(path); !err.empty())
      return "--output " + name + ": " + err;
    outputs.temporaries.push_back(
        outputs.files.temporaryPath(outputs.files.size() - 1));
    llvm::sys::RemoveFileOnSignal(outputs.temporaries.back());
    outputs.names.push_back(name);
    outputs.paths.push_back(path);
  }
  return "";
}

mlir::attn::RunOutputs::~RunOutputs() {
  for (const std::string &temp : temporaries)
    llvm::sys::DontRemoveFileOnSignal(temp);
}

std::string
mlir::attn::writeOutputs(RunOutputs &outputs,
                         const std::map<std::string, const HostArray *> &arrays,
                         const char *what, llvm::raw_ostream &os) {
  if (outputs.names.empty())
    return "";
  std::vector<const HostArray *> list;
  for (const std::string &name : outputs.names)
    list.push_back(arrays.at(name));
  if (std::string err = outputs.files.commit(list); !err.empty())
    return "--output: " + err;
  for (size_t i = 0; i < outputs.names.size(); ++i)
    os << "wrote " << outputs.names[i]
       << (what ? std::string(" (") + what + ")" : std::string()) << " to "
       << outputs.paths[i] << "\n";
  return "";
}

std::string mlir::attn::prepareRun(SpecOp spec, const RunOptions &opts,
                                   RunOutputs &outputs, InputPlan &plan) {
  if (std::string err =
          prepareOutputs(spec, opts.outputs, outputs, opts.backward);
      !err.empty())
    return err;
  return planInputs(spec, opts.inputs, opts.shape, opts.maxMemory, plan);
}

//===----------------------------------------------------------------------===//
// attnc run --reference
//===----------------------------------------------------------------------===//

std::string mlir::attn::runSpec(SpecOp spec, const RunOptions &opts,
                                llvm::raw_ostream &os) {
  ::attn::Signature sig = getSignature(spec);
  RunOutputs outputs;
  InputPlan plan;
  if (std::string err = prepareRun(spec, opts, outputs, plan); !err.empty())
    return err;
  // The reference's o and lse are the outputs (written without a copy).
  ReferenceMemory ref = referenceMemory(spec, plan.shapes);
  MemoryNeed need;
  need.inputs = plan.bytes;
  need.outputs = ref.outputs;
  need.reference = saturatingAdd(ref.widened, ref.scratch);
  if (std::string err = checkMemory(need, opts.maxMemory); !err.empty())
    return err;
  if (std::string err = makeRandomInputs(spec, opts.seed, plan); !err.empty())
    return err;
  const std::map<std::string, HostArray> &inputs = plan.inputs;
  const std::set<std::string> &fromFile = plan.fromFile;

  ReferenceOutputs result;
  uint64_t budget = memoryBudget(opts.maxMemory);
  auto start = std::chrono::steady_clock::now();
  std::string err = evaluateReference(
      spec, inputs, result, std::max<uint64_t>(budget - plan.bytes, 1));
  auto stop = std::chrono::steady_clock::now();
  if (!err.empty())
    return err;
  double ms = std::chrono::duration<double, std::milli>(stop - start).count();

  // Summary.
  os << "spec: " << spec.getSymName();
  if (!opts.specPath.empty())
    os << " (" << opts.specPath << ")";
  os << "\ndims:";
  for (const char *d : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv", "G"})
    os << " " << d << "=" << result.dims.at(d);
  for (const auto &[name, size] : result.dims)
    if (!isCanonicalDim(name))
      os << " " << name << "=" << size;
  os << "\nparams:";
  if (result.params.empty())
    os << " (none)";
  for (const auto &[name, v] : result.params) {
    os << " " << name << "=";
    if (v.isInt)
      os << v.i;
    else
      os << llvm::format("%g", v.f);
  }
  os << "\ninputs:";
  for (const ::attn::InputSig &in : sig.inputs) {
    const HostArray &a = inputs.at(in.name);
    os << " " << in.name << a.shapeString() << ":" << ::attn::dtypeName(a.dtype)
       << (fromFile.count(in.name) ? "" : "(random)");
  }
  if (fromFile.size() < sig.inputs.size())
    os << " seed=" << opts.seed;
  os << "\n";
  const HostArray &o = result.o;
  double sum = 0, maxAbs = 0;
  int64_t nonFinite = 0;
  for (int64_t i = 0, n = o.numel(); i < n; ++i) {
    double x = o.data<double>()[i];
    if (!std::isfinite(x))
      ++nonFinite;
    sum += x;
    maxAbs = std::max(maxAbs, std::fabs(x));
  }
  os << "output o" << o.shapeString() << ": sum=" << llvm::format("%.9g", sum)
     << " max|o|=" << llvm::format("%.6g", maxAbs)
     << " non-finite=" << nonFinite << "\n";
  os << "backend: reference (float64), time " << llvm::format("%.3f", ms)
     << " ms\n";

  return writeOutputs(outputs, {{"o", &result.o}, {"lse", &result.lse}},
                      nullptr, os);
}
