//===- Signature.cpp - shape binding for spec inputs ----------------------===//

#include "attn/Signature.h"
#include <sstream>

using namespace attn;

const char *attn::elemTypeName(ElemType t) {
  switch (t) {
  case ElemType::F32:
    return "f32";
  case ElemType::BF16:
    return "bf16";
  case ElemType::F16:
    return "f16";
  case ElemType::I32:
    return "i32";
  }
  return "?";
}

const InputSig *Signature::find(const std::string &name) const {
  for (const InputSig &in : inputs)
    if (in.name == name)
      return &in;
  return nullptr;
}

Signature Signature::withQKV() {
  Signature s;
  auto sym = [](const char *n) { return DimRef{n, 0}; };
  s.inputs.push_back(
      {"q", ElemType::F32, {sym("B"), sym("Hq"), sym("N"), sym("Dqk")}});
  s.inputs.push_back(
      {"k", ElemType::F32, {sym("B"), sym("Hkv"), sym("M"), sym("Dqk")}});
  s.inputs.push_back(
      {"v", ElemType::F32, {sym("B"), sym("Hkv"), sym("M"), sym("Dv")}});
  return s;
}

std::string attn::dimsString(const InputSig &in) {
  std::string s = "[";
  for (size_t i = 0; i < in.dims.size(); ++i) {
    if (i)
      s += ", ";
    s += in.dims[i].symbol.empty() ? std::to_string(in.dims[i].size)
                                   : in.dims[i].symbol;
  }
  return s + "]";
}

static std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string
attn::bindShapes(const Signature &sig,
                 const std::map<std::string, std::vector<int64_t>> &shapes,
                 DimBinding &dims) {
  dims.clear();
  std::map<std::string, std::string> boundBy; // symbol -> "input 'q' dim 2"
  for (const auto &kv : shapes)
    if (!sig.find(kv.first))
      return "unexpected input '" + kv.first + "': the spec declares no such "
             "input";
  for (const InputSig &in : sig.inputs) {
    auto it = shapes.find(in.name);
    if (it == shapes.end())
      return "missing input '" + in.name + "' " + dimsString(in);
    const std::vector<int64_t> &shape = it->second;
    if (shape.size() != in.dims.size())
      return "input '" + in.name + "' must have rank " +
             std::to_string(in.dims.size()) + " " + dimsString(in) +
             ", got shape " + shapeString(shape);
    for (size_t d = 0; d < shape.size(); ++d) {
      const DimRef &ref = in.dims[d];
      int64_t size = shape[d];
      std::string where =
          "input '" + in.name + "' dim " + std::to_string(d);
      if (size <= 0)
        return where + " must be positive, got " + std::to_string(size);
      if (ref.symbol.empty()) {
        if (size != ref.size)
          return where + " must be " + std::to_string(ref.size) + ", got " +
                 std::to_string(size);
        continue;
      }
      auto [pos, inserted] = dims.emplace(ref.symbol, size);
      if (inserted) {
        boundBy[ref.symbol] = where;
        continue;
      }
      if (pos->second != size)
        return "dim '" + ref.symbol + "' is " + std::to_string(pos->second) +
               " (from " + boundBy[ref.symbol] + ") but " +
               std::to_string(size) + " in " + where + " (shape " +
               shapeString(shape) + ")";
    }
  }
  // A signature without M (a causal linear attention: k and v have N rows)
  // has as many keys as queries.
  if (!dims.count("M") && dims.count("N"))
    dims["M"] = dims["N"];
  // G = Hq / Hkv where the signature binds both (every spec's does: q and k
  // are always inputs); both are positive here, so the division is defined.
  auto hq = dims.find("Hq"), hkv = dims.find("Hkv");
  if (hq == dims.end() || hkv == dims.end())
    return "";
  if (hq->second % hkv->second != 0)
    return "Hq=" + std::to_string(hq->second) +
           " query heads is not a multiple of Hkv=" +
           std::to_string(hkv->second) + " key/value heads";
  dims["G"] = hq->second / hkv->second;
  return "";
}

std::string attn::checkDType(const InputSig &in, const HostArray &a) {
  bool isFloatInput = in.type != ElemType::I32;
  if (isFloatInput) {
    if (a.dtype == DType::F32 || a.dtype == DType::F64 ||
        a.dtype == DType::BF16 || a.dtype == DType::F16)
      return "";
    return "input '" + in.name + "' must be float32 or float64, got " +
           dtypeName(a.dtype);
  }
  if (a.dtype == DType::I32)
    return "";
  if (a.dtype == DType::I64) {
    for (int64_t i = 0, e = a.numel(); i < e; ++i) {
      int64_t v = a.data<int64_t>()[i];
      if (v < INT32_MIN || v > INT32_MAX)
        return "input '" + in.name + "' is int64 with value " +
               std::to_string(v) + " that does not fit in int32";
    }
    return "";
  }
  return "input '" + in.name + "' must be int32, got " + dtypeName(a.dtype);
}

std::vector<int64_t> attn::shapeOf(const InputSig &in, const DimBinding &dims) {
  std::vector<int64_t> shape;
  for (const DimRef &d : in.dims)
    shape.push_back(d.symbol.empty() ? d.size : dims.at(d.symbol));
  return shape;
}
