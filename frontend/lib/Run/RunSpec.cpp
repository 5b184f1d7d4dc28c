//===- RunSpec.cpp - `attnc run` ------------------------------------------===//
//
// Gathers inputs (from .npy files, or random with sizes from --shape and
// defaults), runs the spec and writes the requested outputs. Inputs are
// validated against the spec's signature before anything is computed.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/RunSpec.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Signature.h"
#include "attn/npy.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::attn;
using ::attn::HostArray;

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

std::string mlir::attn::gatherInputs(SpecOp spec,
                                     const std::vector<std::string> &given,
                                     const std::string &shape, uint64_t seed,
                                     std::map<std::string, HostArray> &inputs,
                                     std::set<std::string> *fromFileOut) {
  ::attn::Signature sig = getSignature(spec);

  // Given inputs.
  inputs.clear();
  std::set<std::string> fromFile;
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
    if (inputs.count(name))
      return "--input " + name + " given twice";
    HostArray a;
    if (std::string err = ::attn::readNpy(path, a); !err.empty())
      return "--input " + name + ": " + err;
    if (std::string err = ::attn::checkDType(*in, a); !err.empty())
      return "--input " + name + "=" + path + ": " + err;
    inputs[name] = std::move(a);
    fromFile.insert(name);
  }

  // Dims: from given inputs first (consistency is checked by bindShapes
  // later), then --shape, then defaults.
  ::attn::DimBinding dims;
  for (const auto &[name, a] : inputs) {
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
  for (const std::string &name : {"B", "Hq", "Hkv", "N", "M", "Dqk", "Dv"})
    if (!dims.count(name))
      dims[name] = defaultDim(name, dims);

  // Random inputs for the rest.
  std::mt19937_64 rng(seed);
  for (const ::attn::InputSig &in : sig.inputs) {
    if (inputs.count(in.name))
      continue;
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
    if (in.type == ::attn::ElemType::I32) {
      // Small sorted ids along the last axis: contiguous segments, which is
      // what document/segment ids look like.
      HostArray a = HostArray::zeros(::attn::DType::I32, dimsOf);
      std::uniform_int_distribution<int32_t> dist(0, 3);
      int64_t last = dimsOf.back(), n = a.numel();
      for (int64_t i = 0; i < n; ++i)
        a.data<int32_t>()[i] = dist(rng);
      for (int64_t r = 0; r < n; r += last)
        std::sort(a.data<int32_t>() + r, a.data<int32_t>() + r + last);
      inputs[in.name] = std::move(a);
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
      HostArray a = HostArray::zeros(::attn::DType::F32, dimsOf);
      std::normal_distribution<float> dist(0.f, 1.f);
      for (int64_t i = 0, n = a.numel(); i < n; ++i) {
        float x = dist(rng);
        if (role == Role::LogGate)
          x = -std::log1p(std::exp(-x));
        else if (role == Role::Beta)
          x = 1.f / (1.f + std::exp(-x));
        a.data<float>()[i] = x;
      }
      inputs[in.name] = std::move(a);
    }
  }
  if (fromFileOut)
    *fromFileOut = std::move(fromFile);
  return "";
}

std::string
mlir::attn::parseOutputs(SpecOp spec, const std::vector<std::string> &given,
                         std::map<std::string, std::string> &outputs) {
  AttentionOp att = spec.getAttention();
  bool isSoftmax = att && att.getNormalizer() == NormalizerKind::softmax;
  for (const std::string &kv : given) {
    std::string name, path;
    if (std::string err = splitKV(kv, "--output", name, path); !err.empty())
      return err;
    if (name != "o" && name != "lse")
      return "--output " + name + ": unknown output (outputs: o, lse)";
    if (name == "lse" && !isSoftmax)
      return "--output lse: only softmax specs have an lse output (this one "
             "uses " +
             (att ? stringifyNormalizerKind(att.getNormalizer()).str()
                  : std::string("linear attention")) +
             ")";
    outputs[name] = path;
  }
  return "";
}

std::string mlir::attn::runSpec(SpecOp spec, const RunOptions &opts,
                                llvm::raw_ostream &os) {
  ::attn::Signature sig = getSignature(spec);
  std::map<std::string, HostArray> inputs;
  std::set<std::string> fromFile;
  if (std::string err = gatherInputs(spec, opts.inputs, opts.shape, opts.seed,
                                     inputs, &fromFile);
      !err.empty())
    return err;

  std::map<std::string, std::string> outputs;
  if (std::string err = parseOutputs(spec, opts.outputs, outputs); !err.empty())
    return err;

  ReferenceOutputs result;
  auto start = std::chrono::steady_clock::now();
  std::string err = evaluateReference(spec, inputs, result);
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

  for (const auto &[name, path] : outputs) {
    const HostArray &a = name == "o" ? result.o : result.lse;
    if (std::string werr = ::attn::writeNpy(path, a); !werr.empty())
      return "--output " + name + ": " + werr;
    os << "wrote " << name << " to " << path << "\n";
  }
  return "";
}
