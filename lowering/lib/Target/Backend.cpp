//===- Backend.cpp - the backend registry and what backends share ---------===//

#include "attn/Target/Backend.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"
#include <optional>

using namespace mlir;
using namespace mlir::attn;

KernelBinding::~KernelBinding() = default;

attn_status_t
KernelBinding::runBackward(const DLTensor *const *inputs, const DLTensor *o,
                           const DLTensor *lse, const DLTensor *dout,
                           const DLTensor *dlse, DLTensor *dq, DLTensor *dk,
                           DLTensor *dv, DLTensor *const *daux,
                           const attn_run_options_t *options, void *) const {
  // The CPU entry reports a NULL descriptor (a forward kernel) with its
  // message.
  return attn_cpu_run_backward(backwardDesc(), inputs, o, lse, dout, dlse, dq,
                               dk, dv, daux, options);
}
LoadedLibrary::~LoadedLibrary() = default;
LoadHost::~LoadHost() = default;
BackendTarget::~BackendTarget() = default;
Backend::~Backend() = default;

std::string BackendTarget::checkSchedule(const Schedule &) const { return ""; }

Tolerance BackendTarget::tolerance(const KernelInfo &) const {
  return Tolerance();
}

std::string Schedule::key() const {
  std::string s =
      "tile=" + std::to_string(tileQ) + "x" + std::to_string(tileKV) +
      " chunk=" + std::to_string(linearChunk) + (linearState ? " state" : "") +
      (pagedKV ? " paged" : "") + (decodeKernels ? "" : " nodecode") +
      (backward ? " backward" : "") + " dtype=" + elementType + " dims=";
  for (int64_t d : headDims)
    s += std::to_string(d) + ",";
  return s;
}

//===----------------------------------------------------------------------===//
// What every backend reports about a spec
//===----------------------------------------------------------------------===//

KernelInfo mlir::attn::describeSpec(ModuleOp module) {
  KernelInfo info;
  for (SpecOp spec : module.getBody()->getOps<SpecOp>()) {
    // Before or after attn-tile-attention.
    std::optional<NormalizerKind> kind;
    if (AttentionOp att = spec.getAttention())
      kind = att.getNormalizer();
    else if (TiledAttentionOp tiled = spec.getTiledAttention())
      kind = tiled.getNormalizer();
    else if (auto bwd = spec.getTiledAttentionBackward()) {
      kind = bwd.getNormalizer();
      info.backward = true;
      for (InputOp in : bwd.getGradientInputs())
        info.gradInputs.push_back(in.getSymName().str());
    } else if (auto bwd = spec.getTiledLinearAttentionBackward()) {
      info.backward = true;
      for (InputOp in : bwd.getGradientInputs())
        info.gradInputs.push_back(in.getSymName().str());
    }
    info.name = spec.getSymName().str();
    info.symbol = "attn_" + info.name;
    info.hasLse = kind == NormalizerKind::softmax;
    info.linear = !kind;
    info.signature = getSignature(spec);
  }
  return info;
}

std::string mlir::attn::signatureText(const KernelInfo &info) {
  const ::attn::Signature &sig = info.signature;
  std::string s = "v1;name=" + info.name +
                  ";tile_q=" + std::to_string(info.tileQ) +
                  ";has_lse=" + (info.hasLse ? "1" : "0") + ";inputs=";
  for (size_t i = 0; i < sig.inputs.size(); ++i) {
    const ::attn::InputSig &in = sig.inputs[i];
    s += (i ? "|" : "") + in.name + ":" + ::attn::elemTypeName(in.type) + ":";
    for (size_t d = 0; d < in.dims.size(); ++d)
      s += (d ? "," : "") + (in.dims[d].symbol.empty()
                                 ? std::to_string(in.dims[d].size)
                                 : in.dims[d].symbol);
  }
  if (info.decodeLanes)
    s += ";decode=" + std::to_string(info.decodeLanes);
  if (info.decodeWideLanes)
    s += ";decode_wide=" + std::to_string(info.decodeWideLanes);
  if (info.paged)
    s += ";paged=1";
  // Only gradients' kernels have these (a forward's text is unchanged).
  if (info.backward) {
    s += ";backward=1;grads=";
    for (size_t i = 0; i < info.gradInputs.size(); ++i)
      s += (i ? "," : "") + info.gradInputs[i];
  }
  return s;
}

static std::string parseInputSig(llvm::StringRef text, ::attn::InputSig &s) {
  llvm::SmallVector<llvm::StringRef> parts;
  text.split(parts, ':');
  if (parts.size() != 3)
    return "bad input in kernel signature";
  s.name = parts[0].str();
  if (parts[1] == "f32")
    s.type = ::attn::ElemType::F32;
  else if (parts[1] == "bf16")
    s.type = ::attn::ElemType::BF16;
  else if (parts[1] == "f16")
    s.type = ::attn::ElemType::F16;
  else if (parts[1] == "i32")
    s.type = ::attn::ElemType::I32;
  else
    return "bad element type in kernel signature";
  llvm::SmallVector<llvm::StringRef> dims;
  parts[2].split(dims, ',');
  for (llvm::StringRef d : dims) {
    ::attn::DimRef r;
    if (d.getAsInteger(10, r.size))
      r.symbol = d.str();
    s.dims.push_back(r);
  }
  return "";
}

std::string mlir::attn::parseSignatureText(llvm::StringRef text,
                                           KernelInfo &info) {
  llvm::SmallVector<llvm::StringRef> fields;
  text.split(fields, ';');
  if (fields.empty() || fields[0] != "v1")
    return "unknown kernel signature format";
  info.signature.inputs.clear();
  for (llvm::StringRef f : llvm::ArrayRef(fields).drop_front()) {
    auto [key, value] = f.split('=');
    if (key == "name") {
      info.name = value.str();
      info.symbol = "attn_" + info.name;
    } else if (key == "tile_q") {
      if (value.getAsInteger(10, info.tileQ))
        return "bad tile_q in kernel signature";
    } else if (key == "has_lse") {
      info.hasLse = value == "1";
    } else if (key == "decode") {
      if (value.getAsInteger(10, info.decodeLanes) || info.decodeLanes < 0)
        return "bad decode in kernel signature";
    } else if (key == "decode_wide") {
      if (value.getAsInteger(10, info.decodeWideLanes) ||
          info.decodeWideLanes < 0)
        return "bad decode_wide in kernel signature";
    } else if (key == "paged") {
      info.paged = value == "1";
    } else if (key == "backward") {
      info.backward = value == "1";
    } else if (key == "grads") {
      llvm::SmallVector<llvm::StringRef> names;
      value.split(names, ',', -1, /*KeepEmpty=*/false);
      info.gradInputs.clear();
      for (llvm::StringRef n : names)
        info.gradInputs.push_back(n.str());
    } else if (key == "inputs") {
      llvm::SmallVector<llvm::StringRef> ins;
      value.split(ins, '|');
      for (llvm::StringRef in : ins) {
        ::attn::InputSig s;
        if (std::string err = parseInputSig(in, s); !err.empty())
          return err;
        info.signature.inputs.push_back(std::move(s));
      }
    }
  }
  if (info.name.empty())
    return "kernel signature without a name";
  return "";
}

static attn_elem_type_t toCElemType(::attn::ElemType t) {
  switch (t) {
  case ::attn::ElemType::F32:
    return ATTN_F32;
  case ::attn::ElemType::BF16:
    return ATTN_BF16;
  case ::attn::ElemType::F16:
    return ATTN_F16;
  case ::attn::ElemType::I32:
    return ATTN_I32;
  }
  return ATTN_F32;
}

InputDescTable::InputDescTable(const ::attn::Signature &s) {
  dimPtrs.assign(s.inputs.size(), {});
  fixedSizes.assign(s.inputs.size(), {});
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    for (const ::attn::DimRef &d : s.inputs[i].dims) {
      dimPtrs[i].push_back(d.symbol.empty() ? nullptr : d.symbol.c_str());
      fixedSizes[i].push_back(d.size);
    }
    descs.push_back(attn_input_desc_t{
        s.inputs[i].name.c_str(), toCElemType(s.inputs[i].type),
        static_cast<int32_t>(s.inputs[i].dims.size()), dimPtrs[i].data(),
        fixedSizes[i].data()});
  }
}

//===----------------------------------------------------------------------===//
// AOT header pieces
//===----------------------------------------------------------------------===//

static const char *elemTypeEnum(::attn::ElemType t) {
  switch (t) {
  case ::attn::ElemType::F32:
    return "ATTN_F32";
  case ::attn::ElemType::BF16:
    return "ATTN_BF16";
  case ::attn::ElemType::F16:
    return "ATTN_F16";
  case ::attn::ElemType::I32:
    return "ATTN_I32";
  }
  return "ATTN_F32";
}

std::string mlir::attn::header::paramName(const ::attn::InputSig &in,
                                          size_t index) {
  bool canonical =
      index < 3 && (in.name == "q" || in.name == "k" || in.name == "v");
  return canonical ? in.name : "aux_" + in.name;
}

void mlir::attn::header::writeSignatureComment(
    llvm::raw_ostream &os, const ::attn::Signature &signature, bool hasLse) {
  for (size_t i = 0; i < signature.inputs.size(); ++i) {
    const ::attn::InputSig &in = signature.inputs[i];
    std::string param = paramName(in, i);
    os << " *   " << param << ": " << ::attn::elemTypeName(in.type) << " "
       << ::attn::dimsString(in);
    if (param != in.name)
      os << " (input '" << in.name << "')";
    if (in.name == "state" || in.name == "zstate")
      os << " (read as the initial state, overwritten with the final one)";
    os << "\n";
  }
  os << " *   o: f32 [B, Hq, N, Dv] (written)\n"
     << " *   lse: f32 [B, Hq, N] (written"
     << (hasLse ? "; may be NULL" : "; must be NULL: not a softmax spec")
     << ")\n";
}

void mlir::attn::header::writeEntryParams(llvm::raw_ostream &os,
                                          const ::attn::Signature &signature) {
  for (size_t i = 0; i < signature.inputs.size(); ++i)
    os << "const DLTensor *" << paramName(signature.inputs[i], i) << ", ";
}

void mlir::attn::header::writeInputsArray(llvm::raw_ostream &os,
                                          const ::attn::Signature &signature) {
  os << "  const DLTensor *inputs[] = {";
  for (size_t i = 0; i < signature.inputs.size(); ++i)
    os << (i ? ", " : "") << paramName(signature.inputs[i], i);
  os << "};\n";
}

void mlir::attn::header::writeInputDescs(llvm::raw_ostream &os,
                                         llvm::StringRef sym,
                                         const ::attn::Signature &signature) {
  std::string symbol = sym.str();
  auto anyFixed = [](const ::attn::InputSig &in) {
    return llvm::any_of(
        in.dims, [](const ::attn::DimRef &d) { return d.symbol.empty(); });
  };
  for (const ::attn::InputSig &in : signature.inputs) {
    os << "static const char *const " << symbol << "_dims_" << in.name
       << "[] = {";
    for (size_t d = 0; d < in.dims.size(); ++d)
      os << (d ? ", " : "")
         << (in.dims[d].symbol.empty() ? "0" : "\"" + in.dims[d].symbol + "\"");
    os << "};\n";
    if (anyFixed(in)) {
      os << "static const int64_t " << symbol << "_sizes_" << in.name
         << "[] = {";
      for (size_t d = 0; d < in.dims.size(); ++d)
        os << (d ? ", " : "") << in.dims[d].size;
      os << "};\n";
    }
  }
  os << "static const attn_input_desc_t " << symbol << "_inputs[] = {\n";
  for (const ::attn::InputSig &in : signature.inputs)
    os << "  {\"" << in.name << "\", " << elemTypeEnum(in.type) << ", "
       << in.dims.size() << ", " << symbol << "_dims_" << in.name << ", "
       << (anyFixed(in) ? symbol + "_sizes_" + in.name : std::string("0"))
       << "},\n";
  os << "};\n";
}

void mlir::attn::header::writeCommentOpening(
    llvm::raw_ostream &os, const KernelInfo &info, llvm::StringRef what,
    llvm::StringRef linkNote, llvm::StringRef entry, llvm::StringRef lastParam,
    llvm::StringRef tensorsNote) {
  os << "/* Generated by attnc from spec '" << info.name << "'" << what
     << ". Do not edit.\n *\n"
     << linkNote << " *\n * " << entry << "(q, k, v";
  for (size_t i = 3; i < info.signature.inputs.size(); ++i)
    os << ", " << paramName(info.signature.inputs[i], i);
  os << ", o, lse, " << lastParam << ")" << tensorsNote << ":\n";
  writeSignatureComment(os, info.signature, info.hasLse);
}

void mlir::attn::header::openGuard(llvm::raw_ostream &os,
                                   llvm::StringRef guard) {
  os << "#ifndef " << guard << "\n#define " << guard << "\n\n"
     << "#include \"attn/runtime.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n"
     << "#endif\n\n";
}

void mlir::attn::header::closeGuard(llvm::raw_ostream &os,
                                    llvm::StringRef guard) {
  os << "#ifdef __cplusplus\n} /* extern \"C\" */\n#endif\n\n#endif /* "
     << guard << " */\n";
}

std::vector<int32_t> mlir::attn::gradientInputIndices(const KernelInfo &info) {
  std::vector<int32_t> idx;
  for (const std::string &g : info.gradInputs)
    for (size_t i = 0; i < info.signature.inputs.size(); ++i)
      if (info.signature.inputs[i].name == g)
        idx.push_back(static_cast<int32_t>(i));
  return idx;
}

std::vector<int32_t> mlir::attn::header::writeGradInputs(
    llvm::raw_ostream &os, llvm::StringRef symbol, const KernelInfo &info) {
  std::vector<int32_t> gradIdx = gradientInputIndices(info);
  if (!gradIdx.empty()) {
    os << "static const int32_t " << symbol << "_grad_inputs[] = {";
    for (size_t i = 0; i < gradIdx.size(); ++i)
      os << (i ? ", " : "") << gradIdx[i];
    os << "};\n";
  }
  return gradIdx;
}

void mlir::attn::header::writeBackwardEntry(
    llvm::raw_ostream &os, const KernelInfo &info,
    llvm::ArrayRef<int32_t> gradIdx, llvm::StringRef entry,
    llvm::StringRef lastParam, llvm::StringRef runFunction,
    llvm::StringRef desc, llvm::StringRef lastArg) {
  os << "static inline attn_status_t " << entry << "(";
  writeEntryParams(os, info.signature);
  os << "const DLTensor *o, const DLTensor *lse, const DLTensor *dout, "
        "const DLTensor *dlse, DLTensor *dq, DLTensor *dk, DLTensor *dv, ";
  for (size_t i : gradIdx)
    os << "DLTensor *d_" << paramName(info.signature.inputs[i], i) << ", ";
  os << lastParam << ") {\n";
  writeInputsArray(os, info.signature);
  if (!gradIdx.empty()) {
    os << "  DLTensor *daux[] = {";
    for (size_t j = 0; j < gradIdx.size(); ++j)
      os << (j ? ", " : "") << "d_"
         << paramName(info.signature.inputs[gradIdx[j]], gradIdx[j]);
    os << "};\n";
  }
  os << "  return " << runFunction << "(&" << desc
     << ", inputs, o, lse, dout, dlse, dq, dk, dv, "
     << (gradIdx.empty() ? "NULL" : "daux") << ", " << lastArg << ");\n}\n\n";
}

void mlir::attn::header::markForwardOutputsAsInputs(std::string &s) {
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"(written; may be NULL)",
                                            "(the forward's; softmax)"},
        {"(written)", "(the forward's)"}})
    for (size_t at; (at = s.find(from)) != std::string::npos;)
      s.replace(at, from.size(), to);
}
